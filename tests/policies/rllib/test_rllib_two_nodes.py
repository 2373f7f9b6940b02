"""``--ray ADDRESS``: IMPALA trains on an existing two-node Ray cluster with env runners on both nodes.

The fixture starts a real cluster the way a user would: ``ray start --head`` and ``ray start --address`` (one CPU
each, the head's temp folder its own), both with ``--block`` in a new session. Teardown ends exactly the
processes this test started: their process groups first, then by PID every process of the two trees noted
before (Ray's workers and agents live in sessions of their own) or naming the cluster's temp folder or GCS port
(``procs.py``) - never ``ray stop``, which would end every Ray on the machine. The driver ships our package to
the cluster (``py_modules``), as it would to other machines.
"""

from __future__ import annotations

import json
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

from tests.policies.rllib.procs import end, tree

ray = pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")
GIVE_UP_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """This process's environment without the RAY_* variables an earlier in-process ``ray.init`` left behind
    (it sets RAY_AUTH_MODE=token for itself and its children), for a throw-away cluster without a token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = _clean_env()
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
def two_nodes(tmp_path: Path) -> Iterator[Cluster]:
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
        started = tree([p.pid for p in cluster.procs], [str(short), f":{port} "])
        try:
            for proc in reversed(cluster.procs):
                _stop(proc)
            end(started, "two-node Ray cluster")
        finally:
            shutil.rmtree(short, ignore_errors=True)


DRIVER = """
import json, sys
from pathlib import Path
import ray
from edgemigrate.policies.rllib.cluster import init_ray
from edgemigrate.policies.rllib.config import Algo, algo_config
from edgemigrate.policies.rllib.toyenv import make_toy_env
from edgemigrate.policies.rllib.trainer import TrainSpec, train
address, ckpt, give_up_s = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
init_ray(address)  # joined here so that we can wait for the second node before training
import time
deadline = time.monotonic() + give_up_s
while sum(n["Alive"] for n in ray.nodes()) < 2:
    if time.monotonic() > deadline:
        sys.exit("second node never joined")
    time.sleep(0.5)
hyper = algo_config(Algo.IMPALA, {"train_batch_size": 100, "rollout_fragment_length": 20, "minibatch_size": 20})
spec = TrainSpec(algo=Algo.IMPALA, hyper=hyper, env_name="toy", env_creator=make_toy_env,
                 env_config={"episode_steps": 10}, seed=0, timesteps=400, num_env_runners=2, ray_address=address)
out = train(spec, ckpt)
nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print("RESULT " + json.dumps({"nodes": nodes, "runners": out.runner_nodes, "last": out.rows[-1]}))
"""


@pytest.mark.slow
def test_impala_runners_on_both_nodes(two_nodes: Cluster, tmp_path: Path) -> None:
    # the driver runs in a fresh process: an earlier in-process Ray (another test module) leaves state behind
    env = {**_clean_env(), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", DRIVER, two_nodes.address, str(tmp_path / "ckpt"), str(GIVE_UP_S)],
                          capture_output=True, text=True, env=env, timeout=2 * GIVE_UP_S + 300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tails = " | ".join(p.read_text(errors="replace")[-400:] for p in two_nodes.logs if p.exists())
        pytest.fail(f"driver exited {proc.returncode}: {proc.stderr[-1500:]}; cluster logs: {tails}")
    res = json.loads(lines[-1][len("RESULT "):])
    runner_nodes = {node for node, _ in res["runners"]}
    # one CPU per node and one CPU per runner: the two runners must be on the two nodes, and both sampled
    assert len(res["runners"]) == 2 and len(res["nodes"]) == 2 and runner_nodes == set(res["nodes"])
    assert all(steps > 0 for _, steps in res["runners"])
    assert res["last"]["env_steps_sampled"] >= 400
    assert res["last"]["env_steps_trained"] > 0
    assert (tmp_path / "ckpt").is_dir()
