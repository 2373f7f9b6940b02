"""Mobile-Kube (Ghafouri et al. 2022): env throughput and the per-step exact optimum.

JSON lines:
    {"bench": "mobilekube_env", "mode": "single", "users": 48, "nodes": 8, "steps_per_s": ...}
    {"bench": "mobilekube_env", "mode": "sync_vector", "envs": 8, ...}   gymnasium SyncVectorEnv
    {"bench": "mobilekube_env", "mode": "async_vector", "envs": 8, ...}  gymnasium AsyncVectorEnv (processes)
    {"bench": "mobilekube_optimum", "users": 48, "nodes": 8, "median_s": ..., "p90_s": ..., "max_s": ...}
    {"bench": "mobilekube_rllib", "case": "mobilekube-16u", ...}  RLlib IMPALA training throughput (sampled and
                                                trained env steps/s), from bench_mobilekube_rllib.py

Env steps use uniformly random actions on the synthetic (training) movements; a vector env step counts
``envs`` env steps. The optimum is timed per call of ``solve_placement`` (one HiGHS MILP: 136 binaries at
16 containers x 8 nodes) on the stations of consecutive steps of one episode. Numbers depend on the machine
and its load: report them with both.

Usage: python benchmarks/bench_mobilekube.py [--steps 2000] [--envs 8] [--optimum-steps 100] [--impala-steps 20000]
(``--impala-steps 0`` skips the training line; ``bench_mobilekube_rllib.py`` also measures IMPALA on CartPole)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

import edgemigrate.envs  # noqa: F401  (registers edgemigrate/MobileKube-v0)
from edgemigrate.envs import MobileKubeEnv
from edgemigrate.policies.mobilekube import solve_placement


def machine() -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "load1": os.getloadavg()[0], "python": platform.python_version(),
            "gymnasium": version("gymnasium"), "highspy": version("highspy")}


def bench_single(users: int, steps: int) -> dict:
    env = MobileKubeEnv(n_users=users, episode_steps=1000)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = rng.integers(0, 8, (steps, 16))
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    return {"bench": "mobilekube_env", "mode": "single", "users": users, "nodes": 8, "steps": steps,
            "steps_per_s": steps / dt}


def bench_vector(users: int, steps: int, n_envs: int, mode: str) -> dict:
    make = [lambda: gym.make("edgemigrate/MobileKube-v0", config={"n_users": users, "episode_steps": 1000})] * n_envs
    envs = gym.vector.SyncVectorEnv(make) if mode == "sync_vector" else gym.vector.AsyncVectorEnv(make)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    calls = max(steps // n_envs, 1)
    actions = rng.integers(0, 8, (calls, n_envs, 16))
    t0 = time.perf_counter()
    for a in actions:
        envs.step(a)
    dt = time.perf_counter() - t0
    envs.close()
    return {"bench": "mobilekube_env", "mode": mode, "envs": n_envs, "users": users, "nodes": 8,
            "steps": calls * n_envs, "steps_per_s": calls * n_envs / dt}


def bench_optimum(users: int, steps: int) -> dict:
    env = MobileKubeEnv(n_users=users, episode_steps=steps + 1, training=False)
    _, info = env.reset(seed=0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        placement, _ = solve_placement(info["problem"], info["user_station"])
        times.append(time.perf_counter() - t0)
        _, _, _, _, info = env.step(placement)
    times.sort()
    return {"bench": "mobilekube_optimum", "users": users, "nodes": 8, "containers": 16, "steps": steps,
            "median_s": statistics.median(times), "p90_s": times[int(0.9 * (len(times) - 1))], "max_s": times[-1]}


def bench_impala(steps: int) -> None:
    """RLlib IMPALA's training throughput on MobileKube-v0: the RLlib benchmark's own case, in its own process
    (Ray changes the process environment), its JSON line passed through."""
    script = Path(__file__).with_name("bench_mobilekube_rllib.py")
    subprocess.run([sys.executable, str(script), "--skip-cartpole", "--mobilekube-steps", str(steps)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000, help="Env steps per throughput measurement.")
    ap.add_argument("--envs", type=int, default=8, help="Sub-envs of the vector envs.")
    ap.add_argument("--users", type=int, default=48)
    ap.add_argument("--optimum-steps", type=int, default=100, help="Steps whose optimum is timed.")
    ap.add_argument("--impala-steps", type=int, default=20_000, help="IMPALA training env steps (0: skip).")
    args = ap.parse_args()
    print(json.dumps({"bench": "machine", **machine()}), flush=True)
    print(json.dumps(bench_single(args.users, args.steps)), flush=True)
    for mode in ("sync_vector", "async_vector"):
        print(json.dumps(bench_vector(args.users, args.steps, args.envs, mode)), flush=True)
    print(json.dumps(bench_optimum(args.users, args.optimum_steps)), flush=True)
    if args.impala_steps > 0:
        bench_impala(args.impala_steps)


if __name__ == "__main__":
    main()
