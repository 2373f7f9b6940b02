"""CLI smoke tests: real runs of the `edgemigrate` command, one-line errors for user mistakes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemigrate.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgemigrate", *args], capture_output=True, text=True,
                          timeout=300)


def test_run_default_writes_a_complete_run_folder(tmp_path: Path) -> None:
    r = run_cli("run", "default", "--set", "sim.n_steps=20", "--set", "users.count=40", "--seed", "3",
                "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.strip().splitlines()[-1].split("results: ", 1)[1])
    for name in ("config.json", "manifest.json", "steps.csv", "decisions.csv", "summary.json",
                 "plots/latency_components.png", "plots/migrations.png", "plots/node_load.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["sim"]["n_steps"] == 20 and cfg["users"]["count"] == 40
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 3 and "numpy" in man["versions"] and man["git_sha"]
    with (out / "steps.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and int(rows[-1]["step"]) == 19
    summary = json.loads((out / "summary.json").read_text())
    with (out / "decisions.csv").open() as fh:
        assert sum(1 for _ in fh) - 1 == summary["decisions"] > 0


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        r = run_cli("run", "default", "--set", "sim.n_steps=15", "--set", "users.count=30", "--no-plots",
                    "--out", str(tmp_path / str(i)))
        assert r.returncode == 0, r.stderr
        outs.append(Path(r.stdout.strip().splitlines()[-1].split("results: ", 1)[1]))
    assert (outs[0] / "decisions.csv").read_text() == (outs[1] / "decisions.csv").read_text()


@pytest.mark.parametrize("args, message", [
    (["run", "defualt"], "unknown scenario 'defualt' (did you mean 'default'?)"),
    (["run", "default", "--set", "sim.n_stpes=3"], "--set sim.n_stpes: unknown key (did you mean 'n_steps'?)"),
    (["run", "default", "--policy", "neares"], "unknown policy 'neares' (did you mean 'nearest'?)"),
    (["run", "default", "--set", "sim.dt_s=-2"], "--set sim.dt_s: expected a number in (0, 86400], got -2"),
    (["run", "default", "--set", "nodes.count=1500"], "nodes.count = 1500 but only"),
])
def test_user_errors_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_help_and_scenarios_list() -> None:
    r = run_cli("--help")
    assert r.returncode == 0 and "run" in r.stdout and "scenarios" in r.stdout
    r = run_cli("scenarios")
    assert r.returncode == 0 and "default" in r.stdout and "nearest" in r.stdout


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    latin1 = tmp / "latin1.toml"
    latin1.write_bytes('name = "Mühle"\n'.encode("latin-1"))
    folder = tmp / "a_folder"
    folder.mkdir()
    negative = tmp / "negative.toml"
    negative.write_text("[users]\ncount = -4\n")
    return [
        (["run", str(latin1)], f"{latin1}: not UTF-8 text"),
        (["run", f"{folder}/"], f"{folder}: is a folder"),
        (["run", "default", "--set", "sim.dt_s=nan"], "--set sim.dt_s: expected a finite number, got nan"),
        (["run", "default", "--set", "sim.dt_s=inf"], "--set sim.dt_s: expected a finite number, got inf"),
        (["run", "default", "--set", "users.count=-5"], "--set users.count: expected an integer in [1, 100000], got -5"),
        (["run", "default", "--set", "nodes.count=0"], "--set nodes.count: expected an integer in [1, 2000], got 0"),
        (["run", "default", "--set", "users.count=1e20"], "--set users.count: expected an integer in [1, 100000]"),
        (["run", "default", "--set", "sim.n_steps=abc"], "--set sim.n_steps: expected an integer, got 'abc'"),
        (["run", "default", "--seed", "-1"], "--seed: expected an integer in [0, "),
        (["run", str(negative)], f"{negative}: users.count: expected an integer in [1, 100000], got -4"),
    ]


def test_bad_scenario_inputs_fail_in_one_line_without_a_results_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for args, message in _bad_inputs(tmp_path):
        r = run_cli(*args, "--out", str(out), "--no-plots", "-q")
        err = r.stderr.strip()
        assert r.returncode == 2, (args, r.stderr)
        assert err.startswith("edgemigrate: error: ") and message in err, (args, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (args, err)
        assert not out.exists(), args  # nothing half-written
