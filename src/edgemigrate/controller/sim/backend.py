"""The simulator backend: the :class:`~edgemigrate.controller.backend.Backend` Protocol over a simulated world.

Users move (back and forth on a path, or taxi-like: straight trips between points near random towers at a
random speed), hear every base station through a log-distance path loss, and are served by the BS the
controller last handed them over to. Services run on simulated hosts. ``migrate`` moves a service at once
and reports the times the calibration's strategy implies: for a pre-copy calibration the fitted pre-copy
rounds of Clark et al. 2005 (``costs.handover.precopy_times_s``: ``downtime_s`` = the frozen window,
``total_s`` = rounds + frozen window) - what the real agents do; otherwise eq. 5 of Ngo et al. 2020
(``downtime_s`` = T_mig, ``total_s`` = T_pre-mig + T_mig) with psi/rho from the calibration file when one is
given. ``handover`` moves the user's radio link; its outage T_ho is the scenario's, or the measured one of the
calibration. The clock is simulated time (:meth:`SimBackend.clock`), never the wall clock,
and everything random is drawn from the scenario's seed, so a run is a function of (scenario, seed, planner).

:meth:`SimBackend.snapshot` builds the planner's :class:`~edgemigrate.planning.Snapshot` straight from the
simulated state rather than through the :class:`~edgemigrate.controller.monitor.Monitor`: the monitor queries
the store once per user, which at city scale costs more than the whole plan. The snapshot holds what the
monitor's would (current pairs, RSSI now) plus the RSSI at t' from each user's current velocity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgemigrate.controller.backend import (
    BackendError,
    HostStatus,
    HostUnreachable,
    MigrationResult,
    ServiceState,
    SessionOutcome,
)
from edgemigrate.controller.monitor import SnapshotIndex
from edgemigrate.controller.sim.calibration import PRECOPY, Calibration
from edgemigrate.controller.sim.scenario import HandoverScenario, bs_positions_m
from edgemigrate.costs import handover as ho
from edgemigrate.planning import BaseStations, Servers, Snapshot, Users
from edgemigrate.radio.pathloss import LogDistancePathLoss

if TYPE_CHECKING:
    from edgemigrate.control.spec import ServiceSpec
    from edgemigrate.controller.store import Action

CLOUD = "cloud"
TAXI_STOP_M = 300.0


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and the fixed numbers of a scenario: servers 0..S-1 (the last is the cloud), BSs 0..B-1."""

    hosts: tuple[str, ...]
    bss: tuple[str, ...]
    users: tuple[str, ...]
    services: tuple[str, ...]
    bs_xy: np.ndarray
    home_bs: np.ndarray  # (S-1,): the BS each edge server stands beside
    servers: Servers
    stations: BaseStations


def build_topology(sc: HandoverScenario, calibration: Calibration | None = None) -> Topology:
    bs_xy = bs_positions_m(sc)
    n_bs, n_edge = len(bs_xy), sc.edge_servers
    home = np.unique(np.linspace(0, n_bs - 1, n_edge).round().astype(np.int64))
    n_edge = len(home)
    n = n_edge + 1
    hosts = tuple(f"edge-{i}" for i in range(n_edge)) + (CLOUD,)
    cloud = np.arange(n) == n_edge
    # BS b reaches edge server s through the edge server nearest to b (its own when co-located)
    near = np.argmin(np.linalg.norm(bs_xy[:, None] - bs_xy[home][None], axis=2), axis=1)
    colo = near[:, None] == np.arange(n_edge)[None, :]
    rtt = np.empty((n_bs, n))
    rtt[:, :n_edge] = np.where(colo, sc.bs_edge_rtt_s, sc.bs_edge_rtt_s + sc.edge_edge_rtt_s)
    rtt[:, n_edge] = sc.bs_edge_rtt_s + sc.edge_cloud_rtt_s
    backhaul = np.empty((n_bs, n))
    backhaul[:, :n_edge] = np.where(colo, sc.bs_edge_bps, min(sc.bs_edge_bps, sc.edge_edge_bps))
    backhaul[:, n_edge] = min(sc.bs_edge_bps, sc.edge_cloud_bps)
    link = np.full((n, n), sc.edge_edge_bps)
    link[:, n_edge] = link[n_edge, :] = sc.edge_cloud_bps
    power = np.where(cloud, sc.cloud_cpu_power, sc.edge_cpu_power)
    psi, rho = np.full(n, sc.psi), np.full(n, sc.rho)
    for i, h in enumerate(hosts):
        cal = calibration.hosts.get(h) if calibration is not None else None
        if cal is not None:  # the measured score goes with the fitted coefficients (they carry its unit)
            power[i], psi[i], rho[i] = cal.cpu_power, cal.psi, cal.rho
    # the paper's cloud dwarfs its edge servers: no limit; disk is not modelled (users take none)
    servers = Servers(power, np.where(cloud, np.inf, sc.edge_cpu_cores), np.where(cloud, np.inf, sc.edge_memory_bytes),
                      np.where(cloud, np.inf, 0.0), cloud, link, psi, rho)
    stations = BaseStations(backhaul, rtt, np.full(n_bs, sc.max_users_per_bs))
    users = tuple(f"mu-{u}" for u in range(sc.users))
    return Topology(hosts, tuple(f"bs-{b}" for b in range(n_bs)), users, tuple(f"svc-{u}" for u in range(sc.users)),
                    bs_xy, home, servers, stations)


class SimBackend:
    """The simulated world behind the controller. Call :meth:`advance` once per tick; the controller's
    deployment calls the Protocol's methods in between."""

    name = "sim"

    def __init__(self, scenario: HandoverScenario, calibration: Calibration | None = None,
                 service: str | None = None) -> None:
        if calibration is not None and calibration.handover_s is not None:
            scenario = dataclasses.replace(scenario, handover_s=calibration.handover_s)
        sc = self.scenario = scenario
        # the pre-copy model of ``service`` (the only calibrated one by default) when the calibration is pre-copy
        self.precopy = (calibration.precopy_model(service)
                        if calibration is not None and calibration.strategy == PRECOPY else None)
        self.topo = build_topology(scenario, calibration)
        self.radio = LogDistancePathLoss(sc.tx_power_dbm, sc.ref_loss_db, 1.0, sc.exponent)
        self._rng = np.random.default_rng(sc.seed)
        self.now_s = 0.0
        sizes = calibration  # measured S_Du, S_lambda, S_dlambda win over the scenario's
        self.image_bytes = (sizes.image_bytes if sizes and sizes.image_bytes is not None else sc.image_bytes)
        self.checkpoint_bytes = (sizes.checkpoint_bytes if sizes and sizes.checkpoint_bytes is not None
                                 else sc.checkpoint_bytes)
        self.delta_bytes = sizes.delta_bytes if sizes and sizes.delta_bytes is not None else sc.delta_bytes
        self._h_idx = {h: i for i, h in enumerate(self.topo.hosts)}
        self._b_idx = {b: i for i, b in enumerate(self.topo.bss)}
        self._u_idx = {u: i for i, u in enumerate(self.topo.users)}
        self._s_idx = {s: i for i, s in enumerate(self.topo.services)}
        self._init_mobility()
        rssi = self.rssi_dbm(self.xy)
        self.bs = np.argmax(rssi, axis=1).astype(np.int64)  # each user attaches to the strongest BS
        self.server = np.full(sc.users, -1, dtype=np.int64)  # -1: not deployed
        self.down: set[str] = set()
        self.results: dict[str, MigrationResult] = {}  # by session (action id)

    # -- mobility -------------------------------------------------------------------------------------
    def _init_mobility(self) -> None:
        sc, n = self.scenario, self.scenario.users
        lo, hi = sc.speed_m_per_s
        self.speed = self._rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)
        if sc.mobility == "back_and_forth":
            ends = np.array(sc.path_m, dtype=np.float64)
            self._ends = ends
            frac = self._rng.uniform(0.0, 1.0, n) if n > 1 else np.zeros(n)
            self.xy = ends[0] + frac[:, None] * (ends[1] - ends[0])
            self.target = np.tile(ends[1], (n, 1))
        else:
            self.xy = self._taxi_stop(n)
            self.target = self._taxi_stop(n)

    def _taxi_stop(self, k: int) -> np.ndarray:
        """Taxi-like trip ends: within ``TAXI_STOP_M`` of a random tower. Tower lists span the suburbs too;
        points drawn uniformly in their bounding box would fall in the bay or far from any cell."""
        xy = self.topo.bs_xy[self._rng.integers(0, len(self.topo.bs_xy), k)]
        angle = self._rng.uniform(0.0, 2 * np.pi, k)
        r = TAXI_STOP_M * np.sqrt(self._rng.uniform(0.0, 1.0, k))
        return xy + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def velocity(self) -> np.ndarray:
        step = self.target - self.xy
        dist = np.linalg.norm(step, axis=1)
        return np.where(dist[:, None] > 0, step / np.maximum(dist, 1e-12)[:, None] * self.speed[:, None], 0.0)

    def advance(self, dt_s: float) -> None:
        """Move every user for ``dt_s`` of simulated time; a user that reaches its target turns (back and
        forth) or draws a new one (taxi). At most one turn per tick: a tick is short against a leg."""
        step = self.target - self.xy
        dist = np.linalg.norm(step, axis=1)
        travel = self.speed * dt_s
        arrive = travel >= dist
        frac = np.where(arrive, 1.0, travel / np.maximum(dist, 1e-12))
        self.xy = self.xy + step * frac[:, None]
        if arrive.any():
            k = int(arrive.sum())
            if self.scenario.mobility == "back_and_forth":
                at_end1 = np.all(np.isclose(self.target[arrive], self._ends[1]), axis=1)
                self.target[arrive] = np.where(at_end1[:, None], self._ends[0], self._ends[1])
            else:
                self.target[arrive] = self._taxi_stop(k)
        self.now_s += dt_s

    def clock(self) -> float:
        return self.now_s

    def rssi_dbm(self, xy: np.ndarray) -> np.ndarray:
        return self.radio.rssi_dbm(np.linalg.norm(xy[:, None, :] - self.topo.bs_xy[None, :, :], axis=2))

    # -- the planner's view -----------------------------------------------------------------------------
    def snapshot(self, replan: np.ndarray | None = None) -> tuple[Snapshot, SnapshotIndex]:
        """The snapshot of every deployed user, RSSI now and at t' = now + horizon (current velocity)."""
        sc = self.scenario
        dep = np.flatnonzero(self.server >= 0)
        xy = self.xy[dep]
        now = self.rssi_dbm(xy)
        nxt = self.rssi_dbm(xy + self.velocity()[dep] * sc.horizon_s)
        k = len(dep)
        full = np.ones(k)
        users = Users(server=self.server[dep], bs=self.bs[dep], rssi_now_dbm=now, rssi_next_dbm=nxt,
                      task_bytes=full * sc.task_bytes, tasks=full * sc.tasks, proc_s=full * sc.proc_s,
                      cpu_cores=full * sc.cpu_cores, memory_bytes=full * sc.memory_bytes, disk_bytes=0 * full,
                      image_bytes=full * self.image_bytes, checkpoint_bytes=full * self.checkpoint_bytes,
                      delta_bytes=full * self.delta_bytes)
        snap = Snapshot(self.topo.servers, self.topo.stations, users, now_s=self.now_s, horizon_s=sc.horizon_s,
                        min_rssi_dbm=sc.min_rssi_dbm, hysteresis_db=sc.hysteresis_db, handover_s=sc.handover_s,
                        replan=None if replan is None else np.asarray(replan, dtype=bool)[dep])
        index = SnapshotIndex(self.topo.hosts, self.topo.bss,
                              tuple((self.topo.users[u], self.topo.services[u]) for u in dep))
        return snap, index

    def e2e_delay_s(self) -> np.ndarray:
        """Eq. 4's E2E delay of one task of every deployed user on its current pair, RSSI now."""
        dep = np.flatnonzero(self.server >= 0)
        b, s = self.bs[dep], self.server[dep]
        S, B, sc = self.topo.servers, self.topo.stations, self.scenario
        access = ho.wifi_rate_bps(self.rssi_dbm(self.xy[dep])[np.arange(len(dep)), b])
        return ho.e2e_delay_s(sc.proc_s, S.cpu_power[s], S.cpu_power[s], sc.task_bytes, access,
                              B.backhaul_bps[b, s], B.rtt_s[b, s])

    # -- the Backend Protocol ---------------------------------------------------------------------------
    def _host(self, host: str) -> int:
        if host not in self._h_idx:
            raise BackendError(f"host {host[:64]!r}: not in the simulated scenario")
        if host in self.down:
            raise HostUnreachable(host, "simulated outage")
        return self._h_idx[host]

    def _service(self, service: str) -> int:
        if service not in self._s_idx:
            raise BackendError(f"service {service[:64]!r}: not in the simulated scenario (svc-<user>)")
        return self._s_idx[service]

    def place(self, service: str, host: str) -> None:
        """Start ``service`` on ``host`` (what :meth:`deploy` does, without a spec)."""
        u, s = self._service(service), self._host(host)
        if self.server[u] >= 0:
            raise BackendError(f"service {service}: already runs on {self.topo.hosts[self.server[u]]}")
        self.server[u] = s

    async def deploy(self, spec: ServiceSpec, host: str) -> None:
        self.place(spec.name, host)

    def rtt_between_s(self, src: int, dst: int) -> float:
        """Host-to-host RTT (sec. V-A's links): edge-edge, or edge-cloud when either end is the cloud."""
        cloud = self.topo.servers.is_cloud
        return self.scenario.edge_cloud_rtt_s if cloud[src] or cloud[dst] else self.scenario.edge_edge_rtt_s

    def migration_times_s(self, src: int, dst: int) -> dict[str, float]:
        """The migration from server ``src`` to ``dst``: pre-copy (Clark et al. 2005) with a pre-copy
        calibration, else eq. 5 of Ngo et al. 2020 for this world's service sizes."""
        S = self.topo.servers
        if self.precopy is not None:
            frozen, total, final = ho.precopy_times_s(self.precopy, S.link_bps[src, dst], self.rtt_between_s(src, dst))
            restore = float(ho.precopy_restore_s(self.precopy))
            return {"premigration_s": float(total - frozen), "checkpoint_s": self.precopy.final_overhead_s,
                    "restore_s": restore, "downtime_s": float(frozen), "total_s": float(total),
                    "final_round_bytes": float(final)}
        args = (S.psi[src], self.image_bytes, self.checkpoint_bytes)
        pre = float(ho.premigration_s(*args, S.cpu_power[src], S.link_bps[src, dst]))
        chk = float(ho.checkpoint_s(S.psi[src], self.image_bytes, S.cpu_power[src]))
        rst = float(ho.restore_s(S.rho[dst], self.image_bytes, self.checkpoint_bytes, self.delta_bytes,
                                 S.cpu_power[dst]))
        mig = float(ho.migration_s(S.psi[src], S.rho[dst], self.image_bytes, self.checkpoint_bytes,
                                   self.delta_bytes, S.cpu_power[src], S.cpu_power[dst], S.link_bps[src, dst]))
        return {"premigration_s": pre, "checkpoint_s": chk, "restore_s": rst, "downtime_s": mig,
                "total_s": pre + mig}

    async def migrate(self, service: str, source_host: str, dest_host: str, session: str) -> MigrationResult:
        u, src, dst = self._service(service), self._host(source_host), self._host(dest_host)
        if self.server[u] != src:
            raise BackendError(f"migrate {service}: it does not run on {source_host}")
        if src == dst:
            raise BackendError(f"migrate {service}: source and destination are both {source_host}")
        t = self.migration_times_s(src, dst)
        self.server[u] = dst
        stats: dict[str, Any] = dict(t)
        # the monitor's eq. 5 history reads these (the agents' names for the same quantities)
        stats["rounds"] = [{"image_bytes": int(self.image_bytes), "dump_s": t["checkpoint_s"]}]
        stats["full_checkpoint_bytes"] = int(self.image_bytes + self.checkpoint_bytes + self.delta_bytes)
        result = MigrationResult(service, source_host, dest_host, stats)
        self.results[session] = result
        return result

    async def handover(self, user: str, source_bs: str, dest_bs: str) -> None:
        if user not in self._u_idx:
            raise BackendError(f"user {user[:64]!r}: not in the simulated scenario")
        for bs in (source_bs, dest_bs):
            if bs not in self._b_idx:
                raise BackendError(f"base station {bs[:64]!r}: not in the simulated scenario")
        u = self._u_idx[user]
        if self.bs[u] != self._b_idx[source_bs]:
            raise BackendError(f"handover {user}: it is attached to {self.topo.bss[self.bs[u]]}, not {source_bs}")
        self.bs[u] = self._b_idx[dest_bs]

    async def stop(self, service: str, host: str) -> None:
        u, s = self._service(service), self._host(host)
        if self.server[u] != s:
            raise BackendError(f"stop {service}: it does not run on {host}")
        self.server[u] = -1

    async def host_status(self, host: str) -> HostStatus:
        s = self._host(host)
        running = np.flatnonzero(self.server == s)
        mem = int(self.scenario.memory_bytes)
        return HostStatus(host, tuple(ServiceState(self.topo.services[u], "running", False, mem) for u in running))

    async def session_status(self, action: Action) -> SessionOutcome:
        """A simulated migration completes at once, so it is DONE or never happened (ROLLED_BACK)."""
        u = self._service(action.service)
        if action.dest_host is None:
            return SessionOutcome.DONE if self.server[u] >= 0 else SessionOutcome.LOST
        if action.source_host is not None and action.source_host in self.down:
            raise HostUnreachable(action.source_host, "simulated outage")
        where = self.topo.hosts[self.server[u]] if self.server[u] >= 0 else None
        if where == action.dest_host and action.dest_host not in self.down:
            return SessionOutcome.DONE
        if where == action.source_host:
            return SessionOutcome.ROLLED_BACK
        return SessionOutcome.LOST
