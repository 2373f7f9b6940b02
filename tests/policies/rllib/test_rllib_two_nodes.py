"""``--ray ADDRESS``: IMPALA trains on an existing two-node Ray cluster with env runners on both nodes.

The fixture starts a real cluster the way a user would: ``ray start --head`` and ``ray start --address`` (one CPU
each, their own temp folders), both with ``--block`` in a new session so that teardown ends exactly the
processes this test started (their process groups) - never ``ray stop``, which would end every Ray on the
machine. The driver ships our package to the cluster (``py_modules``), as it would to other machines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgemigrate.policies.rllib.config import Algo, algo_config
from edgemigrate.policies.rllib.toyenv import make_toy_env
from edgemigrate.policies.rllib.trainer import TrainSpec, train

ray = pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")
GIVE_UP_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    with log.open("wb") as fh:
        return subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats", "--num-cpus", "1",
                                 "--object-store-memory", str(100 * 2**20), *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(what: str, ok, logs: list[Path], procs: list[subprocess.Popen[bytes]]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + GIVE_UP_S
    while not ok():
        dead = [p.args[3] if isinstance(p.args, list) else p.pid for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            tails = " | ".join(p.read_text(errors="replace")[-600:] for p in logs if p.exists())
            why = "a 'ray start' exited" if dead else f"not reached after {GIVE_UP_S:g} s"
            pytest.fail(f"two-node Ray cluster: {what}: {why}; logs: {tails}")
        time.sleep(0.5)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    address: str
    logs: list[Path]
    procs: list[subprocess.Popen[bytes]]


@pytest.fixture
def two_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    # a throw-away cluster on this machine only: no token (the driver below must agree)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    if not RAY.exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    port = _free_port()
    # Ray's socket paths live under the temp folder and must stay under 107 bytes: pytest's tmp_path is too long
    short = Path(tempfile.mkdtemp(prefix="emray", dir="/tmp"))
    cluster = Cluster(f"127.0.0.1:{port}", [tmp_path / "head.log", tmp_path / "worker.log"], [])
    try:
        cluster.procs.append(_start(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(short / "head")],
                                    cluster.logs[0]))
        _wait("head GCS port open", lambda: _port_open(port), cluster.logs, cluster.procs)
        cluster.procs.append(_start(["--address", cluster.address],
                                    cluster.logs[1]))
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(cluster.procs):
            _stop(proc)
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.slow
def test_impala_runners_on_both_nodes(two_nodes: Cluster, tmp_path: Path) -> None:
    from edgemigrate.policies.rllib.cluster import init_ray

    init_ray(two_nodes.address)  # joined here so that we can wait for the second node before training
    _wait("two alive nodes", lambda: sum(n["Alive"] for n in ray.nodes()) == 2, two_nodes.logs, two_nodes.procs)
    hyper = algo_config(Algo.IMPALA, {"train_batch_size": 100, "rollout_fragment_length": 20,
                                      "minibatch_size": 20})
    spec = TrainSpec(algo=Algo.IMPALA, hyper=hyper, env_name="toy", env_creator=make_toy_env,
                     env_config={"episode_steps": 10}, seed=0, timesteps=400, num_env_runners=2,
                     ray_address=two_nodes.address)
    out = train(spec, tmp_path / "ckpt")
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    runner_nodes = {node for node, _ in out.runner_nodes}
    # one CPU per node and one CPU per runner: the two runners must be on the two nodes, and both sampled
    assert len(out.runner_nodes) == 2 and runner_nodes == nodes and len(nodes) == 2
    assert all(steps > 0 for _, steps in out.runner_nodes)
    assert out.rows[-1]["env_steps_sampled"] >= 400
    assert out.rows[-1]["env_steps_trained"] > 0
