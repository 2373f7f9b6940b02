"""The per-node agents inside the ShareOn simulator (``sim/shareon.py``): one :class:`NodeView` per deciding
node, built from the reports its neighbours answered at the query tick, then ``agent.decide(view)``.

The simulator hands over arrays; this adapter turns one node's rows into the same frozen view the real
emulation builds from measurements, so both run identical decision code. Only containers over ``t_app,th``
go into a view: Algorithm 2 never looks at the others (line 4), and skipping them keeps a round over
thousands of nodes cheap (``tests/policies/shareon/test_simpolicy.py`` checks the decisions are the same).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgemigrate.policies.shareon.agent import AGENTS, ShareOnParams, _Agent
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

    def __init__(self, agent: _Agent) -> None:
        self.agent = agent
        self.name = agent.name

    @classmethod
    def by_name(cls, name: str, params: ShareOnParams) -> AgentPolicy:
        return cls(AGENTS[name](params))

    def views(self, ctx: DecisionContext) -> list[NodeView]:
        """The views of the deciding nodes that have a container over ``t_app,th`` (the others move nothing)."""
        slow = (ctx.t_net_s + ctx.t_proc_s > self.agent.params.t_app_th_s) & ~ctx.migrating
        row_of = np.full(ctx.cpu_hz.shape[0], -1, dtype=np.int64)
        row_of[ctx.deciders] = np.arange(ctx.deciders.size)
        users = np.flatnonzero(slow & (row_of[ctx.host] >= 0))
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
        us: list[int] = []
        ds: list[int] = []
        for view in self.views(ctx):
            for d in self.agent.decide(view):
                us.append(int(d.container_id[1:]))
                ds.append(int(d.destination_id[1:]))
        return np.asarray(us, dtype=np.int64), np.asarray(ds, dtype=np.int64)
