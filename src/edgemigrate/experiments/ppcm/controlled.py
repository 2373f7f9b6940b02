"""Controlled experiment behind our explanation of where our PPCM results disagree with Liu et al. 2024.

Question: at high load (>= 90 tasks/min) PPCM stays on its expert DEP_SOFT's curve while plain PPO learns to
offload to the cloud. Is PPCM *anchored to a weak expert* - behaviour cloning (Liu et al. 2024, sec. V-B) makes
the policy near-deterministic on DEP_SOFT's choices, so PPO never explores the cloud - or is something else going on?

Design (one sweep point, everything else as in :mod:`edgemigrate.experiments.ppcm.sweep`):

* the same training budget (``train_steps``) for every RL variant of :data:`CONTROLLED` - PPCM as in the paper
  (DEP_SOFT, 30 BC epochs), PPCM with light behaviour cloning (2 epochs), PPCM with the strong LEAST_DELAY
  expert (:mod:`edgemigrate.policies.least_delay`), and PPO (no demonstrations) - each with several training
  seeds, because training-seed variance is part of the answer;
* every agent evaluated greedily on the standard evaluation seeds (``EVAL_SEED0 + i``), beside reference
  policies (DEP_SOFT, LEAST_DELAY, GA) on the same seeds;
* the direct evidence about exploration: the policy's mean entropy on the demonstration states before and right
  after behaviour cloning (``warm_start`` of each run), and per PPO update the entropy of the acting policy over
  its rollout and the share of its actions that chose the cloud (``rollout_entropy``, ``rollout_cloud_share``
  in ``train.csv``); the evaluated episodes' cloud share.

Outputs: ``episodes.csv`` (one row per evaluated episode, with ``train_seed``), ``summary.csv`` / ``summary.md``
(pooled over training and evaluation seeds, 95 % Student-t CIs, plus per-training-seed means), ``runs.csv``
(warm-start and first/last training-log values per trained agent), ``plots/controlled.png``, ``manifest.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.stats import mean_ci95
from edgemigrate.experiments.grid import Job, run_grid
from edgemigrate.experiments.ppcm.design import (
    BASELINES,
    EVAL_SEED0,
    EXTRA_POLICIES,
    RL_VARIANTS,
    SCENARIO,
    check_expert,
    variant_expert,
)
from edgemigrate.experiments.ppcm.plots import plot_controlled
from edgemigrate.experiments.ppcm.sweep import SweepResult, eval_job, point_overrides, train_job
from edgemigrate.experiments.results import (
    manifest,
    new_run_dir,
    read_table,
    run_name,
    write_json,
    write_table,
)
from edgemigrate.scenarios import load_scenario

CONTROLLED = ("ppcm", "ppcm_light_bc", "ppcm_strong", "ppo")
REFERENCES = ("dep_soft", "least_delay", "ga")
#: Blocks of PPO updates whose training-log means are reported: the demonstration phase (default
#: ``demo_decay_updates`` = 20, split in two halves) and the last 20 updates.
PHASES = {"u1_10": slice(0, 10), "u11_20": slice(10, 20), "last20": slice(-20, None)}
METRICS = ("per_task_total_s", "per_task_deployment_s", "per_task_backhaul_s", "per_task_computation_s",
           "per_task_migration_s", "cloud_share")


def run_controlled(*, point: float = 120.0, variants: Sequence[str] = CONTROLLED, train_seeds: Sequence[int] = (1, 2),
                   references: Sequence[str] = REFERENCES, seeds: int = 5, train_steps: int = 40_000,
                   expert: str = "dep_soft", out_root: Path = Path("results"), workers: int = 1,
                   ray_address: str | None = None, scenario: str = SCENARIO, progress: bool = True,
                   overrides: Sequence[str] = ()) -> SweepResult:
    """Train ``variants`` x ``train_seeds`` at ``point`` tasks/min, evaluate them and ``references``."""
    for v in variants:
        if v not in RL_VARIANTS:
            from edgemigrate.core.registry import suggest

            raise ConfigError(f"unknown RL variant '{v}'{suggest(v, tuple(RL_VARIANTS))}")
    for r in references:
        if r not in BASELINES + EXTRA_POLICIES:
            from edgemigrate.core.registry import suggest

            raise ConfigError(f"unknown reference policy '{r}'{suggest(r, BASELINES + EXTRA_POLICIES)}")
    check_expert(expert)
    if seeds < 2:
        raise ConfigError("--seeds must be >= 2 for confidence intervals")
    if not train_seeds:
        raise ConfigError("--train-seeds needs at least one seed")
    ov = [*overrides, *point_overrides("tasks", point)]
    load_scenario(scenario, ov)  # fail fast on a bad scenario or --set
    out = new_run_dir(out_root, run_name(f"{scenario}-controlled", f"tasks{point:g}", seeds))
    agents = out / "agents"
    grid_t = [(v, s) for v in variants for s in train_seeds]
    trained = run_grid([Job(train_job, dict(scenario=scenario, overrides=ov, algo=v, train_steps=train_steps,
                                            out_dir=str(agents), expert=expert, seed=s), label=f"train {v} {s}")
                        for v, s in grid_t], workers=workers, ray_address=ray_address, progress=progress)
    grid_e = [(v, s, t["checkpoint"], e) for (v, s), t in zip(grid_t, trained, strict=True) for e in range(seeds)]
    grid_e += [(r, -1, None, e) for r in references for e in range(seeds)]
    results = run_grid([Job(eval_job, dict(scenario=scenario, overrides=ov, algo=a, seed=EVAL_SEED0 + e,
                                           checkpoint=c), label=f"eval {a} {s} {e}") for a, s, c, e in grid_e],
                       workers=workers, ray_address=ray_address, progress=progress)
    rows = [{"tasks_per_min": point, "train_seed": s, **r} for (_, s, _, _), r in zip(grid_e, results, strict=True)]
    write_table(out / "episodes.csv", {k: np.array([r[k] for r in rows]) for k in rows[0]})
    agg = aggregate_controlled(rows)
    write_table(out / "summary.csv", {k: np.array([r[k] for r in agg]) for k in agg[0]})
    runs = run_table(trained)
    write_table(out / "runs.csv", {k: np.array([r[k] for r in runs]) for k in runs[0]})
    (out / "summary.md").write_text(markdown_controlled(agg, runs, point, train_steps, seeds))
    plot_controlled(agg, rows, [t["log_csv"] for t in trained], [t["algo"] for t in trained],
                    [t["train_seed"] for t in trained], out / "plots", point)
    write_json(out / "manifest.json", manifest(0, None, {
        "experiment": "ppcm controlled", "scenario": scenario, "tasks_per_min": point, "variants": list(variants),
        "experts": {v: variant_expert(v, expert) for v in variants}, "train_seeds": list(train_seeds),
        "references": list(references), "eval_seeds": [EVAL_SEED0 + e for e in range(seeds)],
        "train_steps": train_steps, "overrides": list(overrides),
        "agents": {f"{t['algo']}@seed{t['train_seed']}": t["checkpoint"] for t in trained}}))
    return SweepResult(out, rows)


def aggregate_controlled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per algorithm: mean and 95 % CI of every metric pooled over all its episodes (training seeds x evaluation
    seeds), the number of training seeds, and the per-training-seed means of the total delay."""
    order = list(dict.fromkeys(r["algo"] for r in rows))
    out = []
    for algo in order:
        sel = [r for r in rows if r["algo"] == algo]
        tseeds = sorted({int(r["train_seed"]) for r in sel})
        agg: dict[str, Any] = {"algo": algo, "episodes": len(sel), "train_seeds": len(tseeds) if tseeds != [-1] else 0}
        for m in METRICS:
            v = np.array([r[m] for r in sel], dtype=np.float64)
            agg[f"{m}_mean"], agg[f"{m}_ci95"] = mean_ci95(v)
        per_seed = [float(np.mean([r["per_task_total_s"] for r in sel if int(r["train_seed"]) == s])) for s in tseeds]
        agg["per_seed_total_s"] = " ".join(f"{x:.2f}" for x in per_seed) if tseeds != [-1] else ""
        out.append(agg)
    return out


def run_table(trained: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trained agent: its warm start and the first/last update of its training log."""
    out = []
    for t in trained:
        w = t.get("warm_start") or {}
        log = read_table(Path(t["log_csv"]))
        row: dict[str, Any] = {"algo": t["algo"], "train_seed": t["train_seed"], "expert": t["expert"] or "none"}
        for k in ("demo_steps", "demo_cloud_share", "entropy_before_bc", "entropy_after_bc", "bc_accuracy",
                  "bc_cloud_share"):
            row[k] = float(w.get(k, float("nan")))
        for k in ("rollout_entropy", "rollout_cloud_share"):
            col = np.asarray(log[k], dtype=np.float64)
            row[f"{k}_first"] = float(col[0]) if col.size else float("nan")
            row[f"{k}_last"] = float(col[-1]) if col.size else float("nan")
            for name, part in PHASES.items():  # means over blocks of updates: single updates are noisy
                sel = col[part]
                row[f"{k}_{name}"] = float(sel.mean()) if sel.size else float("nan")
        rew = np.asarray(log["mean_episode_reward"], dtype=np.float64)
        rew = rew[np.isfinite(rew)]
        row["last_episode_reward"] = float(rew[-1]) if rew.size else float("nan")
        row["wall_s"] = float(np.asarray(log["wall_s"], dtype=np.float64)[-1]) if len(log["wall_s"]) else float("nan")
        out.append(row)
    return out


def _f(x: float, nd: int = 2) -> str:
    return "-" if not np.isfinite(x) else f"{x:.{nd}f}"


def markdown_controlled(agg: list[dict[str, Any]], runs: list[dict[str, Any]], point: float, train_steps: int,
                        seeds: int) -> str:
    lines = [f"# PPCM controlled experiment at {point:g} tasks/min", "",
             f"RL variants trained {train_steps} environment steps per training seed; every agent and reference "
             f"evaluated on the same {seeds} evaluation seeds. Delay per task in seconds (Liu et al. 2024, eqs. 1-10), mean "
             "+- 95 % CI pooled over training seeds x evaluation episodes; the last column lists each training "
             "seed's mean total delay.", "",
             "| algorithm | episodes | total | deployment | backhaul | computation | migration | cloud share "
             "| per training seed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in agg:
        cells = [f"{r[f'{m}_mean']:.2f} +- {r[f'{m}_ci95']:.2f}" for m in METRICS]
        lines.append(f"| {r['algo']} | {r['episodes']} | " + " | ".join(cells) + f" | {r['per_seed_total_s']} |")
    lines += ["", "Warm start and training (entropy in nats of the masked action distribution; `before/after BC` on "
              "the demonstration states; `rollout` = the acting policy over its rollouts, mean over blocks of PPO updates):",
              "", "| variant | train seed | expert | demo cloud share | entropy before BC | entropy after BC | "
              "BC accuracy | rollout entropy: updates 1-10 / 11-20 / last 20 | rollout cloud share: 1-10 / 11-20 / "
              "last 20 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        ent = " / ".join(_f(r.get(f"rollout_entropy_{p}", float("nan"))) for p in PHASES)
        cloud = " / ".join(_f(r.get(f"rollout_cloud_share_{p}", float("nan"))) for p in PHASES)
        lines.append(f"| {r['algo']} | {int(r['train_seed'])} | {r['expert']} | {_f(r['demo_cloud_share'])} | "
                     f"{_f(r['entropy_before_bc'], 3)} | {_f(r['entropy_after_bc'], 3)} | {_f(r['bc_accuracy'])} | "
                     f"{ent} | {cloud} |")
    return "\n".join(lines) + "\n"


def _rows(path: Path) -> list[dict[str, Any]]:
    t = read_table(path)
    n = len(next(iter(t.values()))) if t else 0
    return [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in t.items()} for i in range(n)]


def merge_controlled(run_dirs: Sequence[Path], out_root: Path = Path("results")) -> SweepResult:
    """Combine the results folders of several ``controlled`` runs at the same point into one table and plot
    (e.g. a variant added later; one folder = re-summarise it with the current tables); nothing is re-run. Each folder keeps its own manifest; the merged one lists
    them. An algorithm present in two folders is refused (its episodes would be pooled twice)."""
    if not run_dirs:
        raise ConfigError("merge needs at least one controlled results folder")
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    logs: list[tuple[str, str, int]] = []
    agents: dict[str, str] = {}
    points, seen, mans = set(), set(), []
    for d in run_dirs:
        d = Path(d)
        for name in ("episodes.csv", "runs.csv", "manifest.json"):
            if not (d / name).is_file():
                raise ConfigError(f"{d}: not a controlled results folder (no {name})")
        man = json.loads((d / "manifest.json").read_text())
        if man.get("experiment") != "ppcm controlled":
            raise ConfigError(f"{d / 'manifest.json'}: experiment '{man.get('experiment')}', not 'ppcm controlled'")
        here = _rows(d / "episodes.csv")
        algos = {r["algo"] for r in here}
        if algos & seen:
            raise ConfigError(f"{d}: algorithm(s) {sorted(algos & seen)} already in an earlier folder")
        seen |= algos
        points.add(float(man["tasks_per_min"]))
        rows += here
        for key, ckpt in man["agents"].items():  # the run table is rebuilt from each agent's own folder
            algo, seed = key.rsplit("@seed", 1)
            agents[key] = ckpt
            run_dir = Path(ckpt).parent
            cfg = json.loads((run_dir / "config.json").read_text())
            logs.append((str(run_dir / "train.csv"), algo, int(seed)))
            runs += run_table([{"algo": algo, "train_seed": int(seed), "expert": cfg.get("expert"),
                                "log_csv": str(run_dir / "train.csv"), "warm_start": cfg.get("warm_start", {})}])
        mans.append({"folder": str(d), "command": man.get("command"), "git_sha": man.get("git_sha")})
    if len(points) != 1:
        raise ConfigError(f"the folders are at different points: {sorted(points)} tasks/min")
    point = points.pop()
    rl = [r for r in rows if int(r["train_seed"]) >= 0]
    refs = [r for r in rows if int(r["train_seed"]) < 0]
    rows = rl + refs  # RL variants first, references last, as in a single run
    out = new_run_dir(out_root, run_name("ppcm-paper-controlled", f"tasks{point:g}-merged", len(run_dirs)))
    write_table(out / "episodes.csv", {k: np.array([r[k] for r in rows]) for k in rows[0]})
    agg = aggregate_controlled(rows)
    write_table(out / "summary.csv", {k: np.array([r[k] for r in agg]) for k in agg[0]})
    write_table(out / "runs.csv", {k: np.array([r[k] for r in runs]) for k in runs[0]})
    steps = {int(r["train_steps"]) for r in [json_manifest(Path(m["folder"])) for m in mans]}
    seeds = len({int(r["seed"]) for r in rows})
    (out / "summary.md").write_text(markdown_controlled(agg, runs, point, steps.pop() if len(steps) == 1 else -1,
                                                        seeds))
    plot_controlled(agg, rows, [p for p, _, _ in logs], [a for _, a, _ in logs], [s for _, _, s in logs],
                    out / "plots", point)
    write_json(out / "manifest.json", manifest(0, None, {"experiment": "ppcm controlled (merged)",
                                                          "tasks_per_min": point, "merged": mans,
                                                          "agents": agents}))
    return SweepResult(out, rows)


def json_manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "manifest.json").read_text()))
