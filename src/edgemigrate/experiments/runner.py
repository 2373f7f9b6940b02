"""Run one scenario with one policy and write its run folder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.config import to_dict
from edgemigrate.experiments.plots import plot_run
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table
from edgemigrate.policies import make_policy
from edgemigrate.scenarios.scenario import Scenario, build_simulator
from edgemigrate.sim.config import DecisionKind


@dataclass(frozen=True, slots=True)
class RunResult:
    out_dir: Path
    summary: dict[str, Any]


def summarise(steps: dict[str, np.ndarray], decisions: dict[str, np.ndarray]) -> dict[str, Any]:
    kinds = decisions["kind"]
    out: dict[str, Any] = {
        "decisions": int(len(kinds)),
        "arrivals": int((kinds == DecisionKind.ARRIVAL).sum()),
        "migrations_passive": int(steps["migrations_passive"].sum()),
        "migrations_proactive": int(steps["migrations_proactive"].sum()),
        "fallbacks_to_cloud": int(steps["fallbacks_to_cloud"].sum()),
        "handovers": int(steps["handovers"].sum()),
    }
    for key in ("total_s", "migration_s", "computation_s", "deployment_s", "backhaul_s"):
        col = decisions[key]
        out[f"mean_{key}"] = float(col.mean()) if col.size else 0.0
    out["sum_total_s"] = float(decisions["total_s"].sum())
    # per task: all decisions of one task (its arrival and every migration) add up to its T_k
    n_tasks = max(1, out["arrivals"])
    for key in ("total_s", "migration_s", "computation_s", "deployment_s", "backhaul_s"):
        out[f"per_task_{key}"] = float(decisions[key].sum()) / n_tasks
    return out


def run_scenario(sc: Scenario, out_root: Path, *, progress: bool = True, plots: bool = True,
                 command: list[str] | None = None) -> RunResult:
    sim = build_simulator(sc)
    policy = make_policy(sc.policy, seed=sc.seed)
    out_dir = new_run_dir(out_root, run_name(sc.name, sc.policy, sc.seed))
    write_json(out_dir / "config.json", to_dict(sc))
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sc.sim.n_steps, desc=f"{sc.name}/{sc.policy}", unit="step", leave=False)
    sim.run(policy, progress=(lambda _i: bar.update(1)) if bar is not None else None)
    if bar is not None:
        bar.close()
    wall_s = time.perf_counter() - t0
    steps, decisions = sim.recorder.step_table(), sim.recorder.decisions
    write_table(out_dir / "steps.csv", steps)
    write_table(out_dir / "decisions.csv", decisions)
    summary = summarise(steps, decisions)
    summary["wall_s"] = wall_s
    summary["ms_per_step"] = 1000 * wall_s / max(1, sc.sim.n_steps)
    write_json(out_dir / "summary.json", summary)
    if plots:
        plot_run(steps, out_dir / "plots", f"{sc.name} / {sc.policy}")
    write_json(out_dir / "manifest.json", manifest(sc.seed, command, {"scenario": sc.name, "policy": sc.policy,
                                                                       "wall_s": wall_s}))
    return RunResult(out_dir, summary)
