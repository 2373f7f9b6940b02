"""ShareOn (Maheshwari et al. 2018) costs: one decision round over all nodes, and the simulator's step with
ShareOn active. One JSON line per measurement, e.g.
    {"bench": "shareon_round", "nodes": 10000, "containers_per_node": 10, "ms_per_round": 812.0, ...}
    {"bench": "shareon_step", "world": "sf-towers", "users": 10000, "nodes": 419, "ms_per_step": 9.1, ...}

Usage: python benchmarks/bench_shareon.py                       # rounds at 1,000 and 10,000 nodes, both step worlds
       python benchmarks/bench_shareon.py --rounds 1000 --steps none

Decision round: every node decides at once (the worst case: in the simulator only the nodes whose answers
arrive in a tick decide, 1/5 of them with a 5 s query period and 1 s ticks). Nodes stand uniformly at random
at the density of the San Francisco setting (50 nodes on 195 km^2), each with ``--containers`` containers
whose users are within 2 km and 8 neighbours whose reports are random but plausible (utilisation 0.2-1.1);
latencies are drawn so ~30 % of the containers exceed the 100 ms threshold. Timed: building the views from
the simulator's arrays (``AgentPolicy.views``) and the agents' decisions (``agent.decide``), separately, in
wall-clock ms, and the process CPU time of the whole round (``cpu_ms_*``: less sensitive to a shared machine).

Step cost: the simulator at load 0.7 (ShareOn's high-load point) with ShareOn's agents, and with no policy
(nearest placement) for reference, on (a) every San Francisco tower site of the sweep's area with 10,000
taxi-like users, (b) 1,000 nodes on a 500 m grid with 10,000 users (the setting ``bench_sim.py`` reports for
the PPCM engine). The first ``--warmup`` ticks are run but not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import numpy as np

from edgemigrate.core.geo import Area
from edgemigrate.experiments.shareon.design import SF_AREA, WorldConfig, agent_params, node_positions
from edgemigrate.mobility import TaxiLike
from edgemigrate.policies.shareon.simpolicy import AgentPolicy
from edgemigrate.sim.shareon import DecisionContext, Reports, ShareOnSim, ShareOnSimConfig

BASE = ShareOnSimConfig(load=0.7)


def round_context(n_nodes: int, per_node: int, seed: int) -> DecisionContext:
    rng = np.random.default_rng(seed)
    side_m = np.sqrt(n_nodes * SF_AREA.width_m * SF_AREA.height_m / 50)
    xy = rng.uniform(0, side_m, (n_nodes, 2))
    from scipy.spatial import cKDTree

    _, nb = cKDTree(xy).query(xy, k=9)
    n_users = n_nodes * per_node
    host = np.repeat(np.arange(n_nodes), per_node)
    user_xy = xy[host] + rng.uniform(-2000, 2000, (n_users, 2))
    cfg = BASE
    demand = cfg.rate_rps(n_users, n_nodes) * cfg.cycles_per_request
    util = rng.uniform(0.2, 1.1, n_nodes)
    rep = Reports(0, np.full(n_nodes, per_node), util, np.full(n_nodes, 0.08), rng.uniform(0, 1e-5, n_nodes),
                  rng.integers(0, 3, n_nodes), rng.integers(0, 3, n_nodes))
    t_net = cfg.user_latency_s + cfg.l_d_s_per_m * np.hypot(*(user_xy - xy[host]).T)
    t_proc = rng.uniform(0.045, 0.12, n_users)
    return DecisionContext(
        now_s=10.0, age_s=1.0, deciders=np.arange(n_nodes), neighbours=nb[:, 1:].astype(np.int64),
        answered=np.ones((n_nodes, 8), dtype=bool), node_xy_m=xy, cpu_hz=np.full(n_nodes, 1e10),
        ram_bytes=np.full(n_nodes, cfg.ram_bytes), t_p_avg_s=cfg.t_p_avg_s, bandwidth_bps=cfg.inter_edge_bps,
        reports=rep, now=rep, host=host, user_xy_m=user_xy, demand_hz=np.full(n_users, demand), t_net_s=t_net,
        t_proc_s=t_proc, migrating=np.zeros(n_users, dtype=bool), container_bytes=cfg.container_bytes)


def bench_round(n_nodes: int, per_node: int, repeats: int, seed: int) -> dict[str, object]:
    ctx = round_context(n_nodes, per_node, seed)
    policy = AgentPolicy.by_name("shareon", agent_params(BASE, n_nodes * per_node, n_nodes))
    build_s, decide_s, cpu_s, decisions, slow_nodes = [], [], [], 0, 0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        views = policy.views(ctx)
        t1 = time.perf_counter()
        decisions = sum(len(policy.agent.decide(v)) for v in views)
        c2, t2 = time.process_time(), time.perf_counter()
        build_s.append(t1 - t0)
        decide_s.append(t2 - t1)
        cpu_s.append(c2 - c0)
        slow_nodes = len(views)
    return {"bench": "shareon_round", "nodes": n_nodes, "containers_per_node": per_node,
            "nodes_with_slow_containers": slow_nodes, "decisions": decisions,
            "ms_per_round": round(1e3 * float(np.median(np.add(build_s, decide_s))), 2),
            "ms_views": round(1e3 * float(np.median(build_s)), 2),
            "ms_decide": round(1e3 * float(np.median(decide_s)), 2),
            "cpu_ms_per_round": round(1e3 * float(np.median(cpu_s)), 2), "repeats": repeats}


def bench_step(world: str, users: int, steps: int, warmup: int, seed: int, policy: str) -> dict[str, object]:
    if world == "sf-towers":
        area = SF_AREA
        from edgemigrate.datasets import towers as tw

        all_sites = WorldConfig()
        table = tw.bundled_towers(all_sites.towers)
        from edgemigrate.core.geo import LocalProjection
        from edgemigrate.experiments.shareon.design import SF_ORIGIN

        sites = tw.cluster_sites(table.lat, table.lon, LocalProjection(*SF_ORIGIN), all_sites.site_radius_m)
        n_nodes = int(area.contains(sites.xy_m).sum())
        xy = node_positions(dataclasses.replace(all_sites, n_nodes=n_nodes), seed)
    else:
        side = 32
        ij = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1).reshape(-1, 2)[:1000]
        xy = (ij + 0.5) * 500.0
        area = Area(0.0, 0.0, side * 500.0, side * 500.0)
    cfg = dataclasses.replace(BASE, duration_s=float(warmup + steps), warmup_s=float(warmup))
    agent = AgentPolicy.by_name("shareon", agent_params(cfg, users, len(xy))) if policy == "shareon" else None
    sim = ShareOnSim(cfg, xy, TaxiLike(users, area), policy=agent, seed=seed)
    ticks: list[float] = []
    cpu: list[float] = []
    original = sim._migrate

    def timed_migrate(step: int) -> int:  # the last phase of a tick: time tick boundaries from here
        out = original(step)
        ticks.append(time.perf_counter())
        cpu.append(time.process_time())
        return out

    sim._migrate = timed_migrate  # type: ignore[method-assign]
    res = sim.run()
    per_step = np.diff(np.asarray(ticks[warmup - 1:]))
    cpu_step = np.diff(np.asarray(cpu[warmup - 1:]))
    return {"bench": "shareon_step", "world": world, "policy": policy, "users": users, "nodes": len(xy),
            "ms_per_step": round(1e3 * float(np.mean(per_step)), 3),
            "ms_per_step_p95": round(1e3 * float(np.quantile(per_step, 0.95)), 3),
            "cpu_ms_per_step": round(1e3 * float(np.mean(cpu_step)), 3),
            "us_per_user_step": round(1e6 * float(np.mean(per_step)) / users, 3), "steps": steps,
            "migrations": res.totals["migrations"], "mean_response_ms": round(1e3 * res.totals["mean_response_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", default="1000,10000", help="Node counts for the decision round ('none' to skip).")
    ap.add_argument("--containers", type=int, default=10, help="Containers per node in the decision round.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", default="sf-towers,grid-1000", help="Step worlds ('none' to skip).")
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--timed-steps", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    env = {"python": platform.python_version(), "machine": platform.machine()}
    if a.rounds != "none":
        for n in (int(x) for x in a.rounds.split(",")):
            print(json.dumps({**bench_round(n, a.containers, a.repeats, a.seed), **env}), flush=True)
    if a.steps != "none":
        for world in a.steps.split(","):
            for policy in ("shareon", "nearest"):
                print(json.dumps({**bench_step(world, a.users, a.timed_steps, a.warmup, a.seed, policy), **env}),
                      flush=True)


if __name__ == "__main__":
    main()
