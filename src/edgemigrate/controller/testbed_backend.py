"""The testbed backend: a plan carried out by the real host agents (``control/client.py`` over mTLS).

Deploy, pre-copy migrate (the source agent moves the service IP as part of the migration) and stop are the
agents' own requests. A handover is not the agents' business: base stations and the user's radio link are
emulated in ``testbed/`` by its own component, which plugs in here as a :class:`HandoverHook`; until it
is given, :meth:`TestbedBackend.handover` only logs, and the controller's store still records the
handover (the placement's base station) when the action is done.
"""

from __future__ import annotations

import asyncio
import logging
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
class TestbedBackend:
    """The real agents of ``directory``; ``strategy`` is the agents' (``precopy`` or ``stop-and-copy``)."""

    directory: AgentDirectory
    strategy: str = "precopy"
    compression: str = "model"
    status_timeout_s: float = STATUS_TIMEOUT_S
    handover_hook: HandoverHook = field(default=_log_handover)
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
        log.info("action %s: migrating %s %s -> %s", session, service, source_host, dest_host)
        try:
            stats = await client.migrate(self.directory, service, dest_host, self.strategy, src_host=source_host,
                                         compression=self.compression)
        except (MigrationFailed, TransportError, TimeoutError, OSError, EngineError, ConfigError) as exc:
            for host in (dest_host, source_host):
                await self._reachable_or_raise(host)
            raise BackendError(f"migration of {service} {source_host} -> {dest_host}: {_reason(exc)}") from None
        return MigrationResult(service, source_host, dest_host, dict(stats))

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        await self.handover_hook(user, source_bs, dest_bs)

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
