"""Thin wrappers over ``ip``, ``tc``, ``nsenter`` and ``sysctl``; failures become :class:`EngineError`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgemigrate.core.errors import EngineError

NETNS_DIR = Path("/run/netns")


def netns_path(ns: str) -> Path:
    return NETNS_DIR / ns


def run(argv: Sequence[str], *, check: bool = True, input_text: str | None = None,
        timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``check`` a failure raises :class:`EngineError` naming the command and its stderr."""
    try:
        proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except FileNotFoundError:
        raise EngineError(f"command not found: {argv[0]} (run scripts/install-system-deps as root)") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"timed out after {timeout_s:.0f} s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        err = " ".join((proc.stderr or proc.stdout).split())[:300]
        raise EngineError(f"'{' '.join(argv)[:200]}' failed ({proc.returncode}): {err}")
    return proc


def in_ns(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside network namespace ``ns`` (``nsenter --net``, not ``ip netns exec``: no /sys remount)."""
    if ns is None:
        return list(argv)
    return ["nsenter", f"--net={netns_path(ns)}", "--", *argv]


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def ip_batch(ns: str | None, lines: Sequence[str], *, force: bool = False) -> None:
    """Run many ``ip`` commands in one process (``ip -batch``); ``force`` continues past errors."""
    if not lines:
        return
    argv = ["ip", *(["-n", ns] if ns else []), *(["-force"] if force else []), "-batch", "-"]
    run(argv, input_text="\n".join(lines) + "\n", check=not force)


def tc(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["tc", *(["-n", ns] if ns else []), *args], check=check)


def sysctl(ns: str | None, settings: dict[str, str], *, check: bool = True) -> None:
    """Write sysctls inside ``ns`` (net.* sysctls are per network namespace)."""
    args = [f"{k}={v}" for k, v in settings.items()]
    run(in_ns(ns, ["sysctl", "-q", "-w", *args]), check=check)


def netns_exists(ns: str) -> bool:
    return netns_path(ns).exists()


def netns_pids(ns: str) -> list[int]:
    proc = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in proc.stdout.split() if x.isdigit()]


def is_root() -> bool:
    return os.geteuid() == 0


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
