"""The controller against real agents, real CRIU migrations and network namespaces (root; CI runs them).

Two of the controller's fault tests: an agent dies while a plan executes (the plan fails over to the next
host and the dead one is marked down), and the controller process is SIGKILLed in the middle of a
migration and restarted (the counter runs exactly once, its count intact, the action finished or rolled
back). The third, bad MU reports, is in ``test_controller_api.py``.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemigrate.cluster import LocalCluster
from edgemigrate.control import client
from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.api import issue_mu_cert
from edgemigrate.controller.client import ControllerClient
from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.monitor import Monitor, SnapshotDefaults
from edgemigrate.controller.service import Controller
from edgemigrate.controller.store import (
    ActionState,
    BaseStation,
    BsRssi,
    Host,
    HostRole,
    HostState,
    MuReport,
    Placement,
    Store,
    User,
    open_store,
)
from edgemigrate.controller.testbed_backend import TestbedBackend
from edgemigrate.planning import make_planner
from edgemigrate.workloads.probe import Probe

from .controller_helpers import RTT

pytestmark = [pytest.mark.criu, pytest.mark.netns]

PORT = 7000
GIB = 1 << 30
_BOOT = "import sys; from edgemigrate.cli import main; sys.exit(main())"
READY_GIVE_UP_S = 120.0


@pytest.fixture(scope="module")
def bed(realbed: LocalCluster) -> LocalCluster:
    return realbed


def _store(bed: LocalCluster, path: Path) -> Store:
    """The cluster's edges and a BS next to each in a store file; user u1 known."""
    store = open_store(f"sqlite:///{path}")
    for host, (ip, port) in sorted(bed.directory.addrs.items()):
        store.put_host(Host(host, HostRole.EDGE, f"{ip}:{port}", 4.0, 8 * GIB, 100 * GIB))
    for i in range(1, 4):
        store.put_base_station(BaseStation(f"bs{i}", 100.0 * i, 0.0, 1e9, 8))
    store.put_user(User("u1", sla_delay_s=1.0))
    return store


def _deploy_counter(bed: LocalCluster, store: Store, resident_mb: float) -> ServiceSpec:
    spec = ServiceSpec("counter", ServiceKind.COUNTER, bed.tb.service_ip(0), PORT, resident_mb)
    bed.deploy("edge1", spec)
    store.put_placement(Placement("u1", "counter", "edge1", "bs1"))
    return spec


def _probe(bed: LocalCluster, spec: ServiceSpec) -> Probe:
    with in_netns(bed.tb.netns_path("client1")):
        p = Probe(spec.ip, spec.port)
        p.start()
    time.sleep(0.5)
    return p


def _toward_bs2() -> MuReport:
    # stamped now: the controller is a separate process on the real clock and refuses reports from the future
    return MuReport("u1", time.time(), rssi=(BsRssi("bs1", -85.0), BsRssi("bs2", -50.0)))


def _assert_once_and_intact(bed: LocalCluster, probe: Probe, host: str) -> None:
    time.sleep(0.5)
    res = probe.stop()
    assert bed.where_running("counter") == [host]
    assert res.monotonic and not res.jumps and res.error is None, res
    assert res.replies > 5, res


@pytest.fixture
def clean(bed: LocalCluster) -> Iterator[LocalCluster]:
    yield bed
    for ag in bed.agents.values():
        if ag.proc is None:
            ag.start()  # a test killed it
    bed.stop_all("counter")


def test_agent_dies_while_the_plan_runs_plan_fails_over_and_host_is_marked_down(clean, tmp_path) -> None:
    bed = clean
    store = _store(bed, tmp_path / "ctl.db")
    backend = TestbedBackend(bed.directory, status_timeout_s=5.0)
    monitor = Monitor(store, SnapshotDefaults(bs_host_rtt_s=RTT))
    ctl = Controller(store, backend, make_planner("nearest"), monitor,
                     Deployment(store, backend, max_wait_s=1.0, on_migrated=monitor.ingest_migration))
    spec = _deploy_counter(bed, store, 16)
    probe = _probe(bed, spec)
    bed.agents["edge2"].kill()  # the nearest host to bs2 is dead before its migration starts
    ctl.monitor.ingest_mu(_toward_bs2())
    actions = asyncio.run(ctl.plan_round())
    assert [(a.dest_host, a.state) for a in actions] == [("edge2", ActionState.ROLLED_BACK),
                                                         ("edge3", ActionState.DONE)], actions
    assert store.host("edge2").state is HostState.DOWN
    p = store.placement("u1", "counter")
    assert (p.host, p.base_station) == ("edge3", "bs2")
    _assert_once_and_intact(bed, probe, "edge3")
    # the real migration's statistics became eq. 5's history: a dump on edge1, a restore on edge3
    assert [r.kind.value for r in store.checkpoint_history("edge1")] == ["checkpoint"]
    assert [r.kind.value for r in store.checkpoint_history("edge3")] == ["restore"]
    store.close()


def _start_controller(bed: LocalCluster, db: Path, ready: Path, log: Path) -> subprocess.Popen[bytes]:
    ready.unlink(missing_ok=True)
    rtts = [f"--rtt={b}:{h}={s}" for (b, h), s in RTT.items()]
    argv = [sys.executable, "-c", _BOOT, "-v", "controller", "--store", f"sqlite:///{db}", "--pki", str(bed.pki),
            "--listen", "127.0.0.1:0", "--planner", "nearest", "--interval-s", "0.3", "--ready-file", str(ready),
            *rtts]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    give_up = time.monotonic() + READY_GIVE_UP_S  # only ends a hung wait; nothing is measured
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail("the controller exited before it was ready:\n" + log.read_text()[-3000:])
        if time.monotonic() > give_up:
            pytest.fail(f"the controller wrote no ready file in {READY_GIVE_UP_S} s:\n" + log.read_text()[-3000:])
        time.sleep(0.05)
    return proc


def _wait_migrating(bed: LocalCluster, host: str, name: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if bed.run(client.status(bed.directory, host)).get(name, {}).get("migrating"):
                return
        except Exception:  # noqa: BLE001 - the agent may be busy; ask again
            pass
        time.sleep(0.05)
    raise AssertionError(f"{host} never started migrating {name}")


def test_controller_killed_mid_migration_resumes_with_the_counter_run_once(clean, tmp_path) -> None:
    bed = clean
    db, ready, log = tmp_path / "ctl.db", tmp_path / "ready", tmp_path / "controller.log"
    store = _store(bed, db)
    spec = _deploy_counter(bed, store, 96)
    bed.tb.set_link("edge1", "edge2", rate_mbit=100)  # a few seconds of pre-copy to kill the controller in
    probe = _probe(bed, spec)
    mu_dir = issue_mu_cert(bed.pki, "u1")
    proc = _start_controller(bed, db, ready, log)
    try:
        port = int(ready.read_text())

        async def report() -> None:
            async with ControllerClient("127.0.0.1", port, pki_dir=mu_dir, cert="mu-u1", reply_timeout_s=30) as c:
                await c.report(_toward_bs2())

        asyncio.run(report())
        _wait_migrating(bed, "edge1", "counter")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        (running,) = store.in_flight()
        assert running.state is ActionState.RUNNING and running.dest_host == "edge2"
        proc = _start_controller(bed, db, ready, log)  # resumes before it serves
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        bed.tb.set_link("edge1", "edge2", rate_mbit=0)
    final = store.action(running.id)
    assert final.state in (ActionState.DONE, ActionState.ROLLED_BACK), final
    assert "resumed" in final.detail and store.in_flight() == []
    host = store.placement("u1", "counter").host
    assert host == ("edge2" if final.state is ActionState.DONE else "edge1")
    _assert_once_and_intact(bed, probe, host)
    store.close()
