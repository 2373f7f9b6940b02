"""Simulator step cost: ms per simulated step and us per user-step, nearest-node policy.

One JSON line per configuration, e.g.
    {"bench": "sim_step", "users": 10000, "nodes": 1000, "ms_per_step": 4.2, "us_per_user_step": 0.42, ...}

Usage: python benchmarks/bench_sim.py                 # the 3 x 3 grid of 100/1,000/10,000 users x 9/100/1,000 nodes
       python benchmarks/bench_sim.py --users 10000 --nodes 1000

World: nodes on a square grid with ~500 m spacing (coverage 600 m), users moving taxi-like in the grid's
area, real Docker Hub images, the task distributions of Liu et al. 2024 (sec. VI-A), 1 s ticks, 0.01 tasks
per user per second (mean task lifetime 120 s, so ~1.2 running tasks per user at steady state). The first ``--warmup`` ticks
(which fill the system) are run but not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from edgemigrate.core.geo import Area
from edgemigrate.model.nodes import BaseStations, CloudNode, EdgeNodes
from edgemigrate.model.topology import manhattan_grid
from edgemigrate.model.workload import WorkloadSpec
from edgemigrate.policies import make_policy
from edgemigrate.sim import SimParams, Simulator, World, zipf_probs

SPACING_M = 500.0


def build(users: int, nodes: int, steps: int, seed: int) -> Simulator:
    from edgemigrate.datasets.layers import bundled_catalog
    from edgemigrate.mobility import TaxiLike

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(nodes)))
    ij = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:nodes]
    xy = (ij + 0.5) * SPACING_M
    n = len(xy)
    en = EdgeNodes(xy_m=xy, cpu_hz=np.full(n, 128e9), memory_bytes=np.full(n, 64e9),
                   storage_bytes=rng.uniform(30e9, 100e9, n), wired_bps=rng.uniform(800e6, 1024e6, n),
                   backhaul_bps=rng.uniform(400e6, 600e6, n), max_containers=np.full(n, 30),
                   coverage_m=np.full(n, 600.0), idle_power_w=np.full(n, 100.0), max_power_w=np.full(n, 250.0))
    st = BaseStations(xy_m=xy, coverage_m=np.full(n, 600.0), max_users=np.full(n, 10_000), node=np.arange(n))
    catalog = bundled_catalog()
    world = World(nodes=en, stations=st, cloud=CloudNode(), backhaul=manhattan_grid(xy, SPACING_M), catalog=catalog,
                  workload=WorkloadSpec(arrival_rate_per_user_s=0.01, mean_duration_s=120.0),
                  image_probs=zipf_probs(catalog.n_images, 1.0, rng))
    area = Area(0.0, 0.0, side * SPACING_M, side * SPACING_M)
    return Simulator(world, TaxiLike(users, area), SimParams(dt_s=1.0, n_steps=steps), seed=seed)


def measure(users: int, nodes: int, steps: int, warmup: int, seed: int) -> dict:
    t0 = time.perf_counter()
    sim = build(users, nodes, warmup + steps, seed)
    build_s = time.perf_counter() - t0
    policy = make_policy("nearest", seed=seed)
    for _ in range(warmup):
        sim.step(policy)
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.step(policy)
    el = time.perf_counter() - t0
    s = sim.recorder.step_table()
    ms = 1000 * el / steps
    return {"bench": "sim_step", "users": users, "nodes": nodes, "ms_per_step": round(ms, 3),
            "us_per_user_step": round(1000 * ms / users, 4), "steps": steps, "warmup": warmup,
            "decisions_per_step": round(float(s["decisions"][warmup:].mean()), 1),
            "running_tasks": int(s["tasks_edge"][-1] + s["tasks_cloud"][-1]), "build_s": round(build_s, 2),
            "policy": "nearest", "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="*", default=[100, 1000, 10000])
    ap.add_argument("--nodes", type=int, nargs="*", default=[9, 100, 1000])
    ap.add_argument("--steps", type=int, default=100, help="timed ticks per configuration")
    ap.add_argument("--warmup", type=int, default=150, help="untimed ticks first (the system fills up)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for u in a.users:
        for n in a.nodes:
            print(json.dumps(measure(u, n, a.steps, a.warmup, a.seed)), flush=True)


if __name__ == "__main__":
    main()
