"""A trained RLlib agent, end to end on both real backends (root; CI runs both, shortened).

One PPO checkpoint (Ghafouri et al. 2022, Table II settings, a few hundred env steps: the point is the path
from training to real placements, not the agent's quality) is trained by the real ``experiment mobilekube
train`` command in its own process (Ray changes the process environment), loaded by ``apply`` for the env's
spaces, and its placements go through the controller to (a) a real kube-apiserver with the fake kubelet -
pods on the planned nodes, exactly the empty nodes cordoned - and (b) real containers on the testbed - every
live pre-copy move keeps its counter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.cluster.kube import kube_skip_reason
from edgemigrate.experiments.mobilekube.apply import ApplyConfig, run_apply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

# the env size the agent is trained for and applied at (small: every testbed move is a real migration)
SIZE = {"n_nodes": 3, "n_users": 3, "n_services": 3}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if kube_skip_reason() and real_engine_skip_reason():
        pytest.skip(f"{kube_skip_reason()}; {real_engine_skip_reason()}")
    out = tmp_path_factory.mktemp("train")
    cmd = [sys.executable, "-m", "edgemigrate", "experiment", "mobilekube", "train", "--algo", "ppo",
           "--users", str(SIZE["n_users"]), "--set", f"n_nodes={SIZE['n_nodes']}",
           "--set", f"n_services={SIZE['n_services']}", "--set", "episode_steps=10", "--timesteps", "400",
           "--seed", "0", "--env-runners", "0", "--out", str(out), "-q"]
    # no env-runner actors: the driver samples itself, which a starved 2-core machine schedules far sooner
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    found = sorted(out.glob("*/ppo/checkpoint"))
    assert len(found) == 1, f"expected one PPO checkpoint under {out}: {found}"
    return found[0]


def test_trained_agent_placements_land_on_kubernetes_with_empty_nodes_cordoned(checkpoint: Path,
                                                                               tmp_path: Path) -> None:
    reason = kube_skip_reason()
    if reason:
        pytest.skip(reason)
    res = run_apply(ApplyConfig("kubernetes", agent=str(checkpoint), steps=3, seed=0, **SIZE), tmp_path)
    assert [s.step for s in res.steps] == [0, 1, 2, 3]
    assert all(s.on_plan and s.cordon_ok for s in res.steps), res.steps
    assert all(m.state == "done" for m in res.moves), res.moves


def test_trained_agent_moves_are_live_migrations_that_keep_state_on_the_testbed(checkpoint: Path,
                                                                                tmp_path: Path) -> None:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = ApplyConfig("testbed", agent=str(checkpoint), steps=2, seed=0, strategies=("live",), **SIZE)
    res = run_apply(cfg, tmp_path)
    assert all(s.on_plan for s in res.steps), res.steps
    # a few hundred training steps leave the policy near its random start: it re-places services every step
    assert res.moves, "the trained agent moved nothing: the test would not exercise a live migration"
    for m in res.moves:
        assert m.strategy == "live" and m.state == "done" and m.state_kept, m
        assert m.counter_after > m.counter_before, m
