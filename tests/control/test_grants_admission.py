"""Destination-side admission on the real control plane (control/grants.py, ``REPORT`` with ``admit``): a
neighbour holding a grant with ``admit_below`` admits a source's migration only if its measured CPU use plus
the reservations it already gave plus the service's demand stays below that bound, and accepts the HELLO only
for an admitted service. The agent is the real one (in-process, mutual TLS on loopback); its CPU meter is
given a fixed reading so the bound is exact (the meter itself is tested in test_agent_reports)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.control.test_agent_security import Env, _run, _say_hello, _spec
from tests.control.test_grants import Clock, _body, _grant

from edgemigrate.control.grants import RESERVATION_TTL_S, GrantBook, ask_admission
from edgemigrate.control.reports import ResourceMeter
from edgemigrate.engine.protocol.codec import Message, MsgType, ProtocolError, encode
from edgemigrate.engine.transport.tls import host_dir

SERVICES = ["web", "db", "cache", "queue"]


class FixedMeter(ResourceMeter):
    """The host's meter with a fixed CPU reading (fraction of 2 cores); memory as the real meter reads it."""

    def __init__(self, used: float) -> None:
        super().__init__(None)
        self.used = used

    def cpu_used_fraction(self) -> tuple[float, float]:
        return self.used, 0.0

    def cpu_cores(self) -> float:
        return 2.0


async def _ask(env: Env, src: str, token: str, service: str, demand_cores: float) -> dict[str, Any]:
    return await ask_admission(host_dir(env.pki, src), src, "edge2", ("127.0.0.1", env.port), token, service,
                               demand_cores)


def test_many_sources_one_idle_neighbour_only_as_many_admitted_as_fit(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.5)
        t1 = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        t3 = await _grant(env, source="edge3", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        # each asks for 0.2 cores = 0.1 of edge2's 2 cores: 0.5 + 0.1 x n < 0.85 admits three in all
        got = [(await _ask(env, src, tok, svc, 0.2))["admitted"]
               for src, tok, svc in (("edge1", t1, "web"), ("edge3", t3, "web"), ("edge1", t1, "db"),
                                     ("edge3", t3, "db"), ("edge1", t1, "cache"))]
        assert got == [True, True, True, False, False]
        refused = await _ask(env, "edge3", t3, "db", 0.2)
        assert refused["reserved_fraction"] == pytest.approx(0.3) and refused["admit_below"] == 0.85
        # the HELLO follows the admission: the admitted service is accepted, the refused one is not
        conn, reply = await _say_hello(env, "s1", t1, spec=_spec("web"))
        await conn.close()
        assert reply.type is MsgType.HELLO_OK, reply
        await env.settle()
        conn, reply = await _say_hello(env, "s2", t3, peer="edge3", src="edge3", spec=_spec("db"))
        await conn.close()
        assert reply.type is MsgType.ABORT and "not admitted" in reply.body["reason"]
        # reservations lapse once the arrived services are in the measured load: room again
        env.agent.grants.clock = lambda: 1e9 + RESERVATION_TTL_S
        env.agent.grants._grants = {}  # noqa: SLF001 (the grants expired with the clock jump: grant again)
        t3 = await _grant(env, source="edge3", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        assert (await _ask(env, "edge3", t3, "db", 0.2))["admitted"]

    _run(tmp_path, monkeypatch, body)


def test_without_admit_below_every_granted_move_is_admitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.99)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES)
        assert (await _ask(env, "edge1", token, "web", 1.0))["admitted"]
        conn, reply = await _say_hello(env, "s1", token, spec=_spec("db"))  # no admission needed either
        await conn.close()
        assert reply.type is MsgType.HELLO_OK, reply
        await env.settle()

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize("admit", [
    "x", {"token": "0" * 64, "service": "web"},  # not an object; a key missing
    {"token": "0" * 64, "service": "web", "demand_cores": 0.1, "extra": 1},
    {"token": 5, "service": "web", "demand_cores": 0.1},
    {"service": "../web", "demand_cores": 0.1}, {"service": "web\n", "demand_cores": 0.1},
    {"service": "web", "demand_cores": -0.1}, {"service": "web", "demand_cores": 1e9},
    {"service": "web", "demand_cores": True}, {"service": "web", "demand_cores": "0.1"},
    {"service": "other", "demand_cores": 0.1},  # not listed by the grant
    {"token": "a" * 64, "service": "web", "demand_cores": 0.1},  # no such grant
])
def test_hostile_admission_requests_get_an_error_and_reserve_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   admit: Any) -> None:
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.1)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        req = admit if not isinstance(admit, dict) or "token" in admit else {"token": token, **admit}
        conn = await env.peer("edge1")
        await conn.write(encode(MsgType.REPORT, admit=req) if isinstance(req, dict) else
                         b"EM\x03\x1e" + len(raw := b'{"admit":"x"}').to_bytes(4, "big") + raw)
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ERROR, reply
        assert env.agent.grants.reserved_fraction() == 0.0

    _run(tmp_path, monkeypatch, body)


def test_a_peer_without_a_grant_cannot_ask_admission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.1)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        with pytest.raises(Exception, match="not the client, this host, or a granted neighbour"):
            await _ask(env, "edge3", token, "web", 0.1)
        assert env.agent.grants.reserved_fraction() == 0.0

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.2, "0.8", True])
def test_admit_below_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(ProtocolError, match="admit_below"):
        GrantBook("edge2").add(_body(admit_below=bad))


def test_book_nan_measurement_refuses() -> None:
    book = GrantBook("edge2", clock=Clock())
    role, g = book.add(body := _body(admit_below=0.85))
    adm = book.admit({"token": body["token"], "service": "web", "demand_cores": 0.1}, "edge1", float("nan"), 2.0)
    assert adm["admitted"] is False and book.reserved_fraction() == 0.0
