"""A small, bounded reader (and writer) for the few CRIU image files the destination must inspect.

A checkpoint arrives from a peer host that may be compromised, so every image here is hostile input:
files are size-capped before they are read, entries and fields are counted, and any malformation
(truncation, unknown wire type, a varint longer than 64 bits, a singular field that occurs twice, a
``uint32`` that does not fit) raises :class:`ImageFormatError` - never ``IndexError``/``ValueError``.

Why our own protobuf wire-format code and not ``crit``/``pycriu``: the agent's venv has neither, and the
checker needs a dozen fields from five message types (``core``, ``creds``, ``task_kobj_ids``,
``inventory``, ``pstree``, ``mnt``). Field numbers are those of CRIU 4.2.1's ``images/*.proto``.

Duplicate singular fields are refused rather than resolved: protobuf-c (which CRIU uses) keeps the last
scalar and *merges* repeated sub-messages, so a lenient reader here could check one value while CRIU
restores another.

The writer (:func:`encode_message`, :func:`write_image`) exists for the tests and for the tampering
experiment in ``docs/security-checkpoint-images.md``; the agent never writes images with it.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgemigrate.core.errors import EngineError

# criu/include/magic.h
IMG_COMMON_MAGIC = 0x54564319
INVENTORY_MAGIC = 0x58313116
PSTREE_MAGIC = 0x50273030
CORE_MAGIC = 0x55053847
IDS_MAGIC = 0x54432030
MNTS_MAGIC = 0x55563928
SECCOMP_MAGIC = 0x64413049

WIRE_VARINT = 0
WIRE_I64 = 1
WIRE_LEN = 2
WIRE_I32 = 5

# A core image of a thread is ~2-4 KiB and a mount table of a runc container ~3 KiB; 4 MiB leaves room for
# many threads/mounts without letting a peer make the checker read a page image.
MAX_IMAGE_BYTES = 4 << 20
MAX_ENTRIES = 65536
MAX_FIELDS = 65536
_U32 = struct.Struct("<I")


class ImageFormatError(EngineError):
    """A CRIU image file is missing, too large or not what its name says."""


def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    result = 0
    for shift in range(0, 70, 7):
        if pos >= end:
            raise ImageFormatError(f"{where}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if result >= 1 << 64:
                raise ImageFormatError(f"{where}: varint exceeds 64 bits")
            return result, pos
    raise ImageFormatError(f"{where}: varint longer than 10 bytes")


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded protobuf message: its fields in wire order as ``(number, wire_type, value)``.

    ``value`` is an ``int`` for varint/fixed fields and ``bytes`` for length-delimited ones. Accessors
    check the wire type the schema expects and refuse duplicates of singular fields.
    """

    fields: tuple[tuple[int, int, int | bytes], ...]
    where: str

    @classmethod
    def parse(cls, buf: bytes, where: str) -> Message:
        out: list[tuple[int, int, int | bytes]] = []
        pos, end = 0, len(buf)
        while pos < end:
            if len(out) >= MAX_FIELDS:
                raise ImageFormatError(f"{where}: more than {MAX_FIELDS} fields")
            key, pos = _varint(buf, pos, end, where)
            number, wire = key >> 3, key & 7
            if number == 0 or number >= 1 << 29:
                raise ImageFormatError(f"{where}: field number {number} out of range")
            value: int | bytes
            if wire == WIRE_VARINT:
                value, pos = _varint(buf, pos, end, where)
            elif wire == WIRE_LEN:
                length, pos = _varint(buf, pos, end, where)
                if length > end - pos:
                    raise ImageFormatError(f"{where}: field {number} runs past the end")
                value = bytes(buf[pos:pos + length])
                pos += length
            elif wire in (WIRE_I64, WIRE_I32):
                size = 8 if wire == WIRE_I64 else 4
                if size > end - pos:
                    raise ImageFormatError(f"{where}: field {number} runs past the end")
                value = int.from_bytes(buf[pos:pos + size], "little")
                pos += size
            else:  # groups (3, 4) never appear in CRIU's proto2 schemas; 6 and 7 are invalid
                raise ImageFormatError(f"{where}: field {number} has wire type {wire}")
            out.append((number, wire, value))
        return cls(tuple(out), where)

    def _all(self, number: int) -> list[tuple[int, int | bytes]]:
        return [(w, v) for n, w, v in self.fields if n == number]

    def has(self, number: int) -> bool:
        return any(n == number for n, _, _ in self.fields)

    def _one(self, number: int, wire: int, name: str) -> int | bytes | None:
        found = self._all(number)
        if len(found) > 1:
            raise ImageFormatError(f"{self.where}: {name} (field {number}) occurs {len(found)} times")
        if not found:
            return None
        w, v = found[0]
        if w != wire:
            raise ImageFormatError(f"{self.where}: {name} (field {number}) has wire type {w}, expected {wire}")
        return v

    def uint(self, number: int, name: str, *, bits: int = 32, default: int | None = None) -> int:
        """A singular varint field; ``default`` if absent (absent and no default is an error)."""
        v = self._one(number, WIRE_VARINT, name)
        if v is None:
            if default is None:
                raise ImageFormatError(f"{self.where}: required {name} (field {number}) is missing")
            return default
        assert isinstance(v, int)  # the wire type was checked
        if v >= 1 << bits:
            raise ImageFormatError(f"{self.where}: {name} = {v} does not fit in {bits} bits")
        return v

    def uints(self, number: int, name: str, *, bits: int = 32) -> list[int]:
        """A repeated varint field, packed or not (protobuf-c accepts both and concatenates)."""
        out: list[int] = []
        for w, v in self._all(number):
            if w == WIRE_VARINT:
                assert isinstance(v, int)
                out.append(v)
            elif w == WIRE_LEN:
                assert isinstance(v, bytes)
                pos = 0
                while pos < len(v):
                    x, pos = _varint(v, pos, len(v), f"{self.where}: {name}")
                    out.append(x)
            else:
                raise ImageFormatError(f"{self.where}: {name} (field {number}) has wire type {w}")
            if len(out) > MAX_FIELDS:
                raise ImageFormatError(f"{self.where}: {name} has more than {MAX_FIELDS} values")
        for x in out:
            if x >= 1 << bits:
                raise ImageFormatError(f"{self.where}: {name} value {x} does not fit in {bits} bits")
        return out

    def raw(self, number: int, name: str) -> bytes | None:
        v = self._one(number, WIRE_LEN, name)
        assert v is None or isinstance(v, bytes)
        return v

    def text(self, number: int, name: str) -> str | None:
        v = self.raw(number, name)
        if v is None:
            return None
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise ImageFormatError(f"{self.where}: {name} is not UTF-8") from None

    def sub(self, number: int, name: str) -> Message | None:
        v = self.raw(number, name)
        return None if v is None else Message.parse(v, f"{self.where}.{name}")

    def subs(self, number: int, name: str) -> list[Message]:
        out = []
        for i, (w, v) in enumerate(self._all(number)):
            if w != WIRE_LEN:
                raise ImageFormatError(f"{self.where}: {name} (field {number}) has wire type {w}")
            assert isinstance(v, bytes)
            out.append(Message.parse(v, f"{self.where}.{name}[{i}]"))
        return out


def read_regular(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file, refusing symlinks (they could point the check at another
    file than CRIU reads) and FIFOs/devices (a read could block forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ImageFormatError(f"{path.name}: cannot read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageFormatError(f"{path.name}: not a regular file")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ImageFormatError(f"{path.name}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ImageFormatError(f"{path.name}: larger than {max_bytes} bytes")
    return data


def read_image(path: Path, magic: int, *, max_bytes: int = MAX_IMAGE_BYTES) -> list[bytes]:
    """The entries of a protobuf image: magic header(s), then ``u32 length`` + message, repeated.

    Every image but the inventory starts with ``IMG_COMMON_MAGIC`` before its own magic.
    """
    data = read_regular(path, max_bytes)
    heads = (magic,) if magic == INVENTORY_MAGIC else (IMG_COMMON_MAGIC, magic)
    pos = 0
    for want in heads:
        if pos + 4 > len(data) or _U32.unpack_from(data, pos)[0] != want:
            raise ImageFormatError(f"{path.name}: not a CRIU image with magic {magic:#x}")
        pos += 4
    entries: list[bytes] = []
    while pos < len(data):
        if len(entries) >= MAX_ENTRIES:
            raise ImageFormatError(f"{path.name}: more than {MAX_ENTRIES} entries")
        if pos + 4 > len(data):
            raise ImageFormatError(f"{path.name}: truncated entry length")
        (length,) = _U32.unpack_from(data, pos)
        pos += 4
        if length > len(data) - pos:
            raise ImageFormatError(f"{path.name}: entry of {length} bytes runs past the end")
        entries.append(data[pos:pos + length])
        pos += length
    return entries


def read_messages(path: Path, magic: int, *, max_bytes: int = MAX_IMAGE_BYTES) -> list[Message]:
    return [Message.parse(e, f"{path.name}[{i}]") for i, e in enumerate(read_image(path, magic, max_bytes=max_bytes))]


def read_one(path: Path, magic: int) -> Message:
    """An image that must hold exactly one entry (core, ids, inventory)."""
    msgs = read_messages(path, magic)
    if len(msgs) != 1:
        raise ImageFormatError(f"{path.name}: {len(msgs)} entries, expected exactly one")
    return msgs[0]


# ----------------------------------------------------------------------------------------------- writer
def _enc_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are ten-byte varints on the wire
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_message(fields: Iterable[tuple[int, int, int | bytes]]) -> bytes:
    """The inverse of :meth:`Message.parse` (unpacked repeated fields, fields in the given order)."""
    out = bytearray()
    for number, wire, value in fields:
        out += _enc_varint(number << 3 | wire)
        if wire == WIRE_VARINT:
            assert isinstance(value, int)
            out += _enc_varint(value)
        elif wire == WIRE_LEN:
            assert isinstance(value, bytes)
            out += _enc_varint(len(value)) + value
        elif wire in (WIRE_I64, WIRE_I32):
            assert isinstance(value, int)
            out += value.to_bytes(8 if wire == WIRE_I64 else 4, "little")
        else:
            raise ValueError(f"wire type {wire}")
    return bytes(out)


def write_image(path: Path, magic: int, entries: Sequence[bytes]) -> None:
    heads = (magic,) if magic == INVENTORY_MAGIC else (IMG_COMMON_MAGIC, magic)
    data = b"".join(_U32.pack(h) for h in heads) + b"".join(_U32.pack(len(e)) + e for e in entries)
    path.write_bytes(data)
