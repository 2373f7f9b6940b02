"""``edgemigrate experiment shareon sweep``: a small real sweep writes a complete results folder; the checks of
the summary read the right rows; user mistakes are one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.shareon.design import BASE, WorldConfig, point_config, run_one
from edgemigrate.experiments.shareon.sweep import high_load_check, low_load_check, run_sweep

TINY = WorldConfig(n_users=80, n_nodes=8, duration_s=40.0, warmup_s=10.0)


def test_a_small_sweep_writes_runs_summary_markdown_plots_config_and_manifest(tmp_path: Path) -> None:
    res = run_sweep(axes=("load", "cores"), points={"load": (0.3, 0.7), "cores": (4.0, 8.0)},
                    policies=("shareon", "nearest"), seeds=2, world=TINY, out_root=tmp_path, workers=1,
                    progress=False)
    out = res.out_dir
    for name in ("runs.csv", "summary.csv", "summary.md", "config.json", "manifest.json",
                 "plots/response_vs_load.png", "plots/response_vs_cores.png", "plots/migration_cost_vs_load.png"):
        assert (out / name).is_file(), name
    with (out / "runs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * 2 * 2  # (2 load + 2 cores points) x 2 policies x 2 seeds
    # load 0.7 and cores 4 are both the base point: simulated once, reported under both axes
    same = [(r["policy"], r["seed"], r["mean_response_s"]) for r in rows if (r["axis"], r["value"]) == ("load", "0.7")]
    also = [(r["policy"], r["seed"], r["mean_response_s"]) for r in rows if (r["axis"], r["value"]) == ("cores", "4.0")]
    assert same == also
    assert all(r["mean_migration_s"] == "0.0" and r["migrations"] == "0.0" for r in rows if r["policy"] == "nearest")
    summary = (out / "summary.md").read_text()
    assert "high load (0.7): ShareOn" in summary and "low load (0.2): not in this sweep" in summary
    man = json.loads((out / "manifest.json").read_text())
    assert man["seeds"] == [0, 1] and man["git_sha"] and "numpy" in man["versions"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world"]["n_users"] == 80 and cfg["base"]["load"] == BASE.load
    assert cfg["agent_params_at_base"]["cost_th_s"] > 0


def _row(policy: str, load: float, mean_ms: float, ci_ms: float, gb: float = 0.0) -> dict[str, object]:
    return {"axis": "load", "value": load, "policy": policy, "mean_response_s_mean": mean_ms / 1e3,
            "mean_response_s_ci95": ci_ms / 1e3, "migrated_gb_mean": gb, "migrated_gb_ci95": 0.1,
            "migrations_per_user_h_mean": 1.0, "migrations_per_user_h_ci95": 0.1}


def test_high_load_check_says_whether_the_intervals_overlap() -> None:
    apart = [_row("shareon", 0.7, 80, 1), _row("equal_load", 0.7, 90, 2), _row("nearest", 0.7, 500, 9)]
    assert "equal_load" in high_load_check(apart) and "CIs do not overlap" in high_load_check(apart)
    touching = [_row("shareon", 0.7, 80, 6), _row("equal_load", 0.7, 90, 5)]
    assert "the CIs overlap" in high_load_check(touching)
    losing = [_row("shareon", 0.7, 95, 1), _row("equal_load", 0.7, 90, 1)]
    assert "NOT the lowest" in high_load_check(losing)


def test_low_load_check_sets_the_migration_cost_against_the_gain() -> None:
    text = low_load_check([_row("shareon", 0.2, 60, 1, gb=3.0), _row("nearest", 0.2, 61, 1),
                           _row("equal_load", 0.2, 70, 1)])
    assert "3.0 +- 0.1 GB" in text and "+1.0 ms better than nearest" in text


def test_unknown_axes_policies_and_too_few_seeds_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown axis 'lod'"):
        run_sweep(axes=("lod",), world=TINY)
    with pytest.raises(ConfigError, match="unknown policy 'shareoff'"):
        run_sweep(policies=("shareoff",), world=TINY)
    with pytest.raises(ConfigError, match="at least 2"):
        run_sweep(seeds=1, world=TINY)
    with pytest.raises(ConfigError, match="unknown sweep axis"):
        point_config("speed", 1.0)
    with pytest.raises(ConfigError, match="unknown policy"):
        run_one("load", 0.5, "magic", 0, TINY)


def test_the_cli_reports_a_bad_points_option_on_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "edgemigrate", "experiment", "shareon", "sweep", "--points",
                        "load=high", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["edgemigrate: error: --points 'load=high': expected AXIS=V1,V2,... "
                                             "with numbers"]
    assert not list(tmp_path.iterdir())


def test_an_imported_trace_drives_the_users_instead_of_the_taxi_model(tmp_path: Path) -> None:
    import numpy as np

    from edgemigrate.core.geo import LocalProjection
    from edgemigrate.experiments.shareon.design import SF_ORIGIN
    from edgemigrate.mobility import Trajectories

    # 30 cabs for 60 s at 1 s rows, driving east at 10 m/s from spots inside the city; cab 0 appears at t = 20 s
    rng = np.random.default_rng(0)
    start = rng.uniform(-5000.0, 2000.0, (30, 2))
    t = np.arange(61, dtype=np.float64)
    xy = start[None, :, :] + np.stack([10.0 * t, 0.0 * t], axis=-1)[:, None, :]
    active = np.ones((61, 30), dtype=bool)
    active[:20, 0] = False
    traj = Trajectories(ids=tuple(f"cab{i}" for i in range(30)), t0_s=1.2e9, dt_s=1.0, xy_m=xy, active=active,
                        projection=LocalProjection(*SF_ORIGIN))
    path = tmp_path / "cabs.npz"
    traj.save(path)
    row = run_one("load", 0.7, "shareon", 0, WorldConfig(n_nodes=6, trace=str(path), duration_s=50.0,
                                                         warmup_s=10.0))
    assert row["policy"] == "shareon" and 0.0 < row["mean_response_s"] < 10.0
    assert row["rate_rps"] == pytest.approx(BASE.rate_rps(30, 6))
