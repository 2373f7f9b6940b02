"""What this machine supports for the real engine and the testbed (used by ``edgemigrate doctor``).

Kernel features (netem, tbf, TUN, congestion controls) are probed for real in a throw-away network namespace
(``unshare --net``), which disappears with the probing process and leaves nothing behind.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CRIU_MIN = (4, 2)


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str
    path: str | None
    version: str | None
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    python: str
    kernel: str
    root: bool
    netem: bool
    tbf: bool
    tun: bool
    congestion_controls: tuple[str, ...]
    tools: dict[str, ToolInfo] = field(default_factory=dict)

    @property
    def bbr(self) -> bool:
        return "bbr" in self.congestion_controls


def _probe_qdisc(kind_args: list[str]) -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("tc"):
        return False
    proc = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", *kind_args],
                          capture_output=True, text=True, check=False, timeout=20)
    return proc.returncode == 0


def _congestion_controls() -> tuple[str, ...]:
    if os.geteuid() == 0 and shutil.which("modprobe"):
        subprocess.run(["modprobe", "-q", "tcp_bbr"], capture_output=True, check=False, timeout=20)
    try:
        return tuple(Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split())
    except OSError:
        return ()


def _tun_ok() -> bool:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _version(argv: list[str], pattern: str) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, proc.stdout + proc.stderr)
    return m.group(1) if m else None


def criu_info() -> ToolInfo:
    path = shutil.which("criu")
    if not path:
        return ToolInfo("criu", None, None, False, "missing (scripts/install-criu)")
    ver = _version([path, "--version"], r"Version:\s*([0-9.]+)")
    parts = tuple(int(x) for x in (ver or "0").split(".")[:2])
    if parts < CRIU_MIN:
        return ToolInfo("criu", path, ver, False, f"need >= {CRIU_MIN[0]}.{CRIU_MIN[1]} (scripts/install-criu)")
    if os.geteuid() != 0:
        return ToolInfo("criu", path, ver, False, "criu check needs root")
    proc = subprocess.run([path, "check"], capture_output=True, text=True, check=False, timeout=60)
    out = " ".join((proc.stdout + proc.stderr).split())
    return ToolInfo("criu", path, ver, proc.returncode == 0, f"criu check: {out[-80:]}")


def tool_info(name: str, argv: list[str], pattern: str) -> ToolInfo:
    path = shutil.which(name)
    if not path:
        return ToolInfo(name, None, None, False, "missing (scripts/install-system-deps)")
    ver = _version([path, *argv], pattern)
    return ToolInfo(name, path, ver, ver is not None)


def detect(tools: bool = False) -> Capabilities:
    """Probe the kernel (and with ``tools`` the CRIU/runc/podman/redis installations)."""
    info: dict[str, ToolInfo] = {}
    if tools:
        info["criu"] = criu_info()
        info["runc"] = tool_info("runc", ["--version"], r"runc version\s*(\S+)")
        info["podman"] = tool_info("podman", ["--version"], r"podman version\s*(\S+)")
        info["redis-server"] = tool_info("redis-server", ["--version"], r"v=(\S+)")
        info["nsenter"] = tool_info("nsenter", ["--version"], r"util-linux\s*(\S+)")
        info["ip"] = tool_info("ip", ["-V"], r"iproute2-([0-9.]+)")
        info["iptables"] = tool_info("iptables", ["--version"], r"v(\S+)")
    return Capabilities(
        python=sys.version.split()[0],
        kernel=platform.release(),
        root=os.geteuid() == 0,
        netem=_probe_qdisc(["netem", "delay", "1ms"]),
        tbf=_probe_qdisc(["tbf", "rate", "1mbit", "burst", "32k", "latency", "50ms"]),
        tun=_tun_ok(),
        congestion_controls=_congestion_controls(),
        tools=info,
    )
