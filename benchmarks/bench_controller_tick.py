"""The city-scale controller tick: monitor triggers -> planner -> deployment over the simulator backend.

One tick is what :meth:`edgemigrate.controller.sim.SimController.tick` does: move every user one ``tick_s``,
build the snapshot from the simulated state, find the triggered users (Ngo et al. 2020, sec. III), plan for
them and run the plan's actions through the controller's Deployment into an in-memory SQLite store. The
maintainer's target: under 1 s per tick for 2,000 users.

JSON lines, one per (users, planner):
    {"bench": "controller_tick", "users": 2000, "servers": 31, "bss": 300, "planner": "orchestrated",
     "ms_per_tick": ..., "ms_per_tick_p90": ..., "replanned_share": ..., "actions_per_tick": ..., "ticks": 20}

``ms_per_tick`` is the median wall time over ``--ticks`` ticks after ``--warmup`` ticks (the first ticks
replan the users who start between two cells); ``replanned_share`` the mean share of users replanned per tick.

Usage: python benchmarks/bench_controller_tick.py                          # 200, 2000, 10000 users
       python benchmarks/bench_controller_tick.py --users 2000 --planners orchestrated --ticks 10
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time

from edgemigrate.controller.sim import SimBackend, SimController, load_scenario
from edgemigrate.planning import make_planner


async def _ticks(ctl: SimController, warmup: int, ticks: int) -> tuple[list[float], list[object]]:
    for _ in range(warmup):
        await ctl.tick()
    times, metrics = [], []
    for _ in range(ticks):
        t0 = time.perf_counter()
        metrics.append(await ctl.tick())
        times.append(time.perf_counter() - t0)
    return times, metrics


def line(users: int, planner: str, ticks: int, warmup: int, seed: int) -> dict:
    sc = dataclasses.replace(load_scenario("handover-city"), users=users, seed=seed)
    backend = SimBackend(sc)
    ctl = SimController(backend, make_planner(planner))
    try:
        times, metrics = asyncio.run(_ticks(ctl, warmup, ticks))
    finally:
        ctl.close()
    times.sort()
    return {"bench": "controller_tick", "users": users, "servers": backend.topo.servers.n,
            "bss": len(backend.topo.bss), "planner": planner, "ms_per_tick": 1e3 * statistics.median(times),
            "ms_per_tick_p90": 1e3 * times[int(0.9 * (len(times) - 1))],
            "replanned_share": statistics.fmean(m.replanned / m.users for m in metrics),  # type: ignore[attr-defined]
            "actions_per_tick": statistics.fmean(m.migrations + m.handovers for m in metrics),  # type: ignore[attr-defined]
            "ticks": ticks, "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, nargs="+", default=[200, 2000, 10000])
    ap.add_argument("--planners", nargs="+", default=["nearest", "orchestrated"])
    ap.add_argument("--ticks", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for users in args.users:
        for planner in args.planners:
            print(json.dumps(line(users, planner, args.ticks, args.warmup, args.seed)), flush=True)


if __name__ == "__main__":
    main()
