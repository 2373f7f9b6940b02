"""The per-node agents inside the ShareOn simulator (``sim/shareon.py``): one :class:`NodeView` per deciding
node, built from the reports its neighbours answered at the query tick, then ``agent.decide(view)``.

The simulator hands over arrays; this adapter turns one node's rows into the same frozen view the real
emulation builds from measurements, so both run identical decision code. Only containers over ``t_app,th``
go into a view: Algorithm 2 never looks at the others (line 4). And only nodes where at least one such
container has a candidate destination get a view at all: :meth:`AgentPolicy.screen` scores every slow
container against its node's answered neighbours in one set of array operations, with the agent's own
``_estimates`` and ``candidates`` on (containers, neighbours) arrays - the first, nothing-moved-yet pass of
``decide`` - so a node it drops is one whose agent would return nothing (``tests/policies/shareon/test_sim.py``
checks both shortcuts give the same decisions).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgemigrate.costs.shareon import UtilRegion, admits, network_latency_s, per_container, util_region
from edgemigrate.policies.shareon.agent import AGENTS, ShareOnAgent, ShareOnParams, _Agent, _Round
from edgemigrate.policies.shareon.view import ContainerState, Neighbour, NodeReport, NodeView
from edgemigrate.sim.shareon import DecisionContext, Reports

I64 = NDArray[np.int64]


def node_id(j: int) -> str:
    return f"n{j}"


def container_id(u: int) -> str:
    return f"u{u}"


def node_report(ctx: DecisionContext, reports: Reports, j: int) -> NodeReport:
    """Node ``j``'s report as of ``reports`` (what a query to it returned)."""
    return NodeReport(node_id(j), float(ctx.node_xy_m[j, 0]), float(ctx.node_xy_m[j, 1]), float(ctx.cpu_hz[j]),
                      float(ctx.ram_bytes[j]), int(reports.n_containers[j]), float(reports.util_fac[j]),
                      ctx.t_p_avg_s, float(reports.alpha_e_s[j]), float(reports.latency_var_s2[j]),
                      int(reports.incoming[j]), int(reports.outgoing[j]))


def node_view(ctx: DecisionContext, row: int, users: I64, cache: dict[int, NodeReport]) -> NodeView:
    """The view of ``ctx.deciders[row]`` with the containers ``users`` (all hosted by it)."""
    i = int(ctx.deciders[row])
    nbs = []
    for k, j in enumerate(ctx.neighbours[row].tolist()):
        if not ctx.answered[row, k]:
            continue
        rep = cache.get(j)
        if rep is None:
            rep = cache[j] = node_report(ctx, ctx.reports, j)
        nbs.append(Neighbour(rep, ctx.bandwidth_bps, ctx.age_s))
    conts = tuple(
        ContainerState(container_id(u), float(ctx.user_xy_m[u, 0]), float(ctx.user_xy_m[u, 1]), ctx.container_bytes,
                       float(ctx.demand_hz[u]), float(ctx.t_net_s[u]), float(ctx.t_proc_s[u]), bool(ctx.migrating[u]))
        for u in users.tolist())
    return NodeView(ctx.now_s, node_report(ctx, ctx.now, i), conts, tuple(nbs))


class AgentPolicy:
    """A ``sim.shareon.MigrationPolicy`` that runs one agent per deciding node."""

    def __init__(self, agent: _Agent, *, screen: bool = True) -> None:
        self.agent = agent
        self.name = agent.name
        self.screen_nodes = screen
        p = agent.params
        if isinstance(agent, ShareOnAgent) and p.admit_util_high is not None:
            self.admission = self._admits  # the simulator's destination-side check (sim.shareon.Admission)

    def _admits(self, cpu_hz: float, ram_bytes: float, n_containers: int, util_fac: float, reserved_n: int,
                reserved_hz: float, demand_hz: float) -> bool:
        p = self.agent.params
        return bool(admits(cpu_hz, ram_bytes, n_containers, util_fac, reserved_n, reserved_hz, demand_hz,
                           p.thresholds, float(p.admit_util_high or 0.0)))

    @classmethod
    def by_name(cls, name: str, params: ShareOnParams) -> AgentPolicy:
        return cls(AGENTS[name](params))

    def screen(self, ctx: DecisionContext, users: I64, row_of: I64) -> I64:
        """The nodes (ids) among the hosts of ``users`` (slow containers) where some container has a candidate."""
        p = self.agent.params
        rows = row_of[ctx.host[users]]
        nb = ctx.neighbours[rows]
        rep = ctx.reports
        region = util_region(per_container(ctx.cpu_hz, rep.n_containers),
                             per_container(ctx.ram_bytes, rep.n_containers), p.thresholds)
        rnd = _Round(ids=(), x=ctx.node_xy_m[nb, 0], y=ctx.node_xy_m[nb, 1], cpu_hz=ctx.cpu_hz[nb],
                     util=rep.util_fac[nb], t_p_avg_s=np.full(nb.shape, ctx.t_p_avg_s), alpha_e_s=rep.alpha_e_s[nb],
                     var_s2=rep.latency_var_s2[nb], inflight=rep.incoming[nb].astype(np.float64),
                     bw_bps=np.full(nb.shape, ctx.bandwidth_bps), favourable=region[nb] != UtilRegion.HIGH)
        ux, uy = ctx.user_xy_m[users, 0][:, None], ctx.user_xy_m[users, 1][:, None]
        d = np.hypot(rnd.x - ux, rnd.y - uy)
        me = ctx.node_xy_m[ctx.host[users]]
        closer = d < np.hypot(me[:, 0:1] - ux, me[:, 1:2] - uy)
        net = network_latency_s(d, p.l_d_s_per_m, rnd.var_s2, p.user_latency_s)
        proc, cost = self.agent._estimates(rnd, ctx.demand_hz[users][:, None], ctx.container_bytes,
                                           ctx.now.outgoing[ctx.host[users]][:, None].astype(np.float64))
        ok, _ = self.agent.candidates(ctx.t_net_s[users][:, None], ctx.t_proc_s[users][:, None], closer, net, proc,
                                      cost, rnd)
        ok &= ctx.answered[rows]
        return np.unique(ctx.host[users[ok.any(axis=1)]])

    def views(self, ctx: DecisionContext) -> list[NodeView]:
        """The views of the deciding nodes that have a container over ``t_app,th`` (the others move nothing)
        and, unless built with ``screen=False``, a candidate destination for one of them (module docstring)."""
        slow = (ctx.t_net_s + ctx.t_proc_s > self.agent.params.t_app_th_s) & ~ctx.migrating
        row_of = np.full(ctx.cpu_hz.shape[0], -1, dtype=np.int64)
        row_of[ctx.deciders] = np.arange(ctx.deciders.size)
        users = np.flatnonzero(slow & (row_of[ctx.host] >= 0))
        if users.size and self.screen_nodes:
            users = users[np.isin(ctx.host[users], self.screen(ctx, users, row_of))]
        if users.size == 0:
            return []
        users = users[np.argsort(ctx.host[users], kind="stable")]
        hosts = ctx.host[users]
        starts = np.flatnonzero(np.r_[True, hosts[1:] != hosts[:-1]])
        ends = np.r_[starts[1:], users.size]
        cache: dict[int, NodeReport] = {}
        return [node_view(ctx, int(row_of[hosts[s]]), users[s:e], cache)
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def decide(self, ctx: DecisionContext) -> tuple[I64, I64]:
        """(users, candidates): one row per decision, its destination then its alternatives, -1 padded."""
        width = 1 + self.agent.params.max_alternatives
        us: list[int] = []
        ds: list[list[int]] = []
        for view in self.views(ctx):
            for d in self.agent.decide(view):
                us.append(int(d.container_id[1:]))
                row = [int(n[1:]) for n in (d.destination_id, *d.alternatives)]
                ds.append(row + [-1] * (width - len(row)))
        return np.asarray(us, dtype=np.int64), np.asarray(ds, dtype=np.int64).reshape(len(us), width)
