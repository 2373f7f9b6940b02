"""A hostile manifest cannot make the destination reserve memory or disk it did not agree to, and a round's
files are closed whether it finishes or is aborted."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT
from edgemigrate.engine.manifest import (
    MAX_CHUNK_SIZE_BYTES,
    MAX_IMAGE_SIZE_BYTES,
    IntegrityError,
    Manifest,
    ManifestError,
    RoundReceiver,
    plan_round,
)

WORDS = PAGE_SIZE_BYTES // 8
ZERO_SHA = "0" * 64


def _chunks(name: str, payload_bytes: int, start: int, sha: str = ZERO_SHA) -> list[list[Any]]:
    n = -(-payload_bytes // MAX_CHUNK_SIZE_BYTES)
    return [
        [start + i, name, i * MAX_CHUNK_SIZE_BYTES, min(MAX_CHUNK_SIZE_BYTES, payload_bytes - i * MAX_CHUNK_SIZE_BYTES), sha]
        for i in range(n)
    ]


def _full_manifest(sizes: dict[str, int]) -> dict[str, Any]:
    files, chunks = [], []
    for name, size in sizes.items():
        files.append({"name": name, "kind": "full", "size_bytes": size, "payload_bytes": size, "sha256": ZERO_SHA})
        chunks += _chunks(name, size, len(chunks))
    return {"version": 1, "service": "svc", "round": 1, "final": False, "files": files, "chunks": chunks}


def test_total_image_size_is_bounded() -> None:
    # three files of 64 GiB: each within the per-file limit, together 192 GiB (a ~2.6 MB manifest)
    d = _full_manifest({f"core-{i}.img": MAX_IMAGE_SIZE_BYTES for i in range(3)})
    assert len(json.dumps(d)) > 2_000_000
    with pytest.raises(ManifestError, match="exceeds the limit"):
        Manifest.from_dict(d)
    with pytest.raises(ManifestError, match="exceeds the limit"):
        Manifest.from_dict(_full_manifest({"core-1.img": 3 << 29, "core-2.img": 3 << 29}), limit_bytes=2 << 30)
    Manifest.from_dict(_full_manifest({"core-1.img": 1 << 30, "core-2.img": 1 << 30}), limit_bytes=2 << 30)


def test_total_payload_is_bounded() -> None:
    # pages files of no declared size but 64 GiB of payload each: only the payload total can catch them
    files: list[dict[str, Any]] = [
        {"name": "pagemap-1.img", "kind": "full", "size_bytes": 0, "payload_bytes": 0, "sha256": ZERO_SHA}
    ]
    chunks: list[list[Any]] = []
    for i in range(3):
        name = f"pages-{i}.img"
        files.append({"name": name, "kind": "pages", "size_bytes": 0, "payload_bytes": MAX_IMAGE_SIZE_BYTES,
                      "sha256": None, "pagemap": "pagemap-1.img", "base": None})
        chunks += _chunks(name, MAX_IMAGE_SIZE_BYTES, len(chunks))
    d = {"version": 1, "service": "svc", "round": 1, "final": True, "files": files, "chunks": chunks}
    with pytest.raises(ManifestError, match="declared payload of 206158430208 bytes exceeds the limit"):
        Manifest.from_dict(d)
    d["files"] = files[:2]
    d["chunks"] = [c for c in chunks if c[1] == "pages-0.img"]
    assert Manifest.from_dict(d).payload_bytes == MAX_IMAGE_SIZE_BYTES


def test_numbers_must_be_ints_of_the_right_range(tmp_path: Path) -> None:
    d = _full_manifest({"core-1.img": 100})
    for path, value in [(("chunks", 0, 0), 0.0), (("chunks", 0, 2), 0.0), (("chunks", 0, 0), False),
                        (("round",), 2**32), (("round",), 0)]:
        bad = json.loads(json.dumps(d))
        obj = bad
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
        with pytest.raises(ManifestError):
            Manifest.from_dict(bad)


def test_pagemap_of_a_pages_file_cannot_be_a_pages_file() -> None:
    files = [
        {"name": "pages-1.img", "kind": "pages", "size_bytes": 0, "payload_bytes": 0, "sha256": None,
         "pagemap": "pages-2.img", "base": None},
        {"name": "pages-2.img", "kind": "pages", "size_bytes": 0, "payload_bytes": 0, "sha256": None,
         "pagemap": "pages-1.img", "base": None},
    ]
    d = {"version": 1, "service": "svc", "round": 1, "final": True, "files": files, "chunks": []}
    with pytest.raises(ManifestError, match="another pages file"):
        Manifest.from_dict(d)


def test_receiver_does_not_allocate_the_declared_payload(tmp_path: Path) -> None:
    size = 2 << 30
    d = _full_manifest({"core-1.img": size})
    first = bytes(MAX_CHUNK_SIZE_BYTES)
    d["chunks"][0][4] = hashlib.sha256(first).hexdigest()
    manifest = Manifest.from_dict(d, limit_bytes=size)
    tracemalloc.start()
    try:
        rx = RoundReceiver(manifest, tmp_path / "dst", None)
        _, peak_construct = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rx.accept_chunk(0, first)
        _, peak_chunk = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rx.close()
    assert peak_construct < 1 << 20, peak_construct  # 2 GiB declared, well under 1 MiB reserved
    assert peak_chunk < 1 << 20, peak_chunk  # the chunk is written where it is, not copied
    assert rx.received_bytes == MAX_CHUNK_SIZE_BYTES and not rx.complete
    written = tmp_path / "dst" / "core-1.img"
    assert written.stat().st_size == MAX_CHUNK_SIZE_BYTES  # nothing beyond what arrived is reserved on disk


def _dump(d: Path, pages: np.ndarray, extra: int = 0) -> None:
    d.mkdir(parents=True)
    (d / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x400000, len(pages), PE_PRESENT)]))
    (d / "pages-1.img").write_bytes(pages.tobytes())
    (d / "core-1.img").write_bytes(b"core" * 1000)
    for i in range(extra):
        (d / f"fs-{i}.img").write_bytes(f"file {i}".encode() * (i + 1))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _maps_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/maps").read_text().splitlines() if str(path) in line]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_open_files_are_bounded_and_released(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pages = rng.integers(0, 2**63, size=(64, WORDS), dtype=np.uint64)
    _dump(tmp_path / "src/1", pages, extra=40)
    pages2 = pages.copy()
    pages2[[1, 50], 3] += np.uint64(7)
    _dump(tmp_path / "src/2", pages2, extra=40)
    (tmp_path / "src/2/core-1.img").write_bytes(b"core-v2")
    before = _open_fds()
    p1 = plan_round("svc", 1, False, tmp_path / "src/1", None, chunk_size_bytes=16 * 1024)
    rx = RoundReceiver(p1.manifest, tmp_path / "dst/1", None)
    for spec, data in p1.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
        assert len(_open_fds() - before) <= 16
    d1 = rx.finish()
    assert _open_fds() == before
    p2 = plan_round("svc", 2, True, tmp_path / "src/2", tmp_path / "src/1")
    rx = RoundReceiver(p2.manifest, tmp_path / "dst/2", d1)
    for spec, data in p2.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    d2 = rx.finish()
    assert _open_fds() == before and not _maps_under(tmp_path)
    # byte-identical, and no staged payload left beside the image files
    assert sorted(p.name for p in d2.iterdir()) == sorted(p.name for p in (tmp_path / "src/2").iterdir())
    for p in (tmp_path / "src/2").iterdir():
        assert (d2 / p.name).read_bytes() == p.read_bytes(), p.name


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_close_aborts_the_round_and_leaves_no_open_files(tmp_path: Path) -> None:
    pages = np.arange(40 * WORDS, dtype=np.uint64).reshape(40, WORDS)
    _dump(tmp_path / "src", pages, extra=5)
    plan = plan_round("svc", 1, False, tmp_path / "src", None, chunk_size_bytes=8192)
    before = _open_fds()
    rx = RoundReceiver(plan.manifest, tmp_path / "dst", None)
    chunks = list(plan.iter_chunks())
    for spec, data in chunks[: len(chunks) // 2]:
        rx.accept_chunk(spec.index, bytes(data))
    assert _open_fds() != before
    rx.close()
    rx.close()  # idempotent
    assert _open_fds() == before
    spec, data = chunks[-1]
    with pytest.raises(IntegrityError, match="closed"):
        rx.accept_chunk(spec.index, bytes(data))
    with pytest.raises(IntegrityError, match="closed"):
        rx.finish()
    assert _open_fds() == before


def test_failed_rebuild_releases_the_staged_payload(tmp_path: Path) -> None:
    pages = np.arange(8 * WORDS, dtype=np.uint64).reshape(8, WORDS)
    _dump(tmp_path / "src", pages)
    d = plan_round("svc", 1, False, tmp_path / "src", None).manifest.to_dict()
    for f in d["files"]:
        if f["name"] == "pages-1.img":
            f["size_bytes"] += PAGE_SIZE_BYTES  # disagrees with the pagemap
    plan = plan_round("svc", 1, False, tmp_path / "src", None)
    before = _open_fds()
    rx = RoundReceiver(Manifest.from_dict(d), tmp_path / "dst", None)
    for spec, data in plan.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    with pytest.raises(IntegrityError, match="describes 8 pages"):
        rx.finish()
    assert _open_fds() == before
    assert not any(p.name.startswith(".") for p in (tmp_path / "dst").iterdir())


def test_empty_pages_file_round_trips(tmp_path: Path) -> None:
    # no pages and so no bitmap: nothing is staged and nothing is mapped
    src = tmp_path / "src"
    _dump(src, np.zeros((0, WORDS), dtype=np.uint64))
    (src / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, []))
    plan = plan_round("svc", 1, False, src, None)
    rx = RoundReceiver(plan.manifest, tmp_path / "dst", None)
    for spec, data in plan.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    out = rx.finish()
    for p in src.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name
