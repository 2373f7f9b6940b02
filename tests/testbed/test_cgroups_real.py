"""Root + runc: a testbed that goes down takes its hosts' cgroup subtrees with it (runc leaves the parents)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.cgroups import CGROUP_ROOT, SERVICE_CGROUP_PARENT

pytestmark = [pytest.mark.netns]


def _host_dirs(netns: str) -> list[Path]:
    return sorted(CGROUP_ROOT.glob(f"*/{SERVICE_CGROUP_PARENT}/{netns}"))


def test_down_removes_the_hosts_cgroups(tmp_path: Path) -> None:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    pid = os.getpid()
    cluster = LocalCluster.up(f"cg{pid % 100000}", None, tmp_path, edges=1)
    try:
        netns = Path(cluster.tb.netns_path("edge1")).name
        cluster.deploy("edge1", ServiceSpec("cnt", ServiceKind.COUNTER, cluster.tb.service_ip(0), 7000, 4))
        assert [p.name for p in _host_dirs(netns)] and all((p / "cnt").is_dir() for p in _host_dirs(netns))
    finally:
        cluster.down()
    assert _host_dirs(netns) == []
