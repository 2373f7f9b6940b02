"""Source side of a migration: pre-copy rounds, the final frozen round, restore, point of no return.

Strategy ``precopy`` (Ngo et al. 2020, sec. IV-B, "delta checkpoint", generalised to several rounds): dump with
``--leave-running`` and send everything (pre-migration phase), then repeat dumps sending only the pages
that changed since the round already at the destination, until :class:`StopRule` says stop; then pause
the service (cgroup freezer), lock its address and dump it paused: it stays frozen here, not gone, while
the last delta is sent (migration phase), so runc's teardown of a dumped container is no longer inside the
frozen window and a failure before the point of no return only has to thaw it. Strategy ``stop-and-copy``
does only the final frozen round, with every page.

Pre-copy rounds take no network lock. Once the service is paused and its address locked here, the source
announces it (``FROZEN``, with the lock rules) and the destination takes the address over at once: its
lock, a hold of the address's incoming packets, the service IP - so that what clients send while the
service is frozen queues there instead of being dropped by the lock here. After the destination rebuilt
and verified the final image it restores lazily (the memory follows from its local, verified image through
userfaultfd while the service already answers), lets the held packets in, waits until every page is in,
health-checks, and answers ``RESTORED`` - the point of no return. (Why each step is where it is, measured:
``docs/results/precopy-stall``.) Any failure before it resumes the service here (restoring the final image
locally if the source was already frozen); a failure while the destination might be restoring is resolved
by asking the destination agent for the service's status first.

The agent running a migration is seen here only through :class:`SourceHost` (this module never imports the
agent), so the source side can be driven by a fake host in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import re
import resource
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgemigrate.control.config import AgentConfig
from edgemigrate.control.health import HEALTH_TIMEOUT_S, parse_addr, peer_service_state, wait_healthy
from edgemigrate.control.spec import ServiceSpec
from edgemigrate.control.store import AgentStore, SessionPhase, SessionRecord
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, EngineError
from edgemigrate.core.ids import check_id, child
from edgemigrate.engine.adaptive.config import PROFILE_SAMPLE_BYTES, CompressionConfig
from edgemigrate.engine.adaptive.netstate import NetworkMonitor
from edgemigrate.engine.adaptive.selectors import Selector
from edgemigrate.engine.adaptive.sender import send_round
from edgemigrate.engine.checkpoint import livecopy, netlock
from edgemigrate.engine.checkpoint.runtime import CheckpointStats, ContainerState, Runtime
from edgemigrate.engine.delta import KnownPrefix
from edgemigrate.engine.manifest import plan_round
from edgemigrate.engine.prefix_diff import PrefixDiff
from edgemigrate.engine.protocol.codec import MsgType, ProtocolError
from edgemigrate.engine.protocol.session import (
    Failed,
    Finished,
    PeerReady,
    Restored,
    RoundVerified,
    SourceEvent,
    SourceRecovery,
    SourceSession,
)
from edgemigrate.engine.transport.streams import FramedConnection, TransportError, connect

if TYPE_CHECKING:
    import ssl

    from edgemigrate.control.address import AddressMover

log = logging.getLogger(__name__)

# Stop rule of the pre-copy phase (named so experiments can cite them)
MAX_PRECOPY_ROUNDS = 5  # leave-running rounds before the final frozen one
MIN_ROUND_SAVING_S = 0.05  # frozen transfer another leave-running round must save at least
FIRST_SHRINK = 0.5  # the next round's share of the first, before a second round has measured it
# Waits, on top of the agent's I/O timeout where they are a reply to a round or to the restore
DESTINATION_WORK_S = 30.0  # the destination's own work before it answers: rebuild + verify, restore + health
REFUSAL_WAIT_S = 1.0  # after a data connection failed: the destination may say why on the control connection
FAULT_STALL_S = 3.0  # fault "stall-after-freeze": long enough for a test to look at the frozen window
DONE_WAIT_S = 5.0  # DONE after COMMIT (best effort: the migration is complete either way)
PROGRESS_SEND_S = 5.0  # one progress report to the client (a slow client must not stall the migration)
IN_DOUBT_QUERY_S = 30.0  # how long to ask the destination about an in-doubt restore
IN_DOUBT_POLL_S = 0.5  # between those questions while it says "restoring"
# A starved service (a load of 20 on 2 cores, measured) can miss the cgroup freezer's deadline: runc says
# "unable to freeze" (runc pause, libcontainer/cgroups/fs/freezer.go), CRIU "Unable to freeze cgroup" (its
# own freeze of a pre-copy dump), our runtime "did not freeze" (runc.py _freeze). Each thaws the service
# again, so the same call is simply tried again after a backoff; every other error fails the round at once.
FREEZE_ATTEMPTS = 4
FREEZE_BACKOFF_S = 0.25  # doubled after each failed attempt (0.25 + 0.5 + 1 s at most)
FREEZE_FAILED = re.compile(r"unable to freeze|did not freeze", re.IGNORECASE)


class SourceHost(Protocol):
    """What the source side of a migration uses of the agent that runs it (:class:`~.agent.Agent` is one)."""

    @property
    def cfg(self) -> AgentConfig: ...

    @property
    def store(self) -> AgentStore: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def mover(self) -> AddressMover | None: ...

    @property
    def client_ctx(self) -> ssl.SSLContext: ...

    def ensure_bundle(self, spec: ServiceSpec) -> Path:
        """The service's runc bundle on this host."""
        ...

    def migrating(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Mark ``name`` as migrating out while the block runs; raise if it already is."""
        ...


class Strategy(enum.Enum):
    STOP_AND_COPY = "stop-and-copy"
    PRECOPY = "precopy"


class MigrationError(EngineError):
    """A migration failed; the message says where the service runs now."""


class PrecopyRead(enum.Enum):
    """How a leave-running round reads the service's memory. ``DUMP``: CRIU's ``dump --leave-running`` (a
    complete image; without dirty tracking it freezes the service while it writes all its memory). ``LIVE``:
    the memory read while the service runs (:mod:`edgemigrate.engine.checkpoint.livecopy`; not frozen at all:
    the final round's content diff resends what changed meanwhile)."""

    DUMP = "dump"
    LIVE = "live"


# Live by default: measured on Redis under 10 client connections and the 200 MB counter
# (docs/results/precopy-stall, "Live pre-copy rounds"), a live round stalls no client, while a CRIU round
# freezes the service for a dump of all its memory on a kernel without dirty-page tracking.
DEFAULT_PRECOPY_READ = PrecopyRead.LIVE


@dataclass(frozen=True, slots=True)
class RoundCost:
    """What a leave-running round sent and what its clients felt, as the stop rule weighs it."""

    payload_bytes: int
    wire_bytes: int
    freeze_s: float  # freezing + frozen time: the service did not answer
    link_bytes_per_s: float  # the link's rate as the round measured it


@dataclass(frozen=True, slots=True)
class StopRule:
    """When to stop pre-copying: another leave-running round is worth its freeze only if it shortens the final
    round's transfer by more than that freeze (the pre-copy stop condition of Clark et al., "Live Migration of
    Virtual Machines", NSDI 2005, weighed in client-felt time instead of a byte threshold).

    Each round sends what the service dirtied while the round before it was sent, so the deltas shrink
    roughly geometrically: with ``q`` = last payload / the one before, stopping now leaves ``q * w`` wire time
    (``w`` = the last round's wire bytes / link rate) for the frozen round, one more round leaves ``q**2 * w``.
    The saving ``q * (1 - q) * w`` is nil when the deltas stop shrinking (q near 1) and when they are already
    tiny (q near 0). Before a second round there is no measured ``q``. With ``dirty_bytes_per_s`` - the
    service's dirty rate measured on its earlier migrations, sent by the controller (Ngo et al. 2020, sec.
    IV-B, likewise estimate the delta from checkpoints taken earlier) - ``q`` is what that rate dirties during
    the first round's transfer, over its payload; without it :data:`FIRST_SHRINK` (the saving's maximum,
    ``w / 4``). The first round always runs: it is what makes the final round a delta at all, and it measures
    the link and the freeze. On a small, well-compressed service (Redis with ~3 MB) that one round is the
    only one; on a large, slowly-dirtied one (the 200 MB counter) a second round finds almost nothing left,
    and with its dirty rate known it is not run: this kernel has no dirty-page tracking, so every
    leave-running CRIU round freezes the service for a dump of its whole memory. A round that freezes nothing
    (:class:`PrecopyRead` ``LIVE``) must still save :data:`MIN_ROUND_SAVING_S`: it delays the move by a round."""

    max_rounds: int = MAX_PRECOPY_ROUNDS
    first_shrink: float = FIRST_SHRINK
    dirty_bytes_per_s: float | None = None

    def expected_saving_s(self, rounds: Sequence[RoundCost]) -> float:
        """Wire time that one more leave-running round is expected to take off the final round."""
        last = rounds[-1]
        if last.link_bytes_per_s <= 0:
            return float("inf")
        if len(rounds) >= 2:
            q = last.payload_bytes / max(1, rounds[-2].payload_bytes)
        elif self.dirty_bytes_per_s is not None:
            q = self.dirty_bytes_per_s * last.wire_bytes / last.link_bytes_per_s / max(1, last.payload_bytes)
        else:
            q = self.first_shrink
        q = min(max(q, 0.0), 1.0)
        return q * (1.0 - q) * last.wire_bytes / last.link_bytes_per_s

    def another_round(self, rounds: Sequence[RoundCost]) -> bool:
        """Given every leave-running round so far, is another one worth its freeze?"""
        if not rounds:
            return True
        if len(rounds) >= self.max_rounds:
            return False
        # a round that freezes nothing (a live copy) still delays the move by a whole round: not for crumbs
        return self.expected_saving_s(rounds) > max(rounds[-1].freeze_s, MIN_ROUND_SAVING_S)


class _FailedError(Exception):
    def __init__(self, ev: Failed) -> None:
        super().__init__(ev.reason)
        self.ev = ev


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


async def migrate_out(agent: SourceHost, client: FramedConnection, body: dict[str, Any]) -> dict[str, Any]:
    """Migrate the service a client's ``MIGRATE`` names; returns the migration's statistics."""
    name = body["service"]
    services = agent.store.services()
    if name not in services:
        raise ConfigError(f"no service {name!r} on {agent.cfg.host} (it has: {', '.join(services) or 'none'})")
    try:
        strategy = Strategy(body["strategy"])
    except ValueError:
        raise ConfigError(f"strategy {body['strategy']!r}: expected stop-and-copy or precopy") from None
    if body["to_host"] == agent.cfg.host:
        raise ConfigError(f"service {name} already runs on {agent.cfg.host}")
    with agent.migrating(name):
        if agent.runtime.state(name) is not ContainerState.RUNNING:
            raise EngineError(f"service {name} is not running on {agent.cfg.host}")
        comp = CompressionConfig.parse(body.get("compression", "model"), body.get("page_codec", "none"),
                                       body.get("pipeline", "pipelined"))
        dirty = body.get("dirty_bytes_per_s")  # the codec checked it: a finite number >= 0, or absent
        try:
            read = PrecopyRead(body.get("precopy_read", DEFAULT_PRECOPY_READ.value))
        except ValueError:
            raise ConfigError(f"precopy_read {body['precopy_read']!r}: expected dump or live") from None
        mig = _Migration(agent, services[name], check_id(body["to_host"], "to_host"), parse_addr(body["to_addr"]),
                         strategy, client, compression=comp, token=body["token"],
                         stop_rule=StopRule(dirty_bytes_per_s=None if dirty is None else float(dirty)),
                         precopy_read=read)
        return await mig.run()


class _Migration:
    def __init__(self, agent: SourceHost, spec: ServiceSpec, to_host: str, to_addr: tuple[str, int],
                 strategy: Strategy, client: FramedConnection | None, stop_rule: StopRule | None = None,
                 compression: CompressionConfig | None = None, token: str = "",
                 precopy_read: PrecopyRead = DEFAULT_PRECOPY_READ) -> None:
        self.agent = agent
        self.precopy_read = precopy_read
        self.live_fallbacks: list[str] = []  # live pre-copy rounds that became CRIU dumps, and why
        self.spec = spec
        self.to_host = to_host
        self.to_addr = to_addr
        self.strategy = strategy
        self.client = client
        self.stop_rule = stop_rule or StopRule()
        self.session = uuid.uuid4().hex[:12]
        self.sess = SourceSession(self.session)
        self.work = child(agent.cfg.image_root, "outgoing", self.session)
        self.rounds: list[dict[str, Any]] = []
        self.ctrl: FramedConnection | None = None
        self.data: FramedConnection | None = None
        self.final_dir: Path | None = None
        self.timeout_s = agent.cfg.io_timeout_s
        self.lock_rules: list[str] = []  # the service address's lock, held here from the final dump on
        self.comp = compression or CompressionConfig()
        self.selector: Selector | None = None  # made on the first round (the model profiles real image data)
        self.monitor = NetworkMonitor()
        self.pool: ThreadPoolExecutor | None = None
        self.t_start = time.perf_counter()
        self.profile_s = 0.0
        self.token = token
        self.resolved = False  # committed at the destination, or running here again: the images may go
        self.freeze_attempts = FREEZE_ATTEMPTS
        self.freeze_backoff_s = FREEZE_BACKOFF_S

    # ------------------------------------------------------------------------------------- plumbing
    async def _flush(self) -> None:
        out = self.sess.data_to_send()
        if out and self.ctrl is not None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self.ctrl.write(out), self.timeout_s)

    async def _next_event(self, timeout_s: float) -> SourceEvent:
        assert self.ctrl is not None
        while True:
            try:
                m = await asyncio.wait_for(self.ctrl.next_message(), timeout_s)
            except TimeoutError:
                events = self.sess.abort(f"no reply from {self.to_host} within {timeout_s:.0f} s")
            except (ConnectionError, OSError, ProtocolError) as exc:
                # undecodable bytes are a broken connection: after RESTORE they leave the outcome in doubt
                events = self.sess.connection_lost(f"control connection to {self.to_host} broke: {exc!r}")
            else:
                events = (self.sess.connection_lost(f"{self.to_host} closed the control connection")
                          if m is None else self.sess.receive_message(m))
            await self._flush()
            for ev in events:
                if isinstance(ev, Failed):
                    raise _FailedError(ev)
                return ev

    def _abort(self, reason: str) -> _FailedError:
        events = self.sess.abort(reason)
        if events:
            return _FailedError(events[0])
        recovery = self.sess.recovery  # the session had already failed: what that failure left to do
        assert recovery is not None
        return _FailedError(Failed(reason, recovery))

    async def _progress(self, event: dict[str, Any]) -> None:
        if self.client is not None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError, EdgeMigrateError):
                await asyncio.wait_for(self.client.send(MsgType.PROGRESS, event=event), PROGRESS_SEND_S)

    def _journal(self, phase: SessionPhase) -> None:
        self.agent.store.put_session(SessionRecord(
            self.session, "source", self.spec, self.to_host, f"{self.to_addr[0]}:{self.to_addr[1]}", phase,
            str(self.final_dir) if self.final_dir else None))

    # ------------------------------------------------------------------------------------------ flow
    async def run(self) -> dict[str, Any]:
        t_start = self.t_start = time.perf_counter()
        cpu0 = _cpu_s()
        ip, port = self.to_addr
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            try:
                self.ctrl = await connect(ip, port, self.agent.client_ctx, self.to_host, self.timeout_s)
                self.data = await connect(ip, port + 1, self.agent.client_ctx, self.to_host, self.timeout_s)
            except TransportError as exc:
                raise self._abort(str(exc)) from None
            self.sess.hello(self.spec.to_dict(), self.agent.cfg.host, self.strategy.value,
                            f"{self.agent.cfg.listen_ip}:{self.agent.cfg.port}", self.token)
            await self._flush()
            ev = await self._next_event(self.timeout_s)
            if not isinstance(ev, PeerReady):
                raise self._abort(f"unexpected {ev!r}")
            try:
                await asyncio.wait_for(self.data.send(MsgType.DATA_OPEN, session=self.session), self.timeout_s)
            except (TimeoutError, ConnectionError, OSError) as exc:
                raise self._abort(f"data connection to {self.to_host} failed: {exc!r}") from None
            self._journal(SessionPhase.PRECOPY)
            prev: Path | None = None
            if self.strategy is Strategy.PRECOPY:
                costs: list[RoundCost] = []
                while True:
                    prev = await self._round(prev, final=False)
                    costs.append(self._cost(self.rounds[-1]))
                    if not self.stop_rule.another_round(costs):
                        break
            self.final_dir = self.work / f"round-{len(self.rounds) + 1}"
            # tells the client the freeze starts now: the controller triggers a coordinated BS handover on it
            # (Ngo et al. 2020, sec. IV-B, fig. 2: the handover outage inside the migration's frozen window)
            await self._progress({"freezing": {"round": len(self.rounds) + 1}})
            self._journal(SessionPhase.FROZEN)
            self.sess.mark_frozen()
            t_freeze = time.perf_counter()
            await self._round(prev, final=True)  # includes the (pipelined) restore request
            ev = await self._next_event(self.timeout_s + DESTINATION_WORK_S)
            if not isinstance(ev, Restored):
                raise self._abort(f"unexpected {ev!r}")
            # ------------------------- POINT OF NO RETURN passed: the destination serves -------------
            t_restored = time.perf_counter()
            await self._commit()
            with contextlib.suppress(_FailedError):
                await self._next_event(DONE_WAIT_S)
            return self._stats(t_start, t_freeze, t_restored, ev, cpu0)
        except _FailedError as f:
            return await self._handle_failure(f.ev, t_start, cpu0)
        except Exception as exc:  # a bug or an unforeseen error: still roll back before the point of no return
            if self.sess.past_point_of_no_return:
                raise
            log.exception("migration of %s: unexpected error", self.spec.name)
            return await self._handle_failure(self._abort(f"internal error: {exc!r}").ev, t_start, cpu0)
        finally:
            for c in (self.ctrl, self.data):
                if c is not None:
                    await c.close()
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
            self._discard_images()

    def _discard_images(self) -> None:
        """Delete this session's images - except, while the service is frozen here and not yet running
        anywhere for sure, the final image: it is what resumes the service (now or at the agent's restart)."""
        if not self.sess.frozen or self.resolved or self.final_dir is None:
            shutil.rmtree(self.work, ignore_errors=True)
            return
        log.warning("%s: keeping %s until the service runs again", self.spec.name, self.final_dir)
        for d in self.work.iterdir() if self.work.exists() else ():
            if d != self.final_dir:
                shutil.rmtree(d, ignore_errors=True)

    async def _round(self, prev: Path | None, final: bool) -> Path:
        assert self.data is not None
        k = len(self.rounds) + 1
        d = self.work / f"round-{k}"
        name = self.spec.name
        t0 = time.perf_counter()
        freeze_retries = 0
        try:
            t_pause = t_lock = t0
            if final:
                freeze_retries, t_pause, t_lock = await self._pause_and_lock(name)
            cs, read, retries, known = await self._read_round(name, d, k, final, prev)
            freeze_retries += retries
            if final and self.agent.cfg.fault == "die-after-final-dump":
                os._exit(137)  # fault test: the agent dies with the service frozen; its restart must resume it
            t1 = time.perf_counter()
            # the model selector profiles its codecs on real image bytes while the round is planned (hashed)
            selector_task = asyncio.create_task(self._ensure_selector(d)) if self.selector is None else None
            plan = await asyncio.to_thread(plan_round, name, k, final, d, prev, known=known)
            if selector_task is not None:
                await selector_task
        except EdgeMigrateError as exc:
            raise self._abort(f"round {k}: {exc}") from None
        t2 = time.perf_counter()
        self.sess.send_round(plan.manifest, self.lock_rules if final else [])
        await self._flush()
        corrupt = self.agent.cfg.fault == "corrupt-chunk" and final
        try:
            assert self.selector is not None and self.pool is not None
            wire = await send_round(plan, k, self.data, self.comp, self.selector, self.monitor, self.pool,
                                    self.timeout_s, corrupt_first=corrupt, t_origin=self.t_start)
        except (TimeoutError, ConnectionError, OSError) as exc:
            # the destination may have refused a chunk and said why on the control connection
            why = "no progress" if isinstance(exc, TimeoutError) else repr(exc)
            assert self.ctrl is not None
            try:
                m = await asyncio.wait_for(self.ctrl.next_message(), REFUSAL_WAIT_S)
            except (TimeoutError, ConnectionError, OSError, ProtocolError):
                m = None
            if m is not None:
                for ev in self.sess.receive_message(m):
                    if isinstance(ev, Failed):
                        raise _FailedError(ev) from None
            raise self._abort(f"round {k}: data connection to {self.to_host} failed ({why})") from None
        if final:  # pipelined: the destination restores as soon as it has verified this round
            self.sess.send_restore([])
            await self._flush()
        ev = await self._next_event(self.timeout_s + DESTINATION_WORK_S)
        if not isinstance(ev, RoundVerified) or ev.round_index != k:
            raise self._abort(f"round {k}: unexpected {ev!r}")
        t3 = time.perf_counter()
        if prev is not None and prev != d:
            shutil.rmtree(prev, ignore_errors=True)
        stats = {
            "round": k, "final": final, "leave_running": not final, "read": read.value, "image_bytes": cs.image_bytes,
            "payload_bytes": plan.manifest.payload_bytes, "changed_pages": plan.changed_pages,
            "stored_pages": plan.stored_pages, "compared_ahead_pages": plan.compared_ahead_pages,
            "dump_s": round(cs.duration_s, 4),
            "criu_frozen_s": round(cs.frozen_s, 4), "freezing_s": round(cs.freezing_s, 4), "plan_s": round(t2 - t1, 4),
            "transfer_s": round(t3 - t2, 4), "rebuild_s": round(ev.rebuild_s, 4), "round_s": round(t3 - t0, 4),
            "pause_s": round(t_pause - t0, 4), "lock_s": round(t_lock - t_pause, 4), "freeze_retries": freeze_retries,
            "pages_written": cs.pages_written, "pages_skipped_parent": cs.pages_skipped_parent,
            "memdump_s": round(cs.memdump_s, 4), "memwrite_s": round(cs.memwrite_s, 4),
            "wire_bytes": wire.wire_bytes, "link_bytes_per_s": round(self._link_rate(wire.wire_bytes, wire.transfer_s)),
            "wire": wire.to_dict(),
        }
        self.rounds.append(stats)
        await self._progress({"round": stats})
        return d

    async def _pause_and_lock(self, name: str) -> tuple[int, float, float]:
        """The final round's freeze: returns the freezer retries and when the pause and the lock were done.

        Paused first, locked second: a request that arrives in between is still acknowledged by the kernel,
        queued in the socket and dumped with it, so its client waits for the reply (sent as soon as the copy
        runs) - not for its retransmission timeout, which a request the lock dropped would cost it (+0.21 s
        steps, doubling; 7.4 s frozen became a 13.8 s gap). Then the destination is told to take the address
        over at once, so that those retransmissions queue there (held for the restored sockets) instead of
        being dropped here until the restore: without that, a request the lock dropped waited for the
        client's retransmission after the service was back (+0.08 s on the 200 MB counter)."""
        retries = await self._until_frozen(f"pause of {name}", self.agent.runtime.pause, name)
        t_pause = time.perf_counter()
        self.lock_rules = await asyncio.to_thread(netlock.lock_service, self.agent.cfg.netns_path, self.spec.ip)
        t_lock = time.perf_counter()
        self.sess.announce_frozen(self.lock_rules)
        await self._flush()
        if self.agent.cfg.fault == "stall-after-freeze":
            await asyncio.sleep(FAULT_STALL_S)  # fault test: the frozen window, stretched before the dump
        return retries, t_pause, t_lock

    async def _until_frozen(self, what: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> int:
        """Run a freezing runtime call (in a thread), retrying only a freezer that missed its deadline, at most
        ``freeze_attempts`` times with a doubling backoff; returns how many retries it took. The last failure
        (or any other error) propagates: the round fails before the point of no return, as without retries."""
        for attempt in range(self.freeze_attempts):
            try:
                await asyncio.to_thread(call, *args, **kwargs)
                return attempt
            except EdgeMigrateError as exc:
                if not FREEZE_FAILED.search(str(exc)):
                    raise
                if attempt + 1 == self.freeze_attempts:
                    raise EngineError(f"{exc} ({self.freeze_attempts} attempts)") from None
                log.warning("%s: %s; trying again (%d of %d)", what, exc, attempt + 2, self.freeze_attempts)
                await asyncio.sleep(self.freeze_backoff_s * 2**attempt)
        raise EngineError(f"{what}: no attempt made (freeze_attempts={self.freeze_attempts})")

    async def _checkpoint(self, name: str, image_dir: Path) -> tuple[CheckpointStats, int]:
        """One round's dump, retried like :meth:`_until_frozen`: a failed dump's partial image folder goes first
        (the runtime creates it afresh)."""
        out: list[CheckpointStats] = []

        def dump() -> None:
            shutil.rmtree(image_dir, ignore_errors=True)
            out.append(self.agent.runtime.checkpoint(name, image_dir, leave_running=True))

        retries = await self._until_frozen(f"checkpoint of {name}", dump)
        return out[-1], retries

    async def _read_round(self, name: str, d: Path, k: int, final: bool, prev: Path | None
                          ) -> tuple[CheckpointStats, PrecopyRead, int, dict[str, KnownPrefix]]:
        """Round ``k``'s image and how it was read, with the freeze retries it took: a live read for a pre-copy
        round when asked for (CRIU's dump if it fails), else CRIU's dump - a final round's container is
        paused already (no freeze left to fail), a pre-copy dump freezes it. A final round's pages are
        compared with ``prev``'s while CRIU writes them (:mod:`edgemigrate.engine.prefix_diff`): what that
        compared is returned for the round's plan."""
        live = not final and self.precopy_read is PrecopyRead.LIVE
        cs = await self._copy_live_or_none(name, d, k) if live else None
        if cs is not None:
            return cs, PrecopyRead.LIVE, 0, {}
        if not final or prev is None:
            cs, retries = await self._checkpoint(name, d)
            return cs, PrecopyRead.DUMP, retries, {}
        with PrefixDiff(d, prev) as ahead:
            cs, retries = await self._checkpoint(name, d)
        if ahead.error:
            log.warning("%s: no comparison ahead of round %d's plan: %s", name, k, ahead.error)
        return cs, PrecopyRead.DUMP, retries, ahead.result()

    async def _copy_live_or_none(self, name: str, image_dir: Path, k: int) -> CheckpointStats | None:
        """A live pre-copy round, or None when reading the running memory fails (``/proc/<pid>/mem`` refused
        by a ptrace policy, a process the kernel would not describe): the round is then CRIU's dump - a
        pre-copy round is an optimisation, so its failure must not fail the move. The reason goes in the
        statistics (``live_fallbacks``) and the log."""
        try:
            return await asyncio.to_thread(self._copy_live, name, image_dir)
        except EngineError as exc:
            self.live_fallbacks.append(f"round {k}: {exc}")
            log.warning("%s: live pre-copy round %d failed (%s); dumping it with CRIU instead", name, k, exc)
            return None

    def _copy_live(self, name: str, image_dir: Path) -> CheckpointStats:
        if self.agent.cfg.fault == "live-read-fails":
            raise EngineError(f"live copy of {name}: injected failure (fault test)")
        pid = self.agent.runtime.pid(name)
        if pid is None:
            raise EngineError(f"live copy: {name} is not running")
        shutil.rmtree(image_dir, ignore_errors=True)
        return livecopy.copy_memory(pid, image_dir)

    def _link_rate(self, wire_bytes: int, transfer_s: float) -> float:
        """The link's rate: the monitor's goodput estimate, else its lower bound, else this round's average."""
        st = self.monitor.state
        rate = st.bandwidth_bytes_per_s or st.bandwidth_floor_bytes_per_s
        if rate:
            return float(rate)
        return wire_bytes / transfer_s if transfer_s > 0 else 0.0

    @staticmethod
    def _cost(stats: dict[str, Any]) -> RoundCost:
        return RoundCost(stats["payload_bytes"], stats["wire_bytes"], stats["criu_frozen_s"] + stats["freezing_s"],
                         stats["link_bytes_per_s"])

    async def _ensure_selector(self, image_dir: Path) -> None:
        """The selector and compression threads, made once per migration (on its first round's images)."""
        if self.selector is not None:
            return
        self.pool = ThreadPoolExecutor(self.comp.n_workers, thread_name_prefix=f"compress-{self.session}")
        t0 = time.perf_counter()
        sample = b""
        if self.comp.is_model:
            try:
                sample = await asyncio.to_thread(_profile_sample, image_dir, PROFILE_SAMPLE_BYTES, 1)
            except OSError as exc:  # the selector then starts from its default profiles
                log.warning("no sample of the image for codec profiling: %s", exc)
        self.selector = await asyncio.to_thread(self.comp.make_selector, sample)
        self.profile_s = time.perf_counter() - t0

    async def _commit(self) -> None:
        self.resolved = True
        self._journal(SessionPhase.COMMITTED)
        if self.agent.cfg.fault == "die-after-commit":
            os._exit(137)  # fault test: committed, its paused copy not killed yet; the restart must kill it
        self.agent.store.drop_service(self.spec.name)
        await asyncio.to_thread(self._discard_local)
        self.agent.store.drop_session(self.session)

    def _discard_local(self) -> None:
        discard_local_copy(self.agent, self.spec)

    def _stats(self, t_start: float, t_freeze: float, t_restored: float, ev: Restored, cpu0: float) -> dict[str, Any]:
        final = self.rounds[-1]
        return {
            "service": self.spec.name, "strategy": self.strategy.value, "from": self.agent.cfg.host,
            "to": self.to_host, "ok": True, "rounds": self.rounds, "n_rounds": len(self.rounds),
            "precopy_read": self.precopy_read.value, "live_fallbacks": list(self.live_fallbacks),
            "total_s": round(time.perf_counter() - t_start, 4),
            "frozen_window_s": round(t_restored - t_freeze, 4), "restore_s": round(ev.restore_s, 4),
            "final_round_bytes": final["payload_bytes"], "full_checkpoint_bytes": final["image_bytes"],
            "bytes_sent": sum(r["payload_bytes"] for r in self.rounds), "source_cpu_s": round(_cpu_s() - cpu0, 3),
            "bytes_on_wire": sum(r["wire_bytes"] for r in self.rounds), **self.comp.to_dict(),
            "selector_profile_s": round(self.profile_s, 4),
            "freeze_retries": sum(r["freeze_retries"] for r in self.rounds),
            "selector_profiles": [
                {"codec": p.codec, "level": p.level,
                 "compress_megabytes_per_s": round(p.compress_bytes_per_s / 1e6, 1),
                 "ratio": round(p.ratio, 4)} for p in getattr(self.selector, "profiles", ())],
            "dest_pid": ev.pid,
        }

    # --------------------------------------------------------------------------------------- failure
    async def _handle_failure(self, ev: Failed, t_start: float, cpu0: float) -> dict[str, Any]:
        name = self.spec.name
        if ev.recovery is SourceRecovery.MIGRATED:
            log.warning("%s: after the point of no return: %s", name, ev.reason)
            return {"service": name, "ok": True, "warning": ev.reason, "rounds": self.rounds}
        if ev.recovery is SourceRecovery.ASK_DESTINATION:
            running = await ask_destination_running(self.agent, self.to_host, self.to_addr, name)
            for ev2 in self.sess.resolve_in_doubt(running):
                if isinstance(ev2, Finished):
                    await self._commit()
                    return {"service": name, "ok": True, "warning": f"in doubt, resolved: {ev.reason}",
                            "rounds": self.rounds}
                if isinstance(ev2, Failed):
                    ev = ev2
        outcome = await asyncio.to_thread(self._resume, ev.recovery is SourceRecovery.RESUME_HERE)
        self.resolved = True
        self.agent.store.drop_session(self.session)
        raise MigrationError(f"migration of {name} to {self.to_host} failed: {ev.reason}; {outcome}")

    def _resume(self, restore_final: bool) -> str:
        return resume_at_source(self.agent, self.spec, self.final_dir if restore_final else None)


def resume_at_source(agent: SourceHost, spec: ServiceSpec, final_dir: Path | None) -> str:
    """Make sure the service runs here again; returns a short description of what was done."""
    host = agent.cfg.host
    state = agent.runtime.state(spec.name)
    if state is ContainerState.RUNNING:  # pre-copy, or a final dump that failed before the pause
        netlock.unlock_service(agent.cfg.netns_path, spec.ip)
        return f"service kept running on {host}"
    if state is ContainerState.PAUSED:  # frozen for the final dump and never killed: thaw it
        if agent.mover is not None:
            agent.mover.claim(spec.ip, host)
        agent.runtime.resume(spec.name)
        netlock.unlock_service(agent.cfg.netns_path, spec.ip)
        wait_healthy(spec, agent.runtime, agent.cfg.netns_path, host, HEALTH_TIMEOUT_S)
        agent.store.put_service(spec)
        return f"service resumed on {host} (thawed: it was paused for its final checkpoint)"
    if final_dir is None or not (final_dir / "inventory.img").exists():
        raise MigrationError(f"service {spec.name} is not running on {host} and no final image is left to resume it")
    if agent.mover is not None:
        agent.mover.claim(spec.ip, host)
    agent.runtime.kill(spec.name)
    agent.runtime.restore(spec.name, agent.ensure_bundle(spec), final_dir)
    netlock.unlock_service(agent.cfg.netns_path, spec.ip)  # the sockets are repaired: let the clients in
    wait_healthy(spec, agent.runtime, agent.cfg.netns_path, host, HEALTH_TIMEOUT_S)
    agent.store.put_service(spec)
    return f"service resumed on {host} from its final checkpoint"


async def ask_destination_running(agent: SourceHost, to_host: str, to_addr: tuple[str, int], name: str) -> bool:
    """Resolve an in-doubt restore: does the destination agent report the service running?"""
    deadline = time.monotonic() + IN_DOUBT_QUERY_S
    while time.monotonic() < deadline:
        state = await peer_service_state(agent.client_ctx, to_host, to_addr, name)
        if state == "running":
            return True
        if state is not None and state not in ("restoring", "receiving"):
            return False
        await asyncio.sleep(IN_DOUBT_POLL_S)
    log.warning("destination %s unreachable while in doubt about %s; resuming at the source", to_host, name)
    return False


def discard_local_copy(agent: SourceHost, spec: ServiceSpec) -> None:
    """Kill the copy of a service that now runs elsewhere (paused since its final dump), with its address
    locked both ways (idempotent) so that neither the kill's FINs nor the resets of aborting its sockets reach
    the clients; abort its sockets (they were not in TCP repair: they would linger, and hold the address and
    ports should the service come back here); only then unlock."""
    ns = agent.cfg.netns_path
    with contextlib.suppress(EdgeMigrateError):
        netlock.lock_service(ns, spec.ip)
    agent.runtime.kill(spec.name)
    with contextlib.suppress(EdgeMigrateError):
        netlock.destroy_sockets(ns, spec.ip)
    with contextlib.suppress(EdgeMigrateError):
        netlock.unlock_service(ns, spec.ip)


def recover_source_session(agent: SourceHost, rec: SessionRecord) -> None:
    """At agent start: finish or undo a source session the previous incarnation left behind."""
    name = rec.service.name
    outgoing = child(agent.cfg.image_root, "outgoing", rec.session)
    try:
        if rec.phase is SessionPhase.COMMITTED:
            discard_local_copy(agent, rec.service)
            agent.store.drop_service(name)
        elif agent.runtime.state(name) is ContainerState.RUNNING:
            pass  # pre-copy only, or the final dump never happened: the service kept running
        else:
            running_there = asyncio.run(
                ask_destination_running(agent, rec.peer_host, parse_addr(rec.peer_addr), name))
            if running_there:
                discard_local_copy(agent, rec.service)
                agent.store.drop_service(name)
            else:
                final = Path(rec.image_dir) if rec.image_dir else None
                log.warning("recovering %s: %s", name, resume_at_source(agent, rec.service, final))
    finally:
        with contextlib.suppress(EdgeMigrateError):  # the lock of a final dump, whatever the outcome
            netlock.unlock_service(agent.cfg.netns_path, rec.service.ip)
        agent.store.drop_session(rec.session)
        shutil.rmtree(outgoing, ignore_errors=True)


__all__ = ["MigrationError", "SourceHost", "StopRule", "Strategy", "migrate_out", "recover_source_session"]


def _profile_sample(image_dir: Path, size_bytes: int = 256 << 10, pieces: int = 4) -> bytes:
    """``size_bytes`` of real checkpoint data for codec profiling: ``pieces`` slices spread evenly over the
    largest image file (the memory pages, which dominate what is sent) - its first bytes alone are often
    not representative (e.g. allocator metadata or one big buffer). The engine takes one chunk-sized piece
    from the middle (see ``PROFILE_SAMPLE_BYTES``)."""
    files = [p for p in image_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    if not files:
        return b""
    largest = max(files, key=lambda p: p.stat().st_size)
    total = largest.stat().st_size
    piece = max(1, size_bytes // pieces)
    out = []
    with largest.open("rb") as fh:
        for i in range(pieces):
            fh.seek(max(0, min(total - piece, (2 * i + 1) * total // (2 * pieces) - piece // 2)))
            out.append(fh.read(piece))
    return b"".join(out)

