"""A host pinned to some CPUs (cpuset) reports that many cores as its capacity, so its utilisation is a
fraction of what it may use (the ShareOn emulation pins each edge host to one CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.control.test_agent_reports import _tree

from edgemigrate.control.reports import ResourceMeter, count_cpus, host_cgroup


@pytest.mark.parametrize(("text", "n"), [("0", 1), ("0-1\n", 2), ("0-3,6", 5), ("", 0), ("x", 0), ("1-", 0),
                                         ("-1", 0), ("0-1,a", 0)])
def test_count_cpus(text: str, n: int) -> None:
    assert count_cpus(text) == n


@pytest.mark.parametrize("v2", [False, True])
def test_a_pinned_host_has_as_many_cores_as_its_cpuset(tmp_path: Path, v2: bool) -> None:
    _tree(tmp_path, v2, "0", None, "4096\n")
    rel = host_cgroup("/run/netns/tb-edge1")
    d = tmp_path / rel if v2 else tmp_path / "cpuset" / rel
    d.mkdir(parents=True, exist_ok=True)
    meter = ResourceMeter("/run/netns/tb-edge1", tmp_path)
    whole = meter.cpu_cores()
    (d / ("cpuset.cpus.effective" if v2 else "cpuset.effective_cpus")).write_text("0\n")
    assert meter.cpu_cores() == 1.0
    (d / ("cpuset.cpus.effective" if v2 else "cpuset.effective_cpus")).write_text("garbage\n")
    assert meter.cpu_cores() == whole
