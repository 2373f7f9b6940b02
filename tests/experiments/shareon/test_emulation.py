"""The emulation's configuration, summary and results folder, from hand-made runs (no root needed); the real
run is tests/experiments/shareon/test_emulation_real.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemigrate.cli import cli
from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.shareon.emulation import (
    NODE1,
    NODE2,
    EmulationConfig,
    RunResult,
    summarise,
    write_results,
)


def _run(mode: str, migrated: bool, delays: list[float], counters: list[int] | None = None) -> RunResult:
    rows = [(0.5 * i, d, (counters or list(range(1, len(delays) + 1)))[i]) for i, d in enumerate(delays)]
    mig = {"event": "migration_done", "ok": True, "t_start_s": 4.0, "t_s": 6.0, "frozen_window_s": 0.2} if migrated \
        else None
    return RunResult(mode, 0, rows, [(0.0, 0.0, 1.0), (4.0, 1.0, 0.0)], mig, 3.5 if migrated else None, 0.03, 0.1,
                     len(rows), [NODE2 if migrated else NODE1], [], 1 if migrated else 0)


def test_bad_configs_are_refused_in_one_line() -> None:
    for bad in ({"repeats": 0}, {"levels": 1}, {"step_s": 0.0}, {"threshold_s": -1.0}, {"host_cores": -1.0},
                {"threshold_idle_factor": -1.0}, {"stress_workers": 0}, {"load_weight": 0}, {"load_weight": 101}):
        with pytest.raises(ConfigError):
            EmulationConfig(**bad)  # type: ignore[arg-type]
    assert EmulationConfig(levels=6).loads() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert EmulationConfig(threshold_idle_factor=3).threshold(0.05) == pytest.approx(0.15)
    assert EmulationConfig().threshold(0.05) == 0.1


def test_the_summary_measures_before_after_and_the_state() -> None:
    cfg = EmulationConfig()
    delays = [0.05] * 2 + [0.3] * 6 + [0.5] * 4 + [0.04] * 8  # slow before the move (t 1-4 s), fast after 7 s
    s = summarise(_run("shareon", True, delays), _run("nomig", False, [0.5] * 20), cfg)
    assert s["migrated"] and s["state_intact"] and s["delay_dropped"]
    assert s["delay_before_s"] == pytest.approx(0.3) and s["delay_after_s"] == pytest.approx(0.04)
    assert s["nomig_delay_same_span_s"] == pytest.approx(0.5) and s["load1_at_decision"] == 0.0
    # a lost or repeated request breaks the counter sequence: state not intact
    broken = summarise(_run("shareon", True, delays, [1, 2, 3, 5, *range(6, 22)]), _run("nomig", False, [0.5]), cfg)
    assert not broken["state_intact"]


def test_the_results_folder_has_csv_markdown_and_png(tmp_path: Path) -> None:
    cfg = EmulationConfig(repeats=1)
    summaries = write_results(tmp_path, cfg, [(_run("shareon", True, [0.2] * 10 + [0.05] * 10),
                                               _run("nomig", False, [0.2] * 20))])
    assert summaries[0]["migrated"]
    with (tmp_path / "delay.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and {r["mode"] for r in rows} == {"shareon", "nomig"}
    assert "| repeat |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "delay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [r["mode"] for r in runs] == ["shareon", "nomig"]


def test_cli_has_help_and_refuses_bad_options() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["experiment", "shareon", "emulation", "--help"])
    assert res.exit_code == 0 and "--repeats" in res.output and "Maheshwari" in res.output
    res = runner.invoke(cli, ["experiment", "shareon", "emulation", "--repeats", "0"])
    assert res.exit_code == 2 and "--repeats" in res.output
