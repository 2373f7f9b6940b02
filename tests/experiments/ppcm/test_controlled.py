"""The controlled PPCM experiment and the --expert option: real (tiny) training, real evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemigrate.cli.experiment import experiment
from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.ppcm.controlled import merge_controlled, run_controlled
from edgemigrate.experiments.ppcm.design import RL_VARIANTS, variant_expert
from edgemigrate.experiments.ppcm.sweep import run_sweep, train_job
from edgemigrate.experiments.results import read_table
from edgemigrate.policies.rl.trainlog import COLUMNS

TINY = ["sim.n_steps=5", "users.count=20"]


def test_variants_name_their_expert() -> None:
    assert variant_expert("ppcm") == "dep_soft"
    assert variant_expert("ppcm", "least_delay") == "least_delay"
    assert variant_expert("ppcm_strong") == "least_delay"  # fixed by the variant, whatever --expert says
    assert variant_expert("ppo", "least_delay") is None
    assert variant_expert("ppcm_ga") == "ga" and variant_expert("ppcm_no_bc") == "dep_soft"
    assert RL_VARIANTS["ppcm_light_bc"][0]["bc_epochs"] < 30
    with pytest.raises(ConfigError, match="unknown expert 'dep_sfot'.*dep_soft"):
        variant_expert("ppcm", "dep_sfot")


def test_train_job_uses_the_chosen_expert_and_logs_the_warm_start(tmp_path: Path) -> None:
    res = train_job("ppcm-paper", TINY, "ppcm", 256, str(tmp_path), expert="least_delay", seed=3)
    assert res["expert"] == "least_delay" and res["train_seed"] == 3
    cfg = json.loads((Path(res["run_dir"]) / "config.json").read_text())
    assert cfg["expert"] == "least_delay" and cfg["ppo"]["seed"] == 3
    warm = cfg["warm_start"]
    # 30 epochs of behaviour cloning sharpen the policy on the expert's states
    assert 0.0 <= warm["entropy_after_bc"] < warm["entropy_before_bc"]
    assert warm["demo_steps"] > 0 and 0.0 <= warm["demo_cloud_share"] <= 1.0
    log = read_table(Path(res["log_csv"]))
    assert {"rollout_entropy", "rollout_cloud_share"} <= set(COLUMNS)
    assert (log["rollout_entropy"] >= 0).all() and ((0 <= log["rollout_cloud_share"]) &
                                                    (log["rollout_cloud_share"] <= 1)).all()


def test_controlled_smoke(tmp_path: Path) -> None:
    res = run_controlled(point=120, variants=("ppcm_strong", "ppo"), train_seeds=(1, 2), references=("least_delay",),
                         seeds=2, train_steps=256, out_root=tmp_path, workers=1, progress=False, overrides=TINY)
    out = res.out_dir
    for name in ("episodes.csv", "summary.csv", "summary.md", "runs.csv", "plots/controlled.png", "manifest.json"):
        assert (out / name).is_file(), name
    summary = read_table(out / "summary.csv")
    assert summary["algo"].tolist() == ["ppcm_strong", "ppo", "least_delay"]
    assert summary["episodes"].tolist() == [4, 4, 2]  # 2 training seeds x 2 evaluation seeds; references 2
    assert (summary["per_task_total_s_mean"] > 0).all()
    runs = read_table(out / "runs.csv")
    assert runs["expert"].tolist() == ["least_delay", "least_delay", "none", "none"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["experts"] == {"ppcm_strong": "least_delay", "ppo": None}
    assert set(man["agents"]) == {"ppcm_strong@seed1", "ppcm_strong@seed2", "ppo@seed1", "ppo@seed2"}
    assert "entropy after BC" in (out / "summary.md").read_text()


def test_expert_option_plumbs_through_the_cli(tmp_path: Path) -> None:
    r = CliRunner().invoke(experiment, ["ppcm", "training", "--algorithms", "ppcm,least_delay", "--seeds", "2",
                                        "--train-steps", "256", "--workers", "1", "--out", str(tmp_path), "-q",
                                        "--expert", "least_delay", *sum((["--set", o] for o in TINY), [])])
    assert r.exit_code == 0, r.output
    (run,) = tmp_path.iterdir()
    man = json.loads((run / "manifest.json").read_text())
    assert man["expert"] == "least_delay"
    (cfg,) = run.glob("agents/*/*/config.json")
    assert json.loads(cfg.read_text())["expert"] == "least_delay"


def test_unknown_expert_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown expert 'greedy'"):
        run_sweep("single", points=(0,), algorithms=("ppcm",), seeds=2, train_steps=256, out_root=tmp_path,
                  workers=1, progress=False, overrides=TINY, expert="greedy")
    assert not any(tmp_path.iterdir())  # refused before any work or folder


def test_merge_two_controlled_runs(tmp_path: Path) -> None:
    kw = dict(point=120, train_seeds=(1,), seeds=2, train_steps=128, out_root=tmp_path, workers=1, progress=False,
              overrides=TINY)
    a = run_controlled(variants=("ppo",), references=("least_delay",), **kw).out_dir  # type: ignore[arg-type]
    b = run_controlled(variants=("ppcm_no_bc",), references=(), **kw).out_dir  # type: ignore[arg-type]
    r = CliRunner().invoke(experiment, ["ppcm", "controlled-merge", str(a), str(b), "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    (merged,) = (tmp_path / "m").iterdir()
    summary = read_table(merged / "summary.csv")
    assert summary["algo"].tolist() == ["ppo", "ppcm_no_bc", "least_delay"]
    assert summary["episodes"].tolist() == [2, 2, 2]
    assert (merged / "plots" / "controlled.png").is_file()
    assert len(read_table(merged / "runs.csv")["algo"]) == 2
    with pytest.raises(ConfigError, match="already in an earlier folder"):
        merge_controlled([a, a], tmp_path / "m2")
