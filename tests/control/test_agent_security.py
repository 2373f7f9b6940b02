"""A real agent (in-process, mutual TLS on loopback) fed hostile input by a peer holding a valid certificate.

Runs without root or CRIU: the container runtime and the service-IP mover are recorders, and so are the
netfilter calls, so every test can show what the agent did - and did not do - with what a peer sent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgemigrate.control import agent as agent_mod
from edgemigrate.control import client
from edgemigrate.control.agent import Agent, AgentConfig, private_dir
from edgemigrate.control.client import AgentDirectory
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.control.store import AgentStore, SessionPhase, SessionRecord
from edgemigrate.control.tokens import TokenBook, new_token
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, EngineError, ValidationError
from edgemigrate.core.ids import check_id, child, round_dir
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.runtime import ContainerState, RestoreStats
from edgemigrate.engine.manifest import ChunkSpec, FileKind, FileSpec, Manifest
from edgemigrate.engine.protocol.codec import Message, MsgType, ProtocolError, encode
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.streams import FramedConnection, connect
from edgemigrate.engine.transport.tls import create_pki, host_dir

BAD_IDS = ["/", "..", "a/../../b", "", "x\n", "a" * 4096, "../x", "A", "-x", "a b"]
SERVICE_IP = "10.99.2.0"
PEER_IP = "10.99.0.5"


def lock_rule(chain: str = "INPUT", local_ip: str = SERVICE_IP, port: int = 40000) -> str:
    src, dst = (PEER_IP, local_ip) if chain == "INPUT" else (local_ip, PEER_IP)
    sport, dport = (port, 7000) if chain == "INPUT" else (7000, port)
    return (f"-A {chain} -s {src}/32 -d {dst}/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport {sport} "
            f"--dport {dport} -j DROP")


class FakeRuntime:
    """Records what the agent asks of the container runtime; restores always fail (no CRIU here)."""

    def __init__(self) -> None:
        self.states: dict[str, ContainerState] = {}
        self.restores: list[Path] = []
        self.killed: list[str] = []
        self.lazy_restore_ok = False  # True: restores return lazily, and then their page copy fails
        self.prepared: list[Path] = []

    def run(self, container_id: str, bundle: Path) -> int:
        raise EngineError("fake runtime runs nothing")

    def checkpoint(self, container_id: str, image_dir: Path, *, leave_running: bool) -> Any:
        raise EngineError("fake runtime checkpoints nothing")

    def restore(self, container_id: str, bundle: Path, image_dir: Path, *, lazy_pages: bool = False) -> Any:
        self.restores.append(image_dir)
        if not (lazy_pages and self.lazy_restore_ok):
            raise EngineError("fake runtime cannot restore")
        self.states[container_id] = ContainerState.RUNNING
        return RestoreStats(4242, 0.01, lazy_pages=True)

    def prepare_restore(self, container_id: str, image_dir: Path) -> None:
        self.prepared.append(image_dir)

    def wait_pages(self, container_id: str) -> float:
        raise EngineError(f"lazy page copy of {container_id} failed (exit 1)")

    def pause(self, container_id: str) -> None:
        raise EngineError("fake runtime pauses nothing")

    def resume(self, container_id: str) -> None:
        raise EngineError("fake runtime resumes nothing")

    def kill(self, container_id: str) -> None:
        self.killed.append(container_id)
        self.states.pop(container_id, None)

    def state(self, container_id: str) -> ContainerState:
        return self.states.get(container_id, ContainerState.ABSENT)

    def pid(self, container_id: str) -> int | None:
        return None


@dataclass
class FakeMover:
    held: dict[str, str] = field(default_factory=dict)
    claims: list[tuple[str, str]] = field(default_factory=list)

    def check(self, ip: str) -> None:
        if not ip.startswith("10.99."):
            raise ConfigError(f"service IP {ip} is outside the testbed subnet 10.99.0.0/16")

    def locate(self, ip: str) -> str | None:
        return self.held.get(ip)

    def claim(self, ip: str, host: str) -> None:
        self.claims.append((ip, host))
        self.held[ip] = host

    def release(self, ip: str) -> None:
        self.held.pop(ip, None)


class FakeHold:
    """A packet hold that holds nothing (the real one is tested on a real queue in tests/engine/checkpoint)."""

    made: list[FakeHold] = []

    def __init__(self) -> None:
        self.queue, self.started, self.released, self.closed = 49152, False, False, False
        FakeHold.made.append(self)

    def start(self) -> FakeHold:
        self.started = True
        return self

    def release(self, *, last: bool = True) -> int:
        self.released = True
        return 0

    def close(self) -> None:
        self.closed = True


@dataclass
class Env:
    agent: Agent
    pki: Path
    port: int
    runtime: FakeRuntime
    mover: FakeMover
    applied: list[str]
    removed: list[str]

    @property
    def directory(self) -> AgentDirectory:
        return AgentDirectory({"edge2": ("127.0.0.1", self.port)}, self.pki)

    async def peer(self, name: str = "edge1") -> FramedConnection:
        return await connect("127.0.0.1", self.port, tls.client_context(host_dir(self.pki, name), name), "edge2")

    async def authorize(self, service: str = "web", src: str = "edge1") -> str:
        return await client.authorize(self.directory, service, src, "edge2")

    def files(self) -> set[str]:
        """Every path under the agent's state and image folders (what a rejected peer must not change)."""
        out = set()
        for root in (self.agent.cfg.state_dir, self.agent.cfg.image_root):
            out |= {str(p.relative_to(root.parent)) for p in root.rglob("*")}
        return out

    async def settle(self) -> None:
        """Wait until the agent has finished every incoming session (an event, not a duration)."""
        for _ in range(1000):
            if not self.agent.incoming:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("agent kept a session open")


def _free_port_pair() -> int:
    for _ in range(100):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port pair")


@asynccontextmanager
async def running_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **cfg: Any) -> AsyncIterator[Env]:
    pki = create_pki(tmp_path / "pki", ["edge1", "edge2", "edge3"])
    applied: list[str] = []
    removed: list[str] = []
    monkeypatch.setattr(netlock, "apply_rules", lambda ns, rules: applied.extend(netlock.check_local_rules(rules)))
    monkeypatch.setattr(netlock, "remove_rules", lambda ns, rules: removed.extend(rules))
    monkeypatch.setattr(netlock, "criu_drop_rules", lambda ns, ip=None: list(applied))
    monkeypatch.setattr(netlock, "destroy_sockets", lambda ns, ip: None)  # no sockets: nothing restored
    FakeHold.made = []
    monkeypatch.setattr(agent_mod, "PacketHold", FakeHold)
    # the real image checker is tested on real CRIU images in tests/engine/checkpoint; these images are empty
    monkeypatch.setattr(agent_mod, "check_image", lambda image_dir, policy: None)
    port = _free_port_pair()
    runtime, mover = FakeRuntime(), FakeMover({SERVICE_IP: "edge1"})
    config = AgentConfig(host="edge2", listen_ip="127.0.0.1", port=port, pki_dir=host_dir(pki, "edge2"),
                         state_dir=tmp_path / "state", image_root=tmp_path / "images", io_timeout_s=5.0, **cfg)
    agent = Agent(config, runtime=runtime, mover=mover)
    await agent.start()
    try:
        yield Env(agent, pki, port, runtime, mover, applied, removed)
    finally:
        await agent.close()


def _spec(name: str = "web", ip: str = SERVICE_IP) -> ServiceSpec:
    return ServiceSpec(name, ServiceKind.COUNTER, ip, 7000)


def _hello(session: str, token: str, spec: ServiceSpec | None = None, src: str = "edge1") -> bytes:
    spec = spec or _spec()
    return encode(MsgType.HELLO, session=session, service=spec.to_dict(), src_host=src, src_addr="127.0.0.1:1",
                  strategy="precopy", token=token)


async def _say_hello(env: Env, session: str, token: str, **kw: Any) -> tuple[FramedConnection, Message]:
    conn = await env.peer(kw.pop("peer", "edge1"))
    await conn.write(_hello(session, token, **kw))
    reply = await asyncio.wait_for(conn.next_message(), 10)
    assert isinstance(reply, Message)
    return conn, reply


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: Callable[[Env], Any], **cfg: Any) -> None:
    async def main() -> None:
        async with running_agent(tmp_path, monkeypatch, **cfg) as env:
            await body(env)

    asyncio.run(main())


# ------------------------------------------------------------------------------------------ identifiers


@pytest.mark.parametrize("bad", BAD_IDS)
def test_identifiers_that_reach_a_path_are_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        check_id(bad, "session")
    with pytest.raises(ValidationError):
        child(tmp_path, bad)
    store = AgentStore(tmp_path / "state")
    with pytest.raises(ValidationError):
        store.drop_session(bad)
    with pytest.raises(ValidationError):
        SessionRecord(bad, "source", _spec(), "edge2", "127.0.0.1:1", SessionPhase.PRECOPY)
    with pytest.raises(ConfigError):
        ServiceSpec.from_dict(_spec().to_dict() | {"name": bad})
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["sessions"]


@pytest.mark.parametrize("bad", [0, -1, True, "1", 1 << 40])
def test_round_numbers_are_checked(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValidationError):
        round_dir(tmp_path, bad)
    assert round_dir(tmp_path, 3) == tmp_path / "round-3"


def test_a_journal_entry_naming_another_file_is_dropped(tmp_path: Path) -> None:
    store = AgentStore(tmp_path)
    rec = SessionRecord("s1", "source", _spec(), "edge2", "127.0.0.1:1", SessionPhase.FROZEN)
    store.put_session(rec)
    evil = rec.to_dict() | {"session": "../../etc/x"}
    (tmp_path / "sessions" / "evil.json").write_text(__import__("json").dumps(evil))
    assert store.sessions() == [rec]
    assert not (tmp_path / "sessions" / "evil.json").exists()


def test_hello_with_a_hostile_session_id_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("x")

    async def body(env: Env) -> None:
        before = env.files()
        for bad in [*BAD_IDS, "../../canary", "../../../canary"]:
            token = await env.authorize()
            conn, reply = await _say_hello(env, bad, token)
            await conn.close()
            assert reply.type is MsgType.ABORT and "not an identifier" in reply.body["reason"], reply
        await env.settle()
        assert env.files() == before
        assert (canary / "keep").exists()
        # DATA_OPEN names a session too
        conn = await connect("127.0.0.1", env.port + 1, tls.client_context(host_dir(env.pki, "edge1"), "edge1"),
                             "edge2")
        await conn.write(encode(MsgType.DATA_OPEN, session="../../canary"))
        assert await asyncio.wait_for(conn.next_message(), 10) is None  # closed, nothing else
        await conn.close()
        assert env.files() == before

    _run(tmp_path, monkeypatch, body)


# ------------------------------------------------------------------------------------------ tokens


def test_hello_without_a_token_is_refused_and_writes_nothing(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        before = env.files()
        for token in ("", "0" * 64, new_token(), "x\n"):
            conn, reply = await _say_hello(env, "s1", token)
            await conn.close()
            assert reply.type is MsgType.ABORT and "not authorised" in reply.body["reason"]
        await env.settle()
        assert env.files() == before and not env.mover.claims and not env.runtime.restores

    _run(tmp_path, monkeypatch, body)


def test_a_token_is_used_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        token = await env.authorize()
        conn, reply = await _say_hello(env, "s1", token)
        assert reply.type is MsgType.HELLO_OK
        await conn.close()
        await env.settle()
        before = env.files()
        conn, reply = await _say_hello(env, "s2", token)  # replayed, under a fresh session id
        await conn.close()
        assert reply.type is MsgType.ABORT and "not authorised" in reply.body["reason"]
        await env.settle()
        assert env.files() == before

    _run(tmp_path, monkeypatch, body)


def test_a_token_for_another_service_source_or_destination_is_refused(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        before = env.files()
        # for another service
        token = await env.authorize("other")
        conn, reply = await _say_hello(env, "s1", token)
        await conn.close()
        assert reply.type is MsgType.ABORT and "token for other" in reply.body["reason"]
        # announced for a source edge3, presented by edge1 (it is burnt: edge3 cannot use it either)
        token = await env.authorize("web", "edge3")
        conn, reply = await _say_hello(env, "s2", token)
        await conn.close()
        assert reply.type is MsgType.ABORT and "from edge3" in reply.body["reason"]
        conn, reply = await _say_hello(env, "s3", token, peer="edge3", src="edge3")
        await conn.close()
        assert reply.type is MsgType.ABORT and "not authorised" in reply.body["reason"]
        # a token edge3's agent was given is unknown here; an AUTHORIZE naming edge3 is refused here
        with pytest.raises(EdgeMigrateError, match="for destination edge3 sent to edge2"):
            await client._request(env.directory, "edge2", MsgType.AUTHORIZE, service="web", src_host="edge1",
                                  to_host="edge3", token=new_token(), ttl_s=60.0)
        await env.settle()
        assert env.files() == before

    _run(tmp_path, monkeypatch, body)


def test_only_the_client_certificate_may_authorize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        conn = await env.peer("edge1")  # a compromised edge host authorising its own push
        await conn.send(MsgType.AUTHORIZE, service="web", src_host="edge1", to_host="edge2", token=new_token(),
                        ttl_s=60.0)
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ERROR
        assert "only accepted from the client certificate" in reply.body["message"]
        assert len(env.agent.tokens) == 0

    _run(tmp_path, monkeypatch, body)


def test_token_book_expiry_and_bounds() -> None:
    now = [100.0]
    book = TokenBook("edge2", clock=lambda: now[0])
    token = new_token()
    book.grant(token, "web", "edge1", "edge2", 10.0)
    now[0] += 10.5
    with pytest.raises(ProtocolError, match="expired"):
        book.redeem(token, "web", "edge1")
    with pytest.raises(ProtocolError, match="not authorised"):  # and it is gone
        book.redeem(token, "web", "edge1")
    for bad in (("x" * 64, "web", "edge1", "edge2", 10.0), (new_token(), "web", "edge1", "edge2", 0.0),
                (new_token(), "web", "edge1", "edge2", 1e9), (new_token(), "../x", "edge1", "edge2", 5.0),
                (new_token(), "web", "edge2", "edge2", 5.0)):
        with pytest.raises(ProtocolError):
            book.grant(*bad)
    for _ in range(64):
        book.grant(new_token(), "web", "edge1", "edge2", 5.0)
    with pytest.raises(ProtocolError, match="already expects"):
        book.grant(new_token(), "web", "edge1", "edge2", 5.0)
    now[0] += 6.0  # expired grants make room
    book.grant(new_token(), "web", "edge1", "edge2", 5.0)
    assert len(book) == 1


# ---------------------------------------------------------------------------------- bounds on a peer


def test_a_round_larger_than_the_service_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = 40 << 30  # one file under the per-file limit, far over what a 0 MB counter may send

    async def body(env: Env) -> None:
        token = await env.authorize()
        conn, reply = await _say_hello(env, "s1", token)
        assert reply.type is MsgType.HELLO_OK
        m = Manifest("web", 1, False, (FileSpec("pages-1.img", FileKind.FULL, huge, huge, "0" * 64),),
                     (ChunkSpec(0, "pages-1.img", 0, 1 << 20, "0" * 64),))
        await conn.send(MsgType.ROUND, session="s1", manifest=m.to_dict(), netfilter_rules=[])
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ABORT
        assert "outside 0..536870912" in reply.body["reason"]  # 512 MiB: 2 x 0 MB + the slack
        await env.settle()
        assert not any((env.agent.cfg.image_root / "incoming").iterdir())

    _run(tmp_path, monkeypatch, body)


def test_connections_and_incoming_migrations_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        conns = []
        for i in range(2):
            spec = _spec(f"web{i}", f"10.99.2.{i + 1}")
            token = await env.authorize(spec.name)  # its connection is closed before the HELLO
            conn, reply = await _say_hello(env, f"s{i}", token, spec=spec)
            conns.append(conn)
            if i == 0:
                assert reply.type is MsgType.HELLO_OK
            else:
                assert reply.type is MsgType.ABORT and "already receiving 1" in reply.body["reason"]
        # the first session's connection is open, the refused one may still be closing: with two more
        # connections the cap of 2 is exceeded whatever that one's state, and the last is closed at once
        extra = [await env.peer() for _ in range(2)]
        assert await asyncio.wait_for(extra[-1].next_message(), 10) is None
        for c in [*conns, *extra]:
            await c.close()
        await env.settle()

    _run(tmp_path, monkeypatch, body, max_incoming=1, max_connections=2)


# ------------------------------------------------------------------- service IP and lock rules


async def _final_round(env: Env, rules: list[str], spec: ServiceSpec | None = None,
                       chunks: bool = False) -> tuple[FramedConnection, Message]:
    spec = spec or _spec()
    token = await env.authorize(spec.name)
    conn, reply = await _say_hello(env, "s1", token, spec=spec)
    assert reply.type is MsgType.HELLO_OK, reply
    files: tuple[FileSpec, ...] = ()
    specs: tuple[ChunkSpec, ...] = ()
    if chunks:  # a round whose data never comes
        files = (FileSpec("core-1.img", FileKind.FULL, 10, 10, "0" * 64),)
        specs = (ChunkSpec(0, "core-1.img", 0, 10, "0" * 64),)
    m = Manifest(spec.name, 1, True, files, specs)
    await conn.send(MsgType.ROUND, session="s1", manifest=m.to_dict(), netfilter_rules=rules)
    if chunks:
        return conn, reply
    reply = await asyncio.wait_for(conn.next_message(), 10)
    assert isinstance(reply, Message)
    return conn, reply


def test_rules_and_the_ip_wait_for_a_verified_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        conn, _ = await _final_round(env, [lock_rule(), lock_rule("OUTPUT")], chunks=True)
        await conn.send(MsgType.RESTORE, session="s1", round=1, netfilter_rules=[])
        await conn.close()  # the round never completes
        await env.settle()
        assert env.applied == [] and env.mover.claims == [] and env.runtime.restores == []

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize("announced", [False, True])
def test_after_verification_rules_and_ip_are_taken_and_given_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 announced: bool) -> None:
    """Taken when the source announced its freeze (FROZEN), else before the restore - once either way."""
    rules = [lock_rule(), lock_rule("OUTPUT")]

    async def body(env: Env) -> None:
        conn, reply = await (_announce_freeze(env, rules) if announced else _final_round(env, rules))
        assert reply.type is MsgType.ROUND_OK
        await conn.send(MsgType.RESTORE, session="s1", round=1, netfilter_rules=[])
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ABORT  # the fake restore fails
        await env.settle()
        hold = netlock.hold_rule(SERVICE_IP, 49152)  # in front of the lock, before the IP was taken
        # inbound only while restoring (restored sockets must reach their clients); the undo then locks the
        # address both ways before it kills the failed copy, and in the end nothing is left
        undo_lock = netlock.service_lock_rules(SERVICE_IP)
        assert env.applied == [rules[0], hold, *undo_lock] and env.runtime.restores
        assert env.mover.claims == [(SERVICE_IP, "edge2"), (SERVICE_IP, "edge1")]  # taken, then given back
        assert set(env.removed) == set(env.applied)  # (the fake tables do not track what is present)
        [h] = FakeHold.made  # the restore failed: what it held is dropped, never let in
        assert h.started and h.closed and not h.released

    _run(tmp_path, monkeypatch, body)


def test_a_failed_lazy_page_copy_undoes_the_restore_before_restored(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy runs after the clients were let in; a copy that fails leaves memory that reads as zeros, so
    the agent discards the copy and refuses RESTORED: the source, before its point of no return, resumes."""
    rules = [lock_rule(), lock_rule("OUTPUT")]

    async def body(env: Env) -> None:
        env.runtime.lazy_restore_ok = True
        conn, reply = await _final_round(env, rules)
        assert reply.type is MsgType.ROUND_OK
        await conn.send(MsgType.RESTORE, session="s1", round=1, netfilter_rules=[])
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ABORT
        assert "lazy page copy of web failed" in str(reply.body)
        await env.settle()
        assert env.runtime.killed == ["web"] and env.runtime.state("web") is ContainerState.ABSENT
        assert env.mover.claims == [(SERVICE_IP, "edge2"), (SERVICE_IP, "edge1")]  # taken, then given back
        [h] = FakeHold.made  # let in when the restore returned, before the copy failed
        assert h.started and h.released and h.closed

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize(("rules", "why"), [
    ([lock_rule(local_ip="10.99.9.9")], "another address"),
    (netlock.service_lock_rules("10.99.9.9"), "another address"),  # a whole other address held
    ([netlock.hold_rule(SERVICE_IP, 7)], "not a connection lock"),  # a hold is only ever this host's own
    ([lock_rule(port=p) for p in range(1, 2050)], "exceed the limit"),
    (["-A INPUT -j DROP"], "not a connection lock"),
    ([lock_rule() + "\n-A INPUT -j DROP"], "not a connection lock"),
])
def test_hostile_lock_rules_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rules: list[str],
                                        why: str) -> None:
    async def body(env: Env) -> None:
        conn, reply = await _final_round(env, rules)
        await conn.close()
        assert reply.type is MsgType.ABORT and why in reply.body["reason"]
        await env.settle()
        assert env.applied == [] and env.mover.claims == []

    _run(tmp_path, monkeypatch, body)


async def _announce_freeze(env: Env, rules: list[str], spec: ServiceSpec | None = None) -> tuple[FramedConnection, Message]:
    """HELLO, the source's FROZEN with ``rules``, then an empty final round: its reply says the agent is done
    with the announcement (ROUND_OK) or refused it (ABORT)."""
    spec = spec or _spec()
    token = await env.authorize(spec.name)
    conn, reply = await _say_hello(env, "s1", token, spec=spec)
    assert reply.type is MsgType.HELLO_OK, reply
    await conn.send(MsgType.FROZEN, session="s1", netfilter_rules=rules)
    m = Manifest(spec.name, 1, True, (), ())
    await conn.send(MsgType.ROUND, session="s1", manifest=m.to_dict(), netfilter_rules=[])
    reply = await asyncio.wait_for(conn.next_message(), 10)
    assert isinstance(reply, Message)
    return conn, reply


def test_a_freeze_announcement_takes_the_address_and_a_lost_source_gets_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FROZEN: lock rules, hold and IP are taken before any image is verified (journaled first, so a restart
    lifts them); the source lost before the restore: everything is given back, what was held is dropped."""
    rules = [lock_rule(), lock_rule("OUTPUT")]

    async def body(env: Env) -> None:
        conn, reply = await _announce_freeze(env, rules)
        assert reply.type is MsgType.ROUND_OK
        assert env.applied == [rules[0], netlock.hold_rule(SERVICE_IP, 49152)]  # inbound only
        assert env.mover.claims == [(SERVICE_IP, "edge2")] and env.runtime.restores == []
        [rec] = env.agent.store.sessions()
        assert rec.phase is SessionPhase.TAKEN_OVER and rec.role == "destination"
        await conn.close()
        await env.settle()
        assert env.mover.claims == [(SERVICE_IP, "edge2"), (SERVICE_IP, "edge1")]
        assert set(env.removed) == set(env.applied) and env.agent.store.sessions() == []
        [h] = FakeHold.made
        assert h.started and h.closed and not h.released

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize(("rules", "why"), [
    ([lock_rule(local_ip="10.99.9.9")], "another address"),
    ([netlock.hold_rule(SERVICE_IP, 7)], "not a connection lock"),
    (["-A INPUT -j DROP"], "not a connection lock"),
    ([7], "FROZEN.netfilter_rules"),
])
def test_a_freeze_announcement_with_hostile_rules_takes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                rules: list[Any], why: str) -> None:
    async def body(env: Env) -> None:
        conn, reply = await _announce_freeze(env, rules)
        await conn.close()
        assert reply.type is MsgType.ABORT and why in reply.body["reason"], reply
        await env.settle()
        assert env.applied == [] and env.mover.claims == [] and env.agent.store.sessions() == []

    _run(tmp_path, monkeypatch, body)


def test_a_freeze_announcement_for_an_address_held_elsewhere_takes_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(env: Env) -> None:
        env.mover.held[SERVICE_IP] = "edge3"
        conn, reply = await _announce_freeze(env, [lock_rule()])
        await conn.close()
        assert reply.type is MsgType.ABORT and "held by edge3" in reply.body["reason"], reply
        await env.settle()
        assert env.mover.claims == [] and env.agent.store.sessions() == []

    _run(tmp_path, monkeypatch, body)


@pytest.mark.parametrize(("setup", "why"), [
    ("outside", "outside the testbed subnet"),
    ("other-host", "held by edge3"),
    ("local-owner", "belongs to db"),
])
def test_a_service_ip_that_is_not_the_sources_is_not_claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             setup: str, why: str) -> None:
    async def body(env: Env) -> None:
        spec = _spec()
        if setup == "outside":
            spec = _spec(ip="192.168.1.1")
        elif setup == "other-host":
            env.mover.held[SERVICE_IP] = "edge3"
        else:
            env.agent.store.put_service(_spec("db"))
        conn, reply = await _final_round(env, [], spec=spec)
        assert reply.type is MsgType.ROUND_OK
        await conn.send(MsgType.RESTORE, session="s1", round=1, netfilter_rules=[])
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ABORT and why in reply.body["reason"]
        await env.settle()
        assert env.mover.claims == [] and env.runtime.restores == []

    _run(tmp_path, monkeypatch, body)


# ------------------------------------------------------------------------------------- keys, folders


def test_pki_gives_each_host_only_its_own_key(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", ["edge1", "edge2"])
    assert sorted(p.name for p in host_dir(pki, "edge1").iterdir()) == ["ca.pem", "edge1.key", "edge1.pem"]
    for key in [pki / "ca.key", pki / "client.key", host_dir(pki, "edge1") / "edge1.key"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for d in [pki, host_dir(pki, "edge1")]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    with pytest.raises(ValidationError):
        create_pki(tmp_path / "pki", ["../evil"])
    with pytest.raises(ConfigError, match="reserved"):
        create_pki(tmp_path / "pki", ["client"])


def test_an_agent_refuses_the_operators_keys(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", ["edge1"])
    cfg = AgentConfig(host="edge1", listen_ip="127.0.0.1", port=1, pki_dir=pki, state_dir=tmp_path / "s",
                      image_root=tmp_path / "i")
    with pytest.raises(ConfigError, match="must not hold the operator's keys"):
        Agent(cfg, runtime=FakeRuntime())


def test_received_images_go_to_a_private_folder(tmp_path: Path) -> None:
    d = private_dir(tmp_path / "images" / "incoming")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    link = tmp_path / "elsewhere" / "incoming"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "images")
    with pytest.raises(ConfigError, match="symlink"):
        private_dir(link)
    if os.geteuid() == 0:
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(ConfigError, match="owned by uid 65534"):
            private_dir(foreign)


# ------------------------------------------------------------------------------------ restarts


def test_a_journaled_service_without_its_container_is_dropped_at_start(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki", ["edge2"])
    runtime = FakeRuntime()
    runtime.states = {"kept": ContainerState.RUNNING, "frozen": ContainerState.PAUSED}
    cfg = AgentConfig(host="edge2", listen_ip="127.0.0.1", port=1, pki_dir=host_dir(pki, "edge2"),
                      state_dir=tmp_path / "s", image_root=tmp_path / "i")
    agent = Agent(cfg, runtime=runtime, mover=FakeMover())
    for name in ("kept", "frozen", "gone"):
        agent.store.put_service(_spec(name))
    agent.recover()
    assert sorted(agent.store.services()) == ["frozen", "kept"]
    assert runtime.killed == ["gone"]


def test_a_frozen_source_keeps_its_final_image_until_the_service_runs_again(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edgemigrate.control.source import Strategy, _Migration

    agent = SimpleNamespace(cfg=SimpleNamespace(image_root=tmp_path, io_timeout_s=5.0))
    mig = _Migration(agent, _spec(), "edge2", ("127.0.0.1", 1), Strategy.PRECOPY, None)  # type: ignore[arg-type]
    for k in (1, 2):
        (mig.work / f"round-{k}").mkdir(parents=True)
        (mig.work / f"round-{k}" / "inventory.img").write_bytes(b"x")
    mig.final_dir = mig.work / "round-2"
    mig.sess.hello({}, "edge1", "precopy")  # the destination accepted, then the service was paused
    mig.sess.receive_message(Message(MsgType.HELLO_OK, {"session": mig.session}))
    mig.sess.mark_frozen()
    mig._discard_images()  # e.g. an unexpected error while frozen: the final image is what resumes it
    assert [p.name for p in mig.work.iterdir()] == ["round-2"]
    mig.resolved = True  # resumed here, or committed at the destination
    mig._discard_images()
    assert not mig.work.exists()


def test_an_image_granting_more_than_the_bundle_is_not_restored(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from edgemigrate.engine.checkpoint.imagecheck import ImagePolicyError

    def refuse(image_dir: Path, policy: Any) -> None:
        raise ImagePolicyError("core-1.img: capabilities beyond the bundle's")

    async def body(env: Env) -> None:
        monkeypatch.setattr(agent_mod, "check_image", refuse)
        conn, reply = await _final_round(env, [lock_rule()])
        assert reply.type is MsgType.ROUND_OK
        await conn.send(MsgType.RESTORE, session="s1", round=1, netfilter_rules=[])
        reply = await asyncio.wait_for(conn.next_message(), 10)
        await conn.close()
        assert isinstance(reply, Message) and reply.type is MsgType.ABORT
        assert "capabilities beyond" in reply.body["reason"]
        await env.settle()
        assert env.runtime.restores == [] and env.mover.claims == [] and env.applied == []

    _run(tmp_path, monkeypatch, body)
