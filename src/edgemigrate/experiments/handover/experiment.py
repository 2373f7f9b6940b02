"""Run a handover experiment end to end and write its folder (see the package docstring for the files)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.core.runs import new_run_dir, run_name
from edgemigrate.experiments.handover.analysis import MIGRATION_KEYS, iter_jsonl, run_summary
from edgemigrate.experiments.handover.bed import HandoverBed
from edgemigrate.experiments.handover.design import PLANNERS, SERVICES, HandoverConfig
from edgemigrate.experiments.handover.report import markdown, plots, summarise, targets
from edgemigrate.experiments.handover.timeline import load_record, timeline_figures
from edgemigrate.experiments.results import json_line, manifest, write_json

RUN_COLUMNS = ("service", "planner", "repeat", "seed", "moves", "migrations", "handovers", "failed_migrations",
               "downtime_s", "frozen_downtime_s", "longest_gap_s", "other_gaps_s", "frozen_s", "mean_delay_s", "p95_delay_s",
               "mean_proc_s", "mean_trans_s",
               "normal_interval_s", "requests", "answered", "pre_bytes", "final_bytes", "final_over_pre",
               "counter_ok", "moves_unverified")


def run_seed(seed: int, service: str, planner: str, repeat: int) -> int:
    """The controller's seed (the random planner's draws) of one run, derived from the experiment's seed.
    Services and planners enter by their place in the catalogue (``SERVICES``, ``PLANNERS``), not in this run's
    lists, so a run of one service or one planner draws what the same run does in the full experiment."""
    key = [seed, repeat, SERVICES.index(service), PLANNERS.index(planner)]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def run_experiment(cfg: HandoverConfig, out_root: Path, *, plot: bool = True,
                   progress: Callable[[str], None] = print) -> Path:
    """Every repeat x service x planner on one testbed (interleaved, so that a change in the machine's load
    spreads over all planners alike); returns the results folder."""
    folder = new_run_dir(out_root, run_name("testbed-handover", "-".join(cfg.planners), cfg.seed))
    write_json(folder / "config.json", cfg.to_dict())
    write_json(folder / "manifest.json", manifest(cfg.seed, extra={"experiment": "handover"}))
    bed = HandoverBed(cfg, Path(tempfile.mkdtemp(prefix="edgemigrate-ho-")))
    runs: list[dict[str, Any]] = []
    migs: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    bed.up()
    try:
        total = cfg.repeats * len(cfg.services) * len(cfg.planners)
        warm: dict[str, Any] = {}
        for service in cfg.services:
            bed.warm_up(service)
            model = bed.precopy_model(service)
            warm[service] = None if model is None else dataclasses.asdict(model)
            progress(json_line({"warm_up": service, "precopy_model": warm[service]}))
        # the model the first runs plan with (later runs refit it with every migration measured before them)
        write_json(folder / "precopy_warmup.json", warm)
        for repeat in range(cfg.repeats):
            for service in cfg.services:
                for planner in cfg.planners:
                    seed = run_seed(cfg.seed, service, planner, repeat)
                    try:
                        rec = bed.run(service, planner, repeat, folder / "runs" / f"{service}__{planner}__{repeat}",
                                      seed)
                    except EdgeMigrateError as exc:  # one broken run is reported, the others still run
                        failed.append({"service": service, "planner": planner, "repeat": repeat,
                                       "error": str(exc)[:500]})
                        progress(json_line({"run_failed": failed[-1]}))
                        write_json(folder / "failed_runs.json", failed)
                        continue
                    (rec.folder / "events.json").write_text(json.dumps(rec.events, indent=1) + "\n")
                    (rec.folder / "actions.json").write_text(json.dumps(rec.actions, indent=1) + "\n")
                    row, rows = run_summary(rec, cfg.handover_outage_s)
                    row["seed"] = seed
                    runs.append(row)
                    migs += rows
                    bed.add_samples(service, rows)
                    with (folder / "migrations.jsonl").open("a") as fh:
                        fh.writelines(line + "\n" for line in iter_jsonl(rows))
                    _write_runs(folder / "runs.csv", runs)
                    progress(json_line({"run": len(runs), "of": total} | {k: row[k] for k in RUN_COLUMNS}))
    finally:
        bed.down()
        shutil.rmtree(bed.root, ignore_errors=True)
    write_summary(folder, cfg.to_dict(), runs, migs, failed, plot=plot, progress=progress)
    return folder


def write_summary(folder: Path, config: dict[str, Any], runs: list[dict[str, Any]], migs: list[dict[str, Any]],
                  failed: list[dict[str, Any]], *, plot: bool = True,
                  progress: Callable[[str], None] = print) -> None:
    """``summary.csv``/``.json``/``.md`` and the figures from the runs' and migrations' rows."""
    summary = summarise(runs, migs)
    goals = targets(summary)
    _write_dicts(folder / "summary.csv", summary)
    write_json(folder / "summary.json", {"summary": summary, "targets": goals})
    note = (f"{config['repeats']} repeat(s) of {', '.join(config['services'])} x {', '.join(config['planners'])}; "
            f"seed {config['seed']}; {len(runs)} run(s) analysed, {len(failed)} failed (failed_runs.json). Measured "
            "on a shared 2-core machine: absolute times carry its load.")
    (folder / "summary.md").write_text(markdown(summary, goals, note))
    if plot:
        plots(summary, folder)
        timeline_figures(folder, config["services"], config["planners"], float(config["handover_outage_s"]), folder)
    for r in summary:
        progress(json_line({"summary": r["service"], "planner": r["planner"], "repeats": r["repeats"]}
                            | {k: r[k] for k in ("downtime_s", "downtime_s_ci95", "frozen_downtime_s",
                                                 "frozen_downtime_s_ci95", "frozen_s", "frozen_s_ci95",
                                                 "mean_delay_s", "mean_delay_s_ci95", "mean_proc_s",
                                                 "mean_trans_s", "migrations",
                                                 "final_over_pre", "final_over_pre_max", "counter_ok")}))
    for g in goals:
        progress(json_line({"target": g}))


def reanalyse(folder: Path, *, plot: bool = True, progress: Callable[[str], None] = print) -> None:
    """Recompute every table and figure of a results folder from the records its runs left (nothing runs)."""
    from edgemigrate.testbed import config_from_mapping

    config = json.loads((folder / "config.json").read_text())
    tb = config_from_mapping(config["testbed"], where=f"{folder / 'config.json'}: testbed")
    ee, ec = tb.links["edge_edge"], tb.links["cloud_edge"]
    link = {"edge_edge_bps": ee.rate_mbit * 1e6, "edge_edge_rtt_s": ee.rtt_ms / 1000.0,
            "edge_cloud_bps": ec.rate_mbit * 1e6, "edge_cloud_rtt_s": ec.rtt_ms / 1000.0}
    runs: list[dict[str, Any]] = []
    migs: list[dict[str, Any]] = []
    for d in sorted((folder / "runs").iterdir()):
        if not (d / "events.json").exists() or not (d / "mu_summary.json").exists():
            continue
        rec = load_record(d, link)
        service, planner, repeat = rec.service, rec.planner, rec.repeat
        row, rows = run_summary(rec, float(config["handover_outage_s"]))
        row["seed"] = run_seed(int(config["seed"]), service, planner, int(repeat))
        runs.append(row)
        migs += rows
    (folder / "migrations.jsonl").write_text("".join(line + "\n" for line in iter_jsonl(migs)))
    _write_runs(folder / "runs.csv", runs)
    failed_path = folder / "failed_runs.json"
    failed = json.loads(failed_path.read_text()) if failed_path.exists() else []
    write_summary(folder, config, runs, migs, failed, plot=plot, progress=progress)


def _write_runs(path: Path, runs: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(RUN_COLUMNS), extrasaction="ignore")
        w.writeheader()
        w.writerows(runs)


def _write_dicts(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


__all__ = ["MIGRATION_KEYS", "reanalyse", "run_experiment", "run_seed"]
