"""A thin entry point: run the controller's loop over the simulator backend and write per-tick metrics.

Not the full ``edgemigrate experiment handover`` (that comes later): one scenario, one planner, one seed.
Writes ``<out>/ticks.csv`` (``experiments.results.write_table``; columns
``edgemigrate.controller.sim.METRIC_COLUMNS``) and ``<out>/manifest.json`` (``results.manifest``: command,
seed, git sha, versions, plus the scenario, planner and totals).

Usage: python -m edgemigrate.experiments.handover_sim --scenario handover-testbed --planner orchestrated \\
           --out results/handover-testbed [--ticks 240] [--calibration measured.json] [--store sqlite:///run.db]
           [--service counter]

:func:`compare` is ``edgemigrate controller simulate``: the calibrated scenario's simulated per-migration
downtime against the measured one.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from edgemigrate.controller.sim import (
    SimBackend,
    SimController,
    load_calibration,
    load_scenario,
    metrics_columns,
)
from edgemigrate.controller.sim.driver import compare_with_measured
from edgemigrate.experiments.results import manifest, write_json, write_table
from edgemigrate.planning import PLANNERS, make_planner


def run(scenario: str, planner: str, out: Path, *, ticks: int | None = None, seed: int | None = None,
        calibration: Path | None = None, store_url: str = "sqlite://:memory:",
        service: str | None = None) -> dict[str, float]:
    """Run ``ticks`` ticks (the scenario's own count by default) and write the tables; returns the totals.
    ``service`` picks the calibrated service of a pre-copy calibration with several."""
    sc = load_scenario(scenario)
    if seed is not None:
        sc = dataclasses.replace(sc, seed=seed)
    cal = load_calibration(calibration) if calibration is not None else None
    ctl = SimController(SimBackend(sc, cal, service), make_planner(planner), store_url=store_url)
    try:
        cols = metrics_columns(ctl.run(sc.ticks if ticks is None else ticks))
    finally:
        ctl.close()
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / "ticks.csv", cols)
    totals = {k: float(cols[k].sum()) for k in ("migrations", "handovers", "failed", "downtime_s", "plan_errors")}
    extra = {"scenario": sc.name, "planner": planner, "users": sc.users, "tick_s": sc.tick_s,
             "calibration": str(calibration) if calibration else None, "service": service,
             "strategy": cal.strategy if cal is not None else None, "totals": totals}
    if cal is not None and cal.measured_downtime_s:
        extra["measured_downtime_s"] = list(cal.measured_downtime_s)
    write_json(out / "manifest.json", manifest(sc.seed, extra=extra))
    return totals


def compare(scenario: str, calibration: Path, planner: str = "orchestrated", *, out: Path | None = None,
            ticks: int | None = None, seed: int | None = None, service: str | None = None) -> dict[str, object]:
    """Simulated vs measured per-migration downtime for a calibrated scenario (``edgemigrate controller
    simulate``); with ``out``, ``comparison.json`` and the manifest (seed, git sha, versions) are written there."""
    sc = load_scenario(scenario)
    if seed is not None:
        sc = dataclasses.replace(sc, seed=seed)
    cal = load_calibration(calibration)
    result: dict[str, object] = dict(compare_with_measured(SimBackend(sc, cal, service), make_planner(planner), cal,
                                                           ticks=ticks, service=service))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "comparison.json", result)
        write_json(out / "manifest.json", manifest(sc.seed, extra={"scenario": sc.name, "planner": planner,
                                                                    "calibration": str(calibration),
                                                                    "service": service, "ticks": ticks}))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="handover-testbed", help="a bundled name or a TOML path")
    ap.add_argument("--planner", default="orchestrated", choices=sorted(PLANNERS.names()))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ticks", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--calibration", type=Path)
    ap.add_argument("--store", default="sqlite://:memory:")
    ap.add_argument("--service", help="the calibrated service (a pre-copy calibration with several)")
    a = ap.parse_args(argv)
    print(run(a.scenario, a.planner, a.out, ticks=a.ticks, seed=a.seed, calibration=a.calibration, store_url=a.store,
              service=a.service))


if __name__ == "__main__":
    main()
