"""The Monitor of Ngo et al. 2020, sec. III: reports in, the planner's snapshot out.

Mobile users send what their Local Monitor measures (the E2E delay of each offloaded task and the RSSI of
the base stations they hear); host agents report the services they run. Both are peer data: a report is
decoded strictly (:func:`parse_mu_report`: known keys only, sizes bounded before anything is built, every
value range-checked by the store's rows) and a bad one raises one :class:`ValidationError` naming the key.

From the store the monitor decides which users need a new plan (an SLA miss, or a base station that beats
the current one by the hysteresis or a current link below the receiver minimum: the triggers of sec. III)
and builds the :class:`~edgemigrate.planning.Snapshot` the planner reads, with a :class:`SnapshotIndex` to
map the planner's indices back to names.

RSSI prediction (Ngo et al. 2020, fig. 2: the pre-migration must be triggered before the handover is due,
t_trig-pre-mig = t_ho - (1 + 10 %) T_pre-mig, so the controller must know t_ho in advance): each BS's RSSI at
t' = now + horizon is extrapolated from the least-squares line through the user's last
:data:`RSSI_TREND_REPORTS` reports of it (:func:`rssi_trend_dbm`). The snapshot's RSSI now and at t' are that
line's values, so the planner's ``handover_instant_s`` is the line's crossing of the hysteresis (or of the
receiver minimum), and :meth:`Monitor.needs_replan` triggers as soon as the predicted RSSI at t' calls for a
handover, early enough for the pre-copy to end at the crossing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgemigrate.controller.backend import HostStatus, MigrationResult
from edgemigrate.controller.store import (
    BsRssi,
    CheckpointKind,
    CheckpointRecord,
    HostReport,
    HostRole,
    HostState,
    MuReport,
    Placement,
    Store,
    TaskDelay,
)
from edgemigrate.controller.store.rows import MAX_REPORT_ITEMS
from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.handover import PrecopyModel, fit_size_coefficient
from edgemigrate.planning import BaseStations, Servers, Snapshot, Users

_MU_KEYS = frozenset({"user", "at_s", "delays", "rssi"})
_DELAY_KEYS = frozenset({"service", "e2e_delay_s", "task_size_bytes"})
_RSSI_KEYS = frozenset({"base_station", "rssi_dbm"})
MAX_CLOCK_SKEW_S = 300.0  # a report stamped further in the future than this is refused
# RSSI trend: the MU reports every 0.5-1 s; 6 reports span 3-6 s, a few metres of walk over which the
# log-distance path loss is close to a line, and the slope of a walk past a BS is a few dB/s at most
RSSI_TREND_REPORTS = 6
MIN_TREND_SPAN_S = 1.0  # reports closer together than this give no slope (the newest value is used)
MAX_RSSI_SLOPE_DB_PER_S = 20.0  # a hostile or glitched series cannot extrapolate further than this
TREND_FLOOR_DBM = -200.0  # the store's range: an extrapolation stays inside it
TREND_CEIL_DBM = 50.0


def rssi_trend_dbm(times_s: Any, rssi_dbm: Any, at_s: float, *, last: int = RSSI_TREND_REPORTS) -> float:
    """One BS's RSSI at ``at_s`` from the least-squares line through the newest ``last`` (time, RSSI) reports.

    With fewer than two reports, or reports spanning less than :data:`MIN_TREND_SPAN_S`, the newest value
    (no trend is known). The slope is bounded by :data:`MAX_RSSI_SLOPE_DB_PER_S` and the result by the
    store's RSSI range; ``-inf`` (never heard) stays ``-inf``. A pure function of its arguments."""
    t = np.asarray(times_s, dtype=np.float64)
    y = np.asarray(rssi_dbm, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1:
        raise ValidationError(f"rssi trend: {t.shape} times and {y.shape} values")
    if t.size == 0:
        return -math.inf
    order = np.argsort(t, kind="stable")[-last:]
    t, y = t[order], y[order]
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(t)) or t[-1] - t[0] < MIN_TREND_SPAN_S:
        return float(y[-1])
    tc = t - t.mean()
    slope = float(np.dot(tc, y - y.mean()) / np.dot(tc, tc))
    slope = min(max(slope, -MAX_RSSI_SLOPE_DB_PER_S), MAX_RSSI_SLOPE_DB_PER_S)
    return float(min(max(y.mean() + slope * (at_s - t.mean()), TREND_FLOOR_DBM), TREND_CEIL_DBM))


def _keys(obj: Any, allowed: frozenset[str], required: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise ValidationError(f"{what}: expected an object, got {type(obj).__name__}")
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ValidationError(f"{what}.{str(extra[0])[:40]}: unknown key")
    missing = sorted(required - set(obj))
    if missing:
        raise ValidationError(f"{what}.{missing[0]}: missing")
    return obj


def _list(obj: Any, what: str) -> list[Any]:
    if not isinstance(obj, list):
        raise ValidationError(f"{what}: expected a list, got {type(obj).__name__}")
    if len(obj) > MAX_REPORT_ITEMS:
        raise ValidationError(f"{what}: {len(obj)} entries, at most {MAX_REPORT_ITEMS} allowed")
    return obj


def parse_mu_report(body: Any, *, now_s: float | None = None) -> MuReport:
    """A :class:`MuReport` from a decoded JSON object (the API's ``report_mu``), or a one-line error.

    ``now_s`` (the controller's clock) refuses reports stamped more than :data:`MAX_CLOCK_SKEW_S` ahead: a
    report from the future would be the "newest" sample for as long as the skew lasts.
    """
    b = _keys(body, _MU_KEYS, frozenset({"user", "at_s"}), "mu_report")
    delays = []
    for i, d in enumerate(_list(b.get("delays", []), "mu_report.delays")):
        d = _keys(d, _DELAY_KEYS, frozenset({"service", "e2e_delay_s"}), f"mu_report.delays[{i}]")
        delays.append(TaskDelay(d["service"], d["e2e_delay_s"], d.get("task_size_bytes")))
    rssi = []
    for i, r in enumerate(_list(b.get("rssi", []), "mu_report.rssi")):
        r = _keys(r, _RSSI_KEYS, _RSSI_KEYS, f"mu_report.rssi[{i}]")
        rssi.append(BsRssi(r["base_station"], r["rssi_dbm"]))
    if len({r.base_station for r in rssi}) != len(rssi):
        raise ValidationError("mu_report.rssi: a base station is listed twice")
    report = MuReport(b["user"], b["at_s"], tuple(delays), tuple(rssi))
    if now_s is not None and report.at_s > now_s + MAX_CLOCK_SKEW_S:
        raise ValidationError(f"mu_report.at_s: {report.at_s!r} is more than {MAX_CLOCK_SKEW_S:g} s in the future")
    return report


def mu_report_to_json(report: MuReport) -> dict[str, Any]:
    """The wire form :func:`parse_mu_report` reads (what :class:`~.client.ControllerClient` sends)."""
    return {"user": report.user, "at_s": report.at_s,
            "delays": [{"service": d.service, "e2e_delay_s": d.e2e_delay_s}
                       | ({} if d.task_size_bytes is None else {"task_size_bytes": d.task_size_bytes})
                       for d in report.delays],
            "rssi": [{"base_station": r.base_station, "rssi_dbm": r.rssi_dbm} for r in report.rssi]}


@dataclass(frozen=True, slots=True)
class SnapshotDefaults:
    """What the store does not measure (yet), for the snapshot.

    The link and RTT values are a LAN edge (100 Mbit/s between hosts, 2 ms from a BS to an edge host,
    50 ms to the cloud), used for a (BS, host) pair the store has no RTT for (``Store.put_rtt``);
    ``bs_host_rtt_s`` overrides a pair, store or not (tests, what-if runs). Until a host has a checkpoint history to fit them to, psi/rho say 1 s per GB at the
    default C_s of 1 (a host without a benchmark score): eq. 5 reads seconds = psi * size / C_s. Per-user
    sizes are the paper's small-container scale (Ngo et al. 2020, table I).
    """

    link_bps: float = 100e6
    edge_rtt_s: float = 0.002
    cloud_rtt_s: float = 0.05
    bs_host_rtt_s: Mapping[tuple[str, str], float] = field(default_factory=dict)
    psi: float = 1e-9
    rho: float = 1e-9
    task_bytes: float = 100e3
    proc_s: float = 0.01
    user_cpu_cores: float = 0.1
    user_memory_bytes: float = 64e6
    user_disk_bytes: float = 0.0
    image_bytes: float = 50e6
    checkpoint_bytes: float = 20e6
    delta_bytes: float = 2e6
    window_s: float = 30.0  # measurements older than this are not used
    # a user that reported no RSSI of its current BS within the window is taken to hear it this well: no
    # report is no evidence of a problem, and a planner must still be able to keep the user where it is
    unreported_rssi_dbm: float = -60.0
    horizon_s: float = 5.0
    min_rssi_dbm: float = -82.0
    hysteresis_db: float = 3.0
    # RSSI prediction over the last reports (module doc); False: the newest report now and at t' alike
    predict_rssi: bool = True
    # the migration strategy's model: a fitted pre-copy model (controller/sim/measurements.py fits one from
    # measured migrations) or None for eq. 5's stop-and-copy with psi/rho; host pairs' RTTs for it
    precopy: PrecopyModel | None = None
    host_rtt_s: Mapping[tuple[str, str], float] = field(default_factory=dict)
    server_rtt_s: float = 0.0  # a host pair not in host_rtt_s


@dataclass(frozen=True, slots=True)
class SnapshotIndex:
    """Names behind the planner's indices: ``hosts[s]``, ``bss[b]``, ``pairs[u]`` (user, service)."""

    hosts: tuple[str, ...]
    bss: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]


class Monitor:
    """Ingests reports into the store and builds planning snapshots from it."""

    def __init__(self, store: Store, defaults: SnapshotDefaults | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.defaults = defaults or SnapshotDefaults()
        self.clock = clock

    def ingest_mu(self, body: Any) -> MuReport:
        """Validate and store one MU report (a JSON object or a :class:`MuReport`)."""
        report = body if isinstance(body, MuReport) else parse_mu_report(body, now_s=self.clock())
        self.store.record_mu_report(report)
        return report

    def ingest_host(self, status: HostStatus) -> HostReport:
        """Store what a host's agent reported. The agents report services and their declared memory, not
        CPU use; the report's CPU is 0 until they do."""
        services = tuple(s.name for s in status.services)
        memory = sum(s.resident_bytes for s in status.services if s.state == "running")
        report = HostReport(status.host, self.clock(), 0.0, memory, 0, services)
        self.store.record_host_report(report)
        return report

    def ingest_migration(self, result: MigrationResult) -> list[CheckpointRecord]:
        """The checkpoint/restore history eq. 5's psi and rho are fitted to, from a migration's statistics:
        the first round's full dump on the source (``rounds[0].image_bytes``, ``dump_s``) and the restore of
        the final image on the destination (``full_checkpoint_bytes``, ``restore_s``). The statistics are
        an agent's reply: what is missing or out of range is left out (a ValidationError names it)."""
        st = result.stats
        now = self.clock()
        rounds = st.get("rounds")
        first = rounds[0] if isinstance(rounds, list) and rounds and isinstance(rounds[0], dict) else {}
        recs = []
        for host, kind, size, secs in (
                (result.source_host, CheckpointKind.CHECKPOINT, first.get("image_bytes"), first.get("dump_s")),
                (result.dest_host, CheckpointKind.RESTORE, st.get("full_checkpoint_bytes"), st.get("restore_s"))):
            if size is None or secs is None:
                continue
            rec = CheckpointRecord(host, result.service, kind, now, size, secs)
            self.store.record_checkpoint(rec)
            recs.append(rec)
        return recs

    def _rssi_now_next(self, user: str, since_s: float, now_s: float) -> dict[str, tuple[float, float]]:
        """Per BS the user heard: its RSSI now and at t' = now + horizon (the trend line's, or the newest
        report for both without prediction)."""
        d = self.defaults
        series: dict[str, tuple[list[float], list[float]]] = {}
        for s in self.store.rssi_samples(user, since_s=since_s, limit=RSSI_TREND_REPORTS * 64):
            ts, vs = series.setdefault(s.base_station, ([], []))
            ts.append(s.at_s)
            vs.append(s.rssi_dbm)
        if not d.predict_rssi:
            return {bs: (vs[-1], vs[-1]) for bs, (_, vs) in series.items()}
        return {bs: (rssi_trend_dbm(ts, vs, now_s), rssi_trend_dbm(ts, vs, now_s + d.horizon_s))
                for bs, (ts, vs) in series.items()}

    def needs_replan(self) -> list[str]:
        """Users with a placement whose recent reports call for a move (sec. III's triggers)."""
        d = self.defaults
        now = self.clock()
        since = max(0.0, now - d.window_s)
        sla = {u.name: u.sla_delay_s for u in self.store.users()}
        out = []
        for user in sorted({p.user for p in self.store.placements()}):
            cur_bs = {p.base_station for p in self.store.placements(user=user)}
            delays = [s.e2e_delay_s for s in self.store.task_delays(user, since_s=since)[-10:]]
            if sla.get(user) is not None and delays and float(np.mean(delays)) > sla[user]:
                out.append(user)
                continue
            heard = self._rssi_now_next(user, since, now)
            if not heard:
                continue
            # now, or predicted at t' (a handover the pre-migration must start for before it is due)
            for k in (0, 1):
                cur = max((heard[b][k] for b in cur_bs if b in heard), default=-math.inf)
                best = max(v[k] for v in heard.values())
                if cur < d.min_rssi_dbm or best - cur >= d.hysteresis_db:
                    out.append(user)
                    break
        return out

    def snapshot(self, replan: set[str] | None = None) -> tuple[Snapshot, SnapshotIndex]:
        """The planner's view now: hosts that are up, every base station, every placement on a host that is
        up (a placement on a down host cannot be migrated from; it waits for its host or an operator).
        ``replan`` names the users to replan (None: everyone)."""
        d = self.defaults
        now = self.clock()
        hosts = [h for h in self.store.hosts() if h.state is HostState.UP]
        bss = self.store.base_stations()
        if not hosts or not bss:
            raise ValidationError("snapshot: the store needs at least one host that is up and one base station")
        h_idx = {h.name: i for i, h in enumerate(hosts)}
        b_idx = {b.name: i for i, b in enumerate(bss)}
        pairs = [p for p in self.store.placements() if p.host in h_idx]
        servers = self._servers(hosts)
        # RTT_bs (eq. 4): an explicit override, else the store's (registered/measured), else the role's default
        stored = self.store.rtts()
        rtt = np.array([[d.bs_host_rtt_s.get((b.name, h.name), stored.get((b.name, h.name),
                                             d.cloud_rtt_s if h.role is HostRole.CLOUD else d.edge_rtt_s))
                         for h in hosts] for b in bss], dtype=np.float64)
        backhaul = np.repeat(np.array([[b.bandwidth_bps] for b in bss], dtype=np.float64), len(hosts), axis=1)
        stations = BaseStations(backhaul, rtt, np.array([b.max_users for b in bss]))
        users = self._users(pairs, h_idx, b_idx, max(0.0, now - d.window_s), now)
        mask = None if replan is None else np.array([p.user in replan for p in pairs], dtype=bool)
        names = [h.name for h in hosts]
        host_rtt = np.array([[0.0 if a == b else d.host_rtt_s.get((a, b), d.host_rtt_s.get((b, a), d.server_rtt_s))
                              for b in names] for a in names], dtype=np.float64)
        snap = Snapshot(servers, stations, users, now_s=now, horizon_s=d.horizon_s, min_rssi_dbm=d.min_rssi_dbm,
                        hysteresis_db=d.hysteresis_db, replan=mask, precopy=d.precopy, server_rtt_s=host_rtt)
        index = SnapshotIndex(tuple(h.name for h in hosts), tuple(b.name for b in bss),
                              tuple((p.user, p.service) for p in pairs))
        return snap, index

    def _servers(self, hosts: list) -> Servers:
        d = self.defaults
        n = len(hosts)
        power = np.array([h.cpu_events_per_s or 1.0 for h in hosts], dtype=np.float64)
        link = np.full((n, n), d.link_bps)
        psi = [self._fit(h.name, CheckpointKind.CHECKPOINT, p, d.psi) for h, p in zip(hosts, power, strict=True)]
        rho = [self._fit(h.name, CheckpointKind.RESTORE, p, d.rho) for h, p in zip(hosts, power, strict=True)]
        return Servers(power, [h.cpu_cores for h in hosts], [h.memory_bytes for h in hosts],
                       [h.disk_bytes for h in hosts], np.array([h.role is HostRole.CLOUD for h in hosts]),
                       link, psi, rho)

    def _fit(self, host: str, kind: CheckpointKind, cpu_power: float, default: float) -> float:
        """psi (checkpoints) or rho (restores) of eq. 5 from the host's history, else ``default``."""
        hist = self.store.checkpoint_history(host, kind)
        if not hist or not any(r.size_bytes for r in hist):
            return default
        return fit_size_coefficient([r.size_bytes for r in hist], [r.duration_s for r in hist], float(cpu_power),
                                    name=f"{host}.{kind.value}")

    def _users(self, pairs: list[Placement], h_idx: dict[str, int], b_idx: dict[str, int], since: float,
               now: float) -> Users:
        d = self.defaults
        n, nb = len(pairs), len(b_idx)
        rssi = np.full((n, nb), -np.inf)
        rssi_next = np.full((n, nb), -np.inf)
        task_bytes, tasks, proc = np.full(n, d.task_bytes), np.ones(n), np.full(n, d.proc_s)
        for u, p in enumerate(pairs):
            heard = self._rssi_now_next(p.user, since, now)
            for bs, (value, later) in heard.items():
                if bs in b_idx:
                    rssi[u, b_idx[bs]], rssi_next[u, b_idx[bs]] = value, later
            if p.base_station not in heard:
                rssi[u, b_idx[p.base_station]] = rssi_next[u, b_idx[p.base_station]] = d.unreported_rssi_dbm
            samples = [s for s in self.store.task_delays(p.user, since_s=since) if s.service == p.service]
            sizes = [s.task_size_bytes for s in samples if s.task_size_bytes]
            if sizes:
                task_bytes[u] = float(np.mean(sizes))
            tasks[u] = max(1, len(samples))
        full = np.full(n, 1.0)
        return Users(server=[h_idx[p.host] for p in pairs], bs=[b_idx[p.base_station] for p in pairs],
                     rssi_now_dbm=rssi, rssi_next_dbm=rssi_next, task_bytes=task_bytes, tasks=tasks, proc_s=proc,
                     cpu_cores=full * d.user_cpu_cores, memory_bytes=full * d.user_memory_bytes,
                     disk_bytes=full * d.user_disk_bytes, image_bytes=full * d.image_bytes,
                     checkpoint_bytes=full * d.checkpoint_bytes, delta_bytes=full * d.delta_bytes)
