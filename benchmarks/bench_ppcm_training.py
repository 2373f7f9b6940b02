"""How long PPCM training takes to reach DEP_SOFT's total delay on the bundled scenario (target: within 30 minutes
on 2 cores).

DEP_SOFT's mean delay per task is measured first on fixed evaluation seeds; then PPCM (or PPO) trains with
Liu et al. 2024's Table I settings and, every ``--eval-every`` updates, its greedy policy is evaluated on the same
seeds. Evaluation time is excluded from the reported training time. One JSON line, e.g.
    {"bench": "ppcm_training", "algo": "ppcm", "dep_soft_delay_s": 18.4, "reached": true,
     "train_s_to_reach": 412.0, "steps_to_reach": 30720, ...}

Usage: python benchmarks/bench_ppcm_training.py [--algo ppcm|ppo] [--budget-s 1800] [--eval-seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from edgemigrate.experiments.ppcm.design import EVAL_SEED0
from edgemigrate.experiments.ppcm.sweep import eval_job, eval_on_env, ppo_config
from edgemigrate.scenarios import load_scenario


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", default="ppcm", choices=["ppcm", "ppo", "ppcm_mlp_actor", "ppcm_mlp_critic"])
    ap.add_argument("--scenario", default="ppcm-paper")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--budget-s", type=float, default=1800.0, help="training time budget (evaluation excluded)")
    ap.add_argument("--max-steps", type=int, default=2_000_000)
    ap.add_argument("--eval-every", type=int, default=5, help="PPO updates between evaluations")
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results/bench_ppcm_training"))
    ap.add_argument("--keep-going", action="store_true", help="train the whole budget even after reaching DEP_SOFT")
    a = ap.parse_args()

    import dataclasses

    from edgemigrate.envs.ppcm import PPCMEnv
    from edgemigrate.policies import make_policy
    from edgemigrate.policies.rl.ppo import train

    seeds = [EVAL_SEED0 + i for i in range(a.eval_seeds)]
    sc = load_scenario(a.scenario, a.overrides)
    dep = float(np.mean([eval_job(a.scenario, a.overrides, "dep_soft", s)["per_task_total_s"] for s in seeds]))
    cfg = dataclasses.replace(ppo_config(a.algo, a.max_steps))
    state = {"eval_s": 0.0, "reached": None, "curve": []}

    def on_update(update: int, policy, row) -> bool:  # type: ignore[no-untyped-def]
        train_s = row["wall_s"] - state["eval_s"]
        if update % a.eval_every == 0:
            t0 = time.perf_counter()
            delay = float(np.mean([eval_on_env(policy, sc, s)["per_task_total_s"] for s in seeds]))
            state["eval_s"] += time.perf_counter() - t0
            state["curve"].append((round(train_s, 1), int(row["global_step"]), round(delay, 3)))
            print(f"update {update} step {row['global_step']} train {train_s:.0f} s delay {delay:.2f} s "
                  f"(dep_soft {dep:.2f})", file=sys.stderr, flush=True)
            if delay <= dep and state["reached"] is None:
                state["reached"] = (train_s, int(row["global_step"]), delay)
                if not a.keep_going:
                    return True
        return train_s > a.budget_s

    expert = make_policy("dep_soft", seed=cfg.seed) if cfg.demo_episodes > 0 else None
    env_fn = lambda: PPCMEnv(sc)  # noqa: E731
    t0 = time.perf_counter()
    res = train(env_fn, cfg, expert=expert, out_dir=a.out, scenario=a.scenario, algo=a.algo, on_update=on_update)
    reached = state["reached"]
    print(json.dumps({
        "bench": "ppcm_training", "algo": a.algo, "scenario": a.scenario, "overrides": a.overrides,
        "dep_soft_delay_s": round(dep, 3), "reached": reached is not None,
        "train_s_to_reach": round(reached[0], 1) if reached else None,
        "steps_to_reach": reached[1] if reached else None, "delay_at_reach_s": round(reached[2], 3) if reached else None,
        "best_delay_s": min(c[2] for c in state["curve"]) if state["curve"] else None,
        "wall_s_total": round(time.perf_counter() - t0, 1), "eval_seeds": seeds, "budget_s": a.budget_s,
        "curve": state["curve"], "run_dir": str(res.run_dir)}), flush=True)


if __name__ == "__main__":
    main()
