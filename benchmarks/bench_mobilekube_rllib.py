"""RLlib IMPALA on 2 cores: sampled and trained env steps/s, and how much of the sampled data the learner uses.

    .venv/bin/python benchmarks/bench_mobilekube_rllib.py [--cartpole-steps 100000] [--mobilekube-steps 20000]
                                                          [--skip-cartpole] [--out results.jsonl]

Two measurements, one JSON line each (``"bench": "mobilekube_rllib"``):

* ``case: "cartpole/<learner>"`` - IMPALA on CartPole-v1 with lr 3e-4 and 500-step batches, one env runner x 4
  envs, once with RLlib's default learner set-up (``num_learners=1``: a remote learner updated asynchronously,
  which drops a batch whenever its requests are in flight) and once with ours (``num_learners=0``: the learner
  thread in the driver behind a blocking queue), and ours with 4 epochs of 100-step minibatches (20 gradient
  steps per batch instead of 1). Reports env steps sampled, trained and dropped, and the final mean episode
  return (over the trainer's smoothing window, ``TrainSpec.smoothing_episodes``).
* ``case: "mobilekube-16u"`` - IMPALA with Ghafouri et al. 2022 Table II's hyperparameters on
  ``edgemigrate/MobileKube-v0`` (16 users, 8 nodes): sampled and trained env steps per second of training.

Throughput is wall-clock on whatever the machine is doing: run it on an idle machine to compare numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgemigrate.experiments.mobilekube.training import make_mobilekube_env
from edgemigrate.policies.rllib.config import Algo, algo_config
from edgemigrate.policies.rllib.toyenv import make_gym_env
from edgemigrate.policies.rllib.trainer import TrainSpec, train


def _run(case: str, spec: TrainSpec) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        out = train(spec, Path(tmp) / "ckpt")
        wall_s = time.monotonic() - t0
    last = out.rows[-1]
    # the first iteration includes building the algorithm: rates use the iterations after it
    first = out.rows[0]
    span_s = max(last["wall_s"] - first["wall_s"], 1e-9)
    return {
        "bench": "mobilekube_rllib", "case": case, "algo": spec.algo.value, "num_learners": spec.num_learners,
        "num_env_runners": spec.num_env_runners, "num_envs_per_env_runner": spec.num_envs_per_env_runner,
        "train_batch_size": spec.hyper.train_batch_size, "lr": spec.hyper.lr,
        "env_steps_sampled": last["env_steps_sampled"], "env_steps_trained": last["env_steps_trained"],
        "env_steps_dropped": last["env_steps_dropped"],
        "trained_over_sampled": last["env_steps_trained"] / max(last["env_steps_sampled"], 1.0),
        "episode_return_mean": last["episode_reward_mean"],
        "sampled_env_steps_per_s": (last["env_steps_sampled"] - first["env_steps_sampled"]) / span_s,
        "trained_env_steps_per_s": (last["env_steps_trained"] - first["env_steps_trained"]) / span_s,
        "wall_s": wall_s, "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cartpole-steps", type=int, default=100_000)
    p.add_argument("--mobilekube-steps", type=int, default=20_000)
    p.add_argument("--skip-cartpole", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="Also append the JSON lines to this file.")
    args = p.parse_args(argv)
    lines = []
    if not args.skip_cartpole:
        table = {"train_batch_size": 500, "num_epochs": 1, "minibatch_size": None}  # RLlib's one step per batch
        # (learners, hyperparameters, name): RLlib's learner set-up, ours, and ours with 20 updates per batch
        cases = ((1, table, "rllib-default"), (0, table, "ours"),
                 (0, {**table, "num_epochs": 4, "minibatch_size": 100}, "ours+4epochs-mb100"))
        for learners, over, name in cases:
            spec = TrainSpec(algo=Algo.IMPALA, hyper=algo_config(Algo.IMPALA, over), env_name="CartPole-v1",
                             env_creator=make_gym_env, env_config={"id": "CartPole-v1"}, seed=args.seed,
                             timesteps=args.cartpole_steps, num_env_runners=1, num_envs_per_env_runner=4,
                             num_learners=learners)
            lines.append(_run(f"cartpole/{name}", spec))
            print(json.dumps(lines[-1]), flush=True)
    spec = TrainSpec(algo=Algo.IMPALA, hyper=algo_config(Algo.IMPALA), env_name="MobileKube-v0",
                     env_creator=make_mobilekube_env, env_config={"n_users": 16, "n_services": 16, "n_nodes": 8},
                     seed=args.seed, timesteps=args.mobilekube_steps, num_env_runners=1, num_envs_per_env_runner=4)
    lines.append(_run("mobilekube-16u", spec))
    print(json.dumps(lines[-1]), flush=True)
    if args.out:
        with args.out.open("a") as fh:
            fh.writelines(json.dumps(line) + "\n" for line in lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
