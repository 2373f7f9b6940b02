"""Wire frames of the compressed chunk stream.

Every frame is a fixed 44-byte header followed by ``payload_bytes`` of payload::

    offset size field
      0     4  magic b"EMC1"
      4     1  kind (FrameKind: HELLO, DATA, END)
      5     1  codec id (codecs registry; 0 = none for HELLO/END)
      6     1  codec level (signed)
      7     1  flags (0, reserved)
      8     4  chunk index (u32)
     12     8  offset of the chunk in its file (u64, informational; the sink decides placement)
     20     4  raw_bytes: size of the chunk after decompression (u32)
     24     4  payload_bytes (u32)
     28    16  BLAKE2b-128 of the raw chunk

HELLO and END carry a small JSON object (``codec none``). The receiver never trusts a size: a header is
rejected before its payload is read if the magic, kind, codec id or level is unknown, if ``raw_bytes``
exceeds :attr:`FrameLimits.max_raw_bytes`, or if ``payload_bytes`` exceeds the codec's worst-case
expansion of ``raw_bytes`` (:func:`max_payload_bytes`); a payload that does not decompress to exactly
``raw_bytes`` or whose hash differs is rejected too. No frame content is ever evaluated or unpickled.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.codecs.registry import Codec, CorruptDataError, shared_codec, spec_by_id
from edgemigrate.engine.strictjson import loads_untrusted

MAGIC = b"EMC1"
_HEADER = struct.Struct("<4sBBbBIQII16s")
HEADER_SIZE_BYTES = _HEADER.size
DIGEST_SIZE_BYTES = 16


class FrameError(EngineError):
    """A frame is malformed, oversized, out of order or fails its integrity check."""


class FrameKind(enum.IntEnum):
    HELLO = 1
    DATA = 2
    END = 3


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """What a receiver accepts. ``max_raw_bytes`` bounds one chunk; ``max_control_bytes`` a HELLO/END."""

    max_raw_bytes: int = 64 << 20
    max_control_bytes: int = 4 << 20


@dataclass(frozen=True, slots=True)
class FrameHeader:
    kind: FrameKind
    codec_id: int
    level: int
    index: int
    offset: int
    raw_bytes: int
    payload_bytes: int
    digest: bytes

    def encode(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            int(self.kind),
            self.codec_id,
            self.level,
            0,
            self.index,
            self.offset,
            self.raw_bytes,
            self.payload_bytes,
            self.digest,
        )


def raw_digest(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE2b-128 of the raw chunk (hashlib releases the GIL for large buffers)."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE_BYTES).digest()


def max_payload_bytes(raw_bytes: int) -> int:
    """An upper bound on any registered codec's output for ``raw_bytes`` of input.

    lz4 frame: raw + raw/255 + 16 + block headers; zstd: raw + raw/128 + frame header; zlib: raw +
    5 bytes per 16 KiB block + 11; WKdm: raw * 17/16 + 28 (all MISS). ``raw/16 + 1024`` covers all.
    """
    return raw_bytes + raw_bytes // 16 + 1024


def decode_header(buf: bytes, limits: FrameLimits) -> FrameHeader:
    """Parse and validate a 44-byte header; raises :class:`FrameError` naming the bad field."""
    if len(buf) != HEADER_SIZE_BYTES:
        raise FrameError(f"frame header: {len(buf)} bytes, expected {HEADER_SIZE_BYTES}")
    magic, kind, codec_id, level, flags, index, offset, raw, payload, digest = _HEADER.unpack(buf)
    if magic != MAGIC:
        raise FrameError(f"frame header: bad magic {magic!r}")
    try:
        fkind = FrameKind(kind)
    except ValueError:
        raise FrameError(f"frame header: unknown kind {kind}") from None
    if flags != 0:
        raise FrameError(f"frame header: unknown flags {flags:#x}")
    try:
        spec = spec_by_id(codec_id)
    except CorruptDataError as exc:
        raise FrameError(f"frame header: {exc}") from None
    if level not in spec.levels():
        raise FrameError(
            f"frame header: {spec.name} level {level} outside {spec.min_level}..{spec.max_level}"
        )
    if fkind is FrameKind.DATA:
        if raw > limits.max_raw_bytes:
            raise FrameError(f"frame {index}: declares {raw} raw bytes, limit is {limits.max_raw_bytes}")
        if payload > max_payload_bytes(raw):
            raise FrameError(f"frame {index}: payload of {payload} bytes is impossible for {raw} raw bytes")
    else:
        if spec.name != "none" or raw != payload:
            raise FrameError(f"{fkind.name} frame: must be uncompressed")
        if payload > limits.max_control_bytes:
            raise FrameError(f"{fkind.name} frame: {payload} bytes exceeds {limits.max_control_bytes}")
    return FrameHeader(fkind, codec_id, level, index, offset, raw, payload, digest)


def control_frame(kind: FrameKind, obj: dict[str, Any]) -> tuple[bytes, bytes]:
    """Header and payload of a HELLO/END frame carrying the JSON object ``obj``."""
    payload = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    header = FrameHeader(kind, 0, 0, 0, 0, len(payload), len(payload), raw_digest(payload))
    return header.encode(), payload


def parse_control(header: FrameHeader, payload: bytes) -> dict[str, Any]:
    """Verify and decode the JSON object of a HELLO/END frame."""
    if raw_digest(payload) != header.digest:
        raise FrameError(f"{header.kind.name} frame: hash mismatch")
    obj = loads_untrusted(payload, FrameError, f"{header.kind.name} frame")
    if not isinstance(obj, dict):
        raise FrameError(f"{header.kind.name} frame: expected a JSON object")
    return obj


def decode_data(header: FrameHeader, payload: bytes | memoryview) -> bytes:
    """Decompress a DATA payload and verify its size and hash; returns the raw chunk."""
    spec = spec_by_id(header.codec_id)
    codec = shared_codec(spec.name, header.level)
    try:
        raw = codec.decompress(payload, header.raw_bytes)
    except CorruptDataError as exc:
        raise FrameError(f"frame {header.index}: {exc}") from None
    if raw_digest(raw) != header.digest:
        raise FrameError(f"frame {header.index}: raw chunk fails its BLAKE2b check")
    return raw


def encode_data_frame(
    index: int, offset: int, data: bytes | bytearray | memoryview, codec: Codec
) -> tuple[bytes, bytes]:
    """Compress one chunk with ``codec``; returns (44-byte header, payload). Pure and thread-safe, so the
    engine's data path (:mod:`edgemigrate.engine.adaptive.sender`) runs it on a thread pool and carries
    ``header + payload`` as one opaque ``CHUNK`` message."""
    payload = codec.compress(data)
    header = FrameHeader(
        FrameKind.DATA, codec.codec_id, codec.level, index, offset, len(data), len(payload), raw_digest(data)
    )
    return header.encode(), payload


def decode_data_frame(frame: bytes | memoryview, limits: FrameLimits) -> tuple[FrameHeader, bytes]:
    """Validate and decompress one whole DATA frame (header + payload); returns (header, raw chunk)."""
    view = memoryview(frame)
    header = decode_header(bytes(view[:HEADER_SIZE_BYTES]), limits)
    if header.kind is not FrameKind.DATA:
        raise FrameError(f"expected a DATA frame, got {header.kind.name}")
    if len(view) != HEADER_SIZE_BYTES + header.payload_bytes:
        raise FrameError(
            f"frame {header.index}: {len(view) - HEADER_SIZE_BYTES} payload bytes, header says {header.payload_bytes}"
        )
    return header, decode_data(header, view[HEADER_SIZE_BYTES:])
