"""The orchestrated MILP (Ngo et al. 2020, sec. IV-A) against exhaustive search, and each of 3b-3e."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.units import GB
from edgemigrate.planning import OrchestratedPlanner, PlanningError, Snapshot, Timing, triggered_users
from edgemigrate.planning.estimate import pair_cost_s
from edgemigrate.planning.milp import candidates, solve
from edgemigrate.planning.synthetic import synthetic_snapshot
from tests.planning import tiny

RNG = np.random.default_rng(0)


def exact(k: int | None = None) -> OrchestratedPlanner:
    return OrchestratedPlanner(k=k, mip_rel_gap=0.0)


def random_tiny(seed: int) -> Snapshot:
    """3 users, 3 servers (one cloud), 2 BSs with random sizes, delays, RSSIs and tight capacities."""
    rng = np.random.default_rng(seed)
    U, S, B = 3, 3, 2
    srv = tiny.servers(S, cloud=2, cpu_power=rng.uniform(500, 2000, S), cpu_cores=np.array([2.0, 2.0, 3.0]),
                       psi=rng.uniform(1e-6, 5e-6, S), rho=rng.uniform(1e-6, 5e-6, S),
                       link_bps=rng.uniform(20e6, 200e6, (S, S)))
    base = tiny.bss(B, S, rtt_s=rng.uniform(0.001, 0.1, (B, S)), backhaul_bps=rng.uniform(10e6, 1e9, (B, S)),
                    max_users=np.array([2, 2]))
    rssi_now = rng.uniform(-85, -50, (U, B))
    rssi_next = rng.uniform(-85, -50, (U, B))
    cur_bs = rng.integers(0, B, U)
    rssi_now[np.arange(U), cur_bs] = rng.uniform(-70, -50, U)  # the current link holds at t' (gain defined)
    rssi_next[np.arange(U), cur_bs] = rng.uniform(-80, -60, U)
    usr = tiny.users(U, B, server=rng.integers(0, S, U), bs=cur_bs, rssi_now_dbm=rssi_now, rssi_next_dbm=rssi_next,
                     task_bytes=rng.uniform(10e3, 500e3, U), tasks=rng.uniform(1, 100, U),
                     proc_s=rng.uniform(0, 0.5, U), cpu_cores=rng.uniform(0.5, 1.5, U),
                     image_bytes=rng.uniform(10e6, 500e6, U), checkpoint_bytes=rng.uniform(5e6, 100e6, U),
                     delta_bytes=rng.uniform(0.1e6, 5e6, U))
    return tiny.snapshot(srv, base, usr, hysteresis_db=float(rng.uniform(0, 6)))


@pytest.mark.parametrize("seed", range(12))
def test_milp_matches_brute_force(seed: int) -> None:
    snap = random_tiny(seed)
    best = tiny.brute_force(snap)
    assert best is not None
    plan = exact().plan(snap, RNG)
    assert plan.optimal is True
    assert tiny.feasible(snap, plan.server, plan.bs)
    assert plan.profit_s == pytest.approx(best.profit_s, rel=1e-9, abs=1e-9)
    assert plan.cost_s == pytest.approx(best.cost_s, rel=1e-9, abs=1e-9)


def test_pruned_plan_never_beats_the_unpruned_optimum() -> None:
    snap = synthetic_snapshot(60, 10, 12, seed=3, max_users_per_bs=6, edge_cores=4.0)
    full = exact(None).plan(snap, RNG)
    for k in (2, 4, 8):
        pruned = exact(k).plan(snap, RNG)
        assert pruned.candidates < full.candidates
        assert tiny.feasible(snap, pruned.server, pruned.bs)
        assert pruned.cost_s >= full.cost_s - 1e-6 * abs(full.cost_s)


def test_3b_every_user_gets_exactly_one_pair_even_when_all_pairs_cost() -> None:
    # every pair has a positive objective coefficient: without 3b the minimum would assign nobody
    snap = tiny.snapshot()
    cand = candidates(snap, None)
    assert np.all(cand.cost > 0)
    chosen, optimal = solve(snap, cand, mip_rel_gap=0.0)
    assert optimal and chosen is not None
    assert np.array_equal(np.sort(cand.user[chosen]), np.arange(snap.users.n))


@pytest.mark.parametrize("resource", ["cpu_cores", "memory_bytes", "disk_bytes"])
def test_3c_server_capacity_moves_the_second_user(resource: str) -> None:
    # both users would take server 1 (co-located with the BS they move to); it only has room for one
    caps = {"cpu_cores": np.full(3, 8.0), "memory_bytes": np.full(3, 16 * GB), "disk_bytes": np.full(3, 100 * GB)}
    need = {"cpu_cores": 6.0, "memory_bytes": 10 * GB, "disk_bytes": 60 * GB}
    srv = tiny.servers(3, cpu_power=np.array([1000.0, 4000.0, 1000.0]), **caps)
    usr = tiny.users(2, proc_s=np.full(2, 1.0), tasks=np.full(2, 100.0), **{resource: np.full(2, need[resource])})
    unconstrained = tiny.snapshot(srv, usr=tiny.users(2, proc_s=np.full(2, 1.0), tasks=np.full(2, 100.0)))
    assert list(exact().plan(unconstrained, RNG).server) == [1, 1]
    snap = tiny.snapshot(srv, usr=usr)
    plan = exact().plan(snap, RNG)
    assert sorted(plan.server.tolist()).count(1) == 1
    assert tiny.feasible(snap, plan.server, plan.bs)


@pytest.mark.parametrize("which", ["rssi_now_dbm", "rssi_next_dbm"])
def test_3d_never_a_bs_below_the_minimum_rssi_now_or_at_t_prime(which: str) -> None:
    # BS 1 is the one to move to (strong at t'); pull one of its two RSSIs below the minimum
    base = tiny.users(1)
    free = tiny.snapshot(usr=base)
    assert exact().plan(free, RNG).bs[0] == 1
    rssi = np.array(getattr(base, which))
    rssi[0, 1] = -83.0
    snap = tiny.snapshot(usr=tiny.users(1, **{which: rssi}))
    plan = exact().plan(snap, RNG)
    assert plan.bs[0] == 0


def test_3d_no_usable_bs_is_a_planning_error_naming_the_user() -> None:
    usr = tiny.users(2, rssi_now_dbm=np.array([[-60.0, -75.0], [-90.0, -95.0]]))
    with pytest.raises(PlanningError, match="user 1"):
        exact().plan(tiny.snapshot(usr=usr), RNG)


def test_3e_bs_user_limit() -> None:
    free = tiny.snapshot()
    assert list(exact().plan(free, RNG).bs) == [1, 1]
    snap = tiny.snapshot(base=tiny.bss(max_users=np.array([10, 1])))
    plan = exact().plan(snap, RNG)
    assert sorted(plan.bs.tolist()) == [0, 1]


def test_infeasible_round_raises() -> None:
    srv = tiny.servers(3, cpu_cores=np.full(3, 0.5))
    with pytest.raises(PlanningError, match="3c"):
        exact().plan(tiny.snapshot(srv), RNG)


def test_pruned_model_infeasible_falls_back_to_the_unpruned_one() -> None:
    # three users on server 2 all prefer server 0; each server holds one. With k = 1 every user's candidates
    # are {server 0, its current server 2}: three users, two places. Server 1 (only unpruned) is needed.
    srv = tiny.servers(3, cpu_cores=np.full(3, 1.0), cpu_power=np.array([4000.0, 1000.0, 1000.0]))
    base = tiny.bss(2, 3, max_users=np.array([10, 10]))
    usr = tiny.users(3, server=np.full(3, 2), proc_s=np.full(3, 1.0))
    snap = tiny.snapshot(srv, base, usr)
    cand = candidates(snap, 1)
    assert set(cand.server.tolist()) == {0, 2}
    assert solve(snap, cand, 0.0)[0] is None
    plan = exact(1).plan(snap, RNG)
    assert sorted(plan.server.tolist()) == [0, 1, 2]


def test_candidates_price_pairs_like_the_cost_model() -> None:
    snap = synthetic_snapshot(30, 6, 8, seed=5)
    cand = candidates(snap, 3)
    np.testing.assert_allclose(cand.cost, pair_cost_s(snap, cand.user, cand.bs, cand.server))
    # each user keeps its cheapest admissible pair, a pair on its current server and one on the cloud
    full = candidates(snap, None)
    cloud = int(np.flatnonzero(snap.servers.is_cloud)[0])
    for u in range(snap.users.n):
        mine = cand.user == u
        assert cand.cost[mine].min() == pytest.approx(full.cost[full.user == u].min())
        assert np.any(cand.server[mine] == snap.users.server[u])
        assert np.any(cand.server[mine] == cloud)


def test_plan_is_coordinated_and_deterministic() -> None:
    snap = synthetic_snapshot(80, 12, 12, seed=7)
    a = OrchestratedPlanner().plan(snap, np.random.default_rng(1))
    b = OrchestratedPlanner().plan(snap, np.random.default_rng(2))
    assert a.timing is Timing.COORDINATED
    assert np.array_equal(a.server, b.server) and np.array_equal(a.bs, b.bs)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"mip_rel_gap": -0.1}, {"mip_rel_gap": 1.0}, {"time_limit_s": 0.0}])
def test_bad_parameters(kwargs: dict) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValidationError, match=name):
        OrchestratedPlanner(**kwargs)


def test_triggered_users_are_due_handovers_lost_links_and_sla_misses() -> None:
    # user 0 moves to BS 1 (15 dB better at t'); user 1 stays (BS 0 still strongest); user 2 stays on BS 0 but
    # its link fails 3d at t'; with an SLA, user 1's 0.1 s processing + transfer breaks a 0.05 s SLA
    nxt = np.array([[-75.0, -60.0], [-60.0, -75.0], [-81.0, -81.5]])
    snap = tiny.snapshot(usr=tiny.users(3, rssi_next_dbm=nxt), min_rssi_dbm=-80.0)
    assert list(triggered_users(snap)) == [True, False, True]
    assert list(triggered_users(snap, sla_s=0.05)) == [True, True, True]
    assert list(triggered_users(snap, sla_s=1.0)) == [True, False, True]


def test_users_outside_replan_keep_their_pair_and_take_capacity() -> None:
    # both users would move to server 1 (fast CPU, co-located with BS 1); only user 0 is replanned
    srv = tiny.servers(3, cpu_power=np.array([1000.0, 4000.0, 1000.0]))
    usr = tiny.users(2, proc_s=np.full(2, 1.0))
    snap = tiny.snapshot(srv, usr=usr)
    assert list(exact().plan(snap, RNG).server) == [1, 1]
    held = replace(snap, replan=np.array([True, False]))
    plan = exact().plan(held, RNG)
    assert (plan.server[1], plan.bs[1]) == (0, 0)
    assert (plan.server[0], plan.bs[0]) == (1, 1)
    # a held user's container still counts: user 1 sits on server 1, which has one core, so user 0 stays off it
    srv1 = tiny.servers(3, cpu_power=np.array([1000.0, 4000.0, 1000.0]), cpu_cores=np.array([8.0, 1.0, 8.0]))
    usr1 = tiny.users(2, proc_s=np.full(2, 1.0), server=np.array([0, 1]), bs=np.array([0, 1]))
    plan = exact().plan(tiny.snapshot(srv1, usr=usr1, replan=np.array([True, False])), RNG)
    assert plan.server[1] == 1 and plan.server[0] != 1


def test_a_held_user_whose_link_is_lost_is_replanned_anyway() -> None:
    nxt = np.array([[-75.0, -60.0], [-85.0, -60.0]])  # user 1's BS 0 is unusable at t'
    snap = tiny.snapshot(usr=tiny.users(2, rssi_next_dbm=nxt), replan=np.array([True, False]))
    plan = exact().plan(snap, RNG)
    assert plan.bs[1] == 1


def test_held_users_that_block_everyone_fall_back_to_a_full_replan() -> None:
    # one core per server. Held on server 0, user 1 leaves user 0 nowhere (server 1 lacks the memory for
    # user 0's container). Replanning both fits: user 0 on server 0, user 1 on server 1.
    srv = tiny.servers(2, cpu_cores=np.ones(2), memory_bytes=np.array([16 * GB, 0.5 * GB]))
    usr = tiny.users(2, memory_bytes=np.array([1 * GB, 0.1 * GB]))
    snap = tiny.snapshot(srv, tiny.bss(2, 2), usr, replan=np.array([True, False]))
    plan = exact().plan(snap, RNG)
    assert list(plan.server) == [0, 1]


def test_orchestrated_trigger_times_follow_the_coordinated_schedule() -> None:
    snap = synthetic_snapshot(120, 12, 12, seed=11, max_users_per_bs=15)
    plan = OrchestratedPlanner().plan(snap, RNG)
    both = (plan.server != snap.users.server) & (plan.bs != snap.users.bs)
    on_time = both & (plan.migration_at_s == plan.handover_at_s)
    assert on_time.any()
    # pre-migration ends, with the 10 % margin, when the migration starts; never triggered in the past
    assert np.all(plan.premigration_at_s[both] >= snap.now_s)
    late = both & ~on_time  # pre-migration could not finish by the handover: started now, migration after it
    np.testing.assert_allclose(plan.premigration_at_s[late], snap.now_s)
    assert np.all(plan.migration_at_s[late] > plan.handover_at_s[late])
    assert np.all(np.isnan(plan.migration_at_s[plan.server == snap.users.server]))
    assert np.all(np.isnan(plan.handover_at_s[plan.bs == snap.users.bs]))
    assert np.all(plan.handover_at_s[plan.bs != snap.users.bs] <= snap.now_s + snap.horizon_s + 1e-9)


def test_solving_prints_nothing_on_stdout() -> None:
    # benchmarks and the CLI write JSON lines to stdout; HiGHS's banner must not land between them
    code = ("import numpy as np\nfrom edgemigrate.planning import OrchestratedPlanner\n"
            "from edgemigrate.planning.synthetic import synthetic_snapshot\n"
            "OrchestratedPlanner().plan(synthetic_snapshot(20, 4, 4, 0), np.random.default_rng(0))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""
