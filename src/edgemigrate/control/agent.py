"""The host agent daemon (``edgemigrate agent --host NAME``): one per host, inside the host's netns.

It listens on two mutual-TLS ports: control (``port``: JSON control messages from the CLI and from peer
agents) and data (``port + 1``: compressed chunks of checkpoint rounds). It deploys services, reports status, and
plays either side of a migration: the source side lives in :mod:`.source` (which sees the agent only as
its narrow :class:`~.source.SourceHost`), the destination side here (:class:`_Incoming`). Durable state
(services, sessions in flight) is in :class:`~.store.AgentStore`, so a restarted agent reconciles what its
previous incarnation left behind (:meth:`Agent.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.control.address import AddressMover, TestbedAddressMover
from edgemigrate.control.config import AgentConfig
from edgemigrate.control.faults import FAULTS, FreezeFailingRuntime
from edgemigrate.control.grants import GrantBook
from edgemigrate.control.health import HEALTH_TIMEOUT_S, parse_addr, peer_service_state, wait_healthy
from edgemigrate.control.netns import in_netns
from edgemigrate.control.reports import ResourceMeter, build_report
from edgemigrate.control.source import migrate_out, recover_source_session
from edgemigrate.control.spec import ServiceSpec, build_bundle
from edgemigrate.control.store import AgentStore, SessionPhase, SessionRecord
from edgemigrate.control.tokens import TokenBook
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, EngineError, ValidationError
from edgemigrate.core.ids import check_id, child, round_dir
from edgemigrate.engine.adaptive.sender import decode_chunk
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.imagecheck import check_image, policy_from_bundle
from edgemigrate.engine.checkpoint.nfqueue import PacketHold
from edgemigrate.engine.checkpoint.runc import RuncCriuRuntime
from edgemigrate.engine.checkpoint.runtime import ContainerState, Runtime
from edgemigrate.engine.codecs.frames import FrameError
from edgemigrate.engine.codecs.wkdm import warm_up
from edgemigrate.engine.manifest import IntegrityError, RoundReceiver
from edgemigrate.engine.protocol.codec import Chunk, Message, MsgType, ProtocolError
from edgemigrate.engine.protocol.session import (
    Aborted,
    Committed,
    DestCleanup,
    DestSession,
    DestState,
    HelloReceived,
    RestoreRequested,
    RoundAnnounced,
    SourceFrozen,
)
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.streams import FramedConnection, size_receive_buffer

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 120.0  # destination: a session silent for this long is abandoned
DATA_OPEN_WAIT_S = 2.0  # a data connection may arrive this long before its session's HELLO is admitted
SMALL_FRAME_BYTES = 64 << 10  # chunk frames below this are decoded on the event loop (a thread hop costs more)
# What a peer may send for one service: its declared resident memory twice over (CRIU's image of a process
# holds more than its data: Redis's 256 MiB of values dumps to 346 MB) plus the runtime around it (the
# interpreter and libraries of a 0 MB counter dump to ~30 MB). A migration has at most 5 pre-copy rounds
# that each shrink by 20 % and a final one, so all rounds together stay under SESSION_ROUNDS images.
IMAGE_SLACK_BYTES = 512 << 20
SESSION_ROUNDS = 6

__all__ = ["Agent", "AgentConfig", "private_dir"]


@dataclass(slots=True)
class _Incoming:
    """Destination-side context of one migration (shared by its control and data connections)."""

    sess: DestSession
    ctrl: FramedConnection
    spec: ServiceSpec | None = None
    src_host: str = ""
    src_addr: str = ""
    bundle: Path | None = None
    dir: Path | None = None
    rounds: list[Path] = field(default_factory=list)
    receiver: RoundReceiver | None = None
    spares: asyncio.Task[None] | None = None  # the next round's pages file being allocated (held, not awaited)
    receiver_changed: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    claimed_ip_from: str | None = None
    taken_over: bool = False  # lock rules, packet hold and (with a mover) the service IP are here
    rules_pending: tuple[str, ...] = ()  # the source's lock rules, installed when the address is taken over
    rules: tuple[str, ...] = ()  # lock rules installed here
    hold: PacketHold | None = None  # incoming packets held (not dropped) while restoring
    hold_rule: str | None = None
    restored: bool = False
    finished: bool = False


class Agent:
    def __init__(self, cfg: AgentConfig, runtime: Runtime | None = None, mover: AddressMover | None = None) -> None:
        self.cfg = cfg
        self.store = AgentStore(cfg.state_dir)
        self.runtime: Runtime = runtime or RuncCriuRuntime(
            cfg.state_dir / "runc", cfg.netns_path, cfg.image_root / "work", cfg.state_dir / "logs")
        if cfg.fault in FAULTS:  # fault test: the freezer of a starved service (control/faults.py)
            self.runtime = FreezeFailingRuntime(self.runtime, FAULTS[cfg.fault])
        self.mover = mover or (TestbedAddressMover(cfg.testbed) if cfg.testbed else None)
        check_id(cfg.host, "agent --host")
        _refuse_operator_keys(cfg.pki_dir)
        self.incoming: dict[str, _Incoming] = {}
        self._incoming_added = asyncio.Condition()  # notified when a HELLO admits a session to self.incoming
        self.busy: set[str] = set()  # services with a migration in flight
        self.tokens = TokenBook(cfg.host)
        self.grants = GrantBook(cfg.host)  # standing grants of node-initiated migrations (ShareOn)
        self.meter = ResourceMeter(cfg.netns_path)
        self._connections = 0
        self.server_ctx = tls.server_context(cfg.pki_dir, cfg.host)
        self.client_ctx = tls.client_context(cfg.pki_dir, cfg.host)
        self._servers: list[asyncio.base_events.Server] = []

    # ------------------------------------------------------------------------------------ lifecycle
    def bundle_dir(self, name: str) -> Path:
        return child(self.cfg.state_dir / "bundles", name)

    def incoming_root(self) -> Path:
        """``image_root/incoming``, private to root: created here (0700), or refused if someone else made it."""
        return private_dir(self.cfg.image_root / "incoming")

    def ensure_bundle(self, spec: ServiceSpec) -> Path:
        return build_bundle(spec, self.cfg.netns_path, self.bundle_dir(spec.name))

    @contextlib.contextmanager
    def migrating(self, name: str) -> Iterator[None]:
        """Mark ``name`` as migrating out for the duration of the block (one migration per service)."""
        if name in self.busy:
            raise ConfigError(f"service {name} is already being migrated")
        self.busy.add(name)
        try:
            yield
        finally:
            self.busy.discard(name)

    def wait_healthy(self, spec: ServiceSpec) -> None:
        wait_healthy(spec, self.runtime, self.cfg.netns_path, self.cfg.host, HEALTH_TIMEOUT_S)

    async def start(self) -> None:
        await asyncio.to_thread(self.recover)
        await asyncio.to_thread(warm_up)  # WKdm kernels loaded now, not on a migration's first page chunk
        ip, port = self.cfg.listen_ip, self.cfg.port
        try:
            self._servers = [
                await asyncio.start_server(self._on_control, ip, port, ssl=self.server_ctx),
                await asyncio.start_server(self._on_data, ip, self.cfg.data_port, ssl=self.server_ctx,
                                           limit=4 << 20),
            ]
        except OSError as exc:
            raise EngineError(f"agent {self.cfg.host}: cannot listen on {ip}:{port}/{self.cfg.data_port}: "
                              f"{exc.strerror or exc} (run it inside the host's namespace: nsenter --net=...)") from None
        for sock in self._servers[1].sockets:
            size_receive_buffer(sock, self.cfg.data_rcvbuf_bytes)
        log.info("agent %s listening on %s:%d (data %d)", self.cfg.host, ip, port, self.cfg.data_port)

    async def serve_forever(self) -> None:
        await self.start()
        (self.cfg.state_dir / "ready").write_text(str(time.time()))
        await asyncio.gather(*(s.serve_forever() for s in self._servers))

    async def close(self) -> None:
        for s in self._servers:
            s.close()
        for s in self._servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()

    def recover(self) -> None:
        """Reconcile what a previous incarnation of this agent left: journaled sessions, staged images, and
        service records whose container no longer runs."""
        for rec in self.store.sessions():
            if rec.role == "destination":
                self._recover_incoming(rec)
            else:
                recover_source_session(self, rec)
        for d in self.incoming_root().iterdir():
            shutil.rmtree(d, ignore_errors=True)
        self.reconcile_services()

    def reconcile_services(self) -> list[str]:
        """Drop journaled services whose container is gone (the host or testbed was restarted): a record is
        never trusted without the container behind it. A paused container is kept - it holds the state.
        Returns the names dropped."""
        lost = []
        for name in self.store.services():
            state = self.runtime.state(name)
            if state in (ContainerState.RUNNING, ContainerState.PAUSED):
                continue
            log.warning("%s: service %s is journaled but its container is %s; dropping the record (lost)",
                        self.cfg.host, name, state.value)
            self.runtime.kill(name)
            self.store.drop_service(name)
            lost.append(name)
        return lost

    def _recover_incoming(self, rec: SessionRecord) -> None:
        """A restore this agent began but never saw committed: keep it only if the source does not run it."""
        name = rec.service.name
        try:
            if self.runtime.state(name) is not ContainerState.RUNNING:
                return
            at_source = None
            if rec.peer_addr:
                at_source = asyncio.run(
                    peer_service_state(self.client_ctx, rec.peer_host, parse_addr(rec.peer_addr), name))
            if at_source == "running":
                log.warning("recovering %s: the source %s resumed it; discarding the restored copy", name,
                            rec.peer_host)
                with contextlib.suppress(EdgeMigrateError):  # no FIN or reset of the copy may reach a client
                    netlock.lock_service(self.cfg.netns_path, rec.service.ip)
                self.runtime.kill(name)
                with contextlib.suppress(EdgeMigrateError):
                    netlock.destroy_sockets(self.cfg.netns_path, rec.service.ip)
                self.store.drop_service(name)
            else:  # the source committed (or cannot say): this copy is the service
                log.warning("recovering %s: keeping the restored copy (source says %s)", name, at_source)
                self.store.put_service(rec.service)
        finally:
            with contextlib.suppress(EdgeMigrateError):  # a lock left by a restore that never finished
                netlock.unlock_service(self.cfg.netns_path, rec.service.ip)
            self.store.drop_session(rec.session)

    # ---------------------------------------------------------------------------------- dispatching
    @contextlib.contextmanager
    def _admitted(self) -> Iterator[bool]:
        """Count an open connection; False (close it at once) beyond ``cfg.max_connections``."""
        if self._connections >= self.cfg.max_connections:
            yield False
            return
        self._connections += 1
        try:
            yield True
        finally:
            self._connections -= 1

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._gated(FramedConnection(reader, writer), self._serve_control)

    async def _on_data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._gated(FramedConnection(reader, writer), self._serve_data)

    async def _gated(self, conn: FramedConnection, serve: Callable[[FramedConnection], Awaitable[None]]) -> None:
        with self._admitted() as ok:
            if not ok:
                log.warning("connection from %s refused: %d connections open", conn.peer, self._connections)
                await conn.close()
                return
            await serve(conn)

    async def _serve_control(self, conn: FramedConnection) -> None:
        try:
            first = await asyncio.wait_for(conn.next_message(), self.cfg.io_timeout_s)
            if first is None or isinstance(first, Chunk):
                return
            if first.type is MsgType.HELLO:
                if conn.peer in (None, tls.CLIENT_NAME):
                    raise ProtocolError("HELLO from a non-agent certificate")
                await self._destination(conn, first)
            elif first.type is MsgType.STATUS:
                await conn.send(MsgType.STATUS_REPLY, host=self.cfg.host, services=self.status())
            elif first.type is MsgType.REPORT:
                await self._report(conn, first)
            elif first.type is MsgType.MIGRATE and conn.peer == self.cfg.host:
                await self._node_migrate(conn, first)
            elif first.type in (MsgType.DEPLOY, MsgType.STOP, MsgType.MIGRATE, MsgType.AUTHORIZE, MsgType.GRANT):
                if conn.peer != tls.CLIENT_NAME:
                    raise ProtocolError(f"{first.type.name} is only accepted from the client certificate")
                await self._client_request(conn, first)
            else:
                raise ProtocolError(f"unexpected first message {first.type.name}")
        except EdgeMigrateError as exc:
            log.warning("control connection from %s: %s", conn.peer, exc)
            with contextlib.suppress(Exception):
                await conn.send(MsgType.ERROR, message=str(exc)[:1000])
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.warning("control connection from %s broke: %r", conn.peer, exc)
        finally:
            await conn.close()

    async def _client_request(self, conn: FramedConnection, m: Message) -> None:
        if m.type is MsgType.AUTHORIZE:
            b = m.body
            self.tokens.grant(b["token"], b["service"], b["src_host"], b["to_host"], float(b["ttl_s"]))
            await conn.send(MsgType.OK, detail=f"{self.cfg.host} expects {b['service']} from {b['src_host']}")
        elif m.type is MsgType.GRANT:
            role, grant = self.grants.add(m.body)
            await conn.send(MsgType.OK, detail=f"{self.cfg.host} holds a {grant.policy.value} grant as {role.value} "
                                               f"for {', '.join(grant.services)}")
        elif m.type is MsgType.DEPLOY:
            spec = ServiceSpec.from_dict(m.body["service"])
            pid = await asyncio.to_thread(self.deploy, spec)
            await conn.send(MsgType.OK, detail=f"{spec.name} running on {self.cfg.host} (pid {pid})")
        elif m.type is MsgType.STOP:
            await asyncio.to_thread(self.stop_service, m.body["service"])
            await conn.send(MsgType.OK, detail=f"{m.body['service']} stopped on {self.cfg.host}")
        else:
            stats = await migrate_out(self, conn, m.body)
            await conn.send(MsgType.RESULT, stats=stats)

    # ------------------------------------------------------------------- reports and node-initiated moves
    async def _report(self, conn: FramedConnection, m: Message) -> None:
        """The host's resource report (:mod:`.reports`), for the operator (controller), this host's own node
        loop, and neighbours a standing grant links to this host - no other certificate of the CA."""
        if conn.peer not in (tls.CLIENT_NAME, self.cfg.host) and not self.grants.linked(conn.peer):
            raise ProtocolError(f"REPORT from {conn.peer}: not the client, this host, or a granted neighbour")
        services = {name: (spec, self.runtime.state(name).value) for name, spec in self.store.services().items()}
        report = await asyncio.to_thread(build_report, self.cfg.host, self.meter, services, self.cfg.netns_path)
        self.grants.measured()
        extra: dict[str, Any] = {}
        if "release" in m.body:  # the source reports a migration admitted here as over (control/grants.py)
            extra["released"] = self.grants.release(m.body["release"], conn.peer)
        if "admit" in m.body:  # a granted source asks this host to admit a migration (control/grants.py)
            extra["admission"] = self.grants.admit(m.body["admit"], conn.peer, report.cpu_used_fraction,
                                                   report.cpu_cores)
        await conn.send(MsgType.REPORT_REPLY, host=self.cfg.host, report=report.to_dict(), **extra)

    async def _node_migrate(self, conn: FramedConnection, m: Message) -> None:
        """A migration this host's own node loop asks for (its own certificate): started only under a live
        standing grant that lists the service and the destination; the grant's token goes on in HELLO."""
        b = m.body
        try:
            to_host = check_id(b["to_host"], "MIGRATE.to_host")
        except ValidationError as exc:
            raise ProtocolError(str(exc)) from None
        grant = self.grants.outgoing(b["token"], b["service"], to_host)
        log.info("%s: node-initiated migration of %s to %s under a %s grant", self.cfg.host, b["service"], to_host,
                 grant.policy.value)
        stats = await migrate_out(self, conn, b)
        await conn.send(MsgType.RESULT, stats=stats)

    def _admit_token(self, token: str, service: str, src_host: str) -> None:
        """A one-time token of the controller, or else a standing grant listing this service and source."""
        try:
            self.tokens.redeem(token, service, src_host)
        except ProtocolError as one_time:
            try:
                self.grants.incoming(token, service, src_host)
            except ProtocolError as standing:
                raise ProtocolError(f"{one_time}; {standing}") from None

    # ------------------------------------------------------------------------------- local services
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in self.store.services().items():
            st = self.runtime.state(name)
            out[name] = {"state": st.value, "pid": self.runtime.pid(name), "spec": spec.to_dict(),
                         "migrating": name in self.busy}
        for inc in self.incoming.values():
            if inc.spec is not None and inc.spec.name not in out:
                state = "restoring" if inc.sess.state in (DestState.RESTORING, DestState.RESTORED) else "receiving"
                out[inc.spec.name] = {"state": state, "pid": self.runtime.pid(inc.spec.name),
                                      "spec": inc.spec.to_dict(), "migrating": True}
        return out

    def deploy(self, spec: ServiceSpec) -> int:
        if spec.name in self.store.services() and self.runtime.state(spec.name) is ContainerState.RUNNING:
            raise ConfigError(f"service {spec.name} already runs on {self.cfg.host}")
        if self.mover is not None:
            self.mover.claim(spec.ip, self.cfg.host)
        self.runtime.kill(spec.name)
        bundle = self.ensure_bundle(spec)
        pid = self.runtime.run(spec.name, bundle)
        self.store.put_service(spec)
        self.wait_healthy(spec)
        return pid

    def stop_service(self, name: str) -> None:
        services = self.store.services()
        if name not in services:
            raise ConfigError(f"no service {name!r} on {self.cfg.host}")
        self.runtime.kill(name)
        if self.mover is not None and self.mover.locate(services[name].ip) == self.cfg.host:
            self.mover.release(services[name].ip)
        self.store.drop_service(name)

    # ------------------------------------------------------------------------------- destination side
    async def _destination(self, conn: FramedConnection, first: Message) -> None:
        inc = _Incoming(DestSession("?"), conn)
        msg: Message | Chunk | None = first
        try:
            while True:
                events = inc.sess.connection_lost() if msg is None else inc.sess.receive_message(msg)
                await self._flush(inc)
                for ev in events:
                    await self._dest_event(inc, ev)
                if inc.finished:
                    return
                try:
                    msg = await asyncio.wait_for(conn.next_message(), IDLE_TIMEOUT_S)
                except (TimeoutError, ConnectionError, OSError, ProtocolError) as exc:
                    # garbage on the wire is a broken connection: after RESTORED it must not kill the copy
                    log.warning("%s: control connection of session %s: %r", self.cfg.host, inc.sess.session, exc)
                    msg = None
        finally:
            if not inc.finished:
                events = inc.sess.connection_lost("agent handler ended") or [
                    Aborted("agent handler ended", DestCleanup.DISCARD)]
                for ev in events:
                    await self._dest_event(inc, ev)
            if self.incoming.get(inc.sess.session) is inc:
                del self.incoming[inc.sess.session]

    async def _flush(self, inc: _Incoming) -> None:
        data = inc.sess.data_to_send()
        if data:
            async with inc.send_lock:
                with contextlib.suppress(ConnectionError, OSError):
                    await asyncio.wait_for(inc.ctrl.write(data), self.cfg.io_timeout_s)

    async def _dest_fail(self, inc: _Incoming, reason: str) -> None:
        events = inc.sess.abort(reason)
        await self._flush(inc)
        for ev in events:
            await self._dest_event(inc, ev)

    def _admit_hello(self, inc: _Incoming, ev: HelloReceived) -> ServiceSpec:
        """Everything a HELLO must pass before anything is written to disk (all of it from the peer)."""
        if ev.src_host != inc.ctrl.peer:
            raise ProtocolError(f"HELLO claims source {ev.src_host} but the certificate is {inc.ctrl.peer}")
        spec = ServiceSpec.from_dict(ev.service)
        self._admit_token(ev.token, spec.name, ev.src_host)
        if ev.session in self.incoming:
            raise ProtocolError(f"session {ev.session} is already in progress")
        if len(self.incoming) >= self.cfg.max_incoming:
            raise EngineError(f"{self.cfg.host} is already receiving {len(self.incoming)} migrations")
        if spec.name in self.store.services() or any(
                i.spec is not None and i.spec.name == spec.name for i in self.incoming.values()):
            raise ConfigError(f"service {spec.name} already exists on {self.cfg.host}")
        return spec

    async def _dest_event(self, inc: _Incoming, ev: object) -> None:
        if isinstance(ev, HelloReceived):
            await self._on_hello(inc, ev)
        elif isinstance(ev, SourceFrozen):
            await self._on_source_frozen(inc, ev)
        elif isinstance(ev, RoundAnnounced):
            await self._on_round(inc, ev)
        elif isinstance(ev, RestoreRequested):
            await self._restore(inc, ev)
        elif isinstance(ev, Committed):
            assert inc.spec is not None
            self._settle(inc, "arrived")
            self.store.put_service(inc.spec)
            self.store.drop_session(inc.sess.session)
            inc.finished = True
            await asyncio.to_thread(self._cleanup_incoming, inc, False)
            log.info("%s: migration of %s from %s committed", self.cfg.host, inc.spec.name, inc.src_host)
        elif isinstance(ev, Aborted):
            await self._on_aborted(inc, ev)

    async def _on_hello(self, inc: _Incoming, ev: HelloReceived) -> None:
        try:
            spec = self._admit_hello(inc, ev)
            inc.spec, inc.src_host, inc.src_addr = spec, ev.src_host, ev.src_addr
            await self._register(ev.session, inc)
            inc.dir = child(self.incoming_root(), ev.session)
            inc.bundle = await asyncio.to_thread(self.ensure_bundle, spec)
            shutil.rmtree(inc.dir, ignore_errors=True)
            inc.dir.mkdir(mode=0o700)
        except (EdgeMigrateError, OSError) as exc:
            await self._dest_fail(inc, str(exc))
            return
        round_limit = int(2 * spec.resident_mb * (1 << 20)) + IMAGE_SLACK_BYTES
        inc.sess.accept(round_limit, SESSION_ROUNDS * round_limit)
        await self._flush(inc)

    async def _on_source_frozen(self, inc: _Incoming, ev: SourceFrozen) -> None:
        """The source is frozen for its final dump: take the address over now (see :class:`SourceFrozen`).
        Journaled first, so that a restart of this agent lifts what it installed; a failure (or any later
        one before the restore) gives the address back like a failed restore does."""
        assert inc.spec is not None
        try:
            inc.rules_pending = tuple(netlock.check_service_rules(ev.netfilter_rules, inc.spec.ip))
            self.store.put_session(SessionRecord(inc.sess.session, "destination", inc.spec, inc.src_host,
                                                 inc.src_addr, SessionPhase.TAKEN_OVER, ""))
            await asyncio.to_thread(self._take_over, inc)
        except EdgeMigrateError as exc:
            await self._dest_fail(inc, f"taking over {inc.spec.ip} failed: {exc}")

    async def _on_round(self, inc: _Incoming, ev: RoundAnnounced) -> None:
        assert inc.dir is not None and inc.spec is not None
        prev = inc.rounds[-1] if inc.rounds else None
        try:
            # lock rules are only checked now; they are installed when the address is taken over (_take_over)
            checked = netlock.check_service_rules(ev.netfilter_rules, inc.spec.ip)
            inc.rules_pending = tuple(dict.fromkeys([*inc.rules_pending, *checked]))
            inc.receiver = RoundReceiver(ev.manifest, round_dir(inc.dir, ev.manifest.round_index), prev)
        except (EdgeMigrateError, OSError) as exc:
            await self._dest_fail(inc, f"round {ev.manifest.round_index} refused: {exc}")
            return
        inc.receiver_changed.set()
        if not ev.manifest.chunks:
            await self._finish_round(inc, inc.receiver)

    def _settle(self, inc: _Incoming, how: str) -> None:
        """An incoming session ended (here, on the event loop, where the grant book lives): the reservation its
        admission made goes now if the move failed, once the load readings hold the service if it arrived - not
        at its expiry (control/grants.py)."""
        if inc.spec is not None and inc.src_host and self.grants.settle(inc.src_host, inc.spec.name,
                                                                          arrived=how == "arrived"):
            log.info("%s: reservation of %s from %s settled (%s)", self.cfg.host, inc.spec.name, inc.src_host, how)

    async def _on_aborted(self, inc: _Incoming, ev: Aborted) -> None:
        if inc.finished:
            return
        inc.finished = True
        self._settle(inc, "kept in doubt" if ev.cleanup is DestCleanup.KEEP_IN_DOUBT and inc.restored else "failed")
        if ev.cleanup is DestCleanup.KEEP_IN_DOUBT and inc.restored and inc.spec is not None:
            # the source may have passed the point of no return: keep serving; it will ask our status
            self.store.put_service(inc.spec)
            self.store.drop_session(inc.sess.session)
            log.warning("%s: connection lost after restore of %s; keeping it (in doubt)", self.cfg.host,
                        inc.spec.name)
            await asyncio.to_thread(self._cleanup_incoming, inc, False)
            return
        log.warning("%s: incoming migration aborted: %s", self.cfg.host, ev.reason)
        await asyncio.to_thread(self._cleanup_incoming, inc, True)

    def _take_over(self, inc: _Incoming) -> None:
        """When the source froze the service (or at the latest, before the restore): lock rules first (so no
        reset reaches a client), then the packet hold, then the service IP - only an address of the testbed's
        service range that no other service here owns, held by the source (or by nobody). Again after that,
        it only installs lock rules it did not have."""
        assert inc.spec is not None
        spec = inc.spec
        owners = [n for n, s in self.store.services().items() if s.ip == spec.ip and n != spec.name]
        if owners:
            raise EngineError(f"service IP {spec.ip} belongs to {owners[0]} on {self.cfg.host}")
        where = None
        if self.mover is not None:
            self.mover.check(spec.ip)
            where = self.mover.locate(spec.ip)
            if where not in (None, inc.src_host, self.cfg.host):
                raise EngineError(f"service IP {spec.ip} is held by {where}, not by the source {inc.src_host}")
        new = [r for r in netlock.inbound(inc.rules_pending) if r not in inc.rules]
        if new:
            netlock.apply_rules(self.cfg.netns_path, new)
            inc.rules = (*inc.rules, *new)
        if inc.taken_over:
            return
        self._hold_packets(inc)
        if self.mover is not None:
            inc.claimed_ip_from = where or inc.src_host
            self.mover.claim(spec.ip, self.cfg.host)
        inc.taken_over = True

    def _hold_packets(self, inc: _Incoming) -> None:
        """Queue the service address's incoming packets in front of the lock (best effort: without a hold
        the lock drops them and clients wait for their retransmission timeout)."""
        assert inc.spec is not None
        try:
            with in_netns(self.cfg.netns_path):
                hold = PacketHold()
            rule = netlock.hold_rule(inc.spec.ip, hold.queue)
            try:
                netlock.apply_rules(self.cfg.netns_path, [rule])
            except EngineError:
                hold.close()
                raise
        except (OSError, EngineError) as exc:
            log.warning("%s: no packet hold for %s (the lock drops instead): %s", self.cfg.host, inc.spec.name, exc)
            return
        inc.hold, inc.hold_rule = hold.start(), rule

    def _lift_lock(self, inc: _Incoming) -> int:
        """The restore returned: the held packets are let in (accepted, they skip the lock behind the hold
        rule, so the clients need not wait for the iptables process), then lock and hold rules go, then what
        queued meanwhile is let in. Returns how many packets were held. The rules stay in ``inc.rules``."""
        rules = [*inc.rules, *([inc.hold_rule] if inc.hold_rule else [])]
        if inc.hold is not None:
            inc.hold.release(last=False)
        netlock.remove_rules(self.cfg.netns_path, rules)
        held = 0
        if inc.hold is not None:
            held = inc.hold.release()
            inc.hold.close()
            inc.hold, inc.hold_rule = None, None
        return held

    def _drop_hold(self, inc: _Incoming) -> None:
        if inc.hold_rule is not None:
            with contextlib.suppress(EngineError):
                netlock.remove_rules(self.cfg.netns_path, [inc.hold_rule])
        if inc.hold is not None:
            inc.hold.close()  # what it held is dropped, as the lock would have
        inc.hold, inc.hold_rule = None, None

    def _cleanup_incoming(self, inc: _Incoming, undo: bool) -> None:
        """Discard an incoming migration. Undo order matters for the clients' TCP connections: lock the
        address both ways first (so killing a restored copy sends no FIN or reset), abort the dead copy's
        sockets, give the IP back, and only then lift the lock here. Rules installed here are removed in
        every outcome (after a restore they are normally gone)."""
        ns = self.cfg.netns_path
        if inc.receiver is not None:
            inc.receiver.close()
        self._drop_hold(inc)
        relocked = False
        if undo and inc.spec is not None:
            if inc.restored:
                with contextlib.suppress(EngineError):
                    netlock.lock_service(ns, inc.spec.ip)
                    relocked = True
                self.runtime.kill(inc.spec.name)
                with contextlib.suppress(EngineError):
                    netlock.destroy_sockets(ns, inc.spec.ip)
            if inc.claimed_ip_from and self.mover is not None:
                with contextlib.suppress(EdgeMigrateError):
                    if self.mover.locate(inc.spec.ip) == self.cfg.host:
                        self.mover.claim(inc.spec.ip, inc.claimed_ip_from)
            self.store.drop_session(inc.sess.session)
        with contextlib.suppress(EngineError):
            if relocked and inc.spec is not None:
                netlock.unlock_service(ns, inc.spec.ip)
            elif inc.rules:
                netlock.remove_rules(ns, inc.rules)
        if inc.dir is not None:
            shutil.rmtree(inc.dir, ignore_errors=True)

    async def _finish_round(self, inc: _Incoming, rx: RoundReceiver) -> None:
        t0 = time.perf_counter()
        try:
            out = await asyncio.to_thread(rx.finish)
        except (IntegrityError, OSError) as exc:
            await self._dest_fail(inc, f"round {rx.manifest.round_index} refused: {exc}")
            return
        # keep only the previous round (the base of the next delta) and this one
        for old in inc.rounds[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        inc.rounds = [*inc.rounds[-1:], out]
        events = inc.sess.round_verified(rx.received_bytes, time.perf_counter() - t0)
        await self._flush(inc)
        if not rx.manifest.final:  # the next round may be the final one: allocate its pages file now
            inc.spares = asyncio.create_task(asyncio.to_thread(self._prepare_spares, inc, rx))
        for ev in events:  # a pipelined RESTORE of the final round
            await self._dest_event(inc, ev)

    def _prepare_spares(self, inc: _Incoming, rx: RoundReceiver) -> None:
        try:
            rx.prepare_spares()
        except OSError as exc:  # only a rebuild's speed depends on it
            log.warning("%s: no spare pages file for round %d+1: %s", self.cfg.host, rx.manifest.round_index, exc)
        finally:
            if inc.finished and inc.dir is not None:  # the session ended meanwhile: its cleanup may have missed it
                shutil.rmtree(inc.dir, ignore_errors=True)

    async def _restore(self, inc: _Incoming, ev: RestoreRequested) -> None:
        assert inc.spec is not None and inc.bundle is not None
        spec = inc.spec
        self.store.put_session(SessionRecord(inc.sess.session, "destination", spec, inc.src_host, inc.src_addr,
                                             SessionPhase.RESTORING, str(inc.rounds[-1])))
        t0 = time.perf_counter()
        prepared: asyncio.Task[None] | None = None
        try:
            if ev.netfilter_rules:  # rules that only the RESTORE message carries (normally none)
                extra = netlock.check_service_rules([*inc.rules_pending, *ev.netfilter_rules], spec.ip)
                inc.rules_pending = tuple(extra)
            # CRIU restores credentials, capabilities, no_new_privs, seccomp and mount flags from the image,
            # not from the bundle: an image that would grant more than this host's own bundle is refused
            await asyncio.to_thread(check_image, inc.rounds[-1], policy_from_bundle(inc.bundle))
            # the checked image's page daemon starts while the address is taken over (normally done when
            # the source announced its freeze); without it the restore starts its own
            prepared = asyncio.create_task(asyncio.to_thread(self.runtime.prepare_restore, spec.name,
                                                             inc.rounds[-1]))
            try:
                await asyncio.to_thread(self._take_over, inc)
            finally:
                with contextlib.suppress(EdgeMigrateError):
                    await prepared
            inc.restored = True  # from here a (partial) copy may exist
            t1 = time.perf_counter()
            # lazy: the memory is copied in from the verified local image while the service already
            # answers; every page must be in before RESTORED (wait_pages), so the point of no return stays
            stats = await asyncio.to_thread(self.runtime.restore, spec.name, inc.bundle, inc.rounds[-1],
                                            lazy_pages=True)
            held = await asyncio.to_thread(self._lift_lock, inc)  # the sockets are repaired: let the clients in
            t2 = time.perf_counter()
            pages_s = await asyncio.to_thread(self.runtime.wait_pages, spec.name)
            await asyncio.to_thread(self.wait_healthy, spec)
            if self.cfg.fault == "die-after-restore":
                os._exit(137)  # fault test: restored, RESTORED never sent -> the source is in doubt
            log.info("%s: restore of %s: ip+lock %.3f s, runc restore+unlock %.3f s (criu %.3f s, lazy %s), "
                     "pages %.3f s more, health %.3f s, %d packets held", self.cfg.host, spec.name, t1 - t0,
                     t2 - t1, stats.duration_s, stats.lazy_pages, pages_s, time.perf_counter() - t2 - pages_s,
                     held)
        except EdgeMigrateError as exc:
            if prepared is not None and not inc.restored:  # the address was not taken: no copy to kill
                await asyncio.to_thread(self.runtime.kill, spec.name)  # ends the page daemon started ahead
            await self._dest_fail(inc, f"restore on {self.cfg.host} failed: {exc}")
            return
        inc.sess.restored(stats.pid, time.perf_counter() - t0)
        await self._flush(inc)

    async def _register(self, session: str, inc: _Incoming) -> None:
        """Admit an incoming session (right after its HELLO's checks, so a second HELLO of it is refused) and
        wake the data connections that overtook that HELLO."""
        self.incoming[session] = inc
        async with self._incoming_added:
            self._incoming_added.notify_all()

    async def _data_session(self, conn: FramedConnection, first: Message) -> _Incoming | None:
        """The incoming migration a DATA_OPEN names, if it exists (its HELLO may still be in flight) and the
        data connection comes from the same host as the control connection."""
        try:
            session = check_id(first.body["session"], "DATA_OPEN.session")
        except ValidationError as exc:
            raise ProtocolError(str(exc)) from None
        try:
            async with self._incoming_added:
                await asyncio.wait_for(self._incoming_added.wait_for(lambda: session in self.incoming),
                                       DATA_OPEN_WAIT_S)
        except TimeoutError:
            return None
        inc = self.incoming[session]
        return inc if conn.peer == inc.src_host else None

    async def _serve_data(self, conn: FramedConnection) -> None:
        inc: _Incoming | None = None
        try:
            first = await asyncio.wait_for(conn.next_message(), self.cfg.io_timeout_s)
            if not isinstance(first, Message) or first.type is not MsgType.DATA_OPEN:
                return
            inc = await self._data_session(conn, first)
            if inc is None:
                log.warning("data connection from %s for unknown session", conn.peer)
                return
            while not inc.finished:
                # mid-round silence means the source or the link is gone; between rounds it may be dumping
                receiving = inc.receiver is not None and not inc.receiver.complete
                m = await asyncio.wait_for(conn.next_message(),
                                           2 * self.cfg.io_timeout_s if receiving else IDLE_TIMEOUT_S)
                if m is None:
                    return
                if not isinstance(m, Chunk):
                    await self._dest_fail(inc, f"control message {m.type.name} on the data connection")
                    return
                rx = inc.receiver
                while rx is None or rx.manifest.round_index != m.round_index:
                    inc.receiver_changed.clear()
                    if inc.finished:
                        return
                    await asyncio.wait_for(inc.receiver_changed.wait(), self.cfg.io_timeout_s)
                    rx = inc.receiver
                try:
                    if len(m.data) < SMALL_FRAME_BYTES:
                        raw = decode_chunk(m.index, m.data)
                    else:  # decompress + hash off the event loop (lz4/zstd/WKdm release the GIL)
                        raw = await asyncio.to_thread(decode_chunk, m.index, m.data)
                    rx.accept_chunk(m.index, raw)
                except (IntegrityError, FrameError, OSError) as exc:
                    await self._dest_fail(inc, str(exc))
                    return
                if rx.complete:
                    await self._finish_round(inc, rx)
        except (TimeoutError, ConnectionError, OSError, EdgeMigrateError) as exc:
            log.warning("data connection from %s: %r", conn.peer, exc)
            if inc is not None and not inc.finished:
                await self._dest_fail(inc, f"data connection failed: {exc!r}")
        finally:
            await conn.close()


def private_dir(path: Path) -> Path:
    """``path`` as a directory only root can enter: created 0700 here, or an existing real (not symlinked)
    directory owned by root; anything else is refused (another user could swap images under a restore)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: not a plain directory (a symlink?); remove it and restart the agent")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{path}: owned by uid {st.st_uid}, not by this agent's uid {os.geteuid()}; remove it")
    if st.st_mode & 0o077:
        path.chmod(0o700)
    return path


def _refuse_operator_keys(pki_dir: Path) -> None:
    """An agent holds its own key only: with the CA's or the client's key any agent host could mint
    certificates or act as the controller."""
    for name in ("ca.key", f"{tls.CLIENT_NAME}.key"):
        if (pki_dir / name).exists():
            raise ConfigError(f"{pki_dir / name}: an agent's --pki folder must not hold the operator's keys; give "
                              f"it the host's own folder (`edgemigrate agent pki` writes hosts/HOST/)")
