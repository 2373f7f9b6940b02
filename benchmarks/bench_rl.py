"""PPO throughput on the contract toy env: one JSON line per network pair (environment steps per second).

    .venv/bin/python benchmarks/bench_rl.py [--steps 4096] [--nodes 9] [--layers 64] [--out results.jsonl]

Runs ``train`` with seed 000 Table I settings (4 envs x 128 steps = 512 per rollout, 10 epochs, 4 minibatches,
one torch thread) and reports ``steps_per_s`` = environment steps / wall-clock seconds of the whole run
(rollouts + updates, without process start-up), plus the rollout-only rate of the greedy policy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial

import numpy as np

from edgemigrate.policies.rl.ppo import PPOConfig, train
from edgemigrate.policies.rl.toyenv import LayerOverlapEnv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--nodes", type=int, default=9)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--out", type=argparse.FileType("a"), default=None)
    args = ap.parse_args(argv)
    env_fn = partial(LayerOverlapEnv, n_nodes=args.nodes, n_layers=args.layers, horizon=64, layers_per_task=4)
    for actor, critic in (("dcn", "attention"), ("mlp", "mlp")):
        cfg = PPOConfig(total_timesteps=args.steps, actor=actor, critic=critic, demo_episodes=0, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = train(env_fn, cfg, out_dir=tmp, scenario="bench")
            train_s = time.perf_counter() - t0
        env = env_fn()
        obs, info = env.reset(seed=0)
        n, t0 = 2048, time.perf_counter()
        for _ in range(n):
            obs, _, term, trunc, info = env.step(res.policy.act(obs, info))
            if term or trunc:
                obs, info = env.reset()
        act_s = time.perf_counter() - t0
        line = {
            "bench": "ppo",
            "env": "LayerOverlapEnv",
            "actor": actor,
            "critic": critic,
            "nodes": args.nodes,
            "layers": args.layers,
            "num_envs": cfg.num_envs,
            "batch": cfg.batch_size,
            "epochs": cfg.update_epochs,
            "steps": res.global_steps,
            "train_s": round(train_s, 2),
            "steps_per_s": round(res.global_steps / train_s, 1),
            "greedy_act_steps_per_s": round(n / act_s, 1),
            "params": sum(p.numel() for p in res.policy.model.parameters()),
            "final_mean_episode_reward": round(
                float(np.nanmean([r["mean_episode_reward"] for r in res.rows[-2:]])), 2
            ),
        }
        text = json.dumps(line)
        print(text)
        if args.out:
            args.out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
