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
   with the container's own load and that of the migrations already heading to ``j`` added) is below the
   measured one (line 4);
4. among those, keep the ones whose migration cost ``C_m`` - the container's state over ``b_ij`` shared with
   the migrations already heading there (or leaving this node, if more) - is below ``C_m,th`` (lines 13-14),
   and pick the lowest estimated total latency.

Within one round an agent counts its own choices: a container it has just sent to ``j`` adds its load to
``j``'s utilisation and one more migration to ``j``'s in-flight count for the next container, so one stale
report does not send a whole shortlist to the same node; and the load it sends away lowers its own
estimated processing latency for the containers still to be decided, so a node sheds what brings it under
``t_app,th`` instead of everything that could be faster elsewhere (without this, a node decided from the
latencies measured before any container left, and at 10 Gbit/s - where the cost threshold no longer binds -
nodes traded containers every few seconds: ``docs/shareon.md``). Counting the reported in-flight migrations in the
destination's compute, not only in its bandwidth, is our reading of sec. III-C ("considering the available
inter-edge bandwidth and compute"); ``docs/shareon.md`` shows what it changes.

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
    lower the estimate must be than the measurement (the paper's strict ``<`` is ``0``; measured latency is
    noisy and reports are stale, and with ``0`` nodes trade containers back and forth for gains inside the
    noise - ``docs/shareon.md``); ``admit_util_high``: the utilisation a destination must stay below when it
    admits a migration (``costs.shareon.admits``, ours; ``None``: destinations admit everything, the paper's
    Algorithm 2 alone); ``max_alternatives``: how many further candidates, best first, a decision carries for
    the source to ask if the first refuses.
    """

    thresholds: RegionThresholds
    t_app_th_s: float = 0.1
    l_d_s_per_m: float = 2e-6
    user_latency_s: float = 0.01
    cost_th_s: float = 3.0
    near_m: float = 1000.0
    min_gain_s: float = 0.02
    admit_util_high: float | None = 0.85
    max_alternatives: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.thresholds, RegionThresholds):
            raise ValidationError("thresholds: expected a costs.shareon.RegionThresholds")
        for key in ("t_app_th_s", "cost_th_s", "near_m"):
            _check(getattr(self, key), key, positive=True)
        for key in ("l_d_s_per_m", "user_latency_s", "min_gain_s"):
            _check(getattr(self, key), key, positive=False)
        if self.admit_util_high is not None:
            _check(self.admit_util_high, "admit_util_high", positive=True)
        if isinstance(self.max_alternatives, bool) or not isinstance(self.max_alternatives, int) \
                or not 0 <= self.max_alternatives <= 16:
            raise ValidationError(f"max_alternatives: expected an integer in [0, 16], got {self.max_alternatives!r}")


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
    inv_cpu: F64 = field(init=False)

    def __post_init__(self) -> None:
        # shaped like the neighbour arrays: (K,) for one node, (containers, K) when a simulator screens many
        self.added_hz = np.zeros_like(self.x)
        self.added_n = np.zeros_like(self.x)
        # 1 / capacity, inf for a node reporting none: any load on it then estimates as infinitely slow
        self.inv_cpu = np.divide(1.0, self.cpu_hz, out=np.full(self.cpu_hz.shape, np.inf), where=self.cpu_hz > 0)


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
        slow = [c for c in view.containers if not c.migrating and c.t_net_s + c.t_proc_s > th]
        slow.sort(key=lambda c: (-c.t_total_s, c.container_id))
        return slow

    def decide(self, view: NodeView) -> list[MigrationDecision]:
        """This node's migrations for this round (possibly none).

        All shortlisted containers are first scored against all neighbours at once as if nothing moved this
        round; this round's own choices only make a destination slower and costlier, so a container with no
        candidate then has none later and is skipped. The others are decided one by one, slowest first, with
        the round's choices added (class docstring of :class:`_Agent`).
        """
        slow = self.shortlist(view)
        if not slow:
            return []
        rnd = self._round(view)
        if not rnd.ids:
            return []
        p, me = self.params, view.me
        cx = np.array([c.x_m for c in slow])
        cy = np.array([c.y_m for c in slow])
        t_net = np.array([c.t_net_s for c in slow])[:, None]
        t_proc = np.array([c.t_proc_s for c in slow])[:, None]
        demand = np.array([c.demand_hz for c in slow])[:, None]
        size = np.array([c.size_bytes for c in slow])[:, None]
        d = np.hypot(rnd.x[None, :] - cx[:, None], rnd.y[None, :] - cy[:, None])
        closer = d < np.hypot(me.x_m - cx, me.y_m - cy)[:, None]
        net = network_latency_s(d, p.l_d_s_per_m, rnd.var_s2[None, :], p.user_latency_s)
        proc, cost = self._estimates(rnd, demand, size, me.outgoing_migrations)
        ok, _ = self.candidates(t_net, t_proc, closer, net, proc, cost, rnd)
        net_ref = p.user_latency_s + p.l_d_s_per_m * p.near_m
        # the load this round sends away, and what it takes off this node's processing latency (the same
        # linear estimate, t_p = t_p,avg + utilFac * alpha_e, with utilFac lowered)
        relief_s_per_hz = float(me.alpha_e_s) / me.cpu_hz if me.cpu_hz > 0 else 0.0
        relief_hz = 0.0
        out: list[MigrationDecision] = []
        for i in np.flatnonzero(ok.any(axis=1)).tolist():
            c = slow[i]
            t_proc_home = c.t_proc_s
            proc_i, cost_i = proc[i], cost[i]
            if out:  # this round's choices changed the destinations and relieved this node: score again
                t_proc_home = max(c.t_proc_s - relief_hz * relief_s_per_hz, 0.0)
                if c.t_net_s + t_proc_home <= p.t_app_th_s:
                    continue  # the containers already leaving bring this one under the threshold
                proc_i, cost_i = self._estimates(rnd, c.demand_hz, c.size_bytes, me.outgoing_migrations + len(out))
            ok_i, score_i = self.candidates(c.t_net_s, t_proc_home, closer[i], net[i], proc_i, cost_i, rnd)
            if not ok_i.any():
                continue
            ranked = np.flatnonzero(ok_i)
            ranked = ranked[np.argsort(np.asarray(score_i)[ranked], kind="stable")]
            j = int(ranked[0])
            rnd.added_hz[j] += c.demand_hz
            rnd.added_n[j] += 1
            relief_hz += c.demand_hz
            reason = slow_reason(c.t_net_s, c.t_proc_s, net_ref, p.t_app_th_s - net_ref)
            alts = tuple(rnd.ids[k] for k in ranked[1:1 + p.max_alternatives].tolist())
            out.append(MigrationDecision(c.container_id, me.node_id, rnd.ids[j], reason,
                                         float(net[i, j] + proc_i[j]), float(cost_i[j]), alts))
        return out

    def _estimates(self, rnd: _Round, demand_hz: float | F64, size_bytes: float | F64,
                   outgoing: int | F64) -> tuple[F64, F64]:
        """Processing latency and migration cost at every neighbour if this container went there.

        Processing: ``t_p,avg + utilFac * alpha_e`` with utilFac raised by this container's load, by the
        containers this round already sent there, and by the migrations the neighbour reported as heading to
        it (each assumed to carry this container's load): sec. III-C chooses "considering the available
        inter-edge bandwidth and compute", and a report's utilFac does not yet include its incoming containers.
        Cost: ``C_m`` over ``b_ij`` shared with the migrations heading to ``j`` or - whichever is more - the
        ones this node is sending, since a transfer gets the smaller share of the two ends' links.
        """
        extra = (rnd.added_hz + (rnd.inflight + 1.0) * demand_hz) * rnd.inv_cpu
        util_after = rnd.util + extra
        proc = processing_latency_s(rnd.t_p_avg_s, util_after, rnd.alpha_e_s)
        sharing = np.maximum(rnd.inflight + rnd.added_n, outgoing)
        return proc, migration_cost_s(size_bytes, rnd.bw_bps, sharing)

    def candidates(self, t_net_s: float | F64, t_proc_s: float | F64, closer: NDArray[np.bool_], net: F64,
                   proc: F64, cost: F64, rnd: _Round) -> tuple[NDArray[np.bool_], F64]:
        """Which neighbours qualify and their score (lower is better); arrays are (containers, neighbours)
        or one container's row."""
        raise NotImplementedError

    def _round(self, view: NodeView) -> _Round:
        nbs = [n for n in view.neighbours if n.report.node_id != view.me.node_id]
        # one (K, 10) array in one call: per-field comprehensions cost more than the decision itself
        a = np.array([(n.report.x_m, n.report.y_m, n.report.cpu_hz, n.report.ram_bytes, n.report.n_containers,
                       n.report.util_fac, n.report.t_p_avg_s, n.report.alpha_e_s, n.report.latency_var_s2,
                       n.report.incoming_migrations, n.bandwidth_bps) for n in nbs],
                     dtype=np.float64).reshape(len(nbs), 11).T
        x, y, cpu, ram, k, util, t_p, alpha, var, inflight, bw = a
        region = util_region(per_container(cpu, k), per_container(ram, k), self.params.thresholds)
        return _Round(ids=tuple(n.report.node_id for n in nbs), x=x, y=y, cpu_hz=cpu, util=util, t_p_avg_s=t_p,
                      alpha_e_s=alpha, var_s2=var, inflight=inflight, bw_bps=bw, favourable=region != UtilRegion.HIGH)


class ShareOnAgent(_Agent):
    """ShareOn's Algorithm 2 on one node (module docstring)."""

    name = "shareon"

    def candidates(self, t_net_s: float | F64, t_proc_s: float | F64, closer: NDArray[np.bool_], net: F64,
                   proc: F64, cost: F64, rnd: _Round) -> tuple[NDArray[np.bool_], F64]:
        total = net + proc
        ok = ((rnd.favourable | closer) & (total < t_net_s + t_proc_s - self.params.min_gain_s)
              & (cost < self.params.cost_th_s))
        return ok, total


class ProcessingOnlyAgent(_Agent):
    """Baseline (sec. VI): to the neighbour of least estimated processing latency; distance and bandwidth
    are ignored (a link with no bandwidth still cannot carry a migration)."""

    name = "processing_only"

    def candidates(self, t_net_s: float | F64, t_proc_s: float | F64, closer: NDArray[np.bool_], net: F64,
                   proc: F64, cost: F64, rnd: _Round) -> tuple[NDArray[np.bool_], F64]:
        return (proc < t_proc_s) & np.isfinite(cost), proc


class BandwidthOnlyAgent(_Agent):
    """Baseline (sec. VI): to a neighbour closer to the user with a lower estimated network latency, the one
    with the most available inter-edge bandwidth ``b_ij / (1 + in-flight)``; the destination's load is ignored."""

    name = "bandwidth_only"

    def candidates(self, t_net_s: float | F64, t_proc_s: float | F64, closer: NDArray[np.bool_], net: F64,
                   proc: F64, cost: F64, rnd: _Round) -> tuple[NDArray[np.bool_], F64]:
        avail = rnd.bw_bps / (1.0 + rnd.inflight + rnd.added_n)
        ok = closer & (net < t_net_s) & np.isfinite(cost)
        return ok, np.broadcast_to(-avail, ok.shape)


AGENTS: dict[str, type[_Agent]] = {a.name: a for a in (ShareOnAgent, ProcessingOnlyAgent, BandwidthOnlyAgent)}
"""The migrating policies by name; the two placement-only baselines live in the simulator (sim/shareon.py)."""
