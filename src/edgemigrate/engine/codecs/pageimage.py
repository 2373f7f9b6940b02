"""Realistic memory-page images for codec measurements (WKdm vs lz4 vs zstd).

:func:`make_page_image` starts a Python process that builds a realistic heap (user records as dicts of
strings and lists, JSON-encoded sessions in a dict, NumPy arrays of walks and counters) until its
resident set reaches the target, then captures its pages:

* with ``criu`` on PATH and root: a real ``criu dump --leave-running`` of the process, whose
  ``pages-*.img`` is exactly what a migration sends;
* otherwise: the process's private writable mappings read from ``/proc/<pid>/mem`` (the same pages
  CRIU would dump, minus file-backed ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemigrate.core.errors import EngineError

PAGE_SIZE_BYTES = 4096

HOLDER_SOURCE = r"""
import json, os, random, sys, time
import numpy as np
random.seed(1)
target = int(sys.argv[1])
words = []
if os.path.exists("/usr/share/dict/words"):
    words = [w.strip() for w in open("/usr/share/dict/words", errors="replace")][:100000]
if not words:
    abc = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(random.choice(abc) for _ in range(random.randint(3, 12))) for _ in range(50000)]
store, users, arrays = {}, [], []
i = 0
while True:
    i += 1
    u = {"id": i, "name": random.choice(words) + " " + random.choice(words), "score": random.random() * 100,
         "tags": [random.choice(words) for _ in range(random.randint(1, 6))], "visits": list(range(i % 50))}
    users.append(u)
    store["session:%08d" % i] = json.dumps(u).encode()
    if i % 2000 == 0:
        rng = np.random.default_rng(i)
        arrays.append(np.cumsum(rng.normal(size=20000)))
        arrays.append(rng.integers(0, 1000, size=20000, dtype=np.int32))
    if i % 5000 == 0 and int(open("/proc/self/statm").read().split()[1]) * 4096 > target:
        break
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def spawn_holder(target_bytes: int, timeout_s: float = 600.0) -> subprocess.Popen[bytes]:
    """Start the data-holding process and wait until its heap reaches ``target_bytes``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SOURCE, str(int(target_bytes))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until "ready" (or EOF if the process died)
    if line.strip() != b"ready":
        proc.kill()
        proc.wait()
        raise EngineError(f"page-image holder process exited before it was ready (status {proc.poll()})")
    return proc


def criu_dump_pages(pid: int, image_dir: Path) -> Path:
    """``criu dump --leave-running`` of ``pid`` into ``image_dir``; returns the (largest) pages image."""
    image_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "criu",
        "dump",
        "-t",
        str(pid),
        "-D",
        str(image_dir),
        "--leave-running",
        "--shell-job",
        "-o",
        "dump.log",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    pages = sorted(image_dir.glob("pages-*.img"), key=lambda p: p.stat().st_size)
    if res.returncode != 0 or not pages:
        log = (
            (image_dir / "dump.log").read_text(errors="replace")[-400:]
            if (image_dir / "dump.log").exists()
            else ""
        )
        raise EngineError(f"criu dump of pid {pid} failed (status {res.returncode}): {log.strip()}")
    return pages[-1]


def proc_mem_pages(pid: int, max_bytes: int | None = None) -> bytes:
    """The resident private writable pages of ``pid`` (heap, anonymous mappings, stack), read from
    ``/proc/<pid>/mem``; ``/proc/<pid>/pagemap`` (bit 63: present, bit 62: swapped) drops pages never
    touched, as CRIU does."""
    regions = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            perms = parts[1]
            path = parts[5] if len(parts) > 5 else ""
            if perms.startswith("rw") and perms[3] == "p" and path not in ("[vvar]", "[vsyscall]", "[vdso]"):
                regions.append((lo, hi))
    parts_out: list[bytes] = []
    total = 0
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for lo, hi in regions:
            for off in range(lo, hi, 1 << 20):
                n = min(1 << 20, hi - off)
                try:
                    # pagemap first: reading /proc/<pid>/mem faults untouched pages in
                    entries = np.frombuffer(
                        os.pread(pagemap, n // PAGE_SIZE_BYTES * 8, off // PAGE_SIZE_BYTES * 8), "<u8"
                    )
                    data = os.pread(mem, n, off)
                except OSError:
                    continue  # unreadable (guard pages etc.)
                keep = (entries >> np.uint64(62)) != 0  # present or swapped
                if len(data) != n or keep.size != n // PAGE_SIZE_BYTES:
                    continue
                pages = np.frombuffer(data, np.uint8).reshape(-1, PAGE_SIZE_BYTES)[keep]
                parts_out.append(pages.tobytes())
                total += pages.size
                if max_bytes is not None and total >= max_bytes:
                    return b"".join(parts_out)[:max_bytes]
    finally:
        os.close(mem)
        os.close(pagemap)
    return b"".join(parts_out)


def make_page_image(out_path: Path, target_bytes: int, prefer_criu: bool = True) -> str:
    """Write a realistic page image of about ``target_bytes`` to ``out_path``; returns the method used
    (``"criu"`` or ``"proc-mem"``)."""
    proc = spawn_holder(target_bytes)
    try:
        if prefer_criu and shutil.which("criu") and os.geteuid() == 0:
            with tempfile.TemporaryDirectory(prefix="pageimage-") as tmp:
                try:
                    pages = criu_dump_pages(proc.pid, Path(tmp))
                    shutil.copyfile(pages, out_path)
                    return "criu"
                except EngineError:
                    pass  # fall back to /proc/<pid>/mem below
        time.sleep(0.1)
        out_path.write_bytes(proc_mem_pages(proc.pid))
        return "proc-mem"
    finally:
        proc.kill()
        proc.wait()
