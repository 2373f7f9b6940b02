from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.mobilekube import (
    LatencyModel,
    PowerModel,
    Problem,
    empty_servers,
    fits,
    mean_latency_s,
    node_power_w,
    station_node_delay_s,
    terms,
    total_power_w,
)


def test_power_eqs_7_8() -> None:
    pm = PowerModel(idle_w=100.0, max_w=200.0)
    np.testing.assert_allclose(node_power_w(np.array([0.0, 0.25, 1.0]), pm), [0.0, 125.0, 200.0])
    placement = np.array([0, 0, 2])
    # node 0 at 0.5 of 2 CPU, node 1 off, node 2 at 0.25
    assert total_power_w(placement, np.array([0.5, 0.5, 0.5]), np.full(3, 2.0), pm) == pytest.approx(
        (100 + 100 * 0.5) + (100 + 100 * 0.25))
    assert empty_servers(placement, 3) == 1


def test_latency_eqs_5_6_follow_the_tree() -> None:
    hops = np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]])
    path = np.array([[0, 1000.0, 3000.0], [1000.0, 0, 2000.0], [3000.0, 2000.0, 0]])
    lm = LatencyModel(access_s=0.005, per_hop_s=0.002, fibre_m_per_s=2e8)
    d = station_node_delay_s(hops, path, lm)
    assert d[0, 2] == pytest.approx(0.005 + 0.004 + 3000 / 2e8)
    # users at stations 0 and 2 both use container 0 on node 1: one hop each
    lat = mean_latency_s(np.array([1]), np.array([0, 2]), np.array([0, 0]), d)
    assert lat == pytest.approx(0.005 + 0.002 + (1000 / 2e8 + 2000 / 2e8) / 2)


def test_reward_and_cost_are_normalised() -> None:
    pm = PowerModel(100.0, 200.0)
    t = terms(power_w=0.0, latency_s=0.005, n_nodes=4, power=pm, latency_floor_s=0.005, w1=1.0, w2=1.0)
    assert (t.reward_energy, t.reward_latency, t.reward, t.cost) == (1.0, 1.0, 2.0, 1.0)
    t = terms(power_w=800.0, latency_s=0.010, n_nodes=4, power=pm, latency_floor_s=0.005, w1=2.0, w2=0.5)
    assert t.reward_energy == 0.0 and t.reward_latency == 0.5
    assert t.reward == pytest.approx(0.25) and t.cost == pytest.approx(2.0 + 1.0)


def test_capacity_constraints_3_4() -> None:
    cpu, mem = np.array([1.0, 1.0]), np.array([5.0, 5.0])
    assert fits(np.array([0, 0]), cpu, mem, np.array([2.0, 2.0]), np.array([10.0, 10.0]))
    assert not fits(np.array([0, 0]), cpu, mem, np.array([1.5, 2.0]), np.array([10.0, 10.0]))
    assert not fits(np.array([0, 0]), cpu, mem, np.array([2.0, 2.0]), np.array([9.0, 10.0]))


def test_bad_models_and_problems_are_rejected() -> None:
    with pytest.raises(ValidationError):
        PowerModel(idle_w=200.0, max_w=100.0)
    with pytest.raises(ValidationError):
        LatencyModel(access_s=0.0)
    with pytest.raises(ValidationError, match="inconsistent problem sizes"):
        Problem(np.zeros((2, 3)), np.zeros(1, np.int64), np.ones(1), np.ones(1), np.ones(2), np.ones(2),
                PowerModel(), 0.005, 1.0, 1.0)
    with pytest.raises(ValidationError, match="user_service must index"):
        Problem(np.zeros((2, 2)), np.array([3]), np.ones(1), np.ones(1), np.ones(2), np.ones(2),
                PowerModel(), 0.005, 1.0, 1.0)
