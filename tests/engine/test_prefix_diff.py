"""The final round's comparison made while the dump is written (engine/prefix_diff.py): what it hands the plan
is exactly what the full comparison finds, and it is used only when it can be trusted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tests.waiting import wait_until

from edgemigrate.engine import delta
from edgemigrate.engine.delta import BLOCK_PAGES, PAGE_SIZE_BYTES, PE_PRESENT, KnownPrefix
from edgemigrate.engine.prefix_diff import PrefixDiff

N_PAGES = 3 * BLOCK_PAGES + 100
WORDS = PAGE_SIZE_BYTES // 8


def _pages(seed: int, n: int = N_PAGES) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**63, size=(n, WORDS), dtype=np.uint64)


def _prev_round(d: Path, pages: np.ndarray) -> delta.Pagemap:
    d.mkdir(parents=True, exist_ok=True)
    (d / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x10000, pages.shape[0], PE_PRESENT)]))
    (d / "pages-1.img").write_bytes(pages.tobytes())
    return delta.read_pagemap(d / "pagemap-1.img")


def _write_followed(cur: Path, pages: np.ndarray, ahead: PrefixDiff) -> None:
    """Write ``pages`` as CRIU does (appending), letting the follower compare the first blocks meanwhile."""
    cur.mkdir()
    data = pages.tobytes()
    first = (2 * BLOCK_PAGES + 1) * PAGE_SIZE_BYTES
    with (cur / "pages-1.img").open("wb") as fh:
        fh.write(data[:first])
        fh.flush()
        wait_until(lambda: ahead.compared_pages >= BLOCK_PAGES, "the follower to compare the written blocks",
                   poll_s=0.002)
        for off in range(first, len(data), 1 << 20):
            fh.write(data[off : off + (1 << 20)])
    (cur / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x10000, pages.shape[0], PE_PRESENT)]))


def test_the_prefix_compared_while_written_is_the_full_comparisons(tmp_path: Path) -> None:
    prev_pages = _pages(0)
    prev_pm = _prev_round(tmp_path / "prev", prev_pages)
    cur_pages = prev_pages.copy()
    cur_pages[[0, 5, BLOCK_PAGES, 2 * BLOCK_PAGES + 7, N_PAGES - 1], 3] += 1
    cur = tmp_path / "cur"
    with PrefixDiff(cur, tmp_path / "prev", poll_s=0.001) as ahead:
        _write_followed(cur, cur_pages, ahead)
    assert ahead.error is None
    known = ahead.result()["pages-1.img"]
    cur_pm = delta.read_pagemap(cur / "pagemap-1.img")
    full = delta.changed_pages(prev_pm, tmp_path / "prev" / "pages-1.img", cur_pm, cur / "pages-1.img")
    assert known.prev_pages == "pages-1.img" and known.changed.size % BLOCK_PAGES == 0
    assert BLOCK_PAGES <= known.changed.size <= N_PAGES
    assert np.array_equal(known.changed, full[: known.changed.size])
    mask, used = delta.changed_pages_counted(prev_pm, tmp_path / "prev" / "pages-1.img", cur_pm,
                                             cur / "pages-1.img", known)
    assert used == known.changed.size and np.array_equal(mask, full)
    assert set(np.flatnonzero(mask)) == {0, 5, BLOCK_PAGES, 2 * BLOCK_PAGES + 7, N_PAGES - 1}


def test_a_known_prefix_is_ignored_when_the_layout_or_the_base_differs(tmp_path: Path) -> None:
    prev_pages = _pages(1)
    prev_pm = _prev_round(tmp_path / "prev", prev_pages)
    lying = KnownPrefix("pages-1.img", np.zeros(BLOCK_PAGES, dtype=bool))  # "nothing changed" - wrong
    # another layout: one page inserted in front shifts every page
    cur = tmp_path / "cur"
    cur.mkdir()
    cur_pages = np.concatenate([_pages(2, 1), prev_pages])
    (cur / "pages-1.img").write_bytes(cur_pages.tobytes())
    (cur / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0xF000, N_PAGES + 1, PE_PRESENT)]))
    cur_pm = delta.read_pagemap(cur / "pagemap-1.img")
    prev_file = tmp_path / "prev" / "pages-1.img"
    full = delta.changed_pages(prev_pm, prev_file, cur_pm, cur / "pages-1.img")
    mask, used = delta.changed_pages_counted(prev_pm, prev_file, cur_pm, cur / "pages-1.img", lying)
    assert used == 0 and np.array_equal(mask, full) and mask[0]
    # the same layout, but compared against another previous file
    cur_pages2 = prev_pages.copy()
    cur_pages2[3, 0] += 1
    (cur / "pages-1.img").write_bytes(cur_pages2.tobytes())
    (cur / "pagemap-1.img").write_bytes(delta.encode_pagemap(1, [(0x10000, N_PAGES, PE_PRESENT)]))
    cur_pm = delta.read_pagemap(cur / "pagemap-1.img")
    other = KnownPrefix("pages-9.img", np.zeros(BLOCK_PAGES, dtype=bool))
    mask, used = delta.changed_pages_counted(prev_pm, prev_file, cur_pm, cur / "pages-1.img", other)
    assert used == 0 and mask[3] and mask.sum() == 1


def test_a_file_replaced_while_followed_is_not_trusted(tmp_path: Path) -> None:
    """A retried dump starts its folder afresh: what was compared of the first file says nothing."""
    _prev_round(tmp_path / "prev", _pages(3))
    cur = tmp_path / "cur"
    with PrefixDiff(cur, tmp_path / "prev", poll_s=0.001) as ahead:
        _write_followed(cur, _pages(4), ahead)
        os.replace(cur / "pages-1.img", cur / "old.img")
        (cur / "pages-1.img").write_bytes(_pages(5).tobytes())
    assert ahead.result() == {}


def test_nothing_to_follow_gives_nothing_and_a_vanished_folder_is_no_error(tmp_path: Path) -> None:
    _prev_round(tmp_path / "prev", _pages(6, 10))  # smaller than a block: not followed
    cur = tmp_path / "cur"
    with PrefixDiff(cur, tmp_path / "prev", poll_s=0.001) as ahead:
        cur.mkdir()
        (cur / "pages-1.img").write_bytes(_pages(7, 10).tobytes())
        (cur / "pages-2.img").write_bytes(_pages(8, 10).tobytes())  # no previous file of that name
    assert ahead.result() == {} and ahead.compared_pages == 0
    _prev_round(tmp_path / "prev2", _pages(9))
    cur2 = tmp_path / "cur2"
    with PrefixDiff(cur2, tmp_path / "prev2", poll_s=0.001) as ahead2:
        _write_followed(cur2, _pages(10), ahead2)
        for p in cur2.iterdir():
            p.unlink()
        cur2.rmdir()
    assert ahead2.result() == {}
