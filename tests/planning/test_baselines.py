"""Cloud, random and nearest planners (Ngo et al. 2020, sec. V-A), the registry and the package's layering."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.planning import (
    PLANNERS,
    CloudPlanner,
    NearestPlanner,
    OrchestratedPlanner,
    Planner,
    PlanningError,
    RandomPlanner,
    Timing,
    hysteresis_bs,
    make_planner,
)
from edgemigrate.planning.synthetic import synthetic_snapshot
from tests.planning import tiny

RNG = np.random.default_rng(0)


def three_user_rssi() -> tuple[np.ndarray, np.ndarray]:
    """User 0: BS 1 beats BS 0 by 2 dB at t'; user 1: by 10 dB; user 2: by 1 dB, with BS 0 at -80.5 dBm."""
    now = np.array([[-60.0, -70.0], [-60.0, -70.0], [-60.0, -70.0]])
    nxt = np.array([[-70.0, -68.0], [-72.0, -62.0], [-80.5, -79.5]])
    return now, nxt


@pytest.mark.parametrize(("min_rssi", "expected"), [(-81.0, [0, 1, 0]), (-80.0, [0, 1, 1])])
def test_hysteresis_keeps_switches_and_leaves_a_lost_link(min_rssi: float, expected: list[int]) -> None:
    # with a -80 dBm minimum user 2's BS 0 is lost at t', so it switches although BS 1 is only 1 dB better
    now, nxt = three_user_rssi()
    snap = tiny.snapshot(usr=tiny.users(3, rssi_now_dbm=now, rssi_next_dbm=nxt), hysteresis_db=3.0,
                         min_rssi_dbm=min_rssi)
    assert list(hysteresis_bs(snap)) == expected


def test_hysteresis_respects_bs_room() -> None:
    usr = tiny.users(3)  # all three move from BS 0 to BS 1 (15 dB better at t')
    snap = tiny.snapshot(usr=usr, base=tiny.bss(max_users=np.array([3, 1])))
    assert list(hysteresis_bs(snap)) == [1, 0, 0]  # BS 1 is full after user 0: the others keep BS 0
    full = tiny.snapshot(usr=usr, base=tiny.bss(max_users=np.array([1, 1])))
    with pytest.raises(PlanningError, match="user 2.*3e"):
        hysteresis_bs(full)


def test_cloud_planner_puts_every_container_on_the_cloud() -> None:
    snap = synthetic_snapshot(40, 6, 8, seed=2)
    plan = CloudPlanner().plan(snap, RNG)
    assert np.all(snap.servers.is_cloud[plan.server])
    assert plan.timing is Timing.SEQUENTIAL
    with pytest.raises(PlanningError, match="is_cloud"):
        CloudPlanner().plan(tiny.snapshot(), RNG)


def test_nearest_planner_follows_the_new_bs_and_falls_back() -> None:
    # both users move to BS 1; server 1 (co-located) has room for one, the other goes to server 2 (20 ms)
    srv = tiny.servers(3, cpu_cores=np.array([8.0, 1.0, 8.0]))
    base = tiny.bss(2, 3)
    snap = tiny.snapshot(srv, base)
    plan = NearestPlanner().plan(snap, RNG)
    assert list(plan.bs) == [1, 1] and list(plan.server) == [1, 0]  # server 0 and 2 tie at 20 ms: lower index
    cloud_only = tiny.snapshot(tiny.servers(3, cloud=2, cpu_cores=np.array([0.5, 0.5, 8.0])), base,
                               tiny.users(2, server=np.array([2, 2])))
    assert list(NearestPlanner().plan(cloud_only, RNG).server) == [2, 2]  # no edge server fits: the cloud


def test_users_without_a_handover_keep_their_server() -> None:
    usr = tiny.users(2, rssi_next_dbm=np.array([[-75.0, -60.0], [-60.0, -75.0]]))  # user 1 stays on BS 0
    snap = tiny.snapshot(usr=usr)
    for planner in (NearestPlanner(), RandomPlanner()):
        plan = planner.plan(snap, RNG)
        assert plan.bs[1] == 0 and plan.server[1] == 0


def test_random_planner_is_seeded_and_keeps_capacities() -> None:
    snap = synthetic_snapshot(80, 10, 12, seed=4, edge_cores=4.0, max_users_per_bs=12)
    a = RandomPlanner().plan(snap, np.random.default_rng(1))
    b = RandomPlanner().plan(snap, np.random.default_rng(1))
    c = RandomPlanner().plan(snap, np.random.default_rng(2))
    assert np.array_equal(a.server, b.server)
    assert not np.array_equal(a.server, c.server)
    for plan in (a, c):
        assert tiny.feasible(snap, plan.server, plan.bs)


def test_sequential_outages_add_up_and_coordinated_ones_do_not() -> None:
    # one user, moves to BS 1 and server 1: T_pre (20 MB over 100 Mbit/s = 1.6 s + checkpoint) > T_ho = 0.5 s
    snap = tiny.snapshot(usr=tiny.users(1))
    seq = NearestPlanner().plan(snap, RNG)
    orch = OrchestratedPlanner(mip_rel_gap=0.0).plan(snap, RNG)
    assert (seq.server[0], seq.bs[0]) == (orch.server[0], orch.bs[0]) == (1, 1)
    t_mig = seq.downtime_s[0] - snap.handover_s
    assert seq.migration_at_s[0] - seq.handover_at_s[0] > snap.handover_s  # two outages, apart
    assert orch.downtime_s[0] == pytest.approx(max(t_mig, snap.handover_s))
    assert orch.migration_at_s[0] == orch.handover_at_s[0]


def test_orchestrated_never_worse_than_a_baseline_on_its_own_objective() -> None:
    snap = synthetic_snapshot(40, 6, 8, seed=9)
    best = OrchestratedPlanner(k=None, mip_rel_gap=0.0).plan(snap, RNG)
    for name in ("cloud", "random", "nearest"):
        plan = make_planner(name).plan(snap, np.random.default_rng(3))
        assert best.cost_s <= plan.cost_s + 1e-9


def test_registry_and_protocol() -> None:
    assert PLANNERS.names() == ["cloud", "nearest", "orchestrated", "random"]
    for name in PLANNERS.names():
        assert isinstance(make_planner(name), Planner)
    assert make_planner("orchestrated", k=3).k == 3
    with pytest.raises(ConfigError, match="did you mean 'nearest'"):
        make_planner("nearst")


def test_planning_imports_no_upper_layer() -> None:
    code = ("import sys, edgemigrate.planning, edgemigrate.planning.synthetic, edgemigrate.costs.handover\n"
            "bad = [m for m in sys.modules if m.split('.')[:2] in ([\"edgemigrate\", x] for x in "
            "('sim', 'envs', 'policies', 'control', 'engine', 'testbed', 'experiments'))]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
