"""Liu et al. 2024 (PPCM) experiments: node sweep (figs. 3-4), task sweep (figs. 5-6), training (fig. 7) and
ablation.

Protocol (documented so results can be compared):

* The world (node resources, image popularity) is fixed by the scenario seed; each evaluation episode uses
  dynamics seed ``EVAL_SEED0 + i`` (user movement, task arrivals), the same for every algorithm, and training
  never sees those seeds.
* Heuristics and GA/DE/PSO decide a whole tick's queue at once through the simulator; PPCM and PPO act one
  task at a time through ``edgemigrate/PPCM-v0`` - both drive the same simulator, so the recorded delays
  (Liu et al. 2024, eqs. 1-10) are comparable.
* RL agents are trained once per sweep point (training seed 1) for ``train_steps`` environment steps; PPCM
  uses DEP_SOFT as the expert for its demonstrations (Liu et al. 2024, sec. V-B; ``expert=`` / ``--expert``
  picks another, e.g. ``least_delay``), PPO is the same without them. :data:`~.design.RL_VARIANTS` names every
  RL variant (ablations and the controlled experiment's variants, :mod:`edgemigrate.experiments.ppcm.controlled`)
  by its config changes and expert, so each is reproducible from one command.
* Reported delay = mean over tasks of the task's total T_k (arrival + every migration), with 95 %
  confidence intervals over the evaluation episodes (Student t).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.stats import ci95
from edgemigrate.experiments.grid import Job, run_grid
from edgemigrate.experiments.ppcm.design import (
    ALGORITHMS,
    BASELINES,
    COMPONENTS,
    EVAL_SEED0,
    EXTRA_POLICIES,
    NODE_POINTS,
    RL_VARIANTS,
    SCENARIO,
    TASK_POINTS,
    check_expert,
    variant_expert,
)
from edgemigrate.experiments.ppcm.plots import plot_sweep, plot_training
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table
from edgemigrate.experiments.runner import summarise
from edgemigrate.scenarios import load_scenario


def point_overrides(axis: str, value: float, users: int = 50) -> list[str]:
    """Scenario overrides for one sweep point.

    ``nodes``: ``value`` nodes on 1 km cells, three columns wide (one region = 3 x 3 = 9 nodes, Liu et al. 2024,
    sec. VI-A).
    ``tasks``: ``value`` task arrivals per minute in total, spread over the users (Poisson per user).
    """
    if axis == "nodes":
        n = int(value)
        rows = math.ceil(n / 3)
        return [f"nodes.count={n}", "area.width_m=3000.0", f"area.height_m={1000.0 * rows}"]
    if axis == "tasks":
        return [f"workload.arrival_rate_per_user_s={value / 60.0 / users!r}"]
    if axis == "single":
        return []
    raise ConfigError(f"unknown sweep axis '{axis}' (choose nodes or tasks)")


def ppo_config(algo: str, train_steps: int, seed: int = 1) -> Any:
    from edgemigrate.policies.rl.ppo import PPOConfig

    if algo not in RL_VARIANTS:
        from edgemigrate.core.registry import suggest

        raise ConfigError(f"unknown RL algorithm '{algo}'{suggest(algo, tuple(RL_VARIANTS))}")
    base: dict[str, Any] = {"total_timesteps": int(train_steps), "seed": seed}
    return PPOConfig(**{**base, **RL_VARIANTS[algo][0]})


def make_baseline(name: str, seed: int | None) -> Any:
    """A registered batch policy by name (the eight baselines, or LEAST_DELAY)."""
    import edgemigrate.policies.least_delay  # noqa: F401  (registers least_delay)
    from edgemigrate.policies import make_policy

    return make_policy(name, seed=seed)


def train_job(scenario: str, overrides: list[str], algo: str, train_steps: int, out_dir: str,
              cfg_overrides: dict[str, Any] | None = None, expert: str = "dep_soft", seed: int = 1
              ) -> dict[str, Any]:
    """Train one RL agent (training seed ``seed``); returns its checkpoint directory and training log paths."""
    import dataclasses

    from edgemigrate.envs.ppcm import PPCMEnv
    from edgemigrate.policies.rl.ppo import train

    cfg = ppo_config(algo, train_steps, seed)
    if cfg_overrides:
        cfg = dataclasses.replace(cfg, **cfg_overrides)
    env_fn = functools.partial(PPCMEnv, scenario, list(overrides))
    expert_name = variant_expert(algo, expert) if cfg.demo_episodes > 0 else None
    policy = make_baseline(expert_name, seed=cfg.seed) if expert_name else None
    res = train(env_fn, cfg, expert=policy, out_dir=out_dir, scenario=scenario, algo=algo)
    return {"algo": algo, "train_seed": seed, "expert": expert_name, "checkpoint": str(res.checkpoint_dir),
            "log_csv": str(res.log_csv), "plot_png": str(res.plot_png), "run_dir": str(res.run_dir),
            "warm_start": dict(res.warm_start)}


def eval_job(scenario: str, overrides: list[str], algo: str, seed: int, checkpoint: str | None = None
             ) -> dict[str, Any]:
    """One evaluation episode of ``algo`` with dynamics seed ``seed``; returns the run summary."""
    from edgemigrate.scenarios import build_simulator

    sc = load_scenario(scenario, list(overrides))
    if checkpoint is not None:
        from edgemigrate.policies.rl.agent import PPCMPolicy

        return {"algo": algo, "seed": seed, **eval_on_env(PPCMPolicy.load(checkpoint), sc, seed)}
    sim = build_simulator(sc)
    sim.reset(seed)
    sim.run(make_baseline(algo, seed=seed))
    return {"algo": algo, "seed": seed, **_summary(sim)}


def _summary(sim: Any) -> dict[str, Any]:
    """The run summary plus the share of decisions placed in the cloud."""
    dec = sim.recorder.decisions
    nodes = np.asarray(dec["node"])
    cloud = float(np.mean(nodes == sim.world.n_nodes)) if nodes.size else 0.0
    return {**summarise(sim.recorder.step_table(), dec), "cloud_share": cloud}


def eval_on_env(policy: Any, sc: Any, seed: int) -> dict[str, Any]:
    """One episode of a one-decision-at-a-time policy (e.g. a trained agent) through PPCM-v0; run summary."""
    from edgemigrate.envs.ppcm import PPCMEnv

    env = PPCMEnv(sc)
    obs, info = env.reset(seed=seed)
    policy.reset(seed)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(policy.act(obs, info))
        done = term or trunc
    return _summary(env.sim)


@dataclass(frozen=True, slots=True)
class SweepResult:
    out_dir: Path
    rows: list[dict[str, Any]]


def aggregate(rows: list[dict[str, Any]], x_key: str) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r[x_key], r["algo"]) for r in rows}, key=lambda k: (k[0], ALGORITHMS.index(k[1])
                                                                       if k[1] in ALGORITHMS else 99))
    for x, algo in keys:
        sel = [r for r in rows if r[x_key] == x and r["algo"] == algo]
        agg: dict[str, Any] = {x_key: x, "algo": algo, "episodes": len(sel)}
        for c in COMPONENTS:
            v = np.array([r[c] for r in sel], dtype=np.float64)
            agg[f"{c}_mean"] = float(v.mean())
            agg[f"{c}_ci95"] = ci95(v)
        out.append(agg)
    return out


def run_training(*, algorithms: Sequence[str] = ALGORITHMS, seeds: int = 5, train_steps: int = 50_000,
                 out_root: Path = Path("results"), workers: int = 2, ray_address: str | None = None,
                 scenario: str = SCENARIO, progress: bool = True, overrides: Sequence[str] = (),
                 expert: str = "dep_soft") -> SweepResult:
    """One point (the scenario as bundled): train the RL agents, evaluate everything, plot training curves."""
    res = run_sweep("single", points=(0,), algorithms=algorithms, seeds=seeds, train_steps=train_steps,
                    out_root=out_root, workers=workers, ray_address=ray_address, scenario=scenario,
                    progress=progress, overrides=overrides, expert=expert)
    plot_training(res.out_dir / "agents", res.out_dir / "plots")
    return res


def run_sweep(axis: str, *, points: Sequence[float] | None = None, algorithms: Sequence[str] = ALGORITHMS,
              seeds: int = 5, train_steps: int = 50_000, out_root: Path = Path("results"), workers: int = 2,
              ray_address: str | None = None, scenario: str = SCENARIO, progress: bool = True,
              overrides: Sequence[str] = (), expert: str = "dep_soft") -> SweepResult:
    """Train the RL agents per point, evaluate every algorithm on ``seeds`` episodes, write tables and plots."""
    for a in algorithms:
        known = ALGORITHMS + tuple(RL_VARIANTS) + EXTRA_POLICIES
        if a not in known:
            from edgemigrate.core.registry import suggest

            raise ConfigError(f"unknown algorithm '{a}'{suggest(a, known)}")
    check_expert(expert)
    if seeds < 2:
        raise ConfigError("--seeds must be >= 2 for confidence intervals")
    points = tuple(points or (NODE_POINTS if axis == "nodes" else TASK_POINTS))
    out = new_run_dir(out_root, run_name(f"{scenario}-{axis}", "sweep" if axis != "single" else "train", seeds))
    x_key = {"nodes": "nodes", "tasks": "tasks_per_min", "single": "point"}[axis]
    rl = [a for a in algorithms if a in RL_VARIANTS]
    load_scenario(scenario, list(overrides))  # fail fast on a bad scenario or --set
    train_jobs = [Job(train_job, dict(scenario=scenario, overrides=[*overrides, *point_overrides(axis, x)], algo=a,
                                      train_steps=train_steps, out_dir=str(out / "agents" / f"{x_key}={x}"),
                                      expert=expert),
                      label=f"train {a} {x}") for x in points for a in rl]
    trained = run_grid(train_jobs, workers=workers, ray_address=ray_address, progress=progress)
    ckpt = {(r["algo"], x): r["checkpoint"] for r, x in zip(trained, [x for x in points for _ in rl], strict=True)}
    grid = [(x, a, s) for x in points for a in algorithms for s in range(seeds)]
    eval_jobs = [Job(eval_job, dict(scenario=scenario, overrides=[*overrides, *point_overrides(axis, x)], algo=a,
                                    seed=EVAL_SEED0 + s, checkpoint=ckpt.get((a, x))), label=f"eval {a} {x} {s}")
                 for x, a, s in grid]
    results = run_grid(eval_jobs, workers=workers, ray_address=ray_address, progress=progress)
    rows = [{x_key: x, **r} for (x, _, _), r in zip(grid, results, strict=True)]
    write_table(out / "episodes.csv", {k: np.array([r[k] for r in rows]) for k in rows[0]})
    agg = aggregate(rows, x_key)
    write_table(out / "summary.csv", {k: np.array([r[k] for r in agg]) for k in agg[0]})
    (out / "summary.md").write_text(markdown_summary(agg, x_key, axis))
    plot_sweep(agg, x_key, out / "plots", axis)
    write_json(out / "manifest.json", manifest(0, None, {
        "experiment": f"ppcm {axis}", "scenario": scenario, "points": list(points), "algorithms": list(algorithms),
        "eval_seeds": [EVAL_SEED0 + s for s in range(seeds)], "train_steps": train_steps,
        "overrides": list(overrides), "expert": expert,
        "agents": {f"{a}@{x}": c for (a, x), c in ckpt.items()}}))
    return SweepResult(out, rows)


def reduction_vs_baselines(agg: list[dict[str, Any]], x_key: str, algo: str = "ppcm") -> dict[Any, float]:
    """Per point: 1 - delay(algo) / mean delay of the baselines present (Liu et al. 2024 report 18 % and 7 %)."""
    out = {}
    for x in sorted({r[x_key] for r in agg}):
        here = {r["algo"]: r["per_task_total_s_mean"] for r in agg if r[x_key] == x}
        base = [v for a, v in here.items() if a in BASELINES + ("ppo",)]
        if algo in here and base:
            out[x] = 1.0 - here[algo] / float(np.mean(base))
    return out


def markdown_summary(agg: list[dict[str, Any]], x_key: str, axis: str) -> str:
    fig = {"nodes": "figs. 3-4", "tasks": "figs. 5-6", "single": "fig. 7 and the ablation"}[axis]
    lines = [f"# PPCM {axis} experiment (Liu et al. 2024, {fig})", "",
             "Mean delay per task in seconds, +- 95 % CI over evaluation episodes.", "",
             f"| {x_key} | algorithm | total | deployment | backhaul | computation | migration |",
             "|---|---|---|---|---|---|---|"]
    for r in agg:
        cells = [f"{r[f'{c}_mean']:.2f} +- {r[f'{c}_ci95']:.2f}" for c in
                 ("per_task_total_s", "per_task_deployment_s", "per_task_backhaul_s", "per_task_computation_s",
                  "per_task_migration_s")]
        lines.append(f"| {r[x_key]} | {r['algo']} | " + " | ".join(cells) + " |")
    red = reduction_vs_baselines(agg, x_key)
    if red:
        lines += ["", "PPCM's reduction of total delay versus the mean of the baselines: " +
                  ", ".join(f"{x_key}={x}: {100 * v:.1f} %" for x, v in red.items()) +
                  f" (mean {100 * np.mean(list(red.values())):.1f} %)."]
    order = {}
    for x in sorted({r[x_key] for r in agg}):
        here = sorted((r["per_task_total_s_mean"], r["algo"]) for r in agg if r[x_key] == x)
        order[x] = " < ".join(a for _, a in here)
    lines += ["", "Order by total delay:"] + [f"- {x_key}={x}: {o}" for x, o in order.items()]
    return "\n".join(lines) + "\n"
