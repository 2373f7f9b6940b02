"""Smoke runs of the PPCM experiments (tiny budgets): the whole pipeline, real training, real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.experiments.grid import Job, run_grid
from edgemigrate.experiments.ppcm.sweep import eval_job, point_overrides, run_training
from edgemigrate.experiments.results import read_table

TINY = ["sim.n_steps=5", "users.count=20"]


def test_training_pipeline_end_to_end(tmp_path: Path) -> None:
    algos = ("ppcm", "ppo", "dep_soft", "ga", "kube")
    res = run_training(algorithms=algos, seeds=2, train_steps=256, out_root=tmp_path, workers=2, progress=False,
                       overrides=TINY)
    out = res.out_dir
    summary = read_table(out / "summary.csv")
    assert sorted(summary["algo"].tolist()) == sorted(algos)
    assert (summary["per_task_total_s_mean"] > 0).all()
    for name in ("summary.md", "episodes.csv", "plots/sweep_single.png", "plots/training.png", "manifest.json"):
        assert (out / name).is_file(), name
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["agents"]) == {"ppcm@0", "ppo@0"}
    for ckpt in man["agents"].values():
        assert (Path(ckpt) / "model.pt").is_file()
    text = (out / "summary.md").read_text()
    assert "Order by total delay" in text and "ppcm" in text


def test_eval_is_deterministic_and_points_change_the_scenario() -> None:
    a = eval_job("ppcm-paper", TINY, "dep_soft", 10_000)
    b = eval_job("ppcm-paper", TINY, "dep_soft", 10_000)
    assert a == b
    busy = eval_job("ppcm-paper", TINY + point_overrides("tasks", 150), "dep_soft", 10_000)
    assert busy["arrivals"] > a["arrivals"]
    assert point_overrides("nodes", 18)[0] == "nodes.count=18"


def test_grid_on_ray_matches_local() -> None:
    pytest.importorskip("ray")
    jobs = [Job(eval_job, dict(scenario="ppcm-paper", overrides=TINY, algo="monkey", seed=10_000 + s))
            for s in range(2)]
    local = run_grid(jobs, workers=1, progress=False)
    on_ray = run_grid(jobs, ray_address="local", progress=False)
    assert local == on_ray
