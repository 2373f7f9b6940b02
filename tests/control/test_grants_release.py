"""A neighbour's admission reservation (control/grants.py) goes as soon as the migration is over - by the
neighbour's own session end and by the source's report (``REPORT`` with ``release``) - and lapses at
``RESERVATION_TTL_S`` only when no report ever comes. The agent is the real one (in-process, mutual TLS on
loopback, the recorders of test_agent_security for the runtime and netfilter); the node loop's release goes
over the same real connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.control.test_agent_security import Env, _run, _say_hello, _spec
from tests.control.test_grants import Clock, _body, _grant
from tests.control.test_grants_admission import SERVICES, FixedMeter, _ask

from edgemigrate.control.grants import RESERVATION_TTL_S, GrantBook, report_outcome
from edgemigrate.core.errors import EngineError
from edgemigrate.costs.shareon import Reason, RegionThresholds
from edgemigrate.edgenode import loop as loop_mod
from edgemigrate.edgenode.loop import NodeLoop, NodeLoopConfig
from edgemigrate.engine.protocol.codec import Message, MsgType, ProtocolError, encode
from edgemigrate.engine.transport.tls import host_dir
from edgemigrate.policies.shareon import MigrationDecision, ShareOnAgent, ShareOnParams


async def _release(env: Env, src: str, token: str, service: str, completed: bool) -> bool:
    return await report_outcome(host_dir(env.pki, src), src, "edge2", ("127.0.0.1", env.port), token, service,
                                completed)


@pytest.mark.parametrize("completed", [True, False])
def test_the_sources_report_releases_its_reservation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     completed: bool) -> None:
    """A migration that failed at the source before it reached the neighbour: the source's report frees the
    room now. One that completed: the room stays reserved until the neighbour's load readings hold the
    service (each REPORT is a reading; the second after the arrival covers it in full), not until the expiry.
    Either way a HELLO after it is no longer admitted."""
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.5)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        assert (await _ask(env, "edge1", token, "web", 0.4))["admitted"]
        assert env.agent.grants.reserved_fraction() == pytest.approx(0.2)
        assert not (await _ask(env, "edge1", token, "db", 0.4))["admitted"]  # 0.5 + 0.2 + 0.2 > 0.85
        assert await _release(env, "edge1", token, "web", completed) is True
        assert env.agent.grants.reserved_fraction() == (pytest.approx(0.2) if completed else 0.0)
        assert await _release(env, "edge1", token, "web", completed) is False  # nothing more to release
        assert (await _ask(env, "edge1", token, "db", 0.4))["admitted"]  # the room is back before any expiry
        conn, reply = await _say_hello(env, "s1", token, spec=_spec("web"))  # web's reservation is gone
        await conn.close()
        assert reply.type is MsgType.ABORT and "not admitted" in reply.body["reason"]

    _run(tmp_path, monkeypatch, body)


def test_the_neighbours_own_session_end_releases_the_reservation(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No report needed when the neighbour saw the session: it failed here (the source hung up after HELLO),
    and the reservation went with it."""
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.5)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        assert (await _ask(env, "edge1", token, "web", 0.4))["admitted"]
        conn, reply = await _say_hello(env, "s1", token, spec=_spec("web"))
        assert reply.type is MsgType.HELLO_OK, reply
        assert env.agent.grants.reserved_fraction() == pytest.approx(0.2)  # held while the session runs
        await conn.close()
        await env.settle()
        assert env.agent.grants.reserved_fraction() == 0.0
        assert await _release(env, "edge1", token, "web", False) is False  # the late report finds nothing

    _run(tmp_path, monkeypatch, body)


def test_an_arrived_service_stays_reserved_until_two_load_readings_hold_it() -> None:
    clock = Clock()
    book = GrantBook("edge2", clock=clock)
    book.add(body := _body(admit_below=0.85, services=["web"], ttl_s=3600.0))
    assert book.admit({"token": body["token"], "service": "web", "demand_cores": 0.2}, "edge1", 0.1, 2.0)["admitted"]
    book.measured()  # readings before the arrival do not count
    assert book.settle("edge1", "web", arrived=True) is True
    assert book.release({"token": body["token"], "service": "web", "outcome": "completed"}, "edge1") is False
    book.measured()  # the window of this reading holds the service only from its arrival
    assert book.reserved_fraction() == pytest.approx(0.1)
    book.measured()
    assert book.reserved_fraction() == 0.0
    assert book.settle("edge1", "web", arrived=False) is False


def test_a_failed_arrival_after_a_completed_report_releases_at_once() -> None:
    """The source reported completed, then the neighbour's own session failed (kept in doubt is not an
    arrival): the failure wins, the room is free now."""
    book = GrantBook("edge2", clock=Clock())
    book.add(body := _body(admit_below=0.85, services=["web"], ttl_s=3600.0))
    assert book.admit({"token": body["token"], "service": "web", "demand_cores": 0.2}, "edge1", 0.1, 2.0)["admitted"]
    assert book.release({"token": body["token"], "service": "web", "outcome": "completed"}, "edge1") is True
    assert book.settle("edge1", "web", arrived=False) is True
    assert book.reserved_fraction() == 0.0


def test_a_lost_report_lapses_only_at_the_safety_net_expiry() -> None:
    clock = Clock()
    book = GrantBook("edge2", clock=clock)
    book.add(body := _body(admit_below=0.85, services=["web"], ttl_s=3600.0))
    adm = book.admit({"token": body["token"], "service": "web", "demand_cores": 0.2}, "edge1", 0.1, 2.0)
    assert adm["admitted"] and book.reserved_fraction() == pytest.approx(0.1)
    clock.now += RESERVATION_TTL_S - 0.5
    assert book.reserved_fraction() == pytest.approx(0.1)  # no report yet: still held
    clock.now += 1.0
    assert book.reserved_fraction() == 0.0
    assert book.release({"token": body["token"], "service": "web", "outcome": "completed"}, "edge1") is False


@pytest.mark.parametrize("release", [
    "x", {"token": "0" * 64, "service": "web"},  # not an object; a key missing
    {"service": "web", "outcome": "failed", "extra": 1}, {"token": 5, "service": "web", "outcome": "failed"},
    {"service": "../web", "outcome": "failed"}, {"service": "web", "outcome": "done"},
    {"service": "web", "outcome": True}, {"service": "other", "outcome": "failed"},  # not listed by the grant
    {"token": "a" * 64, "service": "web", "outcome": "failed"},  # no such grant
])
def test_hostile_releases_get_an_error_and_release_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           release: Any) -> None:
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.1)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        assert (await _ask(env, "edge1", token, "web", 0.2))["admitted"]
        req = release if not isinstance(release, dict) or "token" in release else {"token": token, **release}
        conn = await env.peer("edge1")
        await conn.write(encode(MsgType.REPORT, release=req) if isinstance(req, dict) else
                         b"EM\x03\x1e" + len(raw := b'{"release":"x"}').to_bytes(4, "big") + raw)
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ERROR, reply
        assert env.agent.grants.reserved_fraction() == pytest.approx(0.1)

    _run(tmp_path, monkeypatch, body)


def test_another_source_cannot_release_a_reservation_it_does_not_hold(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """edge3, granted as a source to edge2 itself, can neither use edge1's token nor free edge1's room."""
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.1)
        t1 = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        t3 = await _grant(env, source="edge3", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        assert (await _ask(env, "edge1", t1, "web", 0.2))["admitted"]
        with pytest.raises(EngineError, match="the grant is for source edge1"):
            await _release(env, "edge3", t1, "web", False)
        assert await _release(env, "edge3", t3, "web", False) is False  # its own key: nothing of edge1's
        assert env.agent.grants.reserved_fraction() == pytest.approx(0.1)

    _run(tmp_path, monkeypatch, body)


def test_the_node_loop_reports_a_failed_move_and_the_room_is_back(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The node loop's migration fails at its own agent (before reaching the neighbour): its release reaches
    the real neighbour agent, which frees the reservation, and the record says so."""
    async def body(env: Env) -> None:
        env.agent.meter = FixedMeter(0.5)
        token = await _grant(env, source="edge1", neighbours=["edge2"], services=SERVICES, admit_below=0.85)
        records: list[dict[str, Any]] = []
        cfg = NodeLoopConfig("edge1", host_dir(env.pki, "edge1"),
                             {"edge1": ("127.0.0.1", 1), "edge2": ("127.0.0.1", env.port)}, token, {}, {},
                             {"edge2": 1e9}, t_p_avg_s=0.03, alpha_prior_s=0.06, admission=True)
        params = ShareOnParams(RegionThresholds(1e8, 2e8, 64e6, 128e6), t_app_th_s=0.1)
        nl = NodeLoop(cfg, ShareOnAgent(params), records.append)

        async def failing(*a: Any, **kw: Any) -> dict[str, Any]:
            raise EngineError("checkpoint of web failed: unable to freeze (4 attempts)")

        monkeypatch.setattr(loop_mod, "node_migrate", failing)
        d = MigrationDecision("web", "edge1", "edge2", next(iter(Reason)), 0.0, 0.0)
        assert await nl._destination(d, 0.4) == "edge2"  # admitted: 0.2 of edge2 reserved
        assert env.agent.grants.reserved_fraction() == pytest.approx(0.2)
        await nl._migrate(d)
        assert env.agent.grants.reserved_fraction() == 0.0
        assert [r["event"] for r in records] == ["admission", "migration_start", "migration_done", "release"]
        assert records[-1]["released"] is True and records[-1]["completed"] is False

    _run(tmp_path, monkeypatch, body)


def test_a_release_without_a_peer_certificate_is_refused() -> None:
    book = GrantBook("edge2", clock=Clock())
    book.add(body := _body(admit_below=0.85))
    book.admit({"token": body["token"], "service": "web", "demand_cores": 0.2}, "edge1", 0.1, 2.0)
    with pytest.raises(ProtocolError, match="without a peer certificate"):
        book.release({"token": body["token"], "service": "web", "outcome": "failed"}, None)
    assert book.reserved_fraction() == pytest.approx(0.1)
