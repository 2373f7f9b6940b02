"""The controller API over real mutual-TLS sockets: roles, refusals, and bad reports that cost one reply.

The server runs in the test's event loop on 127.0.0.1 with certificates from a real agent PKI; the
backend is the in-memory one (the real agents are in ``test_controller_real.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path

import pytest

from edgemigrate.controller.api import MAX_LINE_BYTES, issue_mu_cert
from edgemigrate.controller.client import ControllerClient, ControllerRefused
from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.monitor import Monitor
from edgemigrate.controller.service import Controller, start_server
from edgemigrate.controller.store import BsRssi, MuReport, TaskDelay, open_store
from edgemigrate.engine.transport.tls import create_pki, host_dir
from edgemigrate.planning import make_planner

from .controller_helpers import MemoryBackend, seed_edge

NOW = 1_000_000.0
SPEC = {"name": "counter", "kind": "counter", "ip": "10.9.1.1", "port": 7000}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = create_pki(tmp_path_factory.mktemp("pki"), ["edge1"])
    for user in ("alice", "bob"):
        issue_mu_cert(root, user)
    return root


def _run(pki: Path, body) -> None:
    """Start a controller (alice and bob's counters on edge1) and run ``body(port, store, backend)``."""
    async def main() -> None:
        store = open_store("sqlite://:memory:", clock=lambda: NOW)
        seed_edge(store, ("alice", "bob"))
        backend = MemoryBackend(running={"edge1": {"counter"}})
        ctl = Controller(store, backend, make_planner("nearest"), Monitor(store, clock=lambda: NOW),
                         Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0))
        server = await start_server(ctl, pki, "127.0.0.1", 0)
        try:
            await body(server.sockets[0].getsockname()[1], store, backend)
        finally:
            server.close()
            await server.wait_closed()
            store.close()

    asyncio.run(main())


def _mu(pki: Path, port: int, user: str) -> ControllerClient:
    return ControllerClient("127.0.0.1", port, pki_dir=pki / "mus" / user, cert=f"mu-{user}", reply_timeout_s=20)


def _operator(pki: Path, port: int) -> ControllerClient:
    return ControllerClient("127.0.0.1", port, pki_dir=pki, cert="client", reply_timeout_s=20)


def test_mu_reports_and_discovers_its_own_service_only(pki: Path) -> None:
    async def body(port, store, backend) -> None:
        async with _mu(pki, port, "alice") as c:
            reply = await c.report(MuReport("alice", NOW, (TaskDelay("counter", 0.04),), (BsRssi("bs1", -55.0),)))
            assert reply == {"stored": {"delays": 1, "rssi": 1}}
            assert await c.discover("alice", "counter") == {"host": "edge1", "address": "10.9.1.1:7000",
                                                             "base_station": "bs1"}
            with pytest.raises(ControllerRefused, match="not the certificate's user 'alice'"):
                await c.discover("bob", "counter")
            with pytest.raises(ControllerRefused, match="not the certificate's user"):
                await c.report(MuReport("bob", NOW, (TaskDelay("counter", 9.0),)))
            for op in ("deploy", "plan_now", "status", "poll_hosts"):
                with pytest.raises(ControllerRefused, match=f"{op} is not allowed for a mobile user"):
                    await c.request(op, user="alice", host="edge2", base_station="bs1", spec=SPEC)
        assert [s.e2e_delay_s for s in store.task_delays("alice")] == [0.04]
        assert store.task_delays("bob") == [] and backend.running == {"edge1": {"counter"}}

    _run(pki, body)


def test_operator_deploys_and_reads_status(pki: Path) -> None:
    async def body(port, store, backend) -> None:
        async with _operator(pki, port) as c:
            spec = dict(SPEC, name="web1", ip="10.9.1.2")
            reply = await c.request("deploy", user="carol", host="edge2", base_station="bs2", spec=spec)
            assert reply["placement"] == {"user": "carol", "service": "web1", "host": "edge2", "base_station": "bs2"}
            status = await c.request("status")
            assert status["hosts"] == {"edge1": "up", "edge2": "up", "edge3": "up"} and status["in_flight"] == []
            with pytest.raises(ControllerRefused, match="deploy.base_station"):
                await c.request("deploy", user="carol", host="edge2", base_station="bs9", spec=spec)
        assert "web1" in backend.running["edge2"] and store.placement("carol", "web1").host == "edge2"

    _run(pki, body)


def test_agent_and_foreign_certificates_are_refused(pki: Path, tmp_path: Path) -> None:
    other = create_pki(tmp_path / "other", [])

    async def body(port, store, backend) -> None:
        agent = ControllerClient("127.0.0.1", port, pki_dir=host_dir(pki, "edge1"), cert="edge1", reply_timeout_s=20)
        async with agent as c:
            with pytest.raises(ControllerRefused, match="'edge1' has no role here"):
                await c.request("status")
        foreign = ControllerClient("127.0.0.1", port, pki_dir=other, cert="client", reply_timeout_s=20)
        with pytest.raises((ssl.SSLError, ConnectionError, ControllerRefused)):
            async with foreign as c:
                await c.request("status")
        assert store.task_delays("alice") == []

    _run(pki, body)


def test_bad_reports_are_rejected_and_logged_while_another_mu_is_served(pki: Path, caplog) -> None:
    """Malformed, out-of-range and oversized reports from alice: each answered with its reason and logged;
    bob, on a connection opened before and used between them, is served throughout."""
    caplog.set_level(logging.WARNING, logger="edgemigrate.controller.service")
    bad = [
        (b"{not json", "request: "),
        (b'{"op": "report_mu", "report": {"user": "alice", "at_s": 1e6, "rssi": '
         b'[{"base_station": "bs1", "rssi_dbm": 999}]}}', "rssi.rssi_dbm"),
        (json.dumps({"op": "report_mu", "report": {"user": "alice", "at_s": NOW, "delays":
                     [{"service": "counter", "e2e_delay_s": -3}]}}).encode(), "task.e2e_delay_s"),
        (json.dumps({"op": "report_mu", "report": {"user": "alice", "at_s": NOW, "oops": 1}}).encode(),
         "mu_report.oops"),
        (b'{"op": "report_mu", "op": "deploy"}', "duplicate key"),
        (b'[1, 2, 3]', "expected an object"),
    ]

    async def body(port, store, backend) -> None:
        async with _mu(pki, port, "bob") as bob, _mu(pki, port, "alice") as alice:
            for i, (line, reason) in enumerate(bad):
                with pytest.raises(ControllerRefused, match=reason):
                    await alice.raw(line)
                assert await bob.report(MuReport("bob", NOW + i, (TaskDelay("counter", 0.01),))) is not None
            # oversized: refused and this connection closed; bob's goes on
            with pytest.raises(ControllerRefused, match=f"longer than {MAX_LINE_BYTES}"):
                await alice.raw(b'{"op": "report_mu", "pad": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}')
            with pytest.raises((ControllerRefused, ConnectionError)):
                await alice.report(MuReport("alice", NOW, ()))
            assert (await bob.discover("bob", "counter"))["host"] == "edge1"
        assert len(store.task_delays("bob")) == len(bad) and store.task_delays("alice") == []

    _run(pki, body)
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == len(bad) + 1, rejected
    assert all("mu-alice" in m for m in rejected)
    assert any("rssi.rssi_dbm" in m for m in rejected) and any("longer than" in m for m in rejected)


def test_a_host_certificate_named_like_a_mobile_user_is_not_one(tmp_path: Path) -> None:
    """A host called ``mu-eve`` gets an agent certificate with mobile user eve's name: it must not act as eve,
    and eve can then not be issued a certificate the two could be confused with."""
    from edgemigrate.controller.store import Host, HostRole
    from edgemigrate.core.errors import ValidationError

    root = create_pki(tmp_path / "pki", ["edge1", "mu-eve"])  # the agent PKI has no rule against the name
    issue_mu_cert(root, "alice")
    with pytest.raises(ValidationError, match="already has a host certificate named mu-eve"):
        issue_mu_cert(root, "eve")
    with pytest.raises(ValidationError, match="starts with 'mu-'"):
        Host("mu-eve", HostRole.EDGE, "10.0.0.1:7400", 4.0, 1 << 30, 1 << 30)

    async def body(port, store, backend) -> None:
        impostor = ControllerClient("127.0.0.1", port, pki_dir=host_dir(root, "mu-eve"), cert="mu-eve",
                                    reply_timeout_s=20)
        async with impostor as c:
            with pytest.raises(ControllerRefused, match="not the one issued to mobile user 'eve'"):
                await c.report(MuReport("eve", NOW, (TaskDelay("counter", 0.04),)))
        async with _mu(root, port, "alice") as c:  # the real MU still gets in
            assert (await c.discover("alice", "counter"))["host"] == "edge1"

    _run(root, body)
