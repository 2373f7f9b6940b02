"""``edgemigrate experiment shareon sweep``: the five policies over load, compute per node, inter-edge
bandwidth and user latency (Maheshwari et al. 2018, figs. 8-9 analogues), seeds with 95 % CIs.

Each axis is swept around the base point (:data:`~edgemigrate.experiments.shareon.design.BASE`, load 0.7);
points that resolve to the same configuration (every axis passes through the base) are simulated once and
shared. The results folder holds ``runs.csv`` (one row per run), ``summary.csv`` (mean and CI half-width per
axis, value and policy), ``summary.md`` (tables and the two checks of the issue: ShareOn against the next best
at high load, and ShareOn's migration cost against its gain at low load), ``plots/*.png``, ``config.json`` (the
resolved world, base configuration and agent parameters) and ``manifest.json`` (command, seeds, versions,
git SHA).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.stats import mean_ci95
from edgemigrate.experiments.grid import Job, run_grid
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table
from edgemigrate.experiments.shareon.design import (
    AXES,
    BASE,
    MIGRATING,
    POLICIES,
    WorldConfig,
    agent_params,
    point_config,
    run_one,
)
from edgemigrate.experiments.shareon.plots import plot_sweep

METRICS = ("mean_response_s", "mean_net_s", "mean_proc_s", "migrations_per_user_h", "migrated_gb",
           "mean_migration_s")
HIGH_LOAD = 0.7
LOW_LOAD = 0.2


@dataclass(frozen=True, slots=True)
class SweepResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]


def _check(axes: Sequence[str], policies: Sequence[str], seeds: int) -> None:
    for a in axes:
        if a not in AXES:
            raise ConfigError(f"--axes: unknown axis '{a}' (expected some of {', '.join(AXES)})")
    for p in policies:
        if p not in POLICIES:
            raise ConfigError(f"--policies: unknown policy '{p}' (expected some of {', '.join(POLICIES)})")
    if seeds < 2:
        raise ConfigError(f"--seeds: expected at least 2 for confidence intervals, got {seeds}")


def run_sweep(*, axes: Sequence[str] = tuple(AXES), points: dict[str, Sequence[float]] | None = None,
              policies: Sequence[str] = POLICIES, seeds: int = 5, world: WorldConfig | None = None,
              out_root: Path = Path("results"), workers: int = 2, progress: bool = True,
              seed0: int = 0) -> SweepResult:
    """Run the grid, write the results folder, return it with the rows and the summary."""
    _check(axes, policies, seeds)
    world = world or WorldConfig()
    grid = [(a, float(v)) for a in axes for v in (points or {}).get(a, AXES[a])]
    unique: dict[Any, tuple[str, float]] = {}
    for a, v in grid:
        unique.setdefault(point_config(a, v), (a, v))
    out = new_run_dir(out_root, run_name("shareon-sweep", "five-policies", f"{seed0}-{seed0 + seeds - 1}"))
    jobs = [Job(run_one, dict(axis=a, value=v, policy=p, seed=seed0 + s, world=world), label=f"{a}={v} {p} {s}")
            for a, v in unique.values() for p in policies for s in range(seeds)]
    t0 = time.time()
    done = run_grid(jobs, workers=workers, progress=progress)
    by_cfg = {(point_config(r["axis"], r["value"]), r["policy"], r["seed"]): r for r in done}
    rows = [{**by_cfg[(point_config(a, v), p, seed0 + s)], "axis": a, "value": v}
            for a, v in grid for p in policies for s in range(seeds)]
    summary = aggregate(rows)
    write_table(out / "runs.csv", {k: np.array([r[k] for r in rows]) for k in rows[0]})
    write_table(out / "summary.csv", {k: np.array([r[k] for r in summary]) for k in summary[0]})
    (out / "summary.md").write_text(markdown_summary(summary, seeds))
    plot_sweep(summary, out / "plots")
    example = agent_params(dataclasses.replace(BASE), world.n_users, world.n_nodes)
    write_json(out / "config.json", {"world": dataclasses.asdict(world), "base": dataclasses.asdict(BASE),
                                     "axes": {a: list((points or {}).get(a, AXES[a])) for a in axes},
                                     "policies": list(policies), "agent_params_at_base": dataclasses.asdict(example)})
    write_json(out / "manifest.json", manifest(seed0, None, {
        "experiment": "shareon sweep", "seeds": [seed0 + s for s in range(seeds)], "runs": len(jobs),
        "wall_s": round(time.time() - t0, 1)}))
    return SweepResult(out, rows, summary)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and 95 % CI half-width of every metric per (axis, value, policy)."""
    keys = sorted({(r["axis"], r["value"], r["policy"]) for r in rows},
                  key=lambda k: (list(AXES).index(k[0]), k[1], POLICIES.index(k[2])))
    out = []
    for a, v, p in keys:
        sel = [r for r in rows if (r["axis"], r["value"], r["policy"]) == (a, v, p)]
        agg: dict[str, Any] = {"axis": a, "value": v, "policy": p, "seeds": len(sel)}
        for m in METRICS:
            agg[f"{m}_mean"], agg[f"{m}_ci95"] = mean_ci95([r[m] for r in sel])
        out.append(agg)
    return out


def _cell(r: dict[str, Any], m: str, scale: float = 1.0, digits: int = 1) -> str:
    return f"{scale * r[f'{m}_mean']:.{digits}f} +- {scale * r[f'{m}_ci95']:.{digits}f}"


def high_load_check(summary: list[dict[str, Any]], load: float = HIGH_LOAD) -> str:
    """ShareOn against the next best policy at ``load``: means, CIs, and whether the CIs overlap."""
    here = sorted((r for r in summary if r["axis"] == "load" and r["value"] == load),
                  key=lambda r: r["mean_response_s_mean"])
    so = [r for r in here if r["policy"] == "shareon"]
    if not so or len(here) < 2:
        return f"- high load ({load:g}): not in this sweep"
    others = [r for r in here if r["policy"] != "shareon"]
    best = others[0]
    s, b = so[0], best
    s_hi = s["mean_response_s_mean"] + s["mean_response_s_ci95"]
    b_lo = b["mean_response_s_mean"] - b["mean_response_s_ci95"]
    verdict = ("lowest, CIs do not overlap" if s_hi < b_lo else
               "lowest, but the CIs overlap" if s["mean_response_s_mean"] < b["mean_response_s_mean"] else
               "NOT the lowest")
    return (f"- high load ({load:g}): ShareOn {_cell(s, 'mean_response_s', 1e3)} ms vs next best {b['policy']} "
            f"{_cell(b, 'mean_response_s', 1e3)} ms: ShareOn is {verdict}.")


def low_load_check(summary: list[dict[str, Any]], load: float = LOW_LOAD) -> str:
    """ShareOn's migration cost at ``load`` against its gain over the best policy that does not migrate."""
    here = {r["policy"]: r for r in summary if r["axis"] == "load" and r["value"] == load}
    static = [here[p] for p in ("equal_load", "nearest") if p in here]
    if "shareon" not in here or not static:
        return f"- low load ({load:g}): not in this sweep"
    s = here["shareon"]
    b = min(static, key=lambda r: r["mean_response_s_mean"])
    gain_ms = 1e3 * (b["mean_response_s_mean"] - s["mean_response_s_mean"])
    return (f"- low load ({load:g}): ShareOn moved {_cell(s, 'migrated_gb')} GB "
            f"({_cell(s, 'migrations_per_user_h', 1, 2)} migrations per user-hour) for a response time "
            f"{gain_ms:+.1f} ms better than {b['policy']} ({_cell(s, 'mean_response_s', 1e3)} vs "
            f"{_cell(b, 'mean_response_s', 1e3)} ms).")


def markdown_summary(summary: list[dict[str, Any]], seeds: int) -> str:
    lines = ["# ShareOn sweep (Maheshwari et al. 2018, figs. 8-9 analogues)", "",
             f"Mean over {seeds} seeds +- 95 % CI half-width (Student t). Response = network + processing + "
             "migration downtime wait, request-weighted, after the warm-up. Base point: load 0.7, 4 cores per "
             "node, 1 Gbit/s inter-edge, 15 ms user latency.", "", "## Checks", "",
             high_load_check(summary), low_load_check(summary)]
    for axis in dict.fromkeys(r["axis"] for r in summary):
        lines += ["", f"## {axis}", "",
                  f"| {axis} | policy | response ms | network ms | processing ms | migrations/user/h | "
                  "migrated GB | migration s |", "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in summary if r["axis"] == axis):
            migr = r["policy"] in MIGRATING
            lines.append(
                f"| {r['value']:g} | {r['policy']} | {_cell(r, 'mean_response_s', 1e3)} | "
                f"{_cell(r, 'mean_net_s', 1e3)} | {_cell(r, 'mean_proc_s', 1e3)} | "
                + (f"{_cell(r, 'migrations_per_user_h', 1, 2)} | {_cell(r, 'migrated_gb')} | "
                   f"{_cell(r, 'mean_migration_s')} |" if migr else "- | - | - |"))
    return "\n".join(lines) + "\n"
