"""Fixtures for real network-namespace testbeds (need root; CI is root)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

from edgemigrate.testbed import Testbed, TestbedConfig, config_from_mapping

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


@contextlib.contextmanager
def two_bs_testbed(tag: str, subnet_offset: int, *, edges: int, clouds: int, clients: int) -> Iterator[Testbed]:
    """A testbed with two base stations, skipped without root/tools, always torn down."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = config_from_mapping({"edges": edges, "clouds": clouds, "clients": clients,
                               "subnet": unique_subnet(subnet_offset), "mgmt_link": False,
                               "base_stations": {"count": 2}})
    tb = Testbed.up(cfg, name=unique_name(tag))
    try:
        yield tb
    finally:
        tb.down()


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
