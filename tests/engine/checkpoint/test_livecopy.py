"""Live pre-copy reads (engine/checkpoint/livecopy.py): which pages a private dump holds, and reading them
out of a running process without stopping it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import EngineError
from edgemigrate.engine import delta
from edgemigrate.engine.checkpoint import livecopy
from edgemigrate.engine.delta import PAGE_SIZE_BYTES

SMAPS = """\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Anonymous:            12 kB
Swap:                  4 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 1234                       /usr/lib/libc.so.6
Size:               1024 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000200000-7f0000300000 rw-s 00000000 00:05 99                         /dev/shm/x
Anonymous:             0 kB
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Anonymous:             0 kB
"""


def test_smaps_gives_each_mapping_its_anonymous_memory() -> None:
    maps = livecopy.read_mappings(SMAPS)
    assert [m.executable for m in maps] == [False, True, False, True]
    assert [(m.start, m.end, m.private, m.name, m.anon_kb) for m in maps] == [
        (0x55D0C0000000, 0x55D0C0021000, True, "[heap]", 16),
        (0x7F0000000000, 0x7F0000100000, True, "/usr/lib/libc.so.6", 0),
        (0x7F0000200000, 0x7F0000300000, False, "/dev/shm/x", 0),
        (0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, True, "[vsyscall]", 0),
    ]


def test_a_private_dump_holds_present_or_swapped_anonymous_pages() -> None:
    present, swapped, file_page = livecopy.PM_PRESENT, livecopy.PM_SWAPPED, livecopy.PM_FILE
    words = np.array([0, present | 77, swapped, present | file_page, present | swapped, present | 5, swapped | 5],
                     dtype=np.uint64)
    assert livecopy.dumped_pages(words).tolist() == [False, True, True, False, True, True, True]
    # the zero page (frame 5 here) is left out when present; a swap entry's bits are no frame
    assert livecopy.dumped_pages(words, zero_pfn=5).tolist() == [False, True, True, False, True, False, True]
    assert livecopy._runs(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=bool)) == [(0, 2), (3, 1), (6, 3)]
    assert livecopy._runs(np.zeros(4, dtype=bool)) == []


def test_pages_that_vanish_while_read_are_left_out(tmp_path: Path) -> None:
    """A run whose end is no longer readable (unmapped meanwhile; here: a 3-page file read as 5 pages) keeps
    the pages that read whole, and the pages file holds exactly those."""
    src = tmp_path / "mem"
    src.write_bytes(bytes(range(256)) * (3 * PAGE_SIZE_BYTES // 256))
    out = tmp_path / "pages"
    mem_fd, out_fd = os.open(src, os.O_RDONLY), os.open(out, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(out_fd, b"\1" * PAGE_SIZE_BYTES)  # an earlier run's page stays
        assert livecopy._copy_run(mem_fd, out_fd, 0, 5) == [(0, 3)]
    finally:
        os.close(mem_fd)
        os.close(out_fd)
    assert out.read_bytes() == b"\1" * PAGE_SIZE_BYTES + src.read_bytes()


CHILD = """
import ctypes, sys, time
buf = bytearray(b"\\xab" * (4 << 20))
print(ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)), flush=True)
for _ in range(600):
    buf[123] = (buf[123] + 1) % 256  # keeps writing while it is read
    time.sleep(0.01)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root (CAP_SYS_PTRACE)")
@pytest.mark.parametrize("slice_pages", [livecopy.PAGEMAP_SLICE_PAGES, 64])
def test_a_running_process_is_read_without_stopping_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       slice_pages: int) -> None:
    """Also with the pagemap read in small slices (how a huge sparse mapping is read): same pages."""
    monkeypatch.setattr(livecopy, "PAGEMAP_SLICE_PAGES", slice_pages)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        addr = int(child.stdout.readline())  # type: ignore[union-attr]
        n_pages = livecopy.copy_process(child.pid, 7, tmp_path)
        assert child.poll() is None  # never stopped, still running
    finally:
        child.kill()
        child.wait()
    pm = delta.read_pagemap(tmp_path / "pagemap-7.img")
    assert pm.pages_name == "pages-7.img" and pm.n_stored_pages == n_pages
    vaddrs = pm.stored_page_vaddrs()
    pages = np.frombuffer((tmp_path / "pages-7.img").read_bytes(), dtype=np.uint8).reshape(-1, PAGE_SIZE_BYTES)
    first = -(-addr // PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES  # the buffer's first whole page
    for a in range(first + PAGE_SIZE_BYTES, first + (1 << 20), PAGE_SIZE_BYTES):  # pages the child never rewrites
        (i,) = np.flatnonzero(vaddrs == a)
        assert (pages[i] == 0xAB).all()


ZERO_PAGES_CHILD = """
import mmap, time
m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, 64, 2):
    m[i * 4096] = 1  # written: dumped
for i in range(1, 64, 4):
    _ = m[i * 4096]  # only read: maps the zero page, which CRIU leaves out
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.criu
@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root (CAP_SYS_PTRACE)")
def test_a_live_round_holds_exactly_the_pages_criu_dumps(tmp_path: Path) -> None:
    """The same pages in the same order as CRIU's dump right after it - zero pages left out, the vdso and the
    page CRIU's parasite injection writes to included - so the final round finds the live round's layout
    and the destination patches its pages file in place."""
    child = subprocess.Popen([sys.executable, "-c", ZERO_PAGES_CHILD], stdout=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        (tmp_path / "live").mkdir()
        livecopy.copy_process(child.pid, child.pid, tmp_path / "live")
        subprocess.run(["criu", "dump", "-t", str(child.pid), "-D", str(tmp_path), "--leave-running",
                        "--shell-job", "-o", "dump.log"], check=True, capture_output=True)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
    live = delta.read_pagemap(tmp_path / "live" / f"pagemap-{child.pid}.img").stored_page_vaddrs()
    dumped = delta.read_pagemap(tmp_path / f"pagemap-{child.pid}.img").stored_page_vaddrs()
    assert live.tolist() == dumped.tolist()


def test_a_container_that_is_gone_is_an_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="is gone"):
        livecopy.copy_memory(2**22 + 12345, tmp_path / "round")
    own = livecopy.container_processes(os.getpid())
    assert any(host == os.getpid() for host, _ in own)
