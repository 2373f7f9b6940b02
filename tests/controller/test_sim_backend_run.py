"""The thin entry point: a testbed-mirror run writes its per-tick table and manifest, store on a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.controller.sim import METRIC_COLUMNS, calibration_to_json
from edgemigrate.experiments.handover_sim import main, run
from edgemigrate.experiments.results import read_table


def test_run_writes_ticks_and_manifest_with_a_file_store_and_calibration(tmp_path: Path) -> None:
    cal = tmp_path / "cal.json"
    hosts = {h: (1000.0, [(50e6, 0.1)], [(72e6, 0.15)]) for h in ("edge-0", "edge-1", "edge-2")}
    cal.write_text(json.dumps(calibration_to_json(hosts, measured_downtime_s=[0.7])))
    store = tmp_path / "run.db"
    totals = run("handover-testbed", "nearest", tmp_path / "out", ticks=100, calibration=cal,
                 store_url=f"sqlite:///{store}")
    table = read_table(tmp_path / "out" / "ticks.csv")
    assert list(table) == list(METRIC_COLUMNS) and len(table["tick"]) == 100
    assert totals["handovers"] == table["handovers"].sum() > 0
    assert totals["failed"] == 0
    man = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert man["planner"] == "nearest" and man["measured_downtime_s"] == [0.7] and man["seed"] == 0
    assert store.stat().st_size > 0  # the controller's own store, on a file


def test_main_rejects_an_unknown_planner(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--planner", "psychic", "--out", str(tmp_path)])
