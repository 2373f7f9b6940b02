"""Why an RL agent with MobileKube-v0's one-hot observation and MultiDiscrete action does not learn to pack.

Not a timing: the numbers behind docs/mobilekube.md "Why PPO did not pack", as JSON lines, per node capacity:

    {"bench": "mobilekube_learning", "node_cpu": 4.0, "obs_size": 256, "obs_nonzero": 32, "entropy_uniform_nats": ...,
     "random": {"reward_mean", "reward_std", "empty_mean", "illegal_rate",
                "head_signal_max_abs", "head_signal_se"},
     "half_on_node0": {"reward_mean", "head_signal_node0", "illegal_rate"}}

``head_signal`` is the policy-gradient signal one container's head gets for a node: the mean reward of the
steps where that head picked the node minus the mean reward. Under a uniform policy it is zero by symmetry
(``head_signal_max_abs`` ~ 3 standard errors over 128 head x node pairs = noise); only when the other heads
already share a node (``half_on_node0``: every head on node 0 with probability 1/2) does joining it pay - or,
at the paper-energy capacity, cost: a node overfilled is an illegal action and a -1 penalty.

``--capacity-sweep 1.0,1.25,1.5,1.875`` instead prints, per node capacity and users count, best-fit's and the
exact optimum's empty servers and latency (4 episodes x 20 steps, evaluation mode): how docs/mobilekube.md
chose the "paper-energy" capacity.

Usage: python benchmarks/bench_mobilekube_learning.py [--steps 4000] [--caps 4.0,1.5] [--capacity-sweep CAPS]
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from edgemigrate.envs.mobilekube import MobileKubeEnv


def _roll(env: MobileKubeEnv, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env.reset(seed=0)
    rewards, empty, illegal = [], [], []
    for t, a in enumerate(actions):
        _, r, _, trunc, info = env.step(a)
        rewards.append(r)
        empty.append(info["empty_servers"])
        illegal.append(info["illegal"])
        if trunc:
            env.reset(seed=t + 1)
    return np.array(rewards), np.array(empty, float), np.array(illegal, float)


def measure(node_cpu: float, steps: int, users: int = 16) -> dict[str, object]:
    env = MobileKubeEnv({"n_users": users, "node_cpu": node_cpu, "episode_steps": 100})
    n, m = env.config.n_services, env.config.n_nodes
    rng = np.random.default_rng(0)
    a = rng.integers(0, m, (steps, n))
    r, e, ill = _roll(env, a)
    sig = np.array([[r[a[:, j] == k].mean() - r.mean() for k in range(m)] for j in range(n)])
    a2 = np.where(rng.random((steps, n)) < 0.5, 0, rng.integers(0, m, (steps, n)))
    r2, _, ill2 = _roll(env, a2)
    sig2 = np.array([r2[a2[:, j] == 0].mean() - r2[a2[:, j] != 0].mean() for j in range(n)])
    obs, _ = env.reset(seed=0)
    return {"bench": "mobilekube_learning", "users": users, "node_cpu": node_cpu, "obs_size": int(obs.size),
            "obs_nonzero": int(obs.sum()), "entropy_uniform_nats": round(n * math.log(m), 2), "steps": steps,
            "random": {"reward_mean": round(float(r.mean()), 4), "reward_std": round(float(r.std()), 4),
                       "empty_mean": round(float(e.mean()), 3), "illegal_rate": round(float(ill.mean()), 4),
                       "head_signal_max_abs": round(float(np.abs(sig).max()), 4),
                       "head_signal_se": round(float(r.std() / math.sqrt(steps / m)), 4)},
            "half_on_node0": {"reward_mean": round(float(r2.mean()), 4),
                              "head_signal_node0": round(float(sig2.mean()), 4),
                              "illegal_rate": round(float(ill2.mean()), 4)}}


def capacity_sweep(cap: float, users: int, episodes: int = 4, steps: int = 20) -> dict[str, object]:
    from edgemigrate.experiments.mobilekube.evaluate import run_episode
    from edgemigrate.policies.mobilekube import make_agent

    env = MobileKubeEnv({"n_users": users, "node_cpu": cap, "training": False, "episode_steps": steps})
    out: dict[str, object] = {"bench": "mobilekube_capacity", "node_cpu": cap, "users": users}
    for name in ("best-fit", "optimum"):
        runs = [run_episode(env, make_agent(name), 100 + ep, None) for ep in range(episodes)]
        out[name] = {"empty_servers": round(float(np.mean([r["empty_servers"].mean() for r in runs])), 2),
                     "latency_ms": round(1e3 * float(np.mean([r["latency_s"].mean() for r in runs])), 2)}
    bf, op = out["best-fit"], out["optimum"]
    out["optimum_latency_vs_best_fit_pct"] = round(100 * (op["latency_ms"] / bf["latency_ms"] - 1), 1)  # type: ignore[index]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--caps", default="4.0,1.5", help="node CPU capacities (4.0 = the issue, 1.5 = paper-energy)")
    ap.add_argument("--capacity-sweep", default=None, metavar="CAPS", help="e.g. 1.0,1.25,1.5,1.875")
    args = ap.parse_args()
    if args.capacity_sweep:
        for cap in (float(c) for c in args.capacity_sweep.split(",")):
            for users in (16, 48):
                print(json.dumps(capacity_sweep(cap, users)), flush=True)
        return
    for cap in (float(c) for c in args.caps.split(",")):
        print(json.dumps(measure(cap, args.steps)), flush=True)


if __name__ == "__main__":
    main()
