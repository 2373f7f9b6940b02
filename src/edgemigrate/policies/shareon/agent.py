"""One ShareOn decision agent per edge node (Maheshwari et al. 2018, sec. III-C, Algorithm 2), and the two
migrating baselines of sec. VI that decide from the same view.

``agent.decide(view)`` is pure: a :class:`~edgemigrate.policies.shareon.view.NodeView` in, a list of
:class:`~edgemigrate.policies.shareon.view.MigrationDecision` out, no I/O, no clock, no randomness, so the
simulator and the real emulation run the same code. Each node decides only for its own containers.

ShareOn, step by step (Algorithm 2):

1. classify every neighbour with Algorithm 1 (``costs.shareon.util_region``) and keep the Med/Low ones as
   ``favourableUtils`` (lines 2-3);
2. shortlist the containers whose measured total latency exceeds ``t_app,th`` (line 4), slowest first, and
   name the primary reason (processing, network or both);
3. for each, the suitable neighbours are those in a favourable region *or* geographically closer to the user
   than this node (sec. III-C, conditions (a) and (b)) whose estimated total latency
   ``t_m,j + t_p,j`` (network: ``d_u,e * l_d + sqrt(var(l))``; processing: ``t_p,avg + utilFac * alpha_e``
   with the container's own load added) is below the measured one (line 4);
4. among those, keep the ones whose migration cost ``C_m`` - the container's state over ``b_ij`` shared with
   the migrations already heading there - is below ``C_m,th`` (lines 13-14), and pick the lowest estimated
   total latency.

Within one round an agent counts its own choices: a container it has just sent to ``j`` adds its load to
``j``'s utilisation and one more migration to ``j``'s in-flight count for the next container, so one stale
report does not send a whole shortlist to the same node.

Baselines (sec. VI): ``processing-only`` moves a slow container to the neighbour with the lowest estimated
processing latency (ignoring distance, bandwidth and in-flight migrations); ``bandwidth-only`` moves it to
a neighbour closer to the user whose estimated network latency is lower, choosing the most available
inter-edge bandwidth ``b_ij / (1 + in-flight)`` (ignoring the destination's load). Both use ShareOn's
trigger (``t_total > t_app,th``), so the comparison is about where to, not when.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.shareon import (
    RegionThresholds,
    UtilRegion,
    migration_cost_s,
    network_latency_s,
    per_container,
    processing_latency_s,
    slow_reason,
    util_region,
)
from edgemigrate.policies.shareon.view import ContainerState, MigrationDecision, NodeView

F64 = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ShareOnParams:
    """The agent's parameters (defaults and their reasons: ``docs/shareon.md``).

    ``t_app_th_s``: the application's latency threshold t_app,th (100 ms in the paper's emulation, sec. IV-D);
    ``l_d_s_per_m``: network latency per metre, l_d; ``user_latency_s``: the access latency every node shares
    (added so estimates compare with a measured total); ``cost_th_s``: C_m,th; ``near_m``: the distance at
    which a user counts as served nearby, used only to name the primary reason; ``min_gain_s``: how much
    lower the estimate must be than the measurement (the paper's strict ``<`` is ``0``).
    """

    thresholds: RegionThresholds
    t_app_th_s: float = 0.1
    l_d_s_per_m: float = 2e-6
    user_latency_s: float = 0.01
    cost_th_s: float = 10.0
    near_m: float = 1000.0
    min_gain_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.thresholds, RegionThresholds):
            raise ValidationError("thresholds: expected a costs.shareon.RegionThresholds")
        for key in ("t_app_th_s", "cost_th_s", "near_m"):
            _check(getattr(self, key), key, positive=True)
        for key in ("l_d_s_per_m", "user_latency_s", "min_gain_s"):
            _check(getattr(self, key), key, positive=False)


def _check(value: object, key: str, *, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):  # type: ignore[operator]
        raise ValidationError(f"{key}: expected a finite number {'> 0' if positive else '>= 0'}, got {value!r:.80}")


@dataclass(slots=True)
class _Round:
    """Arrays over the neighbours of one view (one decision round), plus this round's own choices."""

    ids: tuple[str, ...]
    x: F64
    y: F64
    cpu_hz: F64
    util: F64
    t_p_avg_s: F64
    alpha_e_s: F64
    var_s2: F64
    inflight: F64
    bw_bps: F64
    favourable: NDArray[np.bool_]
    added_hz: F64 = field(init=False)
    added_n: F64 = field(init=False)

    def __post_init__(self) -> None:
        self.added_hz = np.zeros(len(self.ids))
        self.added_n = np.zeros(len(self.ids))


class _Agent:
    """Shared plumbing: shortlist, per-neighbour estimates, bookkeeping of this round's choices."""

    name = "agent"

    def __init__(self, params: ShareOnParams) -> None:
        if not isinstance(params, ShareOnParams):
            raise ValidationError(f"{type(self).__name__}: expected ShareOnParams, got {type(params).__name__}")
        self.params = params

    def shortlist(self, view: NodeView) -> list[ContainerState]:
        """Containers over ``t_app,th`` and not already migrating, slowest first (Algorithm 2, line 4)."""
        th = self.params.t_app_th_s
        slow = [c for c in view.containers if not c.migrating and c.t_total_s > th]
        slow.sort(key=lambda c: (-c.t_total_s, c.container_id))
        return slow

    def decide(self, view: NodeView) -> list[MigrationDecision]:
        """This node's migrations for this round (possibly none)."""
        slow = self.shortlist(view)
        if not slow:
            return []
        rnd = self._round(view)
        if not rnd.ids:
            return []
        p = self.params
        net_ref = p.user_latency_s + p.l_d_s_per_m * p.near_m
        out: list[MigrationDecision] = []
        me_x, me_y = view.me.x_m, view.me.y_m
        for c in slow:
            d = np.hypot(rnd.x - c.x_m, rnd.y - c.y_m)
            d_me = math.hypot(me_x - c.x_m, me_y - c.y_m)
            net = network_latency_s(d, p.l_d_s_per_m, rnd.var_s2, p.user_latency_s)
            with np.errstate(divide="ignore", invalid="ignore"):
                util_after = rnd.util + (rnd.added_hz + c.demand_hz) / rnd.cpu_hz
            proc = processing_latency_s(rnd.t_p_avg_s, np.where(rnd.cpu_hz > 0, util_after, np.inf), rnd.alpha_e_s)
            cost = migration_cost_s(c.size_bytes, rnd.bw_bps, rnd.inflight + rnd.added_n)
            j = self.choose(c, rnd, d < d_me, net, proc, cost)
            if j is None:
                continue
            rnd.added_hz[j] += c.demand_hz
            rnd.added_n[j] += 1
            reason = slow_reason(c.t_net_s, c.t_proc_s, net_ref, p.t_app_th_s - net_ref)
            out.append(MigrationDecision(c.container_id, view.me.node_id, rnd.ids[j], reason,
                                         float(net[j] + proc[j]), float(cost[j])))
        return out

    def choose(self, c: ContainerState, rnd: _Round, closer: NDArray[np.bool_], net: F64, proc: F64,
               cost: F64) -> int | None:
        raise NotImplementedError

    def _round(self, view: NodeView) -> _Round:
        nbs = [n for n in view.neighbours if n.report.node_id != view.me.node_id]
        r = [n.report for n in nbs]
        cpu = np.array([x.cpu_hz for x in r], dtype=np.float64)
        ram = np.array([x.ram_bytes for x in r], dtype=np.float64)
        k = np.array([x.n_containers for x in r], dtype=np.float64)
        region = util_region(per_container(cpu, k), per_container(ram, k), self.params.thresholds)
        return _Round(
            ids=tuple(x.node_id for x in r),
            x=np.array([x.x_m for x in r], dtype=np.float64),
            y=np.array([x.y_m for x in r], dtype=np.float64),
            cpu_hz=cpu,
            util=np.array([x.util_fac for x in r], dtype=np.float64),
            t_p_avg_s=np.array([x.t_p_avg_s for x in r], dtype=np.float64),
            alpha_e_s=np.array([x.alpha_e_s for x in r], dtype=np.float64),
            var_s2=np.array([x.latency_var_s2 for x in r], dtype=np.float64),
            inflight=np.array([x.incoming_migrations for x in r], dtype=np.float64),
            bw_bps=np.array([n.bandwidth_bps for n in nbs], dtype=np.float64),
            favourable=region != UtilRegion.HIGH,
        )


def _argmin_where(score: F64, ok: NDArray[np.bool_]) -> int | None:
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, score, np.inf)))


class ShareOnAgent(_Agent):
    """ShareOn's Algorithm 2 on one node (module docstring)."""

    name = "shareon"

    def choose(self, c: ContainerState, rnd: _Round, closer: NDArray[np.bool_], net: F64, proc: F64,
               cost: F64) -> int | None:
        total = net + proc
        ok = ((rnd.favourable | closer) & (total < c.t_total_s - self.params.min_gain_s)
              & (cost < self.params.cost_th_s))
        return _argmin_where(total, ok)


class ProcessingOnlyAgent(_Agent):
    """Baseline (sec. VI): to the neighbour of least estimated processing latency; distance and bandwidth
    are ignored (a link with no bandwidth still cannot carry a migration)."""

    name = "processing_only"

    def choose(self, c: ContainerState, rnd: _Round, closer: NDArray[np.bool_], net: F64, proc: F64,
               cost: F64) -> int | None:
        return _argmin_where(proc, (proc < c.t_proc_s) & np.isfinite(cost))


class BandwidthOnlyAgent(_Agent):
    """Baseline (sec. VI): to a neighbour closer to the user with a lower estimated network latency, the one
    with the most available inter-edge bandwidth ``b_ij / (1 + in-flight)``; the destination's load is ignored."""

    name = "bandwidth_only"

    def choose(self, c: ContainerState, rnd: _Round, closer: NDArray[np.bool_], net: F64, proc: F64,
               cost: F64) -> int | None:
        avail = rnd.bw_bps / (1.0 + rnd.inflight + rnd.added_n)
        ok = closer & (net < c.t_net_s) & np.isfinite(cost)
        return _argmin_where(-avail, ok)


AGENTS: dict[str, type[_Agent]] = {a.name: a for a in (ShareOnAgent, ProcessingOnlyAgent, BandwidthOnlyAgent)}
"""The migrating policies by name; the two placement-only baselines live in the simulator (sim/shareon.py)."""
