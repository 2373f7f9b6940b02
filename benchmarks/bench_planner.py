"""Orchestrated planner (Ngo et al. 2020, sec. IV-A MILP): plan time, pruning gap, and a city-scale round.

JSON lines:
    {"bench": "planner_milp", "users": 200, "servers": 50, "bss": 50, "solve_s": ..., "pruned_k": 8,
     "objective": ..., "gap_vs_unpruned": ..., ...}     one per seed
    {"bench": "planner_city", "users": 2000, ...}         one city-scale planning round, all four planners
                                                          (orchestrated: triggered users only, and all users)

``solve_s`` is the median wall time of ``OrchestratedPlanner(k).plan`` (candidate pricing + HiGHS + the
plan's estimates) over ``--repeats`` runs, with its default 0.5 % MIP gap; ``objective`` is that plan's
G - C (eq. 3a, seconds; users whose current link is lost at t' count only their downtime). The gap is measured
between exact solves (MIP gap 0) of the pruned and the unpruned model on the same instance:
(cost_pruned - cost_unpruned) / cost_unpruned, on the minimised cost sum n d + DT, which differs from
-(G - C) by a constant, so the difference is the same and the ratio stays defined when G - C is near 0.

Usage: python benchmarks/bench_planner.py                       # 200 x 50 x 50, seeds 0-2, then the city round
       python benchmarks/bench_planner.py --seeds 0 --no-city --k 4 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from importlib.metadata import version

import numpy as np

from edgemigrate.planning import OrchestratedPlanner, make_planner, triggered_users
from edgemigrate.planning.synthetic import synthetic_snapshot


def machine() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(), "highspy": version("highspy")}


def timed(planner: object, snap: object, repeats: int) -> tuple[float, object]:
    times, plan = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = planner.plan(snap, np.random.default_rng(0))  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), plan


def milp_line(users: int, servers: int, bss: int, seed: int, k: int, repeats: int, gap_time_limit_s: float) -> dict:
    snap = synthetic_snapshot(users, servers, bss, seed)
    solve_s, plan = timed(OrchestratedPlanner(k=k), snap, repeats)
    pruned_s, pruned = timed(OrchestratedPlanner(k=k, mip_rel_gap=0.0), snap, 1)
    full_s, full = timed(OrchestratedPlanner(k=None, mip_rel_gap=0.0, time_limit_s=gap_time_limit_s), snap, 1)
    gap = (pruned.cost_s - full.cost_s) / full.cost_s
    return {"bench": "planner_milp", "users": users, "servers": servers, "bss": bss, "seed": seed,
            "solve_s": round(solve_s, 4), "pruned_k": k, "candidates": plan.candidates, "optimal": plan.optimal,
            "objective": round(plan.profit_s, 4), "cost_s": round(plan.cost_s, 4),
            "migrations": int(np.sum(plan.server != snap.users.server)),
            "handovers": int(np.sum(plan.bs != snap.users.bs)),
            "gap_vs_unpruned": round(gap, 6), "exact_pruned_s": round(pruned_s, 3),
            "unpruned_s": round(full_s, 3), "unpruned_candidates": full.candidates,
            "pruned_profit_s": round(pruned.profit_s, 4), "unpruned_profit_s": round(full.profit_s, 4),
            "unpruned_optimal": full.optimal, **machine()}


def city_line(users: int, servers: int, bss: int, max_users_per_bs: int, seed: int, k: int) -> dict:
    """One planning round of a city: the baselines, then the orchestrated planner twice - for the users whose
    monitor triggered it (``triggered_users``: a handover is due by t'; the rest keep their placement, as in
    Ngo et al. 2020, sec. III) and, jointly, for all users."""
    t0 = time.perf_counter()
    snap = synthetic_snapshot(users, servers, bss, seed, max_users_per_bs=max_users_per_bs)
    build_s = time.perf_counter() - t0
    trig = triggered_users(snap)
    out: dict = {"bench": "planner_city", "users": users, "servers": servers, "bss": bss,
                 "max_users_per_bs": max_users_per_bs, "seed": seed, "pruned_k": k, "snapshot_s": round(build_s, 3),
                 "triggered_users": int(trig.sum())}
    runs = [(name, make_planner(name), snap) for name in ("cloud", "random", "nearest")]
    runs += [("orchestrated_triggered", OrchestratedPlanner(k=k), replace(snap, replan=trig)),
             ("orchestrated_all", OrchestratedPlanner(k=k), snap)]
    for name, planner, s in runs:
        plan_s, plan = timed(planner, s, 1)
        out[f"{name}_plan_s"] = round(plan_s, 3)
        out[f"{name}_objective"] = round(plan.profit_s, 2)
        out[f"{name}_downtime_s"] = round(float(plan.downtime_s.sum()), 2)
        if name.startswith("orchestrated"):
            out[f"{name}_optimal"] = plan.optimal
            out[f"{name}_candidates"] = plan.candidates
    return {**out, **machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--servers", type=int, default=50)
    ap.add_argument("--bss", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--k", type=int, nargs="*", default=[8], help="pruning widths to measure")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per line (the median is reported)")
    ap.add_argument("--gap-time-limit", type=float, default=300.0, help="s for the unpruned exact solve")
    ap.add_argument("--no-city", action="store_true", help="skip the 2,000-user round")
    a = ap.parse_args()
    for seed in a.seeds:
        for k in a.k:
            print(json.dumps(milp_line(a.users, a.servers, a.bss, seed, k, a.repeats, a.gap_time_limit)), flush=True)
    if not a.no_city:
        print(json.dumps(city_line(2000, 200, 200, 20, 0, a.k[0])), flush=True)


if __name__ == "__main__":
    main()
