"""Fixtures for real network-namespace testbeds (need root; CI is root)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from edgemigrate.testbed import Testbed, TestbedConfig

NEEDS = ("ip", "tc", "nsenter", "sysctl", "ping")


def netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    missing = [t for t in NEEDS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (scripts/install-system-deps)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def unique_name(tag: str) -> str:
    """A short testbed name that cannot collide with a user's or a parallel run's (pid-based)."""
    return f"t{tag}{os.getpid() % 100000}"


def unique_subnet(offset: int) -> str:
    return f"10.{200 + (os.getpid() + offset) % 50}.0.0/16"


def free_subnet() -> str:
    """A /16 that no route of the root namespace overlaps (for testbeds with a management link)."""
    out = subprocess.run(["ip", "-j", "route", "show", "table", "all"], capture_output=True, text=True,
                         check=True).stdout
    used = []
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
            except ValueError:
                continue
    for k in range(50):
        net = ipaddress.IPv4Network(f"10.{200 + (os.getpid() + k) % 50}.0.0/16")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise RuntimeError("no free 10.200-249.0.0/16 subnet")


@pytest.fixture(scope="module")
def small_testbed() -> Iterator[Testbed]:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = TestbedConfig(edges=2, clouds=1, clients=1, subnet=unique_subnet(0), mgmt_link=False)
    tb = Testbed.up(cfg, name=unique_name("m"))
    try:
        yield tb
    finally:
        tb.down()
