"""Standing grants (control/grants.py): a node migrates by itself, and a neighbour admits it, only within the
scope and lifetime the operator gave. A real agent (in-process, mutual TLS on loopback, the recorders of
test_agent_security for the runtime and the netfilter calls) is fed grants, HELLOs and MIGRATEs by peers
holding valid certificates; the grant book itself gets hostile bodies and an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.control.test_agent_security import BAD_IDS, Env, _run, _say_hello, _spec

from edgemigrate.control import client
from edgemigrate.control.grants import (
    MAX_GRANT_TTL_S,
    MAX_GRANTS,
    MAX_NEIGHBOURS,
    GrantBook,
    GrantRole,
    grant_body,
    node_migrate,
)
from edgemigrate.control.tokens import new_token
from edgemigrate.engine.protocol.codec import Message, MsgType, ProtocolError, encode
from edgemigrate.engine.transport.tls import host_dir


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _body(**kw: Any) -> dict[str, Any]:
    base = grant_body(new_token(), "edge1", ["edge2"], ["web"], 60.0)
    return base | kw


# ------------------------------------------------------------------------------------------ the book


@pytest.mark.parametrize("bad", [
    {"token": "0" * 63}, {"token": "G" * 64}, {"token": "a" * 64 + "\n"},
    {"policy": "central"}, {"policy": ""},
    {"source": "../edge1"}, {"source": 7},
    {"neighbours": []}, {"neighbours": "edge2"}, {"neighbours": ["edge2", "edge2"]},
    {"neighbours": ["edge1", "edge2"]},  # the source as its own neighbour
    {"neighbours": [f"n{i}" for i in range(MAX_NEIGHBOURS + 1)]},
    {"services": [5]}, {"services": []},
    {"ttl_s": 0.0}, {"ttl_s": MAX_GRANT_TTL_S + 1},
    *({"neighbours": ["edge2", bad]} for bad in BAD_IDS),
    *({"services": [bad]} for bad in BAD_IDS),
])
def test_hostile_grant_bodies_are_refused(bad: dict[str, Any]) -> None:
    book = GrantBook("edge2")
    with pytest.raises(ProtocolError):
        book.add(_body(**bad))
    assert len(book) == 0


def test_a_grant_for_other_hosts_is_refused_and_roles_follow_the_holder() -> None:
    with pytest.raises(ProtocolError, match="sent to edge3"):
        GrantBook("edge3").add(_body())
    assert GrantBook("edge1").add(_body())[0] is GrantRole.SOURCE
    assert GrantBook("edge2").add(_body())[0] is GrantRole.NEIGHBOUR


def test_scope_expiry_and_bounds() -> None:
    clock = Clock()
    src, dst = GrantBook("edge1", clock), GrantBook("edge2", clock)
    body = _body(neighbours=["edge2", "edge3"], services=["web", "db"])
    src.add(body)
    dst.add(body)
    token = body["token"]
    assert src.outgoing(token, "web", "edge2").source == "edge1"
    assert dst.incoming(token, "db", "edge1").policy.value == "shareon"
    for call, match in ((lambda: src.outgoing(token, "web", "edge4"), "not a neighbour"),
                        (lambda: src.outgoing(token, "cache", "edge2"), "does not list cache"),
                        (lambda: src.outgoing(new_token(), "web", "edge2"), "not authorised"),
                        (lambda: dst.outgoing(token, "web", "edge3"), "not authorised"),  # a neighbour is no source
                        (lambda: dst.incoming(token, "web", "edge3"), "for source edge1"),
                        (lambda: dst.incoming(token, "cache", "edge1"), "does not list cache"),
                        (lambda: src.incoming(token, "web", "edge1"), "not authorised")):
        with pytest.raises(ProtocolError, match=match):
            call()
    assert src.linked("edge3") and dst.linked("edge1") and not dst.linked("edge3") and not dst.linked(None)
    clock.now += 61.0
    with pytest.raises(ProtocolError, match="expired|not authorised"):
        dst.incoming(token, "web", "edge1")
    assert not dst.linked("edge1") and len(dst) == 0
    full = GrantBook("edge2", clock)
    for _ in range(MAX_GRANTS):
        full.add(_body())
    with pytest.raises(ProtocolError, match=f"already holds {MAX_GRANTS}"):
        full.add(_body())


# ------------------------------------------------------------------------------------------ the agent


async def _grant(env: Env, **kw: Any) -> str:
    """The operator's GRANT as :func:`grant` sends it, to edge2 (the agent under test) only; returns the token."""
    body = _body(**kw)
    await client._request(env.directory, "edge2", MsgType.GRANT, **body)
    return str(body["token"])


def test_only_the_client_certificate_may_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        for peer in ("edge1", "edge2", "edge3"):
            conn = await env.peer(peer)
            await conn.write(encode(MsgType.GRANT, **_body()))
            reply = await asyncio.wait_for(conn.next_message(), 10)
            await conn.close()
            assert isinstance(reply, Message) and reply.type is MsgType.ERROR
            assert "only accepted from the client" in reply.body["message"]
        assert len(env.agent.grants) == 0

    _run(tmp_path, monkeypatch, body)


def test_a_neighbour_admits_a_hello_only_under_a_live_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        before = env.files()
        # no grant at all
        conn, reply = await _say_hello(env, "s0", new_token())
        await conn.close()
        assert reply.type is MsgType.ABORT and "not authorised" in reply.body["reason"]
        token = await _grant(env)
        # the grant's source, a listed service: admitted (and not burned: the grant stands)
        for session in ("s1", "s2"):
            conn, reply = await _say_hello(env, session, token)
            await conn.close()
            assert reply.type is MsgType.HELLO_OK, reply
            await env.settle()
        # another source with the same token, or a service the grant does not list: refused
        conn, reply = await _say_hello(env, "s3", token, peer="edge3", src="edge3")
        await conn.close()
        assert reply.type is MsgType.ABORT and "for source edge1" in reply.body["reason"]
        conn, reply = await _say_hello(env, "s4", token, spec=_spec("other"))
        await conn.close()
        assert reply.type is MsgType.ABORT and "does not list other" in reply.body["reason"]
        # expired
        env.agent.grants.clock = lambda: 1e12
        conn, reply = await _say_hello(env, "s5", token)
        await conn.close()
        assert reply.type is MsgType.ABORT and "not authorised" in reply.body["reason"]
        await env.settle()
        assert not env.mover.claims and not env.runtime.restores
        assert {f for f in env.files() if "incoming/s" in f} <= {f for f in before if "incoming/s" in f}

    _run(tmp_path, monkeypatch, body)


def test_a_grant_not_naming_this_host_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        with pytest.raises(Exception, match="sent to edge2"):
            await _grant(env, neighbours=["edge3"])  # edge2 is neither source nor neighbour
        assert len(env.agent.grants) == 0

    _run(tmp_path, monkeypatch, body)


def test_a_node_migrates_by_itself_only_within_its_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        me = host_dir(env.pki, "edge2")
        addr = ("127.0.0.1", env.port)

        async def ask(service: str, to: str, token: str) -> str:
            with pytest.raises(Exception) as exc:
                await node_migrate(me, "edge2", addr, service, to, addr, token)
            return str(exc.value)

        # without a grant
        assert "not authorised" in await ask("web", "edge3", new_token())
        token = await _grant(env, source="edge2", neighbours=["edge3"], services=["web"])
        # to a neighbour the grant does not list, a service it does not list, after expiry
        assert "not a neighbour" in await ask("web", "edge1", token)
        assert "does not list db" in await ask("db", "edge3", token)
        # within the grant: the agent starts it (and fails only because it runs no such service)
        assert "no service 'web'" in await ask("web", "edge3", token)
        # a peer's certificate may not ask for a migration, grant or not
        conn = await env.peer("edge3")
        await conn.write(encode(MsgType.MIGRATE, service="web", to_host="edge3", to_addr="127.0.0.1:1",
                                strategy="precopy", token=token))
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and "only accepted from the client" in reply.body["message"]
        env.agent.grants.clock = lambda: 1e12
        assert "expired" in await ask("web", "edge3", token)

    _run(tmp_path, monkeypatch, body)
