from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.cli import main
from edgemigrate.core.errors import ConfigError
from edgemigrate.envs.mobilekube import MobileKubeConfig
from edgemigrate.experiments.mobilekube.data import write_synthetic_traces
from edgemigrate.experiments.mobilekube.evaluate import EvalOptions, run_evaluate, run_timeline
from edgemigrate.experiments.results import read_table


def test_evaluate_writes_csv_markdown_png_and_gaps(tmp_path: Path) -> None:
    opts = EvalOptions(agents=("best-fit", "latency-greedy", "stay"), users=(16, 32), episodes=3, episode_steps=6)
    run = run_evaluate(opts, tmp_path, echo=lambda s: None)
    names = {p.name for p in run.iterdir()}
    assert {"episodes.csv", "summary.csv", "summary.md", "config.json", "manifest.json",
            "fig7_latency_vs_users.png", "fig8_empty_servers_vs_users.png"} <= names
    ep = read_table(run / "episodes.csv")
    # every agent + the always-added optimum, 3 episodes each, at both users counts
    assert len(ep["agent"]) == 2 * 4 * 3 and set(ep["agent"]) == {"best-fit", "latency-greedy", "stay", "optimum"}
    s = read_table(run / "summary.csv")
    gap = dict(zip(zip(s["users"].astype(int), s["agent"], strict=True), s["gap_pct"], strict=True))
    assert gap[(16, "optimum")] == 0.0 and all(g >= -1e-6 for g in gap.values())
    assert gap[(32, "stay")] > 0
    # best-fit packs all 16 containers on one node in every step
    bf = ep["agent"] == "best-fit"
    np.testing.assert_array_equal(ep["empty_servers"][bf].astype(float), 7.0)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["options"]["episodes"] == 3 and cfg["env_configs"]["16"]["training"] is False
    assert "synthetic" in cfg["trace_source"]
    man = json.loads((run / "manifest.json").read_text())
    assert man["seed"] == 0 and "git_sha" in man and "numpy" in man["versions"]
    assert "| 32 | optimum |" in (run / "summary.md").read_text()


def test_same_seed_same_results(tmp_path: Path) -> None:
    opts = EvalOptions(agents=("best-fit",), users=(16,), episodes=2, episode_steps=4, seed=3)
    a = read_table(run_evaluate(opts, tmp_path / "a", echo=lambda s: None) / "episodes.csv")
    b = read_table(run_evaluate(opts, tmp_path / "b", echo=lambda s: None) / "episodes.csv")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_timeline_on_imported_cabspotting_traces(tmp_path: Path) -> None:
    traces = write_synthetic_traces(tmp_path / "cabs", MobileKubeConfig(), n_cabs=20, n_steps=30, seed=9)
    opts = EvalOptions(agents=("latency-greedy",), users=(16,), episode_steps=25, traces=str(traces))
    run = run_timeline(opts, tmp_path / "out", start_step=2, echo=lambda s: None)
    t = read_table(run / "timeline.csv")
    assert len(t["step"]) == 2 * 25 and {"fig9_empty_servers_timeline.png", "fig10_latency_timeline.png"} <= {
        p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["trace_source"].startswith("imported traces")


def test_cli_evaluate_and_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res"
    assert main(["experiment", "mobilekube", "evaluate", "--users", "16", "--episodes", "2", "--episode-steps", "3",
                 "--agents", "best-fit", "--out", str(out)]) == 0
    assert "results: " in capsys.readouterr().out
    assert main(["experiment", "mobilekube", "evaluate", "--agents", "best_fit", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "unknown agent 'best_fit'" in err and "best-fit" in err and "\n" not in err
    # a trace outside the towers' area: named, one line, no results folder left behind
    far = tmp_path / "far"
    far.mkdir()
    (far / "new_faraway.txt").write_text("37.60000 -122.30000 0 1211302694\n37.60010 -122.30010 0 1211302600\n")
    before = set(out.iterdir())
    assert main(["experiment", "mobilekube", "timeline", "--traces", str(far), "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "new_faraway.txt" in err and "towers' area" in err and "\n" not in err
    assert set(out.iterdir()) == before
    with pytest.raises(ConfigError, match="unknown mobilekube config key"):
        EvalOptions(env={"w3": 1.0})
    # --set: the paper-energy capacity (best-fit needs two nodes); a bad one is a one-line error
    assert main(["experiment", "mobilekube", "evaluate", "--users", "16", "--episodes", "1", "--episode-steps", "3",
                 "--agents", "best-fit", "--set", "node_cpu=1.5", "--out", str(tmp_path / "pe")]) == 0
    capsys.readouterr()
    (run,) = (tmp_path / "pe").iterdir()
    assert json.loads((run / "config.json").read_text())["env_configs"]["16"]["node_cpu"] == 1.5
    assert set(read_table(run / "episodes.csv")["empty_servers"]) == {6.0}
    for bad in ("node_cpu", "node_cpus=1.5"):
        assert main(["experiment", "mobilekube", "evaluate", "--set", bad, "--out", str(out)]) != 0
        err = capsys.readouterr().err.strip()
        assert "node_cpu" in err and "\n" not in err


def test_a_checkpoint_path_goes_to_the_rllib_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "not-a-checkpoint"
    ckpt.mkdir()
    rc = main(["experiment", "mobilekube", "timeline", "--agents", str(ckpt), "--episode-steps", "3",
               "--out", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err
    if importlib.util.find_spec("edgemigrate.policies.rllib") is None:
        assert "RLlib agents need edgemigrate.policies.rllib" in err and str(ckpt) in err
    assert not any((tmp_path / "res").iterdir())  # no half-written results folder


@pytest.mark.parametrize("users, services", [(16, 16), (32, 16), (48, 16), (4, 4)])
def test_training_env_has_the_services_evaluate_has(users: int, services: int) -> None:
    """A checkpoint trained with the defaults fits ``evaluate`` at the same number of users (16 services shared
    by 16/32/48 users, sec. VII); fewer users than that get one service each."""
    from edgemigrate.experiments.mobilekube.training import TrainingRequest

    assert TrainingRequest(users=users).env_config().n_services == services
    assert MobileKubeConfig().n_services == 16
