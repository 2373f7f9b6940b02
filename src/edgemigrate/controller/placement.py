"""A target placement (service -> node) applied through the controller, one move at a time.

Mobile-Kube (Ghafouri et al. 2022, sec. V-VI) decides a whole placement per time step (action = container ->
node) and hands it to the cluster. Here the difference between the store's placement and the target becomes
the controller's own store actions (``MIGRATION``, recorded PLANNED, then run by
:class:`~.deployment.Deployment` and settled from the hosts on failure), so the same agent drives every
backend: the Kubernetes one (recreate, the seed's mechanism), the testbed one (live pre-copy migration,
Clark et al. 2005), or :class:`RecreateBackend`, the seed's start-new / wait-ready / stop-old on top of the
testbed's real containers, so both strategies can be measured on the same services.

Moves run one at a time in service order, as the seed schedules pods ("one by one instead of ... a
multi-threaded version", sec. VI); a callback after each move lets the caller check the service (the
counter's state) before the next one starts.

All services of a placement belong to one store user (``owner``): in the seed a service is shared by 1-3
users, while the store keys a placement by (user, service); the users' positions live in the env, not here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgemigrate.controller.backend import Backend, BackendError, HostStatus, MigrationResult, SessionOutcome
from edgemigrate.controller.store import Action, ActionKind, ActionState, new_action_id
from edgemigrate.core.errors import ConfigError

if TYPE_CHECKING:
    from edgemigrate.control.spec import ServiceSpec
    from edgemigrate.controller.service import Controller

DEFAULT_OWNER = "mobilekube"


@dataclass(frozen=True, slots=True)
class Move:
    service: str
    source: str
    dest: str


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """One move as the controller finished it (its final action state and detail)."""

    move: Move
    action: Action

    @property
    def done(self) -> bool:
        return self.action.state is ActionState.DONE


def placement_moves(current: Mapping[str, str], target: Mapping[str, str]) -> list[Move]:
    """The moves that turn ``current`` into ``target`` (both service -> node), in service order.

    Every service of ``target`` must be placed already (deploying is :meth:`PlacementApplier.deploy`'s job);
    a service missing from ``target`` stays where it is.
    """
    unknown = sorted(set(target) - set(current))
    if unknown:
        raise ConfigError(f"placement: services {', '.join(unknown[:5])} are not deployed")
    return [Move(s, current[s], target[s]) for s in sorted(target) if current[s] != target[s]]


@dataclass
class PlacementApplier:
    """Applies placements through ``controller`` (its store, deployment and backend)."""

    controller: Controller
    base_station: str
    owner: str = DEFAULT_OWNER

    def current(self) -> dict[str, str]:
        """service -> node as the store holds it (moves finished by the controller included)."""
        return {p.service: p.host for p in self.controller.store.placements(user=self.owner)}

    async def deploy(self, specs: Sequence[ServiceSpec], placement: Mapping[str, str]) -> None:
        """Start each service on its node through the controller's ``deploy`` (the operator's request)."""
        missing = sorted({s.name for s in specs} - set(placement))
        if missing:
            raise ConfigError(f"placement: no node for services {', '.join(missing[:5])}")
        for spec in specs:
            await self.controller.deploy({"user": self.owner, "host": placement[spec.name],
                                          "base_station": self.base_station, "spec": spec.to_dict()})

    async def apply(self, target: Mapping[str, str], *,
                    after_move: Callable[[MoveOutcome], Awaitable[None]] | None = None) -> list[MoveOutcome]:
        """Run the moves from the store's placement to ``target``, one at a time; returns their outcomes.

        A move that fails is settled by the deployment (ROLLED_BACK when the service still runs at its
        source, FAILED otherwise) and the next move still runs; the caller sees every outcome.
        """
        out = []
        for mv in placement_moves(self.current(), target):
            planned = self.controller.store.plan_action(Action(
                new_action_id(), ActionKind.MIGRATION, self.owner, mv.service, source_host=mv.source,
                dest_host=mv.dest, detail="placement"))
            final, _down = await self.controller.deployment.run(planned)
            outcome = MoveOutcome(mv, final)
            out.append(outcome)
            if after_move is not None:
                await after_move(outcome)
        return out


@dataclass
class RecreateBackend:
    """Mobile-Kube's move on any backend that can deploy and stop: start the service on the destination,
    wait until it is up (the backend's ``deploy`` returns when it is healthy), then stop the source copy.

    On the testbed this is the seed's mechanism on real containers: the new container starts from its image,
    so a stateful service's state is lost (the counter restarts); compare with ``inner.migrate`` (live).
    The testbed agent moves the service IP to the destination when it deploys, before the new container is
    healthy (there is no load balancer that keeps the old endpoint until the new one is ready), so the
    client-side gap includes the container's start time.
    """

    inner: Backend
    specs: Mapping[str, ServiceSpec] = field(default_factory=dict)
    name: str = "recreate"

    async def deploy(self, spec: ServiceSpec, host: str) -> None:
        await self.inner.deploy(spec, host)

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult:
        spec = self.specs.get(service)
        if spec is None:
            raise BackendError(f"recreate {service}: no spec known for it")
        try:
            await self.inner.deploy(spec, dest_host)
        except BackendError as exc:
            raise BackendError(f"recreate {service} on {dest_host}: {exc}") from None
        await self.inner.stop(service, source_host)
        return MigrationResult(service, source_host, dest_host, {"strategy": "recreate", "state_kept": False})

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        await self.inner.handover(user, source_bs, dest_bs)

    async def stop(self, service: str, host: str) -> None:
        await self.inner.stop(service, host)

    async def host_status(self, host: str) -> HostStatus:
        return await self.inner.host_status(host)

    async def session_status(self, action: Action) -> SessionOutcome:
        return await self.inner.session_status(action)
