"""The MU's ControllerReporter against the controller's real mTLS API, and against a "controller" that lies.

The controller runs on a thread of its own (its own event loop) with the in-memory backend of the controller
tests; the MU side is the synchronous reporter the MU's loop uses. A hostile peer - a server holding a valid
controller certificate - answers ``discover`` with addresses that must never be connected to.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from edgemigrate.controller.api import CONTROLLER_NAME, issue_controller_cert, issue_mu_cert
from edgemigrate.controller.client import ControllerRefused
from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.monitor import Monitor
from edgemigrate.controller.service import Controller, start_server
from edgemigrate.controller.store import BsRssi, MuReport, TaskDelay, open_store
from edgemigrate.core.errors import EdgeMigrateError, EngineError, ValidationError
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.tls import create_pki
from edgemigrate.mobileuser.reporter import ControllerReporter, parse_address
from edgemigrate.planning import make_planner

from ..controller.controller_helpers import MemoryBackend, seed_edge

NOW = 1_000_000.0
GIVE_UP_S = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = create_pki(tmp_path_factory.mktemp("pki"), ["edge1"])
    issue_mu_cert(root, "alice")
    issue_controller_cert(root)
    return root


def _serve_on_thread(start: Callable[[], Awaitable[asyncio.Server]]) -> Iterator[int]:
    loop = asyncio.new_event_loop()
    box: list[asyncio.Server] = []
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    box.append(asyncio.run_coroutine_threadsafe(start(), loop).result(GIVE_UP_S))
    try:
        yield box[0].sockets[0].getsockname()[1]
    finally:
        box[0].close()
        loop.call_soon_threadsafe(loop.stop)
        t.join(GIVE_UP_S)


@pytest.fixture
def controller(pki: Path) -> Iterator[tuple[int, object]]:
    holder: dict[str, object] = {}

    async def start() -> asyncio.Server:
        store = open_store("sqlite://:memory:", clock=lambda: NOW)
        seed_edge(store, ("alice",))
        backend = MemoryBackend(running={"edge1": {"counter"}})
        holder["store"] = store
        ctl = Controller(store, backend, make_planner("nearest"), Monitor(store, clock=lambda: NOW),
                         Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0))
        return await start_server(ctl, pki, "127.0.0.1", 0)

    for port in _serve_on_thread(start):
        yield port, holder["store"]


def test_reports_and_discovery_go_over_the_api_as_the_mus_own_user(pki: Path, controller) -> None:
    port, store = controller
    rep = ControllerReporter("127.0.0.1", port, pki / "mus" / "alice", "alice")
    try:
        rep.report(MuReport("alice", NOW, (TaskDelay("counter", 0.04),), (BsRssi("bs2", -50.0),)))
        assert rep.discover("alice", "counter") == ("10.9.1.1", 7000)  # MemoryBackend's address
        with pytest.raises(ControllerRefused, match="not the certificate's user"):
            rep.discover("bob", "counter")
        rep.report(MuReport("alice", NOW, (), (BsRssi("bs1", -70.0),)))  # the connection survived a refusal
    finally:
        rep.close()
    samples = store.rssi_samples("alice")  # type: ignore[attr-defined]
    assert [(s.base_station, s.rssi_dbm) for s in samples] == [("bs2", -50.0), ("bs1", -70.0)]


def test_an_unreachable_controller_is_an_edgemigrate_error(pki: Path) -> None:
    rep = ControllerReporter("127.0.0.1", 1, pki / "mus" / "alice", "alice", timeout_s=5.0)
    try:
        with pytest.raises(EngineError, match="controller 127.0.0.1:1"):
            rep.report(MuReport("alice", NOW))
    finally:
        rep.close()


BAD_ADDRESSES = ["999.1.1.1:80", "255.255.255.255:80", "240.0.0.1:80", "10.0.0.1:0", "10.0.0.1:65536", "0.0.0.0:80", "224.0.0.1:80", "10.0.0.1",
                 "10.0.0.1:８0", "10.0.0.1:80:80", "x" * 5000, 7000, None, ["10.0.0.1", 80]]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_discovered_address_is_checked_before_use(address: object) -> None:
    with pytest.raises(ValidationError, match="discover"):
        parse_address({"host": "edge1", "address": address})


def test_a_lying_controller_cannot_send_the_mu_anywhere(pki: Path) -> None:
    replies = iter([{"ok": True, "host": "edge1", "address": "255.255.255.255:7000"},
                    {"ok": True, "address": "10.0.0.1:" + "9" * 70},
                    {"ok": "yes"}])

    async def lying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readline():
            writer.write(json.dumps(next(replies)).encode() + b"\n")
            await writer.drain()
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(lying, "127.0.0.1", 0, ssl=tls.server_context(pki, CONTROLLER_NAME))

    for port in _serve_on_thread(start):
        rep = ControllerReporter("127.0.0.1", port, pki / "mus" / "alice", "alice")
        try:
            for expected in ("cannot be a service address", "at most 21 characters", "boolean 'ok'"):
                with pytest.raises(EdgeMigrateError, match=expected):
                    rep.discover("alice", "counter")
        finally:
            rep.close()
