from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT
from edgemigrate.engine.manifest import (
    SPARE_SLACK_BYTES,
    FileKind,
    IntegrityError,
    Manifest,
    ManifestError,
    RoundReceiver,
    plan_round,
)

WORDS = PAGE_SIZE_BYTES // 8


def _dump(d: Path, pages: np.ndarray, core: bytes = b"core-v1") -> None:
    d.mkdir(parents=True)
    (d / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x400000, len(pages), PE_PRESENT)]))
    (d / "pages-1.img").write_bytes(pages.tobytes())
    (d / "core-1.img").write_bytes(core)
    (d / "inventory.img").write_bytes(b"inventory")
    (d / "descriptors.json").write_bytes(b'["/dev/null"]')


def _transfer(plan, dest: Path, prev: Path | None) -> Path:
    wire = json.loads(json.dumps(plan.manifest.to_dict()))
    rx = RoundReceiver(Manifest.from_dict(wire), dest, prev)
    for spec, data in plan.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    return rx.finish()


def test_two_rounds_send_only_changes_and_rebuild_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pages = rng.integers(0, 2**63, size=(300, WORDS), dtype=np.uint64)
    _dump(tmp_path / "src/1", pages)
    pages2 = pages.copy()
    pages2[[5, 250], 0] += np.uint64(1)
    _dump(tmp_path / "src/2", pages2, core=b"core-v2")
    p1 = plan_round("counter", 1, False, tmp_path / "src/1", None, chunk_size_bytes=64 * 1024)
    assert p1.changed_pages == 300 and len(p1.manifest.chunks) > 1
    d1 = _transfer(p1, tmp_path / "dst/1", None)
    p2 = plan_round("counter", 2, True, tmp_path / "src/2", tmp_path / "src/1")
    kinds = {f.name: f.kind for f in p2.manifest.files}
    assert kinds == {
        "pages-1.img": FileKind.PAGES,
        "pagemap-1.img": FileKind.SAME,
        "inventory.img": FileKind.SAME,
        "descriptors.json": FileKind.SAME,
        "core-1.img": FileKind.FULL,
    }
    assert p2.changed_pages == 2
    assert p2.manifest.payload_bytes < 4 * PAGE_SIZE_BYTES  # 2 pages + 1 page of (padded) bitmap + core
    d2 = _transfer(p2, tmp_path / "dst/2", d1)
    for name in ["pages-1.img", "pagemap-1.img", "core-1.img", "inventory.img", "descriptors.json"]:
        assert (d2 / name).read_bytes() == (tmp_path / "src/2" / name).read_bytes()


def test_corrupt_chunk_is_refused(tmp_path: Path) -> None:
    pages = np.arange(20 * WORDS, dtype=np.uint64).reshape(20, WORDS)
    _dump(tmp_path / "src/1", pages)
    plan = plan_round("counter", 1, True, tmp_path / "src/1", None)
    rx = RoundReceiver(plan.manifest, tmp_path / "dst", None)
    spec, data = next((s, d) for s, d in plan.iter_chunks() if s.file == "pages-1.img")
    bad = bytearray(data)
    bad[10] ^= 0xFF
    with pytest.raises(IntegrityError, match="sha256"):
        rx.accept_chunk(spec.index, bytes(bad))
    with pytest.raises(IntegrityError, match="has 3 bytes"):
        rx.accept_chunk(spec.index, b"abc")
    with pytest.raises(IntegrityError, match="outside"):
        rx.accept_chunk(999, b"abc")
    rx.accept_chunk(spec.index, bytes(data))
    with pytest.raises(IntegrityError, match="twice"):
        rx.accept_chunk(spec.index, bytes(data))
    with pytest.raises(IntegrityError, match="never arrived"):
        rx.finish()


def test_whole_file_hash_mismatch_refuses_restore(tmp_path: Path) -> None:
    pages = np.arange(4 * WORDS, dtype=np.uint64).reshape(4, WORDS)
    _dump(tmp_path / "src/1", pages)
    plan = plan_round("counter", 1, False, tmp_path / "src/1", None)
    d = plan.manifest.to_dict()
    for f in d["files"]:
        if f["name"] == "pages-1.img":
            f["sha256"] = "0" * 64
    rx = RoundReceiver(Manifest.from_dict(d), tmp_path / "dst", None)
    for spec, data in plan.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    with pytest.raises(IntegrityError, match="whole-file sha256"):
        rx.finish()


def _base_manifest(tmp_path: Path) -> dict:
    _dump(tmp_path / "m", np.zeros((2, WORDS), dtype=np.uint64))
    return plan_round("svc", 1, False, tmp_path / "m", None).manifest.to_dict()


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "/etc/shadow", "config.json", "a/b.img", "..img", "x.img\n", ""]
)
def test_unsafe_names_rejected(tmp_path: Path, name: str) -> None:
    d = _base_manifest(tmp_path)
    d["files"][0]["name"] = name
    with pytest.raises(ManifestError, match="plain CRIU image file name|missing"):
        Manifest.from_dict(d)


def test_oversized_and_inconsistent_declarations_rejected(tmp_path: Path) -> None:
    d = _base_manifest(tmp_path)
    big = json.loads(json.dumps(d))
    big["files"][0]["size_bytes"] = 1 << 50
    with pytest.raises(ManifestError, match="outside"):
        Manifest.from_dict(big)
    total = json.loads(json.dumps(d))
    with pytest.raises(ManifestError, match="outside 0..100|exceeds the limit"):
        Manifest.from_dict(total, limit_bytes=100)
    chunk = json.loads(json.dumps(d))
    chunk["chunks"][0][3] = 1 << 40
    with pytest.raises(ManifestError, match="size_bytes must be"):
        Manifest.from_dict(chunk)
    gap = json.loads(json.dumps(d))
    gap["chunks"][1][2] += 1
    with pytest.raises(ManifestError, match="gap or overlap"):
        Manifest.from_dict(gap)
    ver = json.loads(json.dumps(d))
    ver["version"] = 99
    with pytest.raises(ManifestError, match="version 99"):
        Manifest.from_dict(ver)
    with pytest.raises(ManifestError, match="JSON object"):
        Manifest.from_dict([1, 2])
    kind = json.loads(json.dumps(d))
    kind["files"][0]["kind"] = "fulll"
    with pytest.raises(ManifestError, match="kind"):
        Manifest.from_dict(kind)


def test_a_verified_round_allocates_the_next_rounds_pages_file(tmp_path: Path) -> None:
    """After a pre-copy round the destination allocates a spare pages file; the next round's rebuild (here a
    final round whose layout grew by two pages) writes into it - consuming it - and yields the exact dump."""
    rng = np.random.default_rng(4)
    pages = rng.integers(0, 2**63, size=(64, WORDS), dtype=np.uint64)
    _dump(tmp_path / "src/1", pages)
    grown = np.concatenate([pages, rng.integers(0, 2**63, size=(2, WORDS), dtype=np.uint64)])
    grown[10, 3] += np.uint64(1)
    _dump(tmp_path / "src/2", grown)
    p1 = plan_round("svc", 1, False, tmp_path / "src/1", None)
    wire = Manifest.from_dict(json.loads(json.dumps(p1.manifest.to_dict())))
    rx = RoundReceiver(wire, tmp_path / "dst/round-1", None)
    for spec, data in p1.iter_chunks():
        rx.accept_chunk(spec.index, bytes(data))
    d1 = rx.finish()
    rx.prepare_spares()
    spare = tmp_path / "dst/.spare-pages-1.img"
    assert spare.stat().st_size == 64 * PAGE_SIZE_BYTES + SPARE_SLACK_BYTES
    inode = spare.stat().st_ino
    rx.prepare_spares()  # a spare large enough is kept, not allocated again
    assert spare.stat().st_ino == inode
    p2 = plan_round("svc", 2, True, tmp_path / "src/2", tmp_path / "src/1")
    assert p2.changed_pages == 3
    d2 = _transfer(p2, tmp_path / "dst/round-2", d1)
    assert not spare.exists()
    assert (d2 / "pages-1.img").read_bytes() == grown.tobytes()
