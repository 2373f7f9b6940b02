"""A user no base station covers (3d) no longer makes every planner refuse the whole round: the covered users
are planned, the uncovered one stays where it is and is named in ``Plan.uncovered``."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.units import GB
from edgemigrate.planning import PlanningError, covered_users, make_planner, plan_covered

from .tiny import servers, snapshot, users


def _one_uncovered(n: int = 3):
    u = users(n)
    now, nxt = u.rssi_now_dbm.copy(), u.rssi_next_dbm.copy()
    now[1], nxt[1] = -95.0, -99.0  # user 1 hears nothing above -82 dBm, now or at t'
    return snapshot(srv=servers(cloud=2), usr=users(n, rssi_now_dbm=now, rssi_next_dbm=nxt))


@pytest.mark.parametrize("name", ["cloud", "random", "nearest", "orchestrated"])
def test_the_covered_users_are_planned_and_the_uncovered_one_stays(name: str) -> None:
    snap = _one_uncovered()
    planner = make_planner(name)
    with pytest.raises(PlanningError):  # what happened before: one user sinks the round
        planner.plan(snap, np.random.default_rng(0))
    plan = plan_covered(planner, snap, np.random.default_rng(0))
    assert plan.uncovered.tolist() == [1]
    assert plan.server[1] == 0 and plan.bs[1] == 0 and np.isnan(plan.migration_at_s[1])
    assert np.isnan(plan.handover_at_s[1]) and plan.downtime_s[1] == 0 and np.isinf(plan.delay_s[1])
    # the others hand over to BS 1 (stronger at t' by 15 dB) as they would without user 1
    assert plan.bs[[0, 2]].tolist() == [1, 1] and np.all(np.isfinite(plan.delay_s[[0, 2]]))
    assert np.isfinite(plan.cost_s)


def test_uncovered_users_keep_their_capacity_on_their_server() -> None:
    # server 0 and 1 have room for one user each (1 core); the uncovered user 1 occupies server 0
    snap = _one_uncovered(2)
    snap = snapshot(srv=servers(cpu_cores=np.array([1.0, 1.0, 1.0]), memory_bytes=np.full(3, 1 * GB)),
                    usr=snap.users)
    plan = plan_covered(make_planner("orchestrated"), snap, np.random.default_rng(0))
    assert plan.uncovered.tolist() == [1] and plan.server[0] != 0


def test_nobody_covered_is_an_empty_round_not_an_error() -> None:
    snap = snapshot()
    dead = np.full_like(snap.users.rssi_now_dbm, -120.0)
    snap = snapshot(usr=users(2, rssi_now_dbm=dead, rssi_next_dbm=dead))
    assert not covered_users(snap).any()
    plan = plan_covered(make_planner("nearest"), snap, np.random.default_rng(0))
    assert plan.uncovered.tolist() == [0, 1] and np.all(np.isnan(plan.migration_at_s))


def test_a_fully_covered_round_is_the_planner_s_own_plan() -> None:
    snap = snapshot()
    a = plan_covered(make_planner("orchestrated"), snap, np.random.default_rng(0))
    b = make_planner("orchestrated").plan(snap, np.random.default_rng(0))
    assert a.uncovered.size == 0 and a.server.tolist() == b.server.tolist() and a.bs.tolist() == b.bs.tolist()
