"""Where a plan is carried out: one :class:`Backend` Protocol, the real agents or the simulator behind it.

The controller (Ngo et al. 2020, sec. III, fig. 1) decides; a backend acts. The same monitor, planners and
deployment run against :class:`~.testbed_backend.TestbedBackend` (the host agents: real containers, CRIU
pre-copy, the service IP moved) and against a simulator backend at city scale, so a backend's methods
speak only in names (hosts, base stations, users, services) and small result records.

Methods are coroutines: the controller is one asyncio process and a real migration takes seconds. A
simulator backend implements them without awaiting anything.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from edgemigrate.core.errors import EdgeMigrateError

if TYPE_CHECKING:
    from edgemigrate.control.spec import ServiceSpec
    from edgemigrate.controller.store import Action


class BackendError(EdgeMigrateError):
    """A backend could not carry out a step (the migration failed, the service is not there, ...)."""


class HostUnreachable(BackendError):
    """A host's agent does not answer: the deployment marks the host down and plans around it."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"host {host}: agent unreachable ({reason})")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.host, self.reason))


class SessionOutcome(enum.Enum):
    """How far a migration the controller lost track of (it restarted) got, as the hosts tell it."""

    PENDING = "pending"  # a host still reports it migrating, receiving or restoring: ask again later
    DONE = "done"  # it runs at the destination only
    ROLLED_BACK = "rolled_back"  # it runs at the source only
    LOST = "lost"  # it runs nowhere
    SPLIT = "split"  # it runs at both: an operator must pick one (never decided automatically)


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    state: str  # "running", "paused", "stopped", "receiving", "restoring" (the agent's words)
    migrating: bool
    resident_bytes: int = 0
    address: str = ""  # "ip:port" where clients reach it ("" if the host does not say)


@dataclass(frozen=True, slots=True)
class HostStatus:
    """What one host reports: its services (with state) and the memory they declare."""

    host: str
    services: tuple[ServiceState, ...]

    def running(self, service: str) -> bool:
        return any(s.name == service and s.state == "running" for s in self.services)

    def busy(self, service: str) -> bool:
        return any(s.name == service and (s.migrating or s.state in ("receiving", "restoring"))
                   for s in self.services)


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """A finished migration: where it went and the backend's own measurements (sizes, rounds, downtime)."""

    service: str
    source_host: str
    dest_host: str
    stats: Mapping[str, Any]


@runtime_checkable
class Backend(Protocol):
    """The actions a plan turns into, and the questions a restarted controller asks.

    What any backend must do (the testbed one with the host agents; a simulator one with its own state):

    - ``deploy(spec, host)``: start ``spec`` on ``host``; afterwards ``host_status(host)`` lists it running.
    - ``migrate(service, source_host, dest_host, session)``: move the running service, keeping its state,
      and return its :class:`MigrationResult`. On failure the service must run at the source again
      (roll back) and :class:`BackendError` is raised; :class:`HostUnreachable` names a host that does not
      answer. ``session`` is the action id; a backend that journals sessions should journal it.
    - ``handover(user, source_bs, dest_bs)``: move the user's radio link (a simulator moves the user; the
      testbed emulates base stations separately, see ``TestbedBackend``).
    - ``stop(service, host)``: stop it and free its address.
    - ``host_status(host)``: the services the host runs (raise :class:`HostUnreachable` if it cannot say).
    - ``session_status(action)``: for an action in flight when the controller stopped, how far it got
      (:class:`SessionOutcome`), from the hosts' own state, never from what the controller remembers. An
      unreachable destination counts as not running it; an unreachable source raises
      :class:`HostUnreachable`.

    A simulator backend keeps a clock of its own: it may complete a migration instantly and report the
    times eq. 5 of Ngo et al. 2020 predicts in ``MigrationResult.stats`` (``downtime_s``, ``total_s``).
    """

    name: str

    async def deploy(self, spec: ServiceSpec, host: str) -> None: ...

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult: ...

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None: ...

    async def stop(self, service: str, host: str) -> None: ...

    async def host_status(self, host: str) -> HostStatus: ...

    async def session_status(self, action: Action) -> SessionOutcome: ...
