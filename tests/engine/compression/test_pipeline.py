from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.engine.compression.directory import (
    Catalog,
    CatalogError,
    ChunkRef,
    DirectorySink,
    directory_catalog,
    iter_directory_chunks,
)
from edgemigrate.engine.compression.frames import FrameError, FrameLimits
from edgemigrate.engine.compression.netstate import NetworkState
from edgemigrate.engine.compression.pipeline import (
    PipelineConfig,
    PipelineMode,
    ReceiveReport,
    receive_chunks,
    send_chunks,
)
from edgemigrate.engine.compression.selectors import (
    Choice,
    CodecProfile,
    FixedSelector,
    ModelSelector,
    RuleSelector,
)
from edgemigrate.engine.compression.transport import MemoryLink, TokenBucket, tcp_pair

CHUNK = 64 * 1024


class CyclingSelector:
    """Switches codec and level on every chunk, to exercise mid-stream switching deterministically."""

    name = "cycle"
    CYCLE = (Choice("lz4", 1), Choice("zstd", 5), Choice("none", 0), Choice("zlib", 3), Choice("lz4", 9))

    def __init__(self) -> None:
        self.n = 0
        self.observed: list[Choice] = []

    def choose(self, state: NetworkState) -> Choice:
        self.n += 1
        return self.CYCLE[(self.n - 1) % len(self.CYCLE)]

    def observe(self, choice: Choice, raw_bytes: int, compressed_bytes: int, compress_s: float) -> None:
        self.observed.append(choice)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(5)
    words = np.zeros((160, 1024), dtype=np.uint32)
    words[:, ::2] = (rng.integers(0, 1 << 22, size=(160, 1), dtype=np.uint32) << 10) + rng.integers(
        0, 1024, size=(160, 512), dtype=np.uint32
    )
    (d / "pages-1.img").write_bytes(words.astype("<u4").tobytes())
    (d / "pagemap-1.img").write_bytes(bytes(range(256)) * 3)
    (d / "core-1.img").write_bytes(b"\x08\x01\x12\x04core" * 40000 + rng.bytes(10_000))
    (d / "empty.img").write_bytes(b"")
    return d


def _transfer(src: Path, dst: Path, selector: Any, mode: PipelineMode, limiter: TokenBucket | None = None):
    cat = directory_catalog(src, CHUNK)
    tx, rx = tcp_pair(limiter)
    cfg = PipelineConfig(mode=mode, workers=2, queue_depth=3, sample_interval_s=0.001)
    out: dict[str, Any] = {}

    def receiver() -> None:
        try:
            sinks: list[DirectorySink] = []

            def factory(hello: dict[str, Any]) -> DirectorySink:
                sinks.append(DirectorySink(dst, Catalog.from_json(hello["catalog"], CHUNK)))
                return sinks[0]

            out["report"] = receive_chunks(rx, factory, cfg)
            sinks[0].finish()
        except BaseException as exc:
            out["error"] = exc
        finally:
            rx.close()

    th = threading.Thread(target=receiver)
    th.start()
    rep = send_chunks(iter_directory_chunks(src, cat), tx, selector, cfg, hello={"catalog": cat.to_json()})
    tx.close()
    th.join()
    if "error" in out:
        raise out["error"]
    return rep, out["report"]


def _same_tree(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


@pytest.mark.parametrize("mode", list(PipelineMode))
def test_byte_identical_with_level_switching(image_dir: Path, tmp_path: Path, mode: PipelineMode) -> None:
    sel = CyclingSelector()
    rep, rrep = _transfer(image_dir, tmp_path / "out", sel, mode)
    _same_tree(image_dir, tmp_path / "out")
    assert isinstance(rrep, ReceiveReport) and rrep.mode is mode
    assert rrep.n_chunks == len(rep.chunks) and rrep.raw_bytes == rep.raw_bytes == sum(
        p.stat().st_size for p in image_dir.iterdir()
    )
    assert rrep.wire_bytes == rep.wire_bytes
    pages = [c for c in rep.chunks if c.file == "pages-1.img"]
    others = [c for c in rep.chunks if c.file != "pages-1.img"]
    assert pages and all(c.codec == "wkdm" for c in pages)
    assert len({(c.codec, c.level) for c in others}) >= 3  # the codec really changed mid-stream
    assert sum(c.payload_bytes for c in pages) < sum(c.raw_bytes for c in pages)
    # the selector learns only from chunks that used its choice (not the WKdm page chunks)
    assert len(sel.observed) == len(others)
    names = [s.name for s in rep.stages]
    assert names == ["read", "compress", "send"] and [s.name for s in rrep.stages] == [
        "receive",
        "decompress",
        "write",
    ]
    assert all(s.busy_s >= 0 and s.end_s >= s.start_s for s in rep.stages + rrep.stages)


@pytest.mark.parametrize("mode", list(PipelineMode))
def test_rule_and_model_selectors_end_to_end(image_dir: Path, tmp_path: Path, mode: PipelineMode) -> None:
    rule = RuleSelector()
    rep, _ = _transfer(image_dir, tmp_path / "rule", rule, mode, TokenBucket(400e6))
    _same_tree(image_dir, tmp_path / "rule")
    assert all(c.codec == "lz4" and 1 <= c.level <= 9 for c in rep.chunks if c.codec != "wkdm")
    profiles = [
        CodecProfile("none", 0, 1e12, 1e12, 1.0),
        CodecProfile("lz4", 1, 500e6, 2e9, 0.4),
        CodecProfile("zstd", 3, 200e6, 1e9, 0.3),
    ]
    model = ModelSelector(profiles, compress_cores=2)
    rep2, _ = _transfer(image_dir, tmp_path / "model", model, mode, TokenBucket(400e6))
    _same_tree(image_dir, tmp_path / "model")
    if mode is PipelineMode.PIPELINED:
        assert rep2.states and rep2.states[-1].bandwidth_bytes_per_s is not None


def _recorded_stream(image_dir: Path) -> tuple[bytes, Catalog]:
    cat = directory_catalog(image_dir, CHUNK)
    link = MemoryLink()
    send_chunks(
        iter_directory_chunks(image_dir, cat),
        link,
        FixedSelector("zstd", 3),
        hello={"catalog": cat.to_json()},
    )
    return bytes(link.buffer), cat


def _replay(stream: bytes, dst: Path, limits: FrameLimits | None = None) -> None:
    cfg = PipelineConfig(limits=limits or FrameLimits())
    sinks: list[DirectorySink] = []

    def factory(hello: dict[str, Any]) -> DirectorySink:
        sinks.append(DirectorySink(dst, Catalog.from_json(hello["catalog"], CHUNK)))
        return sinks[0]

    try:
        receive_chunks(MemoryLink(stream), factory, cfg)
        sinks[0].finish()
    finally:
        for s in sinks:
            s.close()


def _frame_offsets(stream: bytes) -> list[int]:
    offs, pos = [], 0
    while pos < len(stream):
        offs.append(pos)
        pos += 44 + struct.unpack_from("<I", stream, pos + 24)[0]
    return offs


def test_recorded_stream_replays(image_dir: Path, tmp_path: Path) -> None:
    stream, _ = _recorded_stream(image_dir)
    _replay(stream, tmp_path / "ok")
    _same_tree(image_dir, tmp_path / "ok")


def _tamper(stream: bytes, frame: int, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(stream)
    struct.pack_into(fmt, b, _frame_offsets(stream)[frame] + offset, value)
    return bytes(b)


@pytest.mark.parametrize(
    ("what", "match"),
    [
        ("magic", "bad magic"),
        ("kind", "unknown kind"),
        ("codec", "unknown codec id"),
        ("level", "level 40 outside"),
        ("oversized", "limit is"),
        ("payload_bound", "impossible"),
        ("raw_size", "decodes to|declares|describes"),
        ("hash", "BLAKE2b"),
        ("truncated", "ended"),
        ("no_end", "before the END"),
        ("end_count", "END: sender sent"),
        ("first_not_hello", "HELLO frame first"),
    ],
)
def test_malformed_frames_are_rejected(image_dir: Path, tmp_path: Path, what: str, match: str) -> None:
    stream, _ = _recorded_stream(image_dir)
    offs = _frame_offsets(stream)
    k = 1  # the first DATA frame
    if what == "magic":
        b = bytearray(stream)
        b[offs[k] : offs[k] + 4] = b"XXXX"
        tampered = bytes(b)
    elif what == "kind":
        tampered = _tamper(stream, k, 4, "<B", 9)
    elif what == "codec":
        tampered = _tamper(stream, k, 5, "<B", 77)
    elif what == "level":
        tampered = _tamper(stream, k, 6, "<b", 40)
    elif what == "oversized":
        tampered = _tamper(stream, k, 20, "<I", 2**31)
    elif what == "payload_bound":
        tampered = _tamper(stream, k, 24, "<I", 3_000_000)
    elif what == "raw_size":
        tampered = _tamper(stream, k, 20, "<I", CHUNK - 4096)
    elif what == "hash":
        tampered = _tamper(stream, k, 28, "<Q", 12345)
    elif what == "truncated":
        tampered = stream[: offs[k] + 100]
    elif what == "no_end":
        tampered = stream[: offs[-1]]
    elif what == "end_count":
        tampered = stream[: offs[k]] + stream[offs[k + 1] :]  # a whole DATA frame removed
    else:
        tampered = stream[offs[1] :]
    with pytest.raises(EdgeMigrateError, match=match):
        _replay(tampered, tmp_path / "bad", FrameLimits(max_raw_bytes=1 << 20))


def test_catalog_rejects_unsafe_names_and_gaps() -> None:
    ok = {"files": [["core-1.img", 10]], "chunks": [[0, "core-1.img", 0, 10]]}
    assert Catalog.from_json(ok, 4096).raw_bytes == 10
    for bad in (
        {"files": [["../etc/passwd", 10]], "chunks": [[0, "../etc/passwd", 0, 10]]},
        {"files": [["/abs.img", 10]], "chunks": []},
        {"files": [["a.img", 10]], "chunks": [[0, "a.img", 0, 5]]},
        {"files": [["a.img", 10]], "chunks": [[0, "a.img", 2, 8]]},
        {"files": [["a.img", 10]], "chunks": [[0, "a.img", 0, 10], [1, "a.img", 10, 1]]},
        {"files": [["a.img", 10]], "chunks": [[3, "a.img", 0, 10]]},
        {"files": [["a.img", 10**6]], "chunks": [[0, "a.img", 0, 10**6]]},
        {"files": "x"},
    ):
        with pytest.raises(CatalogError):
            Catalog.from_json(bad, 4096)


def test_sink_rejects_duplicate_and_wrong_size(tmp_path: Path) -> None:
    cat = Catalog.from_json({"files": [["a.img", 8]], "chunks": [[0, "a.img", 0, 8]]}, 4096)
    sink = DirectorySink(tmp_path, cat)
    with pytest.raises(CatalogError):
        sink.accept_chunk(0, b"123")
    sink.accept_chunk(0, b"12345678")
    with pytest.raises(CatalogError):
        sink.accept_chunk(0, b"12345678")
    with pytest.raises(CatalogError):
        sink.accept_chunk(1, b"12345678")
    assert sink.finish() == tmp_path and (tmp_path / "a.img").read_bytes() == b"12345678"


class _Boom(Exception):
    pass


def test_source_failure_stops_both_ends(image_dir: Path, tmp_path: Path) -> None:
    cat = directory_catalog(image_dir, CHUNK)

    def failing_source() -> Iterator[tuple[ChunkRef, bytes]]:
        for i, item in enumerate(iter_directory_chunks(image_dir, cat)):
            if i == 5:
                raise _Boom("checkpoint read failed")
            yield item

    link = MemoryLink()
    with pytest.raises(_Boom):
        send_chunks(failing_source(), link, FixedSelector("lz4", 1), hello={"catalog": cat.to_json()})
    with pytest.raises(FrameError, match="before the END"):
        _replay(bytes(link.buffer), tmp_path / "partial")


@pytest.mark.parametrize("mode", list(PipelineMode))
def test_sink_failure_propagates_without_hanging(image_dir: Path, mode: PipelineMode) -> None:
    cat = directory_catalog(image_dir, CHUNK)
    link = MemoryLink()
    send_chunks(
        iter_directory_chunks(image_dir, cat), link, FixedSelector("zstd", 1), PipelineConfig(mode=mode)
    )

    class FailingSink:
        def __init__(self) -> None:
            self.n = 0

        def accept_chunk(self, index: int, data: bytes | memoryview) -> None:
            self.n += 1
            if self.n == 3:
                raise CatalogError("disk full")

    with pytest.raises(CatalogError, match="disk full"):
        receive_chunks(
            MemoryLink(bytes(link.buffer)), lambda hello: FailingSink(), PipelineConfig(queue_depth=1)
        )
