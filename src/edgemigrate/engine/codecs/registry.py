"""General-purpose codecs behind one :class:`Codec` protocol, and the codec registry.

Every codec is an immutable object: ``name``, ``level``, ``codec_id`` (one byte on the wire, see
:mod:`edgemigrate.engine.codecs.frames`), ``compress(bytes) -> bytes`` and
``decompress(bytes, raw_size_bytes) -> bytes``.

Thread safety
-------------
``compress``/``decompress`` may be called from many threads at once on the same codec object:

* ``none``, ``zlib`` and ``lz4`` (lz4.frame one-shot functions) keep no shared state and release the GIL
  while they work, so a thread pool compresses chunks in parallel.
* ``zstd``: a ``zstandard.ZstdCompressor``/``ZstdDecompressor`` must never be shared between threads (sharing
  one crashed the process). :class:`ZstdCodec` therefore keeps one compressor and one
  decompressor *per thread* in a ``threading.local``; the codec object itself can be shared freely.
* ``wkdm`` (:mod:`.wkdm`) is pure NumPy; NumPy releases the GIL inside each vector operation.

``decompress`` is given the size the sender declared and rejects output of any other size, so a
corrupt or hostile payload can never make the receiver allocate more than it agreed to accept.
"""

from __future__ import annotations

import functools
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import lz4.frame
import zstandard

from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.core.registry import Registry


@runtime_checkable
class Codec(Protocol):
    """A byte-string codec. Implementations must be safe to call from several threads at once."""

    @property
    def name(self) -> str: ...

    @property
    def level(self) -> int: ...

    @property
    def codec_id(self) -> int: ...

    def compress(self, data: bytes | bytearray | memoryview) -> bytes: ...

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes: ...


class CorruptDataError(EngineError):
    """A compressed payload does not decode to the declared size (corrupt or malicious input)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """A codec family and level, as a selector chooses them for the next chunk."""

    codec: str
    level: int


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """What the registry knows about a codec family: wire id, valid levels, default and factory."""

    name: str
    codec_id: int
    min_level: int
    max_level: int
    default_level: int
    factory: Callable[[int], Codec]
    doc: str

    def levels(self) -> range:
        return range(self.min_level, self.max_level + 1)


def _check_size(out: bytes, raw_size_bytes: int, name: str) -> bytes:
    if len(out) != raw_size_bytes:
        raise CorruptDataError(
            f"{name}: payload decodes to {len(out)} bytes, frame declared {raw_size_bytes}"
        )
    return out


@dataclass(frozen=True, slots=True)
class NoneCodec:
    """Identity codec (level 0): what "uncompressed migration" sends."""

    level: int = 0
    name: str = "none"
    codec_id: int = 0

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes:
        return _check_size(bytes(data), raw_size_bytes, self.name)


@dataclass(frozen=True, slots=True)
class Lz4Codec:
    """LZ4 frame format. Levels 1-2 are the fast compressor (identical in liblz4), 3-12 are LZ4-HC.

    Zhang et al. 2019 (sec. III-B) adapt "lz4 levels 1..9"; levels 10-12 are kept for the model selector.
    Content checksums are off: every frame of ours carries its own hash of the raw bytes.
    """

    level: int = 1
    name: str = "lz4"
    codec_id: int = 1

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return lz4.frame.compress(
            data, compression_level=self.level, store_size=True, content_checksum=False, block_linked=True
        )

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes:
        try:
            dec = lz4.frame.LZ4FrameDecompressor()
            # max_length bounds the output: a payload claiming to expand further is cut and then rejected.
            out = dec.decompress(data, max_length=raw_size_bytes + 1)
        except RuntimeError as exc:
            raise CorruptDataError(f"lz4: corrupt payload ({exc})") from None
        if not dec.eof:
            raise CorruptDataError(f"lz4: payload does not end after the declared {raw_size_bytes} bytes")
        if dec.unused_data:  # one chunk is exactly one frame: bytes after it are not ours to ignore
            raise CorruptDataError(f"lz4: {len(dec.unused_data)} bytes after the end of the frame")
        return _check_size(out, raw_size_bytes, self.name)


class ZstdCodec:
    """Zstandard, levels 1-22. Thread-safe by keeping one (de)compressor per thread (see module doc)."""

    __slots__ = ("_level", "_local")
    name = "zstd"
    codec_id = 2

    def __init__(self, level: int = 3) -> None:
        self._level = level
        self._local = threading.local()

    @property
    def level(self) -> int:
        return self._level

    def __repr__(self) -> str:
        return f"ZstdCodec(level={self._level})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZstdCodec) and other._level == self._level

    def __hash__(self) -> int:
        return hash(("zstd", self._level))

    def _compressor(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self._level, write_content_size=True)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return self._compressor().compress(data)

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes:
        try:
            params = zstandard.get_frame_parameters(bytes(data[:18]))
        except zstandard.ZstdError as exc:
            raise CorruptDataError(f"zstd: corrupt frame header ({exc})") from None
        if params.content_size != raw_size_bytes:
            raise CorruptDataError(
                f"zstd: frame header declares {params.content_size} bytes, frame declared {raw_size_bytes}"
            )
        try:
            # one chunk is exactly one frame: bytes after it (another frame, garbage) are refused
            out = self._decompressor().decompress(data, max_output_size=raw_size_bytes, allow_extra_data=False)
        except zstandard.ZstdError as exc:
            raise CorruptDataError(f"zstd: corrupt payload ({exc})") from None
        return _check_size(out, raw_size_bytes, self.name)


@dataclass(frozen=True, slots=True)
class ZlibCodec:
    """zlib (DEFLATE), levels 1-9."""

    level: int = 6
    name: str = "zlib"
    codec_id: int = 3

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes | bytearray | memoryview, raw_size_bytes: int) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, raw_size_bytes + 1)
        except zlib.error as exc:
            raise CorruptDataError(f"zlib: corrupt payload ({exc})") from None
        if not d.eof or d.unconsumed_tail or d.unused_data:
            raise CorruptDataError("zlib: payload does not end after the declared size")
        return _check_size(out, raw_size_bytes, self.name)


CODECS: Registry[CodecSpec] = Registry("codec")
_BY_ID: dict[int, CodecSpec] = {}


def register_codec(spec: CodecSpec) -> CodecSpec:
    """Add a codec family (unique name and one-byte wire id)."""
    if spec.codec_id in _BY_ID:
        raise ValueError(f"codec id {spec.codec_id} used twice ({_BY_ID[spec.codec_id].name}, {spec.name})")
    if not 0 <= spec.codec_id <= 255:
        raise ValueError(f"codec id {spec.codec_id} does not fit one byte")
    CODECS.add(spec.name, spec)
    _BY_ID[spec.codec_id] = spec
    return spec


register_codec(CodecSpec("none", 0, 0, 0, 0, lambda level: NoneCodec(), "no compression"))
register_codec(CodecSpec("lz4", 1, 1, 12, 1, Lz4Codec, "LZ4 frame; 1-2 fast, 3-12 HC"))
register_codec(CodecSpec("zstd", 2, 1, 22, 3, ZstdCodec, "Zstandard"))
register_codec(CodecSpec("zlib", 3, 1, 9, 6, ZlibCodec, "zlib DEFLATE"))


def codec_spec(name: str) -> CodecSpec:
    """The spec of codec family ``name``; unknown names raise :class:`ConfigError` with a suggestion."""
    return CODECS.get(name)


def spec_by_id(codec_id: int) -> CodecSpec:
    """The spec for a wire codec id; unknown ids raise :class:`CorruptDataError`."""
    try:
        return _BY_ID[codec_id]
    except KeyError:
        raise CorruptDataError(f"unknown codec id {codec_id} in frame") from None


def make_codec(name: str, level: int | None = None) -> Codec:
    """A codec by family name and level (the family's default level if ``None``).

    >>> make_codec("zstd", 3).name
    'zstd'
    """
    spec = codec_spec(name)
    lv = spec.default_level if level is None else int(level)
    if lv not in spec.levels():
        raise ConfigError(f"codec '{name}': level {level} out of range {spec.min_level}..{spec.max_level}")
    return spec.factory(lv)


def codec_names() -> list[str]:
    return CODECS.names()


@functools.lru_cache(maxsize=128)
def shared_codec(name: str, level: int) -> Codec:
    """A process-wide codec instance for ``(name, level)``; safe to share between threads (see module doc).

    Reusing one instance keeps zstd's per-thread contexts alive across chunks instead of rebuilding them.
    """
    return make_codec(name, level)
