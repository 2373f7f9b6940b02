"""Ending exactly the Ray processes one fixture started, and nothing else.

Never ``ray stop``: it has no option to name a cluster (no temp folder, no port) and ends every Ray process on
the machine - another engineer's tests or training included. Instead a fixture notes, just before its
teardown, the process tree under the processes it started itself (Ray's workers rename themselves
``ray::IDLE`` and sit in sessions of their own, so only their parentage ties them to this cluster), adds any
process whose command line names the cluster's own temp folder or GCS port (one already re-parented), lets
Ray shut down gracefully, and then kills by PID whatever of those is still the same process (its start time
unchanged, so a reused PID is never hit).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

GRACE_S = 20.0  # a give-up for processes to exit after SIGTERM / SIGKILL, never a timing check


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time in clock ticks, state) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def tree(roots: Iterable[int], needles: Iterable[str] = ()) -> dict[int, int]:
    """pid -> start time of ``roots``, every descendant of theirs, every process whose command line contains
    one of ``needles``, and every descendant of those."""
    stats = {pid: st for pid in _pids() if (st := _stat(pid)) is not None and st[2] != "Z"}
    wanted = [n.encode() for n in needles if n]
    found = {pid for pid in roots if pid in stats}
    found |= {pid for pid in stats if wanted and any(n in cmdline(pid) for n in wanted)}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    found.discard(os.getpid())
    return {pid: stats[pid][1] for pid in found}


def alive(procs: dict[int, int]) -> dict[int, int]:
    """Those of ``procs`` still running as the same process (a zombie has ended; a new start time is not it)."""
    out = {}
    for pid, start in procs.items():
        st = _stat(pid)
        if st is not None and st[1] == start and st[2] != "Z":
            out[pid] = start
    return out


def end(procs: dict[int, int], what: str) -> None:
    """SIGTERM, then SIGKILL, each of ``procs`` that is still the same process; fail the test (with every
    survivor's command line) if one outlives both."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive(procs):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_S
        while alive(procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(procs):
            return
    left = "; ".join(f"{pid}: {cmdline(pid)[:120].decode(errors='replace')}" for pid in alive(procs))
    pytest.fail(f"{what}: processes outlived SIGKILL: {left}")
