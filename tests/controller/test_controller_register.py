"""The operator's registration calls (hosts, base stations, users, BS-to-host RTTs) over the real mTLS API and
through ``edgemigrate controller register``: good input lands in the store, every bad value is a one-line
refusal naming the key, and a mobile user's certificate may not register anything."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from edgemigrate.cli import main
from edgemigrate.controller.api import issue_mu_cert
from edgemigrate.controller.client import ControllerClient, ControllerRefused
from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.monitor import Monitor
from edgemigrate.controller.service import Controller, start_server
from edgemigrate.controller.store import HostRole, HostState, open_store
from edgemigrate.engine.transport.tls import create_pki
from edgemigrate.planning import make_planner

from .controller_helpers import MemoryBackend, seed_edge

NOW = 1_000_000.0
HOST = {"name": "edge9", "role": "edge", "address": "10.9.0.9:7400", "cpu_cores": 4.0,
        "memory_bytes": 8 << 30, "disk_bytes": 100 << 30}
BS = {"name": "bs9", "x_m": 10.0, "y_m": -5.0, "bandwidth_bps": 1e9, "max_users": 8}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = create_pki(tmp_path_factory.mktemp("pki"), ["edge1"])
    issue_mu_cert(root, "alice")
    return root


def _controller() -> tuple[Controller, list[str]]:
    store = open_store("sqlite://:memory:", clock=lambda: NOW)
    seed_edge(store, ("alice",))
    backend = MemoryBackend(running={"edge1": {"counter"}})
    told: list[str] = []
    ctl = Controller(store, backend, make_planner("nearest"), Monitor(store, clock=lambda: NOW),
                     Deployment(store, backend, clock=lambda: NOW, max_wait_s=0.0),
                     on_host_registered=lambda h: told.append(h.name))
    return ctl, told


def _run(pki: Path, body) -> None:
    async def go() -> None:
        ctl, told = _controller()
        server = await start_server(ctl, pki, "127.0.0.1", 0)
        try:
            async with ControllerClient("127.0.0.1", server.sockets[0].getsockname()[1], pki_dir=pki,
                                        cert="client", reply_timeout_s=20) as c:
                await body(c, ctl, told)
        finally:
            server.close()
            await server.wait_closed()
            ctl.store.close()

    asyncio.run(go())


def test_operator_registers_a_host_a_station_a_user_and_an_rtt(pki: Path) -> None:
    async def body(c: ControllerClient, ctl: Controller, told: list[str]) -> None:
        assert await c.register("register_host", **HOST, cpu_events_per_s=2400.0) == {"host": "edge9"}
        assert await c.register("register_base_station", **BS) == {"base_station": "bs9"}
        assert await c.register("register_user", name="bob", sla_delay_s=0.2) == {"user": "bob"}
        reply = await c.register("set_rtt", base_station="bs9", host="edge9", rtt_s=0.004)
        assert reply == {"rtt": {"base_station": "bs9", "host": "edge9", "rtt_s": 0.004}}
        h = ctl.store.host("edge9")
        assert (h.role, h.address, h.cpu_events_per_s, h.state) == (HostRole.EDGE, "10.9.0.9:7400", 2400.0,
                                                                   HostState.UP)
        assert told == ["edge9"] and ctl.store.rtts()[("bs9", "edge9")] == 0.004
        assert {u.name: u.sla_delay_s for u in ctl.store.users()}["bob"] == 0.2
        # re-registering a host that is down keeps it down (the poll decides when it is up again)
        ctl.store.set_host_state("edge9", HostState.DOWN)
        await c.register("register_host", **dict(HOST, cpu_cores=8.0))
        assert ctl.store.host("edge9").state is HostState.DOWN and ctl.store.host("edge9").cpu_cores == 8.0

    _run(pki, body)


BAD = [
    ("register_host", dict(HOST, name="../etc"), "host.name: '../etc' is not an identifier"),
    ("register_host", dict(HOST, name="mu-eve"), "starts with 'mu-'"),
    ("register_host", dict(HOST, role="fog"), "register_host.role: 'fog' is not edge or cloud"),
    ("register_host", dict(HOST, address="nowhere"), "register_host.address: 'nowhere' is not IP:PORT"),
    ("register_host", dict(HOST, address="10.0.0.1:0"), "is not IP:PORT"),
    ("register_host", dict(HOST, address="10.0.0.1:99999"), "is not IP:PORT"),
    ("register_host", dict(HOST, address=["10.0.0.1", 1]), "expected IP:PORT as a string"),
    ("register_host", dict(HOST, cpu_cores=-1.0), "host.cpu_cores"),
    ("register_host", dict(HOST, memory_bytes=1e300), "host.memory_bytes"),
    ("register_host", dict(HOST, memory_bytes="lots"), "host.memory_bytes"),
    ("register_host", dict(HOST, extra=1), "register_host.extra: unknown key"),
    ("register_host", {k: v for k, v in HOST.items() if k != "address"}, "register_host.address: missing"),
    ("register_base_station", dict(BS, max_users=0), "base_station.max_users"),
    ("register_base_station", dict(BS, x_m=float("inf")), "request: "),  # Infinity is not strict JSON
    ("register_base_station", dict(BS, bandwidth_bps=True), "base_station.bandwidth_bps: expected a number"),
    ("register_user", {"name": "Bob Smith"}, "user.name"),
    ("register_user", {"name": "bob", "sla_delay_s": -1}, "user.sla_delay_s"),
    ("set_rtt", {"base_station": "bs404", "host": "edge1", "rtt_s": 0.01}, "rtt.base_station: 'bs404' is not in"),
    ("set_rtt", {"base_station": "bs1", "host": "edge1", "rtt_s": 1e9}, "rtt.rtt_s"),
]


def test_bad_registrations_are_refused_with_one_line_and_nothing_is_stored(pki: Path) -> None:
    async def body(c: ControllerClient, ctl: Controller, told: list[str]) -> None:
        before = (ctl.store.hosts(), ctl.store.base_stations(), ctl.store.users(), ctl.store.rtts())
        for op, fields, says in BAD:
            with pytest.raises(ControllerRefused) as err:
                await c.register(op, **fields)
            assert says in str(err.value) and "\n" not in str(err.value), (op, fields, str(err.value))
        assert (ctl.store.hosts(), ctl.store.base_stations(), ctl.store.users(), ctl.store.rtts()) == before
        assert told == []

    _run(pki, body)


def test_a_mobile_user_may_not_register(pki: Path) -> None:
    async def go() -> None:
        ctl, _ = _controller()
        server = await start_server(ctl, pki, "127.0.0.1", 0)
        try:
            async with ControllerClient("127.0.0.1", server.sockets[0].getsockname()[1], pki_dir=pki / "mus" / "alice",
                                        cert="mu-alice", reply_timeout_s=20) as c:
                for op in ("register_host", "register_base_station", "register_user", "set_rtt"):
                    with pytest.raises(ControllerRefused, match=f"{op} is not allowed for a mobile user"):
                        await c.register(op, name="x")
        finally:
            server.close()
            await server.wait_closed()
            ctl.store.close()

    asyncio.run(go())


def test_cli_register_talks_to_a_running_controller(pki: Path, capsys) -> None:
    ready = threading.Event()
    stop: dict[str, object] = {}

    def serve() -> None:
        async def go() -> None:
            ctl, _ = _controller()
            stop["ctl"] = ctl
            server = await start_server(ctl, pki, "127.0.0.1", 0)
            stop["port"] = server.sockets[0].getsockname()[1]
            stop["done"] = done = asyncio.Event()
            stop["loop"] = asyncio.get_running_loop()
            ready.set()
            await done.wait()
            server.close()
            await server.wait_closed()

        asyncio.run(go())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    if not ready.wait(30):
        pytest.fail("the in-process controller did not start serving")
    addr = f"127.0.0.1:{stop['port']}"
    try:
        common = ["--controller", addr, "--pki", str(pki)]
        assert main(["controller", "register", "bs", *common, "bs9", "--x-m", "1", "--y-m", "2",
                     "--bandwidth-bps", "1e9", "--max-users", "4"]) == 0
        assert json.loads(capsys.readouterr().out) == {"base_station": "bs9"}
        assert main(["controller", "register", "host", *common, "edge9", "--address", "10.9.0.9:7400",
                     "--cpu-cores", "4", "--memory-bytes", str(8 << 30), "--disk-bytes", str(1 << 30)]) == 0
        assert main(["controller", "register", "rtt", *common, "bs9:edge9=0.004"]) == 0
        assert main(["controller", "register", "user", *common, "bob"]) == 0
        capsys.readouterr()
        assert main(["controller", "register", "host", *common, "edge10", "--address", "here",
                     "--cpu-cores", "4", "--memory-bytes", "1", "--disk-bytes", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert "register_host.address: 'here' is not IP:PORT" in err and "\n" not in err, err
        assert main(["controller", "register", "rtt", *common, "bs9-edge9"]) == 2
        assert "expected BS:HOST=SECONDS" in capsys.readouterr().err
    finally:
        loop = stop["loop"]
        loop.call_soon_threadsafe(stop["done"].set)  # type: ignore[union-attr]
        t.join(30)
    ctl = stop["ctl"]
    assert ctl.store.rtts() == {("bs9", "edge9"): 0.004}  # type: ignore[union-attr]
    assert ctl.store.host("edge9").address == "10.9.0.9:7400"  # type: ignore[union-attr]
    ctl.store.close()  # type: ignore[union-attr]
