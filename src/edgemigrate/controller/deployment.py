"""Deployment (Ngo et al. 2020, sec. III): a plan becomes store actions, then backend calls.

For every user whose server or base station the plan changes, one action is recorded PLANNED (the store
refuses a second action for a service already moving), then the actions run in the order of their trigger
times (sec. IV-B: pre-migration/migration and handover instants), each PLANNED -> RUNNING -> DONE, or
FAILED / ROLLED_BACK. Which of the two is decided by the hosts, not assumed: after a failure the backend is
asked where the service runs (:meth:`~.backend.Backend.session_status`). A host whose agent does not answer
is marked down in the store, so the next snapshot plans around it; the actions still waiting for that host
fail before they start.

Resume: a restarted controller calls :meth:`Deployment.resume` before anything else. An action still
PLANNED never started (FAILED); a RUNNING one is finished or rolled back from what the hosts report.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from edgemigrate.controller.backend import Backend, HostUnreachable, MigrationResult, SessionOutcome
from edgemigrate.controller.monitor import SnapshotIndex
from edgemigrate.controller.store import (
    Action,
    ActionKind,
    ActionState,
    ConflictError,
    HostState,
    NotFoundError,
    Store,
    new_action_id,
)
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.planning import Plan

log = logging.getLogger(__name__)

RESUME_POLL_S = 0.5
RESUME_WAIT_S = 300.0  # a migration the agents still run after a restart gets this long to settle


@dataclass(frozen=True, slots=True)
class RoundResult:
    """The actions one plan produced (final states), the hosts found down while running it, and the users
    left unplanned because no base station covers them (3d; :func:`edgemigrate.planning.plan_covered`)."""

    actions: tuple[Action, ...]
    hosts_down: tuple[str, ...]
    uncovered: tuple[str, ...] = ()


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def actions_from_plan(plan: Plan, index: SnapshotIndex, server_now: np.ndarray, bs_now: np.ndarray) -> list[Action]:
    """The actions ``plan`` implies for the snapshot's current ``server_now``/``bs_now``, in trigger order."""
    out: list[tuple[float, Action]] = []
    for u, (user, service) in enumerate(index.pairs):
        s0, s1 = int(server_now[u]), int(plan.server[u])
        b0, b1 = int(bs_now[u]), int(plan.bs[u])
        moves, hands = s0 != s1, b0 != b1
        if not (moves or hands):
            continue
        kind = (ActionKind.MIGRATION_HANDOVER if moves and hands
                else ActionKind.MIGRATION if moves else ActionKind.HANDOVER)
        # priced as pre-copy, the backend's migrate runs the leave-running rounds and the frozen one in one
        # call: it starts at the pre-migration trigger so that its freeze falls at the migration trigger (fig. 2)
        start = plan.premigration_at_s if plan.precopy else plan.migration_at_s
        mig_at = _opt(start[u]) if moves else None
        ho_at = _opt(plan.handover_at_s[u]) if hands else None
        action = Action(new_action_id(), kind, user, service,
                        source_host=index.hosts[s0] if moves else None, dest_host=index.hosts[s1] if moves else None,
                        source_bs=index.bss[b0] if hands else None, dest_bs=index.bss[b1] if hands else None,
                        migrate_at_s=mig_at, handover_at_s=ho_at, detail=f"planner {plan.planner}")
        first = min((t for t in (mig_at, ho_at) if t is not None), default=0.0)
        out.append((first, action))
    out.sort(key=lambda pair: (pair[0], pair[1].user, pair[1].service))
    return [a for _, a in out]


class Deployment:
    """Runs actions on ``backend`` and keeps the store's action states and host states true."""

    def __init__(self, store: Store, backend: Backend, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 max_wait_s: float = 60.0, resume_wait_s: float = RESUME_WAIT_S,
                 on_migrated: Callable[[MigrationResult], object] | None = None) -> None:
        """``clock`` and ``sleep`` are the time the trigger instants are read and waited in: the wall clock
        for the real testbed, the simulated one for the simulator backend (whose sleep advances no wall time)."""
        self.store = store
        self.sleep = sleep
        self.on_migrated = on_migrated  # the monitor's ingest_migration: eq. 5's history
        self.backend = backend
        self.clock = clock
        self.max_wait_s = max_wait_s  # a trigger time further ahead than this is clamped (a clock jump)
        self.resume_wait_s = resume_wait_s

    async def execute(self, plan: Plan, index: SnapshotIndex, server_now: np.ndarray,
                      bs_now: np.ndarray) -> RoundResult:
        """Record and run the actions of ``plan``; returns their final states and the hosts found down."""
        planned = []
        for a in actions_from_plan(plan, index, server_now, bs_now):
            try:
                planned.append(self.store.plan_action(a))
            except (ConflictError, NotFoundError) as exc:
                log.warning("plan %s: %s/%s skipped: %s", plan.planner, a.user, a.service, exc)
        done, down = [], []
        for a in planned:
            try:
                final, host_down = await self.run(a)
            except ConflictError as exc:  # another controller sharing the store moved it first
                log.warning("action %s: %s", a.id, exc)
                continue
            done.append(final)
            if host_down is not None:
                down.append(host_down)
        uncovered = tuple(sorted({index.pairs[int(u)][0] for u in plan.uncovered}))
        return RoundResult(tuple(done), tuple(down), uncovered)

    async def run(self, a: Action) -> tuple[Action, str | None]:
        """Run one PLANNED action to a final state; the second value names a host found down."""
        for host in (a.source_host, a.dest_host):
            if host is not None and self.store.host(host).state is HostState.DOWN:
                return self.store.transition(a.id, ActionState.PLANNED, ActionState.FAILED,
                                             detail=f"host {host} is down; not started"), None
        first = min((t for t in (a.migrate_at_s, a.handover_at_s) if t is not None), default=None)
        if first is not None:
            await self.sleep(min(max(0.0, first - self.clock()), self.max_wait_s))
        a = self.store.transition(a.id, ActionState.PLANNED, ActionState.RUNNING)
        try:
            handed_over = False
            if a.source_host is not None and a.dest_host is not None:
                # a backend that can trigger the handover at the migration's freeze does both in one step
                # (Ngo et al. 2020, sec. IV-B; controller/testbed_backend.py)
                if a.source_bs is not None and a.dest_bs is not None \
                        and getattr(self.backend, "handover_at_freeze", False):
                    result = await self.backend.migrate_handover(  # type: ignore[attr-defined]
                        a.service, a.source_host, a.dest_host, a.id, a.user, a.source_bs, a.dest_bs)
                    handed_over = True
                else:
                    result = await self.backend.migrate(a.service, a.source_host, a.dest_host, a.id)
                self._measured(a, result)
            if a.source_bs is not None and a.dest_bs is not None and not handed_over:
                if a.handover_at_s is not None:
                    await self.sleep(min(max(0.0, a.handover_at_s - self.clock()), self.max_wait_s))
                await self.backend.handover(a.user, a.source_bs, a.dest_bs)
        except HostUnreachable as exc:
            self.store.set_host_state(exc.host, HostState.DOWN)
            log.warning("action %s: %s; host marked down", a.id, exc)
            return await self._settle_failure(a, str(exc)), exc.host
        except EdgeMigrateError as exc:
            # BackendError, or anything else a backend let through: the action must not stay RUNNING
            log.warning("action %s: %s", a.id, exc)
            return await self._settle_failure(a, str(exc)), None
        return self.store.transition(a.id, ActionState.RUNNING, ActionState.DONE), None

    def _measured(self, a: Action, result: MigrationResult) -> None:
        if self.on_migrated is None:
            return
        try:
            self.on_migrated(result)
        except EdgeMigrateError as exc:  # a bad statistic loses the measurement, not the migration
            log.warning("action %s: migration statistics not recorded: %s", a.id, exc)

    async def _settle_failure(self, a: Action, reason: str) -> Action:
        """ROLLED_BACK if the service runs at its source again, else FAILED (with what the hosts say)."""
        try:
            outcome = await self.backend.session_status(a)
        except EdgeMigrateError as exc:
            outcome, reason = SessionOutcome.LOST, f"{reason}; status unknown: {exc}"
        if outcome is SessionOutcome.ROLLED_BACK or (a.source_host is None and outcome is not SessionOutcome.LOST):
            return self.store.transition(a.id, ActionState.RUNNING, ActionState.ROLLED_BACK, detail=reason[:1000])
        if outcome is SessionOutcome.DONE:
            # the step failed after the service arrived (e.g. the handover): the move stands
            return self.store.transition(a.id, ActionState.RUNNING, ActionState.DONE, detail=reason[:1000])
        return self.store.transition(a.id, ActionState.RUNNING, ActionState.FAILED,
                                     detail=f"{reason}; service {outcome.value}"[:1000])

    async def resume(self) -> list[Action]:
        """Finish or roll back what a previous controller left in flight; returns the settled actions."""
        out = []
        for a in self.store.in_flight():
            if a.state is ActionState.PLANNED:
                out.append(self.store.transition(a.id, ActionState.PLANNED, ActionState.FAILED,
                                                 detail="not started before the controller stopped"))
                continue
            out.append(await self._resume_running(a))
        return out

    async def _resume_running(self, a: Action) -> Action:
        deadline = self.clock() + self.resume_wait_s
        while True:
            try:
                outcome = await self.backend.session_status(a)
            except HostUnreachable as exc:
                self.store.set_host_state(exc.host, HostState.DOWN)
                return self.store.transition(a.id, ActionState.RUNNING, ActionState.FAILED,
                                             detail=f"resumed: {exc}; host marked down")
            except EdgeMigrateError as exc:
                return self.store.transition(a.id, ActionState.RUNNING, ActionState.FAILED,
                                             detail=f"resumed: {exc}")
            if outcome is not SessionOutcome.PENDING or self.clock() > deadline:
                break
            await self.sleep(RESUME_POLL_S)
        log.warning("resuming action %s (%s of %s): the hosts say %s", a.id, a.kind.value, a.service, outcome.value)
        if outcome is SessionOutcome.DONE:
            return self.store.transition(a.id, ActionState.RUNNING, ActionState.DONE,
                                         detail="resumed: finished at the destination")
        if outcome is SessionOutcome.ROLLED_BACK:
            return self.store.transition(a.id, ActionState.RUNNING, ActionState.ROLLED_BACK,
                                         detail="resumed: the service runs at the source")
        return self.store.transition(a.id, ActionState.RUNNING, ActionState.FAILED,
                                     detail=f"resumed: the service is {outcome.value}; an operator must decide")
