"""Hostile compression frames: bombs are refused within the declared size, payloads must be exactly one
frame, control frames get strict JSON, and a whole DATA frame round-trips within its limits."""

from __future__ import annotations

import tracemalloc
import zlib

import lz4.frame
import pytest
import zstandard

from edgemigrate.engine.codecs.frames import (
    FrameError,
    FrameHeader,
    FrameKind,
    FrameLimits,
    decode_data,
    decode_data_frame,
    encode_data_frame,
    max_payload_bytes,
    parse_control,
    raw_digest,
)
from edgemigrate.engine.codecs.registry import make_codec

BOMB_RAW_BYTES = 2 << 20  # what the payload really expands to
# slack for the decompressor's own state and the refusal's message; far below the bomb's size
ALLOWANCE_BYTES = 256 << 10


def _zstd_with_declared_size(data: bytes, declared: int) -> bytes:
    """A zstd frame of ``data`` whose header claims ``declared`` bytes of content (a lying header)."""
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    fhd = frame[4]
    single_segment, dict_id_flag, fcs_flag = (fhd >> 5) & 1, fhd & 3, fhd >> 6
    assert fcs_flag == 2  # a 4-byte content size field, as for any input of 64 KiB .. 4 GiB
    off = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_id_flag]
    return frame[:off] + declared.to_bytes(4, "little") + frame[off + 4 :]


def _bomb(name: str) -> tuple[bytes, int]:
    big = bytes(BOMB_RAW_BYTES)
    if name == "zlib":
        return zlib.compress(big, 9), 4096
    if name == "lz4":
        return lz4.frame.compress(big, store_size=True), 16384
    return _zstd_with_declared_size(big, 4096), 4096


@pytest.mark.parametrize("name", ["zlib", "lz4", "zstd"])
def test_decompression_bomb_is_refused_within_the_declared_size(name: str) -> None:
    payload, declared = _bomb(name)
    assert len(payload) <= max_payload_bytes(declared)  # passes the header check: only decoding can tell
    codec = make_codec(name)
    header = FrameHeader(FrameKind.DATA, codec.codec_id, codec.level, 0, 0, declared, len(payload),
                         raw_digest(bytes(declared)))
    make_codec(name).decompress(make_codec(name).compress(b"warm up"), 7)  # lazily built state not counted
    tracemalloc.start()
    try:
        with pytest.raises(FrameError):
            decode_data(header, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < declared + ALLOWANCE_BYTES, peak


@pytest.mark.parametrize("name", ["lz4", "zstd"])
def test_payload_must_be_exactly_one_frame(name: str) -> None:
    codec = make_codec(name)
    raw = b"chunk" * 100
    one = codec.compress(raw)
    for payload in (one + b"trailing garbage", one + one):
        header = FrameHeader(FrameKind.DATA, codec.codec_id, codec.level, 0, 0, len(raw), len(payload),
                             raw_digest(raw))
        with pytest.raises(FrameError, match="after|unused data"):
            decode_data(header, payload)
    header = FrameHeader(FrameKind.DATA, codec.codec_id, codec.level, 0, 0, len(raw), len(one), raw_digest(raw))
    assert decode_data(header, one) == raw


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"n":' + b"9" * 5000 + b"}",
        b'{"n":NaN}',
        b'{"n":1e400}',
        b'{"n":1,"n":2}',
        b'{"n":"\\ud800"}',
        '{"n":1}'.encode("utf-16"),
    ],
)
def test_control_frames_need_strict_json(payload: bytes) -> None:
    header = FrameHeader(FrameKind.HELLO, 0, 0, 0, 0, len(payload), len(payload), raw_digest(payload))
    with pytest.raises(FrameError, match="HELLO frame"):
        parse_control(header, payload)


def test_single_frame_helpers() -> None:
    data = bytes(range(256)) * 64
    header, payload = encode_data_frame(7, 4096, data, make_codec("zstd", 5))
    h, raw = decode_data_frame(header + payload, FrameLimits())
    assert raw == data and (h.index, h.offset, h.raw_bytes) == (7, 4096, len(data))
    with pytest.raises(FrameError):
        decode_data_frame(header + payload + b"x", FrameLimits())
    with pytest.raises(FrameError):
        decode_data_frame(header + payload, FrameLimits(max_raw_bytes=1000))
