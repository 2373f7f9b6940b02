"""The cost model of Ngo et al. 2020 (``costs/handover.py``) applied to a snapshot, and the resulting plan.

Everything here is vectorised over index arrays: ``users``, ``bss`` and ``servers`` broadcast against each
other, so the same functions price one assignment per user (evaluation of a plan) or a (users, BSs, servers)
block of candidate pairs (the MILP's columns).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs import handover as ho
from edgemigrate.planning.snapshot import Snapshot

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Timing(enum.Enum):
    """How a plan's migration and handover are triggered (Ngo et al. 2020, sec. IV-B vs sec. V-A)."""

    COORDINATED = "coordinated"  # one outage, max(T_mig, T_ho), when the pre-migration is done by the handover
    SEQUENTIAL = "sequential"  # handover first, migration after the pre-migration: about T_ho + T_mig


def link_ok(snap: Snapshot) -> NDArray[np.bool_]:
    """Constraint 3d: (U, B) mask of BSs whose measured and estimated RSSI both reach the minimum.

    A BS whose estimated RSSI gives no rate in the access table (a minimum set below the table's floor) is
    excluded too: eq. 4 would put an infinite transmission delay on it.
    """
    u = snap.users
    ok = (u.rssi_now_dbm >= snap.min_rssi_dbm) & (u.rssi_next_dbm >= snap.min_rssi_dbm)
    return ok & (ho.wifi_rate_bps(u.rssi_next_dbm) > 0)


def triggered_users(snap: Snapshot, sla_s: float | None = None) -> NDArray[np.bool_]:
    """The users whose monitor triggers the planner this round (Ngo et al. 2020, sec. III).

    A handover is due (a usable BS beats the current one by the hysteresis at t', or the current link fails 3d
    at t'), or - with ``sla_s`` - the estimated E2E delay at t' on the current pair exceeds the SLA.
    """
    U = snap.users
    ok = link_ok(snap)
    users = np.arange(U.n)
    best = np.max(np.where(ok, U.rssi_next_dbm, -np.inf), axis=1, initial=-np.inf)
    cur_ok = ok[users, U.bs]
    due = ~cur_ok | (best - U.rssi_next_dbm[users, U.bs] >= snap.hysteresis_db)
    if sla_s is not None:
        due |= ~(delay_s(snap, users, U.bs, U.server) <= sla_s)
    return due


def delay_s(snap: Snapshot, users: ArrayLike, bss: ArrayLike, servers: ArrayLike) -> F64:
    """Eq. 4: estimated E2E delay at t' of one task of ``users`` via BS ``bss`` to ``servers`` (inf: no link)."""
    u, b, s = (np.asarray(a) for a in (users, bss, servers))
    U, S, B = snap.users, snap.servers, snap.bss
    access = ho.wifi_rate_bps(U.rssi_next_dbm[u, b])
    return ho.e2e_delay_s(U.proc_s[u], S.cpu_power[U.server[u]], S.cpu_power[s], U.task_bytes[u], access,
                          B.backhaul_bps[b, s], B.rtt_s[b, s])


def migration_times_s(snap: Snapshot, users: ArrayLike, servers: ArrayLike) -> tuple[F64, F64]:
    """(T_pre-mig, T_mig) of moving ``users``' containers to ``servers``; both 0 where they stay.

    Stop-and-copy (``snap.precopy`` None): eq. 5 of Ngo et al. 2020 with psi/rho and the three sizes. Pre-copy
    (the engine the testbed runs): the fitted model of ``costs.handover.precopy_times_s`` (Clark et al.
    2005) over the link and RTT between the two servers; T_pre-mig is its leave-running rounds (total -
    frozen: the service keeps answering) and T_mig its frozen window, the outage eq. 2's DT counts. Eq. 5
    would charge a pre-copied service the stop-and-copy outage of its whole image (psi * S_Du / C_s + the
    restore of S_Du + S_lambda), which for a pre-copy engine is several times the real frozen window.
    """
    u, s = np.asarray(users), np.asarray(servers)
    U, S = snap.users, snap.servers
    src = U.server[u]
    moves = src != s
    link = np.where(moves, S.link_bps[src, s], 1.0)
    if snap.precopy is not None:
        rtt = 0.0 if snap.server_rtt_s is None else snap.server_rtt_s[src, s]
        frozen, total, _ = ho.precopy_times_s(snap.precopy, link, rtt)
        frozen, total = np.broadcast_to(frozen, moves.shape), np.broadcast_to(total, moves.shape)
        return np.where(moves, total - frozen, 0.0), np.where(moves, frozen, 0.0)
    pre = ho.premigration_s(S.psi[src], U.image_bytes[u], U.checkpoint_bytes[u], S.cpu_power[src], link)
    mig = ho.migration_s(S.psi[src], S.rho[s], U.image_bytes[u], U.checkpoint_bytes[u], U.delta_bytes[u],
                         S.cpu_power[src], S.cpu_power[s], link)
    return np.where(moves, pre, 0.0), np.where(moves, mig, 0.0)


def handover_at_s(snap: Snapshot, users: ArrayLike, bss: ArrayLike) -> F64:
    """When ``users`` hand over to ``bss`` (relative RSSI hysteresis, Ngo et al. 2020, sec. IV-B); nan if they stay."""
    u, b = np.asarray(users), np.asarray(bss)
    U = snap.users
    cur = U.bs[u]
    at = ho.handover_instant_s(snap.now_s, snap.horizon_s, U.rssi_now_dbm[u, cur], U.rssi_next_dbm[u, cur],
                               U.rssi_now_dbm[u, b], U.rssi_next_dbm[u, b], snap.hysteresis_db, snap.min_rssi_dbm)
    return np.where(cur != b, at, np.nan)


def coordinated_downtime_s(snap: Snapshot, users: ArrayLike, bss: ArrayLike, servers: ArrayLike) -> F64:
    """DT of eq. 2 under the coordinated schedule: max(T_mig, T_ho), or their union when the pre-migration
    cannot finish before the handover instant (``costs.handover.coordinated_triggers_s``)."""
    u, b, s = (np.asarray(a) for a in (users, bss, servers))
    pre, mig = migration_times_s(snap, u, s)
    hands = snap.users.bs[u] != b
    at = np.where(hands, handover_at_s(snap, u, b), snap.now_s)
    _, t_mig, t_ho = ho.coordinated_triggers_s(at, snap.now_s, pre, snap.users.server[u] != s, hands,
                                               margin=snap.margin)
    return ho.outage_s(t_mig, mig, t_ho, snap.handover_s)


def pair_cost_s(snap: Snapshot, users: ArrayLike, bss: ArrayLike, servers: ArrayLike) -> F64:
    """What the orchestrated MILP minimises per (user, BS', server') pair: n_u * d_ub's' + DT_ubb'ss'.

    This is -(Delta d * n - DT) + n * d_ubs, i.e. eq. 3a's per-user term up to a constant per user; as every
    user gets exactly one pair (3b), the constants do not move the argmax. Dropping them keeps the objective
    finite when a user's current link is lost at t' (d_ubs = inf). Pairs that break 3d, or whose RSSI
    gives no rate at all, cost inf.
    """
    u, b, s = (np.asarray(a) for a in (users, bss, servers))  # broadcast lazily: eq. 5 needs only (u, s)
    d = delay_s(snap, u, b, s)
    ok = link_ok(snap)[u, b] & np.isfinite(d)  # a minimum RSSI below the rate table's floor still needs a rate
    cost = snap.users.tasks[u] * np.where(ok, d, 0.0) + coordinated_downtime_s(snap, u, b, s)
    return np.where(ok, cost, np.inf)


@dataclass(frozen=True, slots=True)
class Plan:
    """Per user the target server and BS, the estimates behind them and when to trigger each step.

    ``gain_s`` is eq. 1's term Delta d * n (nan where the current link is lost at t', so there is nothing to
    compare with); ``downtime_s`` eq. 2's DT from the trigger times; trigger times are nan where the step
    does not happen. ``task_delay_s`` is n_u * ``delay_s``. ``optimal`` is the MILP's proof of optimality
    (None for the heuristic planners); ``candidates`` the number of MILP columns. ``uncovered`` lists the
    users no BS covers (3d), left in place by :func:`edgemigrate.planning.coverage.plan_covered`.
    ``precopy``: the migrations were priced with the snapshot's pre-copy model, so a backend's migrate call
    (leave-running rounds + frozen round) starts at ``premigration_at_s`` and freezes at ``migration_at_s``.
    """

    planner: str
    server: I64
    bs: I64
    delay_s: F64
    task_delay_s: F64
    gain_s: F64
    downtime_s: F64
    premigration_at_s: F64
    migration_at_s: F64
    handover_at_s: F64
    timing: Timing
    optimal: bool | None = None
    candidates: int = 0
    uncovered: I64 = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    precopy: bool = False

    @property
    def profit_s(self) -> float:
        """Eq. 3a's G - C over the users whose gain is defined."""
        return ho.profit_s(np.nan_to_num(self.gain_s, nan=0.0), self.downtime_s)

    @property
    def cost_s(self) -> float:
        """The MILP's objective: sum over users of n_u * d_ub's' + DT (finite even where gains are not)."""
        return float(np.sum(self.task_delay_s) + np.sum(self.downtime_s))


def evaluate(snap: Snapshot, planner: str, server: ArrayLike, bs: ArrayLike, timing: Timing,
             optimal: bool | None = None, candidates: int = 0) -> Plan:
    """Price an assignment (one server and BS per user) with eqs. 1-5 and schedule it with ``timing``."""
    U = snap.users
    users = np.arange(U.n)
    server = np.array(server, dtype=np.int64)  # copies: the plan's arrays are made read-only below
    bs = np.array(bs, dtype=np.int64)
    for name, idx, n in (("server", server, snap.servers.n), ("bs", bs, snap.bss.n)):
        if idx.shape != (U.n,) or (U.n and (idx.min() < 0 or idx.max() >= n)):
            raise ValidationError(f"plan {name} must be {U.n} indices in [0, {n}), got shape {idx.shape}")
    new = delay_s(snap, users, bs, server)
    current = delay_s(snap, users, U.bs, U.server)
    gain = np.where(np.isfinite(current), ho.gain_s(ho.delay_change_s(current, new), U.tasks), np.nan)
    pre, mig = migration_times_s(snap, users, server)
    at = handover_at_s(snap, users, bs)
    migrates, hands = server != U.server, bs != U.bs
    at = np.where(hands, at, snap.now_s)
    if timing is Timing.COORDINATED:
        t_pre, t_mig, t_ho = ho.coordinated_triggers_s(at, snap.now_s, pre, migrates, hands, margin=snap.margin)
    else:
        t_pre, t_mig, t_ho = ho.sequential_triggers_s(at, snap.now_s, pre, migrates, hands)
    down = ho.outage_s(t_mig, mig, t_ho, np.full(U.n, snap.handover_s))
    weighted = U.tasks * new
    for a in (server, bs, new, weighted, gain, down, t_pre, t_mig, t_ho):
        a.setflags(write=False)
    return Plan(planner=planner, server=server, bs=bs, delay_s=new, task_delay_s=weighted, gain_s=gain,
                downtime_s=down, premigration_at_s=t_pre, migration_at_s=t_mig, handover_at_s=t_ho, timing=timing,
                optimal=optimal, candidates=candidates, precopy=snap.precopy is not None)
