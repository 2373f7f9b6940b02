"""``experiment mobilekube apply --backend kubernetes``: an agent's placements on a real kube-apiserver.

End to end (root, binaries from scripts/install-kubernetes): the env is stepped with latency-greedy, every
placement goes through the controller to the Kubernetes backend of a local API server with the fake kubelet,
and after every step the pods run on the planned nodes and exactly the empty nodes are cordoned (Ghafouri et
al. 2022, sec. VI). The bad-input tests need neither root nor binaries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemigrate.cluster.kube import free_port, kube_skip_reason
from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.mobilekube.apply import ApplyConfig, json_lines, run_apply

_CLI = [sys.executable, "-c", "import sys; from edgemigrate.cli import main; sys.exit(main())",
        "experiment", "mobilekube", "apply"]


def test_agent_placements_land_on_the_planned_nodes_and_empty_nodes_are_cordoned(tmp_path: Path) -> None:
    reason = kube_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = ApplyConfig("kubernetes", agent="latency-greedy", steps=4, n_nodes=4, n_users=8, n_services=4, seed=0)
    res = run_apply(cfg, tmp_path)
    assert res.moves, "the episode must move something for the test to mean anything"
    assert all(m.state == "done" and m.state_kept is False for m in res.moves)  # recreated, not migrated
    assert [s.step for s in res.steps] == [0, 1, 2, 3, 4]
    assert all(s.on_plan and s.cordon_ok for s in res.steps), res.steps
    assert any(s.empty_nodes > 0 for s in res.steps)  # so that cordoning was exercised
    for name in ("moves.csv", "steps.csv", "summary.md", "summary.json", "config.json", "manifest.json"):
        assert (res.out_dir / name).is_file(), name
    (line,) = json_lines(res)
    row = json.loads(line)
    assert row["run"] == "kubernetes/recreate" and row["steps_cordon_ok"] == row["steps"] == 5
    print(line)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_CLI, *args], capture_output=True, text=True, timeout=300, check=False)


def test_unreachable_api_server_is_a_one_line_error_naming_the_url(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    r = _cli("--backend", "kubernetes", "--kubeconfig", str(cfg), "--steps", "1", "--out", str(tmp_path), "-q")
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("edgemigrate: error:")]
    assert len(errors) == 1 and f"Kubernetes API server {url} unreachable" in errors[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--agent", "no-such-agent"), "--agent 'no-such-agent': neither a built-in agent"),
    (("--agent", "latency-greedy", "--strategy", "teleport"), "--strategy teleport: choose from live, recreate"),
    (("--steps", "0"), "--steps 0: must be an integer in [1, 10000]"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    r = _cli("--backend", "testbed", *args, "--out", str(tmp_path), "-q")
    assert r.returncode != 0 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_config_of_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match="--backend 'nomad'"):
        ApplyConfig("nomad")
