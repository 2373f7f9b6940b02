"""Destination-side admission against herding (ours, on top of Maheshwari et al. 2018, Algorithm 2): many
overloaded nodes that decide from the same stale report all pick the one cheap neighbour; the destination
admits only as many as keep it below High, and the refused sources go on to their next candidate."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.costs.shareon import RegionThresholds, admits
from edgemigrate.policies.shareon import (
    ContainerState,
    Neighbour,
    NodeReport,
    NodeView,
    ShareOnAgent,
    ShareOnParams,
)
from edgemigrate.policies.shareon.simpolicy import AgentPolicy

GIB = float(1 << 30)
TH = RegionThresholds(sp_th1_hz=1e9, sp_th2_hz=2e9, m_th1_bytes=0.25 * GIB, m_th2_bytes=0.5 * GIB)
P = ShareOnParams(TH, cost_th_s=1e3, min_gain_s=0.0, admit_util_high=0.85)
DEMAND_HZ = 0.8e9  # each container is a tenth of the cheap node's 8 GHz


def _report(node_id: str, x_m: float, k: int, util: float) -> NodeReport:
    return NodeReport(node_id, x_m, 0.0, 8e9, 8 * GIB, k, util, 0.02, 0.05, 0.0, 0)


def test_util_bound_and_region_both_refuse() -> None:
    # util 0.6 + 2 reserved x 0.1 + this one 0.1 = 0.9 >= 0.85: refused; with one reserved 0.8: admitted
    assert not admits(8e9, 8 * GIB, 2, 0.6, 2, 2 * DEMAND_HZ, DEMAND_HZ, TH, 0.85)
    assert admits(8e9, 8 * GIB, 2, 0.6, 1, DEMAND_HZ, DEMAND_HZ, TH, 0.85)
    # 7 containers + 0 reserved + 1 = 8 -> 1e9 Hz per container = sp_th1: High, whatever the utilisation
    assert not admits(8e9, 8 * GIB, 7, 0.0, 0, 0.0, 1.0, TH, 0.85)
    # no capacity or garbage admits nothing, never a division error
    assert not admits(0.0, 8 * GIB, 0, 0.0, 0, 0.0, 1.0, TH, 0.85)
    assert not admits(float("nan"), 8 * GIB, 0, 0.0, 0, 0.0, 1.0, TH, 0.85)
    assert not admits(8e9, 8 * GIB, 0, float("nan"), 0, 0.0, 1.0, TH, 0.85)


def test_many_overloaded_nodes_one_cheap_destination_only_as_many_admitted_as_fit() -> None:
    cheap = _report("cheap", 1000.0, k=1, util=0.2)
    backup = _report("backup", 1500.0, k=1, util=0.5)  # Low by count, but slower: every source's second choice
    sources = [_report(f"s{i}", 0.0, k=20, util=1.5) for i in range(20)]
    decisions = []
    for me in sources:  # each decides alone, from the same one-period-old reports of its neighbours
        v = NodeView(0.0, me, (ContainerState(f"c-{me.node_id}", 0.0, 0.0, 50e6, DEMAND_HZ, 0.02, 0.3, False),),
                     (Neighbour(cheap, 1e9, 5.0), Neighbour(backup, 1e9, 5.0)))
        [d] = ShareOnAgent(P).decide(v)
        decisions.append(d)
    assert {d.destination_id for d in decisions} == {"cheap"}  # the herd: Algorithm 2 alone sends all 20 there
    assert all(d.alternatives == ("backup",) for d in decisions)

    # the destinations answer the requests in turn, each counting what it already admitted
    state = {"cheap": [cheap, 0, 0.0], "backup": [backup, 0, 0.0]}
    placed: dict[str, str] = {}
    for d in decisions:
        for dest in (d.destination_id, *d.alternatives):
            rep, n, hz = state[dest]
            if admits(rep.cpu_hz, rep.ram_bytes, rep.n_containers, rep.util_fac, n, hz, DEMAND_HZ, TH, 0.85):
                state[dest][1:] = [n + 1, hz + DEMAND_HZ]
                placed[d.container_id] = dest
                break
    # cheap: 0.2 + n x 0.1 < 0.85 -> 6 fit (0.8); backup: 0.5 + n x 0.1 < 0.85 -> 3 fit (0.8)
    assert state["cheap"][1] == 6 and state["backup"][1] == 3
    assert sum(dest == "cheap" for dest in placed.values()) == 6
    assert len(placed) == 9  # the other 11 stay where they are until a later round finds room
    for rep, _n, hz in state.values():
        assert rep.util_fac + hz / rep.cpu_hz < 0.85


def test_the_sim_policy_offers_admission_only_for_shareon_and_ranks_candidates() -> None:
    assert hasattr(AgentPolicy.by_name("shareon", P), "admission")
    assert not hasattr(AgentPolicy.by_name("processing_only", P), "admission")
    assert not hasattr(AgentPolicy.by_name("shareon", ShareOnParams(TH, admit_util_high=None)), "admission")
    pol = AgentPolicy.by_name("shareon", P)
    assert pol.admission(8e9, 8 * GIB, 1, 0.2, 5, 5 * DEMAND_HZ, DEMAND_HZ)
    assert not pol.admission(8e9, 8 * GIB, 1, 0.2, 6, 6 * DEMAND_HZ, DEMAND_HZ)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_admit_util_high_out_of_range_is_a_one_line_error(bad: float) -> None:
    with pytest.raises(Exception, match="admit_util_high"):
        ShareOnParams(TH, admit_util_high=bad)


def test_vectorised_over_destinations() -> None:
    got = admits(np.array([8e9, 8e9, 8e9]), 8 * GIB, np.array([1, 1, 1]), np.array([0.1, 0.8, 0.2]), 0, 0.0,
                 DEMAND_HZ, TH, 0.85)
    assert got.tolist() == [True, False, True]
