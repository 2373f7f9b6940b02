"""Domain-model validation: clear messages for bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.model.images import ImageCatalog
from edgemigrate.model.nodes import BaseStations, CloudNode, EdgeNodes
from edgemigrate.model.topology import manhattan_grid, mst, three_tier
from edgemigrate.model.workload import WorkloadSpec


def nodes(n: int = 3, **over: object) -> EdgeNodes:
    kw: dict[str, object] = dict(
        xy_m=np.zeros((n, 2)), cpu_hz=np.full(n, 1e9), memory_bytes=np.full(n, 1e9), storage_bytes=np.full(n, 1e9),
        wired_bps=np.full(n, 1e8), backhaul_bps=np.full(n, 1e8), max_containers=np.full(n, 5),
        coverage_m=np.full(n, 500.0), idle_power_w=np.full(n, 10.0), max_power_w=np.full(n, 20.0))
    kw.update(over)
    return EdgeNodes(**kw)  # type: ignore[arg-type]


def test_edge_nodes_validate() -> None:
    assert nodes().n == 3
    with pytest.raises(ValidationError, match=r"nodes.cpu_hz\[1\] = 0.0 must be > 0"):
        nodes(cpu_hz=np.array([1e9, 0.0, 1e9]))
    with pytest.raises(ValidationError, match=r"nodes.storage_bytes has shape \(2,\), expected \(3,\)"):
        nodes(storage_bytes=np.ones(2))
    with pytest.raises(ValidationError, match="max_power_w must be >= nodes.idle_power_w"):
        nodes(max_power_w=np.full(3, 5.0))
    n = nodes()
    with pytest.raises(ValueError):
        n.cpu_hz[0] = 5  # specs are read-only


def test_cloud_and_stations_validate() -> None:
    with pytest.raises(ValidationError, match="cloud.hops"):
        CloudNode(hops=0)
    with pytest.raises(ValidationError, match="stations.coverage_m"):
        BaseStations(xy_m=np.zeros((2, 2)), coverage_m=np.array([1.0, -1.0]), max_users=np.ones(2), node=np.zeros(2))


def test_image_catalog() -> None:
    cat = ImageCatalog(("a", "b"), ("l0", "l1", "l2"), np.array([10, 20, 30]),
                       (np.array([0, 1]), np.array([1, 2])))
    assert cat.matrix.tolist() == [[True, True, False], [False, True, True]]
    assert cat.image_size_bytes.tolist() == [30, 50]
    with pytest.raises(ValidationError, match="unknown image 'c'"):
        cat.index("c")
    with pytest.raises(ValidationError, match="references an unknown layer"):
        ImageCatalog(("a",), ("l0",), np.array([1]), (np.array([3]),))
    with pytest.raises(ValidationError, match="has no layers"):
        ImageCatalog(("a",), ("l0",), np.array([1]), (np.array([], dtype=np.int64),))


def test_topologies() -> None:
    xy = np.array([[500.0, 500.0], [1500.0, 500.0], [2500.0, 1500.0]])
    assert manhattan_grid(xy, 1000.0).hops.tolist() == [[0, 1, 3], [1, 0, 2], [3, 2, 0]]
    h = mst(xy).hops
    assert h[0, 2] == 2 and h[0, 1] == 1 and (h == h.T).all()
    t = three_tier(np.array([[0.0, 0.0], [10.0, 0.0], [5000.0, 0.0], [5010.0, 0.0]]), 2).hops
    assert t[0, 1] == 2 and t[0, 2] == 4 and t[2, 3] == 2 and t[0, 0] == 0


def test_workload_ranges() -> None:
    with pytest.raises(ValidationError, match=r"workload.data_bytes must be \[low, high\]"):
        WorkloadSpec(data_bytes=(5.0, 1.0))
    with pytest.raises(ValidationError, match="arrival_rate_per_user_s"):
        WorkloadSpec(arrival_rate_per_user_s=-1)
