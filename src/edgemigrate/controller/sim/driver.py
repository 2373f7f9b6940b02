"""The controller's loop against the simulator, in process: every tick monitor -> planner -> deployment.

Per tick: the world advances one ``tick_s``; the users whose triggers fire (Ngo et al. 2020, sec. III, as
:func:`~edgemigrate.planning.triggered_users` reads them from the snapshot: a BS beating the current one by the
hysteresis at t', or the current link failing at t') are replanned; the plan runs through the controller's
own :class:`~edgemigrate.controller.deployment.Deployment` into the store (actions PLANNED -> RUNNING -> DONE,
placements updated) and onto the :class:`~.backend.SimBackend`. No network API is involved.

The deployment runs on the simulated clock (:meth:`SimBackend.clock`) and a simulated sleep
(:func:`_simulated_wait`) that costs no wall time: simulated time only moves in :meth:`SimBackend.advance`, so
an action completes within the tick it is planned in, and its trigger times are honoured in the downtime. Its downtime is what the
trigger times imply: the union of [t_mig, t_mig + T_mig] and [t_ho, t_ho + T_ho] (``costs.handover.outage_s``)
with T_mig from the backend's eq. 5 times, i.e. max(T_mig, T_ho) for coordinated triggers and about their sum
for the sequential ones of the baselines.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
from dataclasses import dataclass

import numpy as np

from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.sim.backend import SimBackend
from edgemigrate.controller.sim.calibration import Calibration
from edgemigrate.controller.store import (
    Action,
    ActionState,
    BaseStation,
    Host,
    HostRole,
    Placement,
    Store,
    User,
    open_store,
)
from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.handover import outage_s
from edgemigrate.planning import Planner, PlanningError, plan_covered, triggered_users

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("tick", "t_s", "users", "replanned", "uncovered", "plan_errors", "migrations", "handovers",
                  "failed", "downtime_s", "e2e_delay_mean_s", "e2e_delay_p95_s", "planned_downtime_s")


@dataclass(frozen=True, slots=True)
class TickMetrics:
    """One tick: how many users were replanned, what ran, the downtime it caused and eq. 4's delay after it."""

    tick: int
    t_s: float
    users: int
    replanned: int
    uncovered: int  # triggered users no BS hears above the minimum now and at t': nothing to plan for them
    plan_errors: int  # 1 if the planner found no plan this tick (PlanningError), else 0
    migrations: int
    handovers: int
    failed: int
    downtime_s: float
    e2e_delay_mean_s: float
    e2e_delay_p95_s: float
    planned_downtime_s: float  # the plan's own estimate (eq. 2's DT) for comparison with ``downtime_s``


def populate_store(store: Store, backend: SimBackend) -> None:
    """Hosts, base stations, users and every user's service on the edge server nearest its BS (by RTT)."""
    topo = backend.topo
    S = topo.servers
    for i, h in enumerate(topo.hosts):
        cloud = bool(S.is_cloud[i])
        cores = 1e6 if cloud else float(S.cpu_cores[i])
        mem = 1 << 50 if cloud else int(S.memory_bytes[i])
        disk = 1 << 50 if cloud else int(S.disk_bytes[i])
        store.put_host(Host(h, HostRole.CLOUD if cloud else HostRole.EDGE, f"{h}:0", cores, mem, disk,
                            cpu_events_per_s=float(S.cpu_power[i])))
    for b, name in enumerate(topo.bss):
        x, y = topo.bs_xy[b]
        store.put_base_station(BaseStation(name, float(x), float(y), float(topo.stations.backhaul_bps[b].max()),
                                           int(topo.stations.max_users[b])))
    rtt = topo.stations.rtt_s
    edge = ~S.is_cloud
    cap = np.stack([S.cpu_cores, S.memory_bytes], axis=1)
    need = np.array([backend.scenario.cpu_cores, backend.scenario.memory_bytes])
    load = np.zeros_like(cap)
    for u, (user, service) in enumerate(zip(topo.users, topo.services, strict=True)):
        b = int(backend.bs[u])
        room = edge & np.all(load + need <= cap, axis=1)  # 3c: where the planner would let it stay
        s = int(np.argmin(np.where(room, rtt[b], np.inf))) if room.any() else int(np.flatnonzero(S.is_cloud)[0])
        load[s] += need
        store.put_user(User(user))
        backend.place(service, topo.hosts[s])
        store.put_placement(Placement(user, service, topo.hosts[s], topo.bss[b]))


async def _simulated_wait(seconds: float) -> None:
    """The deployment's wait for a trigger instant in simulated time: the world does not move inside a tick
    (it moves in :meth:`SimBackend.advance`), and the trigger instants enter the downtime through
    ``outage_s`` instead. Yields to the event loop like a real sleep would."""
    await asyncio.sleep(0)


class SimController:
    """The controller's parts (store, planner, deployment) driven tick by tick over a :class:`SimBackend`."""

    def __init__(self, backend: SimBackend, planner: Planner, *, store_url: str = "sqlite://:memory:") -> None:
        self.backend = backend
        self.planner = planner
        self.store = open_store(store_url, clock=backend.clock)
        self.deployment = Deployment(self.store, backend, clock=backend.clock, sleep=_simulated_wait)
        self.migration_downtimes_s: list[float] = []  # per migration action: its outage (with a coordinated handover)
        self.migration_frozen_s: list[float] = []  # per migration action: the migration's own frozen window
        self._rng = np.random.default_rng(backend.scenario.seed)
        self.tick_no = 0
        populate_store(self.store, backend)

    def close(self) -> None:
        self.store.close()

    async def tick(self) -> TickMetrics:
        b = self.backend
        b.advance(b.scenario.tick_s)
        snap, index = b.snapshot()
        due = triggered_users(snap)
        counts = {"migrations": 0, "handovers": 0, "failed": 0, "plan_errors": 0}
        downtime = planned = 0.0
        uncovered = 0
        if due.any():
            snap = type(snap)(snap.servers, snap.bss, snap.users, snap.now_s, snap.horizon_s, snap.min_rssi_dbm,
                              snap.hysteresis_db, snap.handover_s, snap.margin, replan=due)
            try:
                # a user no BS covers (3d) waits where it is (counted) until it drives back into coverage
                plan = plan_covered(self.planner, snap, self._rng)
            except PlanningError as exc:
                log.warning("tick %d: planner %s found no plan: %s", self.tick_no, self.planner.name, exc)
                plan, counts["plan_errors"] = None, 1
            if plan is not None:
                uncovered = int(np.sum(due[plan.uncovered]))
                planned = float(np.sum(plan.downtime_s))
                result = await self.deployment.execute(plan, index, snap.users.server, snap.users.bs)
                for a in result.actions:
                    if a.state is not ActionState.DONE:
                        counts["failed"] += 1
                        continue
                    dt = self._downtime(a)
                    downtime += dt
                    if a.dest_host is not None and a.id in b.results:
                        self.migration_downtimes_s.append(dt)
                        self.migration_frozen_s.append(float(b.results[a.id].stats["downtime_s"]))
                    counts["migrations"] += a.dest_host is not None
                    counts["handovers"] += a.dest_bs is not None
        delay = b.e2e_delay_s()
        finite = delay[np.isfinite(delay)]
        m = TickMetrics(self.tick_no, b.now_s, len(delay), int(due.sum()), uncovered, downtime_s=downtime,
                        e2e_delay_mean_s=float(finite.mean()) if finite.size else math.inf,
                        e2e_delay_p95_s=float(np.percentile(finite, 95)) if finite.size else math.inf,
                        planned_downtime_s=planned, **counts)
        self.tick_no += 1
        return m

    def _downtime(self, a: Action) -> float:
        res = self.backend.results.get(a.id)
        t_mig = float(res.stats["downtime_s"]) if res is not None else 0.0
        mig_at = a.migrate_at_s if a.migrate_at_s is not None else math.nan
        ho_at = a.handover_at_s if a.handover_at_s is not None else math.nan
        if res is not None and math.isnan(mig_at):
            mig_at = self.backend.now_s
        return float(outage_s(mig_at, t_mig, ho_at, self.backend.scenario.handover_s))

    def run(self, ticks: int) -> list[TickMetrics]:
        async def loop() -> list[TickMetrics]:
            return [await self.tick() for _ in range(ticks)]
        return asyncio.run(loop())


def metrics_columns(metrics: list[TickMetrics]) -> dict[str, np.ndarray]:
    """Per-tick metrics as equal-length columns (``experiments.results.write_table`` writes them)."""
    return {c: np.array([getattr(m, c) for m in metrics]) for c in METRIC_COLUMNS}


def compare_with_measured(backend: SimBackend, planner: Planner, calibration: Calibration, *,
                          ticks: int | None = None, service: str | None = None) -> dict[str, float | int | str]:
    """Run the scenario and compare the simulated per-migration downtime with the measured one (medians).

    Like is compared with like: when the measurements include a handover (the calibration has
    ``handover_s``), a migration's simulated downtime is its whole outage with the coordinated handover
    (``outage_s``, as the testbed's clients saw it); when they were migrations alone, it is the migration's
    frozen window. The ratio is simulated / measured (the target is 1).
    """
    measured = calibration.measured_downtimes_s(service)
    if not measured:
        raise ValidationError("calibration: no measured downtimes to compare with (measured_downtime_s is empty)")
    ctl = SimController(backend, planner)
    try:
        ctl.run(backend.scenario.ticks if ticks is None else ticks)
    finally:
        ctl.close()
    sims = ctl.migration_downtimes_s if calibration.handover_s is not None else ctl.migration_frozen_s
    if not sims:
        raise ValidationError(f"scenario {backend.scenario.name}: no migration happened in the simulated run; "
                              "run more ticks")
    sim, real = statistics.median(sims), statistics.median(measured)
    return {"scenario": backend.scenario.name, "planner": planner.name, "strategy": calibration.strategy,
            "migrations": len(sims), "simulated_downtime_s": round(sim, 4), "measured_downtime_s": round(real, 4),
            "measured_samples": len(measured), "ratio": round(sim / real, 4) if real > 0 else math.inf}
