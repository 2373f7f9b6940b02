"""The testbed backend: a plan carried out by the real host agents (``control/client.py`` over mTLS).

Deploy, pre-copy migrate (the source agent moves the service IP as part of the migration) and stop are the
agents' own requests. A handover is not the agents' business: base stations and the user's radio link are
emulated in ``testbed/`` (``testbed/bs.py``), which plugs in here as a :class:`HandoverHook`.
:class:`TestbedHandover` is that hook on a real testbed: it moves the mobile user's ingress to the new base
station through ``Testbed.handover`` (a 500 ms outage, Ngo et al. 2020, sec. V-A). Without a hook
:meth:`TestbedBackend.handover` only logs, and the controller's store still records the handover (the
placement's base station) when the action is done - what the baseline planners need, whose users hand
themselves over by RSSI hysteresis.

Coordinated migration + handover (Ngo et al. 2020, sec. IV-B, fig. 2's fourth timeline): with
``handover_at_freeze`` a migration that comes with a handover runs as :meth:`TestbedBackend.migrate_handover`:
the pre-migration (the pre-copy rounds) runs while the user is still on its old base station, and the handover
is triggered the moment the source agent reports that it freezes the service (its ``freezing`` progress
event), so the handover outage lies inside the frozen window instead of after it. The planner's estimate of
that instant (eq. 5 with fitted psi/rho) is only an estimate; the agent's event is the instant itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from edgemigrate.control import client
from edgemigrate.control.client import AgentDirectory, MigrationFailed
from edgemigrate.controller.backend import (
    BackendError,
    HostStatus,
    HostUnreachable,
    MigrationResult,
    ServiceState,
    SessionOutcome,
)
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, EngineError
from edgemigrate.engine.transport.streams import TransportError
from edgemigrate.testbed import Testbed
from edgemigrate.testbed.bs import HANDOVER_OUTAGE_S

if TYPE_CHECKING:
    from edgemigrate.control.spec import ServiceSpec
    from edgemigrate.controller.store import Action

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 10.0
MAX_SERVICES_PER_HOST = 10_000  # an agent's status reply is peer data: bound what we keep of it


class HandoverHook(Protocol):
    """Moves a user's emulated radio link from one base station to another (the testbed's BS emulation)."""

    async def __call__(self, user: str, source_bs: str, dest_bs: str) -> None: ...


async def _log_handover(user: str, source_bs: str, dest_bs: str) -> None:
    log.info("handover of %s from %s to %s: no base-station emulation attached, recorded only",
             user, source_bs, dest_bs)


@dataclass(frozen=True)
class TestbedHandover:
    """:class:`HandoverHook` on testbed ``testbed``: user ``u``'s radio link is the mobile user on client host
    ``clients[u]`` (``testbed/bs.py``); a handover blacks it out for ``outage_s`` and then routes it via the
    new base station. A user without a client here, or already served by ``dest_bs``, is only logged."""

    testbed: str
    clients: Mapping[str, str]
    outage_s: float = HANDOVER_OUTAGE_S

    __test__ = False

    async def __call__(self, user: str, source_bs: str, dest_bs: str) -> None:
        client = self.clients.get(user)
        if client is None:
            log.info("handover of %s to %s: no emulated radio link for this user, recorded only", user, dest_bs)
            return
        tb = await asyncio.to_thread(Testbed.load, self.testbed)
        if tb.serving_bs(client) == dest_bs:
            log.info("handover of %s to %s: already served by it", user, dest_bs)
            return
        await asyncio.to_thread(tb.handover, client, dest_bs, self.outage_s)


Observer = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TestbedBackend:
    """The real agents of ``directory``; ``strategy`` is the agents' (``precopy`` or ``stop-and-copy``)."""

    directory: AgentDirectory
    strategy: str = "precopy"
    compression: str = "model"
    status_timeout_s: float = STATUS_TIMEOUT_S
    handover_hook: HandoverHook = field(default=_log_handover)
    handover_at_freeze: bool = False  # coordinate a migration's handover with its freeze (module docstring)
    # per service, its dirty rate measured on earlier migrations: the source's stop rule then knows whether
    # a second leave-running round would find anything (control/source.py StopRule)
    dirty_bytes_per_s: Mapping[str, float] = field(default_factory=dict)
    precopy_read: str = "live"  # how pre-copy rounds read memory (control/source.py PrecopyRead)
    # called with one dict per migration and handover, times on time.monotonic (experiments record them)
    observer: Observer | None = None
    name: str = "testbed"

    __test__ = False  # not a pytest class, despite the name

    async def deploy(self, spec: ServiceSpec, host: str) -> None:
        await self._reachable_or_raise(host)
        try:
            await client.deploy(self.directory, host, spec)
        except (TimeoutError, TransportError, OSError) as exc:
            raise HostUnreachable(host, _reason(exc)) from None
        except EdgeMigrateError as exc:
            raise BackendError(f"deploy {spec.name} on {host}: {exc}") from None

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult:
        """Pre-copy ``service`` from ``source_host`` to ``dest_host``.

        ``session`` (the action id) is only logged: the agents name their journaled sessions themselves,
        so :meth:`session_status` reads the outcome from where the service runs. On failure both hosts are
        asked for their status, so that a host that died is reported as :class:`HostUnreachable`.
        """
        return await self._migrate(service, source_host, dest_host, session, None)

    async def migrate_handover(self, service: str, source_host: str, dest_host: str, session: str, user: str,
                               source_bs: str, dest_bs: str) -> MigrationResult:
        """Migrate and hand ``user`` over with the handover triggered at the freeze (module docstring).

        If the agent never reports the freeze (a failure before it), the handover follows the migration's
        end or failure, as an uncoordinated one would: the radio move is still owed to the user.
        """
        loop = asyncio.get_running_loop()
        started: list[asyncio.Task[None]] = []

        def at_freeze() -> None:
            if not started:
                started.append(loop.create_task(self.handover(user, source_bs, dest_bs)))

        try:
            result = await self._migrate(service, source_host, dest_host, session, at_freeze)
        except asyncio.CancelledError:
            raise  # the controller stops: no new radio move on the way out
        except BaseException:
            at_freeze()
            await started[0]
            raise
        at_freeze()
        await started[0]
        return result

    async def _migrate(self, service: str, source_host: str, dest_host: str, session: str,
                       at_freeze: Callable[[], None] | None) -> MigrationResult:
        log.info("action %s: migrating %s %s -> %s", session, service, source_host, dest_host)
        t0, freeze = time.monotonic(), []

        def progress(event: dict[str, Any]) -> None:
            if isinstance(event, dict) and "freezing" in event and not freeze:
                freeze.append(time.monotonic())
                if at_freeze is not None:
                    at_freeze()

        try:
            stats = await client.migrate(self.directory, service, dest_host, self.strategy, src_host=source_host,
                                         compression=self.compression, on_progress=progress,
                                         dirty_bytes_per_s=self.dirty_bytes_per_s.get(service),
                                         precopy_read=self.precopy_read)
        except (MigrationFailed, TransportError, TimeoutError, OSError, EngineError, ConfigError) as exc:
            self._observe({"event": "migration", "service": service, "from": source_host, "to": dest_host,
                           "start_s": t0, "freeze_s": freeze[0] if freeze else None, "end_s": time.monotonic(),
                           "ok": False, "error": _reason(exc), "stats": {}})
            for host in (dest_host, source_host):
                await self._reachable_or_raise(host)
            raise BackendError(f"migration of {service} {source_host} -> {dest_host}: {_reason(exc)}") from None
        self._observe({"event": "migration", "service": service, "from": source_host, "to": dest_host,
                       "start_s": t0, "freeze_s": freeze[0] if freeze else None, "end_s": time.monotonic(),
                       "ok": True, "stats": dict(stats)})
        return MigrationResult(service, source_host, dest_host, dict(stats))

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        t0 = time.monotonic()
        try:
            await self.handover_hook(user, source_bs, dest_bs)
        finally:
            self._observe({"event": "handover", "user": user, "from_bs": source_bs, "to_bs": dest_bs,
                           "start_s": t0, "end_s": time.monotonic(), "by": "controller"})

    def _observe(self, event: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer(event)

    async def stop(self, service: str, host: str) -> None:
        try:
            await client.stop(self.directory, host, service)
        except (TimeoutError, TransportError, OSError) as exc:
            raise HostUnreachable(host, _reason(exc)) from None
        except EdgeMigrateError as exc:
            raise BackendError(f"stop {service} on {host}: {exc}") from None

    async def host_status(self, host: str) -> HostStatus:
        try:
            services = await asyncio.wait_for(client.status(self.directory, host), self.status_timeout_s)
        except (TimeoutError, TransportError, OSError) as exc:
            raise HostUnreachable(host, _reason(exc)) from None
        except EdgeMigrateError as exc:
            raise BackendError(f"status of {host}: {exc}") from None
        return HostStatus(host, _services(host, services))

    async def session_status(self, action: Action) -> SessionOutcome:
        """Where ``action.service`` runs now, between its source and destination host."""
        if action.source_host is None or action.dest_host is None:
            return SessionOutcome.DONE  # a handover alone leaves nothing on the hosts to look at
        src = await self.host_status(action.source_host)
        try:
            dst = await self.host_status(action.dest_host)
        except HostUnreachable as exc:
            # a destination that does not answer cannot have committed a restore to its agent's journal
            # that the source saw: the source decides (it resumes the service when the commit never came)
            log.warning("session of %s: %s; judging from the source alone", action.id, exc)
            dst = HostStatus(action.dest_host, ())
        name = action.service
        if src.busy(name) or dst.busy(name):
            return SessionOutcome.PENDING
        at_src, at_dst = src.running(name), dst.running(name)
        if at_src and at_dst:
            return SessionOutcome.SPLIT
        if at_dst:
            return SessionOutcome.DONE
        if at_src:
            return SessionOutcome.ROLLED_BACK
        return SessionOutcome.LOST

    async def _reachable_or_raise(self, host: str) -> None:
        await self.host_status(host)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _services(host: str, raw: Any) -> tuple[ServiceState, ...]:
    """The agent's ``services`` map, checked: it is what a peer sent."""
    if not isinstance(raw, dict) or len(raw) > MAX_SERVICES_PER_HOST:
        raise BackendError(f"status of {host}: services must be a map of at most {MAX_SERVICES_PER_HOST}")
    out = []
    for name, info in sorted(raw.items()):
        if not isinstance(info, dict) or not isinstance(info.get("state"), str):
            raise BackendError(f"status of {host}: services.{str(name)[:64]} has no state")
        spec = info.get("spec")
        mb = spec.get("resident_mb", 0.0) if isinstance(spec, dict) else 0.0
        mb = float(mb) if isinstance(mb, int | float) and not isinstance(mb, bool) and 0 <= mb <= 1e7 else 0.0
        addr = ""
        if isinstance(spec, dict) and isinstance(spec.get("ip"), str) and isinstance(spec.get("port"), int):
            addr = f"{spec['ip'][:45]}:{spec['port']}"
        out.append(ServiceState(str(name)[:64], info["state"][:32], bool(info.get("migrating")), int(mb * 2**20),
                                addr))
    return tuple(out)
