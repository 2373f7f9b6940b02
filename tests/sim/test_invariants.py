"""Simulator invariants under random worlds and policies (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemigrate.model.workload import WorkloadSpec
from edgemigrate.policies import make_policy
from edgemigrate.sim import Simulator

from .worlds import grid_world, make_sim


def check_invariants(sim: Simulator) -> None:
    t, ns, n = sim.tasks, sim.nodes, sim.world.n_nodes
    alive = t.alive_ids()
    node = t.node[alive]
    # each task on exactly one node or the cloud, or queued (-1) and then present once in the queue
    assert ((node >= -1) & (node <= n)).all()
    queued = alive[node == -1]
    assert sorted(queued.tolist()) == sorted(sim.queue.tolist())
    assert len(set(sim.queue.tolist())) == len(sim.queue)
    # container counts match the tasks and never exceed capacity
    counts = np.bincount(node[node >= 0], minlength=n + 1)
    np.testing.assert_array_equal(counts, ns.containers)
    assert (ns.containers[:n] <= sim.world.nodes.max_containers).all()
    # CPU stays below the threshold of Liu et al. 2024, eq. 12, after every tick
    assert (ns.cpu_used_hz[:n] <= sim._cpu_cap[:n] * (1 + 1e-9) + 1e-3).all()
    # storage: stored layers never exceed capacity and match the cache
    finite = np.isfinite(ns.completion_s)
    np.testing.assert_allclose(ns.stored_bytes[:n], finite[:n].astype(float) @ sim.layer_sizes, rtol=1e-9, atol=1)
    assert (ns.stored_bytes[:n] <= sim.world.nodes.storage_bytes + 1).all()
    # layer caches consistent with the FIFO download queue: nothing completes after the queue drains
    comp = np.where(finite, ns.completion_s, -np.inf)
    assert (comp.max(axis=1) <= ns.queue_free_at_s + 1e-9).all()
    # reference counts equal the layers of placed tasks; referenced layers are cached
    ref = np.zeros_like(ns.refcount)
    placed = alive[node >= 0]
    for task in placed:
        ref[t.node[task], sim.image_layers[t.image[task]]] += 1
    np.testing.assert_array_equal(ref, ns.refcount)
    assert finite[ns.refcount > 0].all()
    np.testing.assert_allclose(ns.active_bytes, (ns.refcount > 0).astype(float) @ sim.layer_sizes, rtol=1e-9, atol=1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(["nearest", "monkey", "cloud"]),
       storage_gb=st.sampled_from([2.0, 5.0, 60.0]), max_containers=st.integers(1, 12),
       rate=st.floats(0.005, 0.2), max_decisions=st.integers(0, 5))
def test_invariants_hold_every_tick(seed: int, policy: str, storage_gb: float, max_containers: int, rate: float,
                                    max_decisions: int) -> None:
    world = grid_world(seed=seed, storage_bytes=storage_gb * 1e9, max_containers=max_containers,
                       workload=WorkloadSpec(arrival_rate_per_user_s=rate, mean_duration_s=40.0))
    sim = make_sim(n_users=30, n_steps=25, seed=seed, world=world, max_decisions_per_step=max_decisions)
    pol = make_policy(policy, seed=seed)
    while not sim.done:
        sim.step(pol)
        check_invariants(sim)


def _fingerprint(sim: Simulator) -> tuple:
    d = sim.recorder.decisions
    s = sim.recorder.step_table()
    return tuple(np.concatenate([d[k].astype(float) for k in ("task", "node", "total_s")]).tolist()) + \
        tuple(s["tasks_edge"].tolist())


def test_same_seed_same_results_and_no_shared_state() -> None:
    a, b = make_sim(seed=3, n_steps=40), make_sim(seed=3, n_steps=40)
    pa, pb = make_policy("monkey", seed=3), make_policy("monkey", seed=3)
    # interleave two simulators in one process: they must not influence each other
    while not a.done:
        a.step(pa)
        b.step(pb)
    c = make_sim(seed=3, n_steps=40)
    c.run(make_policy("monkey", seed=3))
    assert _fingerprint(a) == _fingerprint(b) == _fingerprint(c)
    d = make_sim(seed=4, n_steps=40)
    d.run(make_policy("monkey", seed=4))
    assert _fingerprint(d) != _fingerprint(a)


def test_reset_replays_identically() -> None:
    sim = make_sim(seed=5, n_steps=30)
    sim.run(make_policy("nearest"))
    first = _fingerprint(sim)
    sim.reset(5)
    sim.run(make_policy("nearest"))
    assert _fingerprint(sim) == first


def test_passive_migration_when_user_leaves_coverage() -> None:
    sim = make_sim(n_users=80, n_steps=60, seed=1)
    rec = sim.run(make_policy("nearest"))
    d = rec.decisions
    passive = d["kind"] == 2
    assert passive.sum() > 0
    assert (d["prev_node"][passive] >= 0).all()  # a migrated task had a node


def test_proactive_migration_when_cpu_threshold_crossed() -> None:
    # few containers' worth of CPU per node: demand fluctuation pushes nodes over the 80 % line
    world = grid_world(seed=2, workload=WorkloadSpec(arrival_rate_per_user_s=0.2, mean_duration_s=300.0,
                                                      cpu_request_hz=(20e9, 40e9)))
    sim = make_sim(n_users=60, n_steps=80, seed=2, world=world)
    rec = sim.run(make_policy("nearest"))
    assert rec.step_table()["migrations_proactive"].sum() > 0


def test_cloud_only_never_uses_edge_and_layer_cache_warms() -> None:
    sim = make_sim(n_users=40, n_steps=40, seed=7)
    rec = sim.run(make_policy("cloud"))
    d = rec.decisions
    assert (d["node"] == sim.world.n_nodes).all()
    assert (sim.nodes.containers[: sim.world.n_nodes] == 0).all()
    # a repeated image downloads nothing the second time: some decisions have D = 0
    assert (d["download_s"] == 0).any() and (d["download_s"] > 0).any()


def test_infeasible_choice_falls_back_to_cloud() -> None:
    world = grid_world(seed=0, max_containers=1, workload=WorkloadSpec(arrival_rate_per_user_s=0.5))
    sim = make_sim(n_users=50, n_steps=5, seed=0, world=world)
    rec = sim.run(make_policy("nearest"))
    d = rec.decisions
    assert d["fallback"].any()
    assert (d["node"][d["fallback"]] == sim.world.n_nodes).all()
