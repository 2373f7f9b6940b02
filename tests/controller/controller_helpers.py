"""Shared set-up for the controller tests: a small edge in a store, and an in-memory Backend.

:class:`MemoryBackend` is a complete (tiny) implementation of the Backend Protocol - services live in a
dict per host, a host can be taken down - not a recording mock: the deployment's rules (roll back, mark
down, resume) are checked against what it holds. The real agents are in ``test_controller_real.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgemigrate.controller.backend import (
    BackendError,
    HostStatus,
    HostUnreachable,
    MigrationResult,
    ServiceState,
    SessionOutcome,
)
from edgemigrate.controller.store import (
    Action,
    BaseStation,
    Host,
    HostRole,
    Placement,
    Store,
    User,
)

GIB = 1 << 30


def seed_edge(store: Store, users: tuple[str, ...] = ("u1",), hosts: int = 3) -> None:
    """Hosts edge1..edgeN, stations bs1..bsN (bsK next to edgeK); each user's ``counter`` on edge1 via bs1."""
    for i in range(1, hosts + 1):
        store.put_host(Host(f"edge{i}", HostRole.EDGE, f"10.9.0.{i}:7400", 4.0, 8 * GIB, 100 * GIB))
        store.put_base_station(BaseStation(f"bs{i}", 100.0 * i, 0.0, 1e9, 8))
    for user in users:
        store.put_user(User(user, sla_delay_s=0.5))
        store.put_placement(Placement(user, "counter", "edge1", "bs1"))


# bsK sits next to edgeK; from bs2, edge3 is the next nearest after edge2 (the fail-over target)
RTT = {("bs1", "edge1"): 0.001, ("bs2", "edge2"): 0.001, ("bs2", "edge3"): 0.003, ("bs2", "edge1"): 0.02,
       ("bs3", "edge3"): 0.001}


@dataclass
class MemoryBackend:
    """Services per host in memory; ``down`` hosts do not answer; ``fail_next`` makes one migration fail
    (the service stays at its source, as a real rollback leaves it)."""

    running: dict[str, set[str]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    fail_next: str | None = None
    migrations: list[tuple[str, str, str]] = field(default_factory=list)
    handovers: list[tuple[str, str, str]] = field(default_factory=list)
    name: str = "memory"

    def _up(self, host: str) -> set[str]:
        if host in self.down:
            raise HostUnreachable(host, "connection refused")
        return self.running.setdefault(host, set())

    async def deploy(self, spec, host: str) -> None:
        self._up(host).add(spec.name)

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult:
        src = self._up(source_host)
        dst = self._up(dest_host)
        if service not in src:
            raise BackendError(f"{service} is not on {source_host}")
        if self.fail_next is not None:
            reason, self.fail_next = self.fail_next, None
            raise BackendError(reason)
        src.discard(service)
        dst.add(service)
        self.migrations.append((service, source_host, dest_host))
        return MigrationResult(service, source_host, dest_host, {"ok": True})

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        self.handovers.append((user, source_bs, dest_bs))

    async def stop(self, service: str, host: str) -> None:
        self._up(host).discard(service)

    async def host_status(self, host: str) -> HostStatus:
        names = sorted(self._up(host))
        return HostStatus(host, tuple(ServiceState(n, "running", False, 0, "10.9.1.1:7000") for n in names))

    async def session_status(self, action: Action) -> SessionOutcome:
        if action.source_host is None or action.dest_host is None:
            return SessionOutcome.DONE
        at_src = action.service in self._up(action.source_host)
        at_dst = action.dest_host not in self.down and action.service in self._up(action.dest_host)
        if at_src and at_dst:
            return SessionOutcome.SPLIT
        return (SessionOutcome.DONE if at_dst else SessionOutcome.ROLLED_BACK if at_src
                else SessionOutcome.LOST)
