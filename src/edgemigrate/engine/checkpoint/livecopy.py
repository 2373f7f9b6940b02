"""Pre-copy rounds that do not freeze the service: its private memory read while it runs.

Without dirty-page tracking (this kernel has neither soft-dirty bits nor ``PAGEMAP_SCAN``'s written bit),
CRIU takes a pre-copy round only as a full ``dump --leave-running``, which freezes the service while it
writes all its memory (~0.2 s for 200 MB here, felt by every client). A pre-copy round needs no consistent
image, though: the final round compares each page of the final dump - taken frozen, hence consistent - with
the previous round's page at the same address *by content* (:func:`edgemigrate.engine.delta.changed_pages`)
and sends every page that differs. So a pre-copy round may read the memory of the running processes while
they keep writing it: a page torn by a concurrent write differs from the final dump's and is sent again then.

Pages read: exactly the set CRIU's final dump will hold, so that the final round finds the same page layout
and the destination patches the previous pages file in place instead of rebuilding it while the service is
frozen (CRIU 4.2, ``criu/mem.c`` ``should_dump_page``, checked against real dumps): of each private mapping
the pages present or swapped, not file-backed (bit 61 of ``/proc/<pid>/pagemap``) and not the kernel's zero
page (an untouched page that was only read; CRIU leaves it out by its PFN); every ``[vdso]`` page (CRIU's
parasite reads the vdso, so all its pages are present when CRIU dumps); and the first page of the first
executable mapping, where CRIU's parasite injection writes its syscall through ptrace (and restores it),
which turns that page anonymous from the first CRIU call on. Read through ``/proc/<pid>/mem``. Only
mappings that hold anonymous memory at all (``/proc/<pid>/smaps``) have their pagemap read, so a runtime's
huge reserved but untouched regions cost nothing. A page that vanishes while it is read (unmapped
meanwhile) is left out.

The folder holds, per process of the container, ``pagemap-<pid inside the container>.img`` (CRIU's format
and name: the final dump's pagemaps are named by the same pids) and its ``pages-<that pid>.img``, nothing
else. It is only ever the base of the next round's delta, never restored.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.checkpoint.runtime import CheckpointStats
from edgemigrate.engine.delta import PAGE_SIZE_BYTES, PE_PRESENT, encode_pagemap

PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_FILE = 1 << 61  # file-backed or shared anonymous: not in CRIU's private dump
PM_PFN_MASK = (1 << 55) - 1  # bits 0-54: the page frame of a present page (0 unless CAP_SYS_ADMIN)
VDSO = "[vdso]"  # CRIU dumps all its pages although the kernel marks them file-backed
SPECIAL_MAPPINGS = frozenset({"[vsyscall]", "[vvar]", "[vvar_vclock]", "[vdso]", "[uprobes]"})
READ_CHUNK_BYTES = 8 << 20  # one pread at most (bounded buffer)
PAGEMAP_SLICE_PAGES = 1 << 20  # pagemap words read at once (8 MiB): a huge sparse mapping is read in slices
_VMA_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")
_KB_FIELD = re.compile(r"^(Anonymous|Swap):\s+(\d+) kB$")


@dataclass(frozen=True, slots=True)
class Mapping:
    start: int
    end: int
    private: bool
    name: str
    anon_kb: int  # Anonymous + Swap from smaps: 0 means no page of it is in a private dump
    executable: bool = False


def read_mappings(smaps_text: str) -> list[Mapping]:
    """Parse ``/proc/<pid>/smaps``: each mapping with its anonymous (or swapped) kilobytes."""
    out: list[Mapping] = []
    cur: list[object] | None = None
    for line in smaps_text.splitlines():
        m = _VMA_LINE.match(line)
        if m:
            if cur is not None:
                out.append(Mapping(*cur))  # type: ignore[arg-type]
            cur = [int(m[1], 16), int(m[2], 16), m[3][3] == "p", m[4].strip(), 0, m[3][2] == "x"]
            continue
        f = _KB_FIELD.match(line)
        if f and cur is not None:
            cur[4] = int(cur[4]) + int(f[2])  # type: ignore[call-overload]
    if cur is not None:
        out.append(Mapping(*cur))  # type: ignore[arg-type]
    return out


def dumped_pages(pagemap_words: np.ndarray, zero_pfn: int = 0) -> np.ndarray:
    """Mask of the pages a private dump holds: present or swapped, not file-backed, and not the zero page
    ``zero_pfn`` (0: unknown, nothing excluded)."""
    w = pagemap_words.astype(np.uint64, copy=False)
    in_memory = (w & np.uint64(PM_PRESENT | PM_SWAPPED)) != 0
    in_memory &= (w & np.uint64(PM_FILE)) == 0
    if zero_pfn:
        present = (w & np.uint64(PM_PRESENT)) != 0
        in_memory &= ~(present & ((w & np.uint64(PM_PFN_MASK)) == np.uint64(zero_pfn)))
    return in_memory


@functools.cache
def zero_page_pfn() -> int:
    """The page frame of the kernel's zero page, found as CRIU's kerndat finds it: a private anonymous page
    that is only read maps it. 0 where page frames are hidden (without CAP_SYS_ADMIN)."""
    page = mmap.mmap(-1, PAGE_SIZE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ)
    try:
        view = np.frombuffer(page, dtype=np.uint8)
        if int(view[0]) != 0:
            return 0
        with open("/proc/self/pagemap", "rb") as fh:
            fh.seek(view.ctypes.data // PAGE_SIZE_BYTES * 8)
            word = int.from_bytes(fh.read(8), "little")
        del view
    finally:
        page.close()
    return word & PM_PFN_MASK if word & PM_PRESENT else 0


def _first_executable(mappings: list[Mapping]) -> Mapping | None:
    """The mapping CRIU's parasite injection writes to (compel's ``find_executable_area``: the first
    executable one in ``/proc/<pid>/maps`` order)."""
    return next((m for m in mappings if m.executable), None)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first index, count) of each run of True in ``mask``."""
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _copy_run(mem_fd: int, out_fd: int, vaddr: int, n_pages: int) -> list[tuple[int, int]]:
    """Copy ``n_pages`` from ``vaddr`` to the end of ``out_fd``; returns the (vaddr, pages) runs it could read
    (a page unmapped meanwhile reads as an error and is left out)."""
    try:
        done = 0
        total = n_pages * PAGE_SIZE_BYTES
        while done < total:
            data = os.pread(mem_fd, min(READ_CHUNK_BYTES, total - done), vaddr + done)
            if not data or len(data) % PAGE_SIZE_BYTES:
                raise OSError("short read")
            os.write(out_fd, data)
            done += len(data)
        return [(vaddr, n_pages)]
    except OSError:
        pass
    # page by page from where the bulk read stopped being trustworthy: start over for this run
    os.lseek(out_fd, -done, os.SEEK_CUR)
    os.ftruncate(out_fd, os.lseek(out_fd, 0, os.SEEK_CUR))
    kept: list[tuple[int, int]] = []
    for i in range(n_pages):
        a = vaddr + i * PAGE_SIZE_BYTES
        try:
            page = os.pread(mem_fd, PAGE_SIZE_BYTES, a)
        except OSError:
            continue
        if len(page) != PAGE_SIZE_BYTES:
            continue
        os.write(out_fd, page)
        if kept and kept[-1][0] + kept[-1][1] * PAGE_SIZE_BYTES == a:
            kept[-1] = (kept[-1][0], kept[-1][1] + 1)
        else:
            kept.append((a, 1))
    return kept


def copy_process(pid: int, ns_pid: int, out_dir: Path) -> int:
    """Write ``pagemap-<ns_pid>.img`` and ``pages-<ns_pid>.img`` for one running process; returns its pages."""
    proc = Path(f"/proc/{pid}")
    every = read_mappings((proc / "smaps").read_text())
    injected = _first_executable(every)
    mappings = [m for m in every if m.private and (m.name == VDSO or m is injected or
                                                   (m.anon_kb > 0 and m.name not in SPECIAL_MAPPINGS))]
    zero_pfn = zero_page_pfn()
    entries: list[tuple[int, int, int]] = []
    pm_fd = os.open(proc / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
    mem_fd = os.open(proc / "mem", os.O_RDONLY | os.O_CLOEXEC)
    out_fd = os.open(out_dir / f"pages-{ns_pid}.img", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        for m in mappings:
            for start in range(m.start, m.end, PAGEMAP_SLICE_PAGES * PAGE_SIZE_BYTES):
                n = min(PAGEMAP_SLICE_PAGES, (m.end - start) // PAGE_SIZE_BYTES)
                raw = os.pread(pm_fd, n * 8, (start // PAGE_SIZE_BYTES) * 8)
                words = np.frombuffer(raw[: len(raw) // 8 * 8], dtype=np.uint64)
                mask = np.ones(words.size, dtype=bool) if m.name == VDSO else dumped_pages(words, zero_pfn)
                if m is injected and start == m.start and mask.size:
                    mask[0] = True
                for first, count in _runs(mask):
                    for vaddr, k in _copy_run(mem_fd, out_fd, start + first * PAGE_SIZE_BYTES, count):
                        entries.append((vaddr, k, PE_PRESENT))
    finally:
        for fd in (pm_fd, mem_fd, out_fd):
            os.close(fd)
    (out_dir / f"pagemap-{ns_pid}.img").write_bytes(encode_pagemap(ns_pid, entries))
    return sum(k for _, k, _ in entries)


def container_processes(init_pid: int) -> list[tuple[int, int]]:
    """(host pid, pid inside the container) of every process in ``init_pid``'s pid namespace."""
    try:
        ns = os.readlink(f"/proc/{init_pid}/ns/pid")
    except OSError as exc:
        raise EngineError(f"live copy: process {init_pid} is gone ({exc.strerror})") from None
    out: list[tuple[int, int]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:  # exited meanwhile, or a kernel thread
            continue
        nspid = next((ln.split()[-1] for ln in status.splitlines() if ln.startswith("NSpid:")), None)
        if nspid is not None and nspid.isdigit():
            out.append((int(entry), int(nspid)))
    return sorted(out, key=lambda p: p[1])


def copy_memory(init_pid: int, out_dir: Path) -> CheckpointStats:
    """Read the private memory of every process of the container rooted at ``init_pid`` into ``out_dir`` (a
    new folder) without stopping any of them. Raises :class:`EngineError` if the container is gone."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=False)
    procs = container_processes(init_pid)
    if not procs:
        raise EngineError(f"live copy: no process in the pid namespace of {init_pid}")
    pages = 0
    for pid, ns_pid in procs:
        try:
            pages += copy_process(pid, ns_pid, out_dir)
        except FileNotFoundError:  # a child that exited meanwhile: the final dump will not have it either
            continue
        except OSError as exc:
            raise EngineError(f"live copy of process {pid}: {exc.strerror or exc}") from None
    elapsed = time.perf_counter() - t0
    image_bytes = sum(p.stat().st_size for p in out_dir.iterdir())
    return CheckpointStats(out_dir, image_bytes, elapsed, frozen_s=0.0, leave_running=True,
                           pages_written=pages, memdump_s=elapsed)
