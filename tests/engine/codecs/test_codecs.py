from __future__ import annotations

import threading

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError, EdgeMigrateError
from edgemigrate.engine.codecs import CorruptDataError, codec_names, codec_spec, make_codec, spec_by_id
from edgemigrate.engine.codecs.frames import max_payload_bytes


def _sample(n: int = 200_000) -> bytes:
    rng = np.random.default_rng(1)
    text = b" ".join(rng.choice([b"alpha", b"beta", b"gamma", b"delta", b"0"], size=n // 6))
    noise = rng.integers(0, 256, size=n // 4, dtype=np.uint8).tobytes()
    return (text + noise + bytes(n // 4))[:n]


ALL = [
    (name, level) for name in ["none", "lz4", "zstd", "zlib", "wkdm"] for level in codec_spec(name).levels()
]


@pytest.mark.parametrize(("name", "level"), ALL)
def test_round_trip_every_codec_and_level(name: str, level: int) -> None:
    data = _sample(60_000 if level < 19 else 20_000)
    codec = make_codec(name, level)
    assert (codec.name, codec.level) == (name, level)
    out = codec.compress(data)
    assert codec.decompress(out, len(data)) == data
    if name != "none":
        assert len(out) < len(data)
    assert codec.decompress(codec.compress(b""), 0) == b""


@pytest.mark.parametrize("name", ["none", "lz4", "zstd", "zlib", "wkdm"])
def test_wrong_declared_size_is_rejected(name: str) -> None:
    data = _sample(20_000)
    codec = make_codec(name)
    out = codec.compress(data)
    with pytest.raises(CorruptDataError):
        codec.decompress(out, len(data) - 1)
    with pytest.raises(CorruptDataError):
        codec.decompress(out, len(data) + 100)


@pytest.mark.parametrize("name", ["lz4", "zstd", "zlib", "wkdm"])
def test_garbage_and_truncation_are_rejected(name: str) -> None:
    data = _sample(20_000)
    codec = make_codec(name)
    out = codec.compress(data)
    with pytest.raises(CorruptDataError):
        codec.decompress(out[: len(out) // 2], len(data))
    with pytest.raises(CorruptDataError):
        codec.decompress(bytes(64) + out, len(data))


def test_registry_suggests_and_checks_levels() -> None:
    with pytest.raises(ConfigError, match="did you mean 'zstd'"):
        make_codec("zstdd")
    with pytest.raises(ConfigError, match="level 13 out of range 1..12"):
        make_codec("lz4", 13)
    assert set(codec_names()) == {"none", "lz4", "zstd", "zlib", "wkdm"}
    assert spec_by_id(make_codec("zlib").codec_id).name == "zlib"
    with pytest.raises(EdgeMigrateError):
        spec_by_id(200)
    assert make_codec("lz4").level == codec_spec("lz4").default_level


def test_one_zstd_codec_shared_by_many_threads() -> None:
    codec = make_codec("zstd", 3)
    chunks = [_sample(50_000)[i:] + bytes([i]) for i in range(16)]
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        for _ in range(4):
            out = codec.compress(chunks[i])
            results[i] = codec.decompress(out, len(chunks[i])) == chunks[i]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: True for i in range(16)}


@pytest.mark.parametrize(
    ("name", "level"),
    [("none", 0), ("lz4", 1), ("lz4", 12), ("zstd", 1), ("zstd", 19), ("zlib", 9), ("wkdm", 0)],
)
def test_incompressible_output_stays_within_the_receiver_bound(name: str, level: int) -> None:
    data = np.random.default_rng(2).integers(0, 256, size=(1 << 20) + 123, dtype=np.uint8).tobytes()
    out = make_codec(name, level).compress(data)
    assert len(data) <= len(out) <= max_payload_bytes(len(data))
