"""Where a Mobile-Kube agent's latency gap to the optimum comes from (paper-energy capacity), as JSON lines.

Not a timing. For an RLlib checkpoint (``--checkpoint``), on held-out synthetic episodes in evaluation mode:

    {"bench": "mobilekube_gap", "what": "agent", "latency_ms", "empty_servers", "illegal_rate",
     "own_nodes_best_assignment_ms", "moves_per_step", "scalars": {"stay", "join", "near"}}

``own_nodes_best_assignment_ms``: at every step, the same nodes the agent keeps powered, with the containers
assigned to them as well as possible for latency (eqs. 5-6; exact: each node expanded into its container
slots, ``scipy.optimize.linear_sum_assignment``). The agent's latency minus this is what it loses by placing
containers badly among its own nodes; this minus the optimum's is what it loses by powering the wrong nodes.

``--static-pairs`` (16 users) prints the best latency of a policy that never changes its two powered nodes,
for the best pair in hindsight: whether following users needs relocating whole nodes.

``--probe stay=2.8,1.5;near=2.6,8,16`` re-runs the agent with its prior's learned scalars replaced (a
test-time probe of the prior's parametrisation, not a trained agent).

Usage: python benchmarks/bench_mobilekube_gap.py --checkpoint PATH [--users 16] [--episodes 3] [--probe ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from edgemigrate.envs.mobilekube import MobileKubeEnv
from edgemigrate.experiments.mobilekube.training import load_agent
from edgemigrate.policies.rllib.agent import MODULE_PATH
from edgemigrate.policies.rllib.packing import PRIOR_SCALE

SCALARS = {"stay": "stay_raw", "join": "join_raw", "near": "near_raw"}


def _config(users: int) -> dict[str, Any]:
    return {"n_users": users, "n_services": 16, "node_cpu": 1.5, "obs_utilisation": True, "training": False,
            "seed": 0}


def best_assignment_s(delay_sn: np.ndarray, user_station: np.ndarray, user_service: np.ndarray,
                      nodes: np.ndarray, slots: int, n: int) -> float:
    """Least mean user latency with the containers on ``nodes`` only, ``slots`` containers per node."""
    cost = np.zeros((n, len(nodes)))
    np.add.at(cost, user_service, delay_sn[user_station][:, nodes])
    expanded = np.repeat(cost, slots, axis=1)
    rows, cols = linear_sum_assignment(expanded)
    return float(expanded[rows, cols].sum() / len(user_station))


def run_agent(ckpt: Path, users: int, episodes: int) -> dict[str, Any]:
    cfg = _config(users)
    agent = load_agent(ckpt, cfg)
    slots = int(round(cfg["node_cpu"] / 0.125))
    lat, emp, ill, own, moves = [], [], [], [], []
    for ep in range(episodes):
        env = MobileKubeEnv(cfg)
        obs, info = env.reset(seed=3000 + ep)
        p = info["problem"]
        for _ in range(100):
            stations = info["user_station"].copy()  # a step is scored on the stations the agent saw
            obs, _, term, trunc, info = env.step(agent.act(obs, info))
            lat.append(info["latency_s"])
            emp.append(info["empty_servers"])
            ill.append(float(info["illegal"]))
            moves.append(info["migrations"])
            nodes = np.unique(info["placement"])  # the placement the step was scored on
            own.append(best_assignment_s(p.delay_sn_s, stations, p.user_service, nodes, slots, len(p.cpu)))
            if term or trunc:
                break
    state = pickle.loads(Path(ckpt).joinpath(*MODULE_PATH, "module_state.pkl").read_bytes())
    return {"bench": "mobilekube_gap", "what": "agent", "checkpoint": str(ckpt), "users": users,
            "episodes": episodes, "latency_ms": 1e3 * float(np.mean(lat)), "empty_servers": float(np.mean(emp)),
            "illegal_rate": float(np.mean(ill)), "moves_per_step": float(np.mean(moves)),
            "own_nodes_best_assignment_ms": 1e3 * float(np.mean(own)),
            "scalars": {k: round(PRIOR_SCALE * float(state[v]), 3) for k, v in SCALARS.items() if v in state}}


def static_pairs(episodes: int) -> dict[str, Any]:
    cfg = _config(16)
    slots = int(round(cfg["node_cpu"] / 0.125))
    per_pair: dict[tuple[int, int], list[float]] = {}
    for ep in range(episodes):
        env = MobileKubeEnv(cfg)
        obs, info = env.reset(seed=3000 + ep)
        p = info["problem"]
        for _ in range(100):
            stations = info["user_station"].copy()
            for pair in itertools.combinations(range(p.delay_sn_s.shape[1]), 2):
                per_pair.setdefault(pair, []).append(
                    best_assignment_s(p.delay_sn_s, stations, p.user_service, np.array(pair), slots, len(p.cpu)))
            obs, _, term, trunc, info = env.step(info["placement"])
            if term or trunc:
                break
    means = {k: float(np.mean(v)) for k, v in per_pair.items()}
    best = min(means, key=means.__getitem__)
    return {"bench": "mobilekube_gap", "what": "static_pairs", "users": 16, "episodes": episodes,
            "best_pair": list(best), "best_pair_latency_ms": 1e3 * means[best]}


def probe(ckpt: Path, users: int, episodes: int, grid: dict[str, list[float]]) -> list[dict[str, Any]]:
    out = []
    names = list(grid)
    with tempfile.TemporaryDirectory() as tmp:
        for values in itertools.product(*(grid[k] for k in names)):
            dst = Path(tmp) / "_".join(f"{k}{v}" for k, v in zip(names, values, strict=True)) / "checkpoint"
            shutil.copytree(ckpt.joinpath(*MODULE_PATH), dst.joinpath(*MODULE_PATH))
            f = dst.joinpath(*MODULE_PATH, "module_state.pkl")
            state = pickle.loads(f.read_bytes())
            for k, v in zip(names, values, strict=True):
                state[SCALARS[k]] = v / PRIOR_SCALE
            f.write_bytes(pickle.dumps(state))
            row = run_agent(dst, users, episodes)
            row.update(what="probe", checkpoint=str(ckpt))
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--static-pairs", action="store_true")
    ap.add_argument("--probe", default=None, metavar="stay=A,B;near=C,D")
    args = ap.parse_args()
    if args.static_pairs:
        print(json.dumps(static_pairs(args.episodes)), flush=True)
    if args.checkpoint is not None:
        print(json.dumps(run_agent(args.checkpoint, args.users, args.episodes)), flush=True)
        if args.probe:
            grid = {k.strip(): [float(x) for x in v.split(",")]
                    for k, _, v in (part.partition("=") for part in args.probe.split(";"))}
            probe(args.checkpoint, args.users, args.episodes, grid)


if __name__ == "__main__":
    main()
