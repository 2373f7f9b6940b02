from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import DataFormatError
from edgemigrate.engine import delta
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT


def _write_dump(d: Path, entries: list[tuple[int, int, int]], pages: np.ndarray, pid: int = 1) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"pagemap-{pid}.img").write_bytes(delta.encode_pagemap(pid, entries))
    (d / f"pages-{pid}.img").write_bytes(pages.tobytes())


def test_varint_roundtrip_and_errors() -> None:
    for v in [0, 1, 127, 128, 300, 2**32, 2**63 + 5]:
        enc = delta.encode_varint(v)
        assert delta.decode_varint(enc, 0, len(enc)) == (v, len(enc))
    with pytest.raises(ValueError, match="truncated"):
        delta.decode_varint(b"\x80\x80", 0, 2)
    with pytest.raises(ValueError, match="10 bytes"):
        delta.decode_varint(b"\xff" * 11, 0, 11)


def test_parse_pagemap_roundtrip_and_page_vaddrs() -> None:
    entries = [(0x400000, 2, PE_PRESENT), (0x7F0000000000, 3, PE_PRESENT), (0x500000, 4, delta.PE_LAZY)]
    pm = delta.parse_pagemap(delta.encode_pagemap(7, entries))
    assert pm.pages_id == 7 and pm.pages_name == "pages-7.img"
    assert pm.n_stored_pages == 5
    expected = [0x400000, 0x401000, 0x7F0000000000, 0x7F0000001000, 0x7F0000002000]
    assert pm.stored_page_vaddrs().tolist() == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01", "magic header"),
        (b"\x19\x43\x56\x54\x00\x00\x00\x00", "not a CRIU pagemap"),
        (delta.encode_pagemap(1, [(0x1000, 1, 4)])[:-1], "malformed"),
        (delta.encode_pagemap(1, [(0x1001, 1, 4)]), "page aligned"),
        (delta.encode_pagemap(1, [(0x1000, 1, delta.PE_PARENT)]), "parent"),
        (delta.encode_pagemap(1, [])[:8], "no pagemap_head"),
    ],
)
def test_parse_pagemap_rejects_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(DataFormatError, match=reason) as err:
        delta.parse_pagemap(data, "x/pagemap-1.img")
    assert "x/pagemap-1.img" in str(err.value)


def test_diff_and_rebuild_with_moved_and_new_mappings(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    words = PAGE_SIZE_BYTES // 8
    prev_entries = [(0x10000, 6, PE_PRESENT), (0x900000, 4, PE_PRESENT)]
    prev_pages = rng.integers(0, 2**63, size=(10, words), dtype=np.uint64)
    _write_dump(tmp_path / "r1", prev_entries, prev_pages)
    # new dump: first mapping grows by 2 pages (new), page 3 changes, second mapping unmapped, new third one
    cur_entries = [(0x10000, 8, PE_PRESENT), (0xA00000, 2, PE_PRESENT)]
    cur_pages = np.concatenate([prev_pages[:6], rng.integers(0, 2**63, size=(4, words), dtype=np.uint64)])
    cur_pages[3, 100] ^= 1
    _write_dump(tmp_path / "r2", cur_entries, cur_pages)
    prev_pm = delta.read_pagemap(tmp_path / "r1/pagemap-1.img")
    cur_pm = delta.read_pagemap(tmp_path / "r2/pagemap-1.img")
    changed = delta.changed_pages(prev_pm, tmp_path / "r1/pages-1.img", cur_pm, tmp_path / "r2/pages-1.img")
    assert np.flatnonzero(changed).tolist() == [3, 6, 7, 8, 9]
    data = delta.read_changed(tmp_path / "r2/pages-1.img", changed)
    assert len(data) == 5 * PAGE_SIZE_BYTES
    out = tmp_path / "rebuilt.img"
    delta.rebuild_pages(prev_pm, tmp_path / "r1/pages-1.img", cur_pm, changed, data, out)
    assert out.read_bytes() == (tmp_path / "r2/pages-1.img").read_bytes()


def test_the_same_layout_under_other_pagemap_entries_is_patched_in_place(tmp_path: Path) -> None:
    """A live round writes one entry per run of pages, CRIU splits and flags its entries otherwise: the same
    pages in the same order are patched in place (the previous file consumed, the spare left unused)."""
    rng = np.random.default_rng(5)
    words = PAGE_SIZE_BYTES // 8
    prev_pages = rng.integers(0, 2**63, size=(6, words), dtype=np.uint64)
    _write_dump(tmp_path / "r1", [(0x10000, 6, PE_PRESENT)], prev_pages)
    cur_pages = prev_pages.copy()
    cur_pages[4, 7] ^= 1
    _write_dump(tmp_path / "r2", [(0x10000, 2, PE_PRESENT), (0x12000, 4, PE_PRESENT | delta.PE_LAZY)], cur_pages)
    prev_pm = delta.read_pagemap(tmp_path / "r1/pagemap-1.img")
    cur_pm = delta.read_pagemap(tmp_path / "r2/pagemap-1.img")
    changed = delta.changed_pages(prev_pm, tmp_path / "r1/pages-1.img", cur_pm, tmp_path / "r2/pages-1.img")
    assert np.flatnonzero(changed).tolist() == [4]
    spare = tmp_path / "spare.img"
    delta.allocate_spare(spare, 6 * PAGE_SIZE_BYTES)
    out = tmp_path / "rebuilt.img"
    delta.rebuild_pages(prev_pm, tmp_path / "r1/pages-1.img", cur_pm, changed,
                        delta.read_changed(tmp_path / "r2/pages-1.img", changed), out, spare=spare)
    assert out.read_bytes() == (tmp_path / "r2/pages-1.img").read_bytes()
    assert not (tmp_path / "r1/pages-1.img").exists() and spare.exists()


def test_rebuild_refuses_inconsistent_delta(tmp_path: Path) -> None:
    words = PAGE_SIZE_BYTES // 8
    pages = np.arange(3 * words, dtype=np.uint64).reshape(3, words)
    _write_dump(tmp_path / "r1", [(0x1000, 3, PE_PRESENT)], pages)
    pm = delta.read_pagemap(tmp_path / "r1/pagemap-1.img")
    cur_pm = delta.parse_pagemap(delta.encode_pagemap(1, [(0x1000, 4, PE_PRESENT)]))
    changed = np.zeros(4, dtype=bool)  # page 4 claims unchanged but the previous dump never had it
    with pytest.raises(DataFormatError, match="previous round lacks"):
        delta.rebuild_pages(pm, tmp_path / "r1/pages-1.img", cur_pm, changed, b"", tmp_path / "o.img")
    with pytest.raises(DataFormatError, match="delta holds"):
        delta.rebuild_pages(pm, tmp_path / "r1/pages-1.img", cur_pm, np.ones(4, bool), b"x", tmp_path / "o.img")
    (tmp_path / "r1/pages-1.img").write_bytes(b"short")
    with pytest.raises(DataFormatError, match="pagemap declares"):
        delta.changed_pages(None, None, pm, tmp_path / "r1/pages-1.img")


def test_block_boundaries_large_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delta, "BLOCK_PAGES", 7)
    words = PAGE_SIZE_BYTES // 8
    rng = np.random.default_rng(0)
    prev = rng.integers(0, 2**63, size=(50, words), dtype=np.uint64)
    cur = prev.copy()
    dirty = [0, 6, 7, 13, 49]
    cur[dirty, 5] += np.uint64(1)
    _write_dump(tmp_path / "a", [(0x100000, 50, PE_PRESENT)], prev)
    _write_dump(tmp_path / "b", [(0x100000, 50, PE_PRESENT)], cur)
    pa = delta.read_pagemap(tmp_path / "a/pagemap-1.img")
    pb = delta.read_pagemap(tmp_path / "b/pagemap-1.img")
    changed = delta.changed_pages(pa, tmp_path / "a/pages-1.img", pb, tmp_path / "b/pages-1.img")
    assert np.flatnonzero(changed).tolist() == dirty
    out = tmp_path / "o.img"
    delta.rebuild_pages(pa, tmp_path / "a/pages-1.img", pb, changed, delta.read_changed(tmp_path / "b/pages-1.img", changed), out)
    assert out.read_bytes() == cur.tobytes()


def test_old_format_without_field5_and_flags() -> None:
    def entry(fields: list[tuple[int, int]]) -> bytes:
        body = b"".join(delta.encode_varint(n << 3) + delta.encode_varint(v) for n, v in fields)
        return len(body).to_bytes(4, "little") + body

    head = (delta.IMG_COMMON_MAGIC).to_bytes(4, "little") + (delta.PAGEMAP_MAGIC).to_bytes(4, "little")
    data = head + entry([(1, 2)]) + entry([(1, 0x2000), (2, 3)]) + entry([(1, 0x9000), (2, 1), (3, 1)])
    with pytest.raises(DataFormatError, match="parent"):
        delta.parse_pagemap(data)
    pm = delta.parse_pagemap(head + entry([(1, 2)]) + entry([(1, 0x2000), (2, 3)]))
    assert pm.n_stored_pages == 3 and pm.pages_id == 2


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_shifted_layout_diffs_in_place_and_rebuilds_in_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            kernel_copy: bool) -> None:
    """Pages inserted near the start shift every later page by the same amount: the diff compares those
    shifted stretches block by block and the rebuild copies them as runs - in the kernel or, where
    ``copy_file_range`` fails, through a read and a write - to the same bytes."""
    monkeypatch.setattr(delta, "BLOCK_PAGES", 8)
    if not kernel_copy:
        def refuse(*_: object) -> int:
            raise OSError(18, "Invalid cross-device link")
        monkeypatch.setattr(delta.os, "copy_file_range", refuse)
    words = PAGE_SIZE_BYTES // 8
    rng = np.random.default_rng(5)
    prev = rng.integers(0, 2**63, size=(60, words), dtype=np.uint64)
    new = rng.integers(0, 2**63, size=(3, words), dtype=np.uint64)
    cur = np.concatenate([prev[:4], new, prev[4:]])
    cur[[20, 41], 9] += np.uint64(1)  # two pages of the shifted stretch rewritten
    _write_dump(tmp_path / "a", [(0x100000, 4, PE_PRESENT), (0x300000, 56, PE_PRESENT)], prev)
    _write_dump(tmp_path / "b", [(0x100000, 4, PE_PRESENT), (0x200000, 3, PE_PRESENT), (0x300000, 56, PE_PRESENT)],
                cur)
    pa = delta.read_pagemap(tmp_path / "a/pagemap-1.img")
    pb = delta.read_pagemap(tmp_path / "b/pagemap-1.img")
    changed = delta.changed_pages(pa, tmp_path / "a/pages-1.img", pb, tmp_path / "b/pages-1.img")
    assert np.flatnonzero(changed).tolist() == [4, 5, 6, 20, 41]
    out = tmp_path / "o.img"
    data = delta.read_changed(tmp_path / "b/pages-1.img", changed)
    delta.rebuild_pages(pa, tmp_path / "a/pages-1.img", pb, changed, data, out)
    assert out.read_bytes() == cur.tobytes()
    (tmp_path / "a/pages-1.img").write_bytes(prev[:59].tobytes())  # one page short of its pagemap
    with pytest.raises(DataFormatError, match="does not match its pagemap"):
        delta.rebuild_pages(pa, tmp_path / "a/pages-1.img", pb, changed, data, out)
