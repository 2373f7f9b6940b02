"""PPO throughput on the contract toy env: one JSON line per network pair (environment steps per second).

    .venv/bin/python benchmarks/bench_rl.py [--steps 4096] [--nodes 9] [--layers 64] [--out results.jsonl]
    .venv/bin/python benchmarks/bench_rl.py --scenario ppcm-paper --steps 61440 [--demo-episodes 5]

With ``--scenario`` it instead trains PPCM (DEP_SOFT demonstrations) on ``edgemigrate/PPCM-v0`` for ``--steps``
and evaluates it and DEP_SOFT on the same three dynamics seeds (101-103): one JSON line with the wall-clock
training time and both mean episode returns (sum of -T_k, seconds): does PPCM reach DEP_SOFT within
30 minutes on 2 cores?

Runs ``train`` with the settings of Liu et al. 2024, Table I (4 envs x 128 steps = 512 per rollout,
10 epochs, 4 minibatches, one torch thread) and reports ``steps_per_s`` = environment steps / wall-clock seconds of the whole run
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


def scenario_run(scenario: str, steps: int, demo_episodes: int, seed: int) -> dict[str, object]:
    from edgemigrate.envs.ppcm import PPCMEnv
    from edgemigrate.policies import make_policy
    from edgemigrate.policies.rl.evaluate import evaluate

    env_fn = partial(PPCMEnv, scenario)
    cfg = PPOConfig(total_timesteps=steps, demo_episodes=demo_episodes, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(env_fn, cfg, expert=make_policy("dep_soft", seed=seed), out_dir=tmp, scenario=scenario)
        train_s = time.perf_counter() - t0
    seeds = [101, 102, 103]
    agent = evaluate(res.policy, env_fn, len(seeds), seeds=seeds)
    expert = evaluate(make_policy("dep_soft", seed=0), env_fn, len(seeds), seeds=seeds)
    return {
        "bench": "ppcm_train",
        "scenario": scenario,
        "steps": res.global_steps,
        "demo_episodes": demo_episodes,
        "train_s": round(train_s, 1),
        "steps_per_s": round(res.global_steps / train_s, 1),
        "eval_seeds": seeds,
        "ppcm_mean_return": round(agent.mean_return, 1),
        "dep_soft_mean_return": round(expert.mean_return, 1),
        "ppcm_infeasible_actions": agent.infeasible_actions,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument(
        "--scenario", default=None, help="train PPCM on this scenario instead of the toy throughput run"
    )
    ap.add_argument("--demo-episodes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=9)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--out", type=argparse.FileType("a"), default=None)
    args = ap.parse_args(argv)
    if args.scenario:
        text = json.dumps(scenario_run(args.scenario, args.steps, args.demo_episodes, args.seed))
        print(text)
        if args.out:
            args.out.write(text + "\n")
        return 0
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
