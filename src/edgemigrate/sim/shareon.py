"""A city-scale simulator for ShareOn (Maheshwari et al. 2018, secs. V-VI): users offloading a real-time
recognition service to edge nodes, with per-node migration agents that see their neighbours only through
delayed, periodic queries.

Why not the PPCM engine (``sim/engine.py``): that engine places short *tasks* with image layers and a
queue; ShareOn moves long-lived per-user *containers* that serve a continuous request stream, so the state
is one host per user, a per-node request load and a set of in-flight transfers. What is shared: users move
with any ``mobility`` model (the calibrated taxi-like model by default, imported cabspotting traces as an
option; passed in, since ``mobility`` is not below ``sim``), nodes stand on bundled tower sites (chosen by the
caller), randomness comes from named :class:`~edgemigrate.core.seeding.SeedTree` streams, metrics go to
preallocated columns, and every estimate the agents make comes from :mod:`edgemigrate.costs.shareon`.

State, all NumPy arrays: ``host[u]`` (the node running user u's container), per-node capacity, backlog and
utilisation, per-node moving latency variance, and per-user migration state (destination, bytes left,
downtime left). Every phase is a whole-array expression; the only Python loops are over the users a
placement rule places one by one (session starts) and, inside the policy, over the nodes that have a slow
container when their answers arrive.

One tick of ``dt_s`` seconds, in this order:

1. MOVE      users move (``mobility.step``); an inactive user (trace gap) sends no requests. Each user's
             request rate follows its speed: a stopped taxi's camera sends ``stopped_rate_ratio`` of a moving
             one's requests (it sees the same plates), rescaled so the mean over active users is
             ``rate_rps`` (the configured ``load``). Load thus moves with the traffic, which is what ShareOn
             tracks ("traffic (number of requests per second at a node) as a primary metric", sec. III-C).
2. SESSIONS  a user's session ends with probability ``dt / session_mean_s``; its next one starts at once and
             is placed by the placement rule: the nearest node, or for equal-load the node with the least
             load now (anywhere; ties to the nearest). A new session is not a migration (nothing is moved).
3. LOAD      per node: offered cycles/s (its users' requests/s x cycles per request) over its capacity
             ``C_j`` is the utilisation rho_j. Queueing model: each node is an M/M/c queue with one server per
             core (``cores_per_node``), so a request takes Erlang C's mean response time
             (:func:`mmc_response_s`); above ``rho_cap`` the fluid backlog ``B_j += (offered - rho_cap C_j) dt``
             (between 0 and ``max_wait_s`` of work: clients drop older requests) adds ``B_j / C_j`` of
             waiting, so an overloaded node's latency grows with time instead of jumping to infinity.
4. LATENCY   each user's network latency: access ``user_latency_s`` + ``l_d`` x distance to its host +
             half-normal jitter whose scale is a per-node path quality (log-normal) growing with distance;
             plus, for a container in its stop-and-copy downtime, the mean wait of requests that arrive then.
5. MEASURE   each node updates the moving average of the variance of its requests' latency this tick
             and solves its own alpha_e from its measured processing time (``alpha_from_measurement``); the
             node's report of this tick (position, capacity, containers, utilFac, t_p,avg, alpha_e, var(l),
             incoming migrations) is kept for queries taken now.
6. RECORD    after ``warmup_s``: the request-weighted mean response time and its parts, migrations, bytes.
7. DECIDE    node i queries its neighbours every ``query_period_s`` (its own phase, so nodes do not all decide
             at once); the answers - the reports of step 5 at the query tick, each lost with probability
             ``answer_loss`` - arrive ``ceil(2 query_delay_s / dt)`` ticks later, and then node i's agent decides
             from them and its own current state. The policy returns (user, destination) pairs.
7b. ADMIT    if the policy has a destination-side admission check (ShareOn: ``costs.shareon.admits``), a
             decision is a request to the destination that is answered one round trip later (the same delay as
             a query): the destination admits it only if, with its current state and the migrations it already
             admitted, it stays below High; a refused request goes on to the source's next candidate. Without
             such a check (the baselines, the paper's Algorithm 2 alone) a decision starts the transfer at once.
8. MIGRATE   a migration pre-copies ``container_bytes`` over the inter-edge links: every node has one link of
             ``inter_edge_bps`` shared equally by its concurrent outgoing (and, separately, incoming) transfers,
             a transfer getting the smaller share; the container keeps serving at the source meanwhile. When
             the pre-copy is done the final round (``dirty_fraction`` of the state) is sent during a downtime
             of ``dirty bytes / rate + restore_s``, after which the destination serves.

The sim knows nothing about agents: a :class:`MigrationPolicy` gets a :class:`DecisionContext` (the deciding
nodes, their neighbours' reports as of the query, and the containers) and returns pairs;
``policies/shareon/simpolicy.py`` adapts the per-node agents to it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.seeding import SeedTree
from edgemigrate.core.units import BITS_PER_BYTE, GiB, MiB
from edgemigrate.costs.shareon import alpha_from_measurement

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Placement(enum.Enum):
    """Where a new session's container starts."""

    NEAREST = "nearest"
    EQUAL_LOAD = "equal_load"


@dataclass(frozen=True, slots=True)
class ShareOnSimConfig:
    """Parameters of the simulated city (defaults and their reasons: ``docs/shareon.md``)."""

    dt_s: float = 1.0
    duration_s: float = 1800.0
    warmup_s: float = 300.0
    load: float = 0.6
    """Offered utilisation of the whole system at ``ref_cores`` per node (sets the per-user request rate)."""
    cores_per_node: int = 4
    ref_cores: int = 4
    stopped_rate_ratio: float = 0.2
    """A stopped taxi's camera sees the same plates: it sends this fraction of a moving one's requests."""
    stopped_below_mps: float = 0.5
    core_hz: float = 2.5e9
    t_p_avg_s: float = 0.045
    rho_cap: float = 0.95
    max_wait_s: float = 2.0
    """A node's backlog holds at most this much work: clients give up on requests older than that."""
    ram_bytes: float = 16.0 * GiB
    container_ram_bytes: float = 256.0 * MiB
    container_bytes: float = 100e6
    dirty_fraction: float = 0.1
    restore_s: float = 0.5
    inter_edge_bps: float = 1e9
    user_latency_s: float = 0.015
    l_d_s_per_m: float = 2e-6
    jitter_median_s: float = 0.004
    jitter_sigma: float = 0.5
    jitter_scale_m: float = 5000.0
    var_weight: float = 0.1
    query_period_s: float = 5.0
    query_delay_s: float = 0.05
    answer_loss: float = 0.0
    n_neighbours: int = 8
    session_mean_s: float = 900.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValidationError(f"{f.name}: expected a finite number, got {v!r:.80}")
        zero_ok = {"warmup_s", "dirty_fraction", "restore_s", "jitter_median_s", "jitter_sigma", "query_delay_s",
                   "answer_loss", "l_d_s_per_m", "user_latency_s"}
        for f in fields(self):
            v = getattr(self, f.name)
            if v < 0 or (v == 0 and f.name not in zero_ok):
                raise ValidationError(f"{f.name}: expected a number {'>= 0' if f.name in zero_ok else '> 0'}, "
                                      f"got {v!r}")
        if self.rho_cap >= 1 or self.answer_loss >= 1 or self.var_weight > 1:
            raise ValidationError("rho_cap and answer_loss must be below 1 and var_weight at most 1")
        if self.warmup_s >= self.duration_s:
            raise ValidationError(f"warmup_s ({self.warmup_s:g}) must be below duration_s ({self.duration_s:g})")
        for key in ("n_neighbours", "cores_per_node", "ref_cores"):
            v = getattr(self, key)
            if v != int(v) or not 1 <= v <= 1024:
                raise ValidationError(f"{key}: expected an integer in [1, 1024], got {v!r}")
        if self.stopped_rate_ratio > 1:
            raise ValidationError(f"stopped_rate_ratio: expected at most 1, got {self.stopped_rate_ratio!r}")

    @property
    def cycles_per_request(self) -> float:
        return self.t_p_avg_s * self.core_hz

    def rate_rps(self, n_users: int, n_nodes: int) -> float:
        """Mean requests per second per active user that make the offered utilisation ``load`` at ``ref_cores``
        per node (each tick the rates are rescaled so their mean over active users is this)."""
        return self.load * n_nodes * self.ref_cores * self.core_hz / (n_users * self.cycles_per_request)


def mmc_response_s(cores: int, rho: F64, service_s: float) -> F64:
    """Mean response time of an M/M/c queue (Erlang C) with ``cores`` servers at utilisation ``rho`` < 1.

    ``S + C(c, a) S / (c (1 - rho))`` with ``a = c rho`` offered erlangs and Erlang's C formula
    ``C = (a^c / c!) / (1 - rho) / (sum_{k<c} a^k / k! + (a^c / c!) / (1 - rho))``.
    """
    r = np.asarray(rho, dtype=np.float64)
    a = cores * r
    term = np.ones_like(a)
    head = np.zeros_like(a)
    for k in range(cores):  # head = sum_{k<c} a^k/k!, term ends as a^c/c!
        head += term
        term = term * a / (k + 1)
    tail = term / (1.0 - r)
    c_wait = tail / (head + tail)
    return service_s + c_wait * service_s / (cores * (1.0 - r))


class Positions(Protocol):
    """The part of ``mobility.MobilityModel`` the simulator uses (positions (U, 2) metres, ``active`` mask)."""

    n_users: int
    active: NDArray[np.bool_]

    def reset(self, rng: np.random.Generator) -> F64: ...

    def step(self, dt_s: float) -> F64: ...


@dataclass(frozen=True, slots=True)
class Reports:
    """Every node's report at one tick (step 5): what a neighbour's query returns."""

    step: int
    n_containers: I64
    util_fac: F64
    alpha_e_s: F64
    latency_var_s2: F64
    incoming: I64
    outgoing: I64


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """What the nodes deciding at this tick know (step 7). Arrays over users are for all users; a node may
    only use the rows of its own containers (``host == i``). ``answered[r, k]`` says whether the ``k``-th
    neighbour of ``deciders[r]`` answered; ``reports`` are as of the query tick, ``now`` is the current tick
    (each node's knowledge of itself)."""

    now_s: float
    age_s: float
    deciders: I64
    neighbours: I64
    answered: NDArray[np.bool_]
    node_xy_m: F64
    cpu_hz: F64
    ram_bytes: F64
    t_p_avg_s: float
    bandwidth_bps: float
    reports: Reports
    now: Reports
    host: I64
    user_xy_m: F64
    demand_hz: F64
    t_net_s: F64
    t_proc_s: F64
    migrating: NDArray[np.bool_]
    container_bytes: float


class MigrationPolicy(Protocol):
    """Decides the migrations of the nodes in ``ctx.deciders``: returns (users, destinations) with as many
    rows; ``destinations`` is (M,) or (M, A): each row's candidates best first, padded with -1, the later ones
    asked only if the earlier refuse (:class:`Admission`)."""

    name: str

    def decide(self, ctx: DecisionContext) -> tuple[I64, I64]: ...


class Admission(Protocol):
    """A destination's admission check (a policy that has one offers it as ``policy.admission``): node
    ``dest``'s own current state and the reservations of the migrations it already admitted, and the load of
    the one asking; True admits it."""

    def __call__(self, cpu_hz: float, ram_bytes: float, n_containers: int, util_fac: float, reserved_n: int,
                 reserved_hz: float, demand_hz: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The recorded columns (one row per tick after warm-up)."""

    time_s: F64
    response_s: F64
    net_s: F64
    proc_s: F64
    max_util: F64
    migrations_started: I64
    migrations_done: I64
    migrating: I64


class ShareOnSim:
    """The simulator (module docstring). ``run()`` returns the per-tick records and the totals."""

    def __init__(self, cfg: ShareOnSimConfig, node_xy_m: F64, mobility: Positions, *,
                 placement: Placement = Placement.NEAREST, policy: MigrationPolicy | None = None,
                 seed: int = 0) -> None:
        xy = np.asarray(node_xy_m, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2 or not np.isfinite(xy).all():
            raise ValidationError(f"node_xy_m: expected (N >= 2, 2) finite metres, got shape {xy.shape}")
        self.cfg, self.node_xy, self.mobility = cfg, xy, mobility
        self.placement, self.policy = placement, policy
        self.seeds = SeedTree(seed)
        self.n_nodes, self.n_users = xy.shape[0], int(mobility.n_users)
        self.tree = cKDTree(xy)
        k = min(cfg.n_neighbours, self.n_nodes - 1)
        _, nb = self.tree.query(xy, k=k + 1)
        self.neighbours = np.asarray(nb, dtype=np.int64).reshape(self.n_nodes, k + 1)[:, 1:]
        self.cpu_hz = np.full(self.n_nodes, cfg.cores_per_node * cfg.core_hz)
        self.ram_bytes = np.full(self.n_nodes, cfg.ram_bytes)
        self.rate_rps = cfg.rate_rps(self.n_users, self.n_nodes)
        self.dt = cfg.dt_s
        self.n_steps = int(round(cfg.duration_s / cfg.dt_s))
        self.warmup_steps = int(round(cfg.warmup_s / cfg.dt_s))
        self.period_steps = max(1, int(round(cfg.query_period_s / cfg.dt_s)))
        self.delay_steps = max(1, math.ceil(2 * cfg.query_delay_s / cfg.dt_s - 1e-9))
        self.admission: Admission | None = getattr(policy, "admission", None)

    # -- setup ---------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        cfg, n, u = self.cfg, self.n_nodes, self.n_users
        self.rng = self.seeds.rng("shareon-sim")
        self.pos = np.asarray(self.mobility.reset(self.seeds.rng("mobility")), dtype=np.float64)
        self.phase = self.seeds.rng("query-phase").integers(0, self.period_steps, n)
        self.path_sigma_s = cfg.jitter_median_s * np.exp(cfg.jitter_sigma * self.seeds.rng("paths").standard_normal(n))
        self.backlog = np.zeros(n)
        self.var_s2 = np.zeros(n)
        self.util = np.zeros(n)
        self.host = np.full(u, -1, dtype=np.int64)
        self.mig_dst = np.full(u, -1, dtype=np.int64)
        self.mig_left_bytes = np.zeros(u)
        self.down_left_s = np.zeros(u)
        self.down_total_s = np.zeros(u)
        self.history: dict[int, Reports] = {}
        self.rate = np.full(u, self.rate_rps)
        self.bytes_moved = 0.0
        self.migration_s: list[float] = []
        self.mig_started_at = np.zeros(u)
        self.mig_demand_hz = np.zeros(u)
        self.req_due = np.full(u, -1, dtype=np.int64)
        self.req_src = np.full(u, -1, dtype=np.int64)
        self.req_cands: dict[int, list[int]] = {}
        self.refusals = 0
        self._place(np.arange(u))

    def _place(self, users: I64) -> None:
        """Start new sessions' containers by the placement rule (one user at a time: each sees the others)."""
        if users.size == 0:
            return
        _, nearest = self.tree.query(self.pos[users])
        nearest = np.asarray(nearest, dtype=np.int64).reshape(-1)
        if self.placement is Placement.NEAREST:
            self.host[users] = nearest
            return
        # equal load: the node with the least load now (this tick's rates), each new container adding the mean
        # rate; ties go to the node nearest the user
        cyc = self.cfg.cycles_per_request
        on = self.host >= 0
        load = np.bincount(self.host[on], weights=self.rate[on], minlength=self.n_nodes) * cyc / self.cpu_hz
        step = self.rate_rps * cyc / self.cpu_hz
        for u in users.tolist():
            low = np.flatnonzero(load <= load.min() + 1e-12)
            best = int(low[np.argmin(np.hypot(*(self.node_xy[low] - self.pos[u]).T))])
            self.host[u] = best
            load[best] += step[best]

    # -- one tick --------------------------------------------------------------------------------------------
    def _sessions(self) -> None:
        p = self.dt / self.cfg.session_mean_s
        ended = np.flatnonzero(self.rng.random(self.n_users) < p)
        if ended.size:
            self.host[ended] = -1
            self.mig_dst[ended] = -1
            self.mig_left_bytes[ended] = 0.0
            self.down_left_s[ended] = 0.0
            self.req_due[ended] = -1
            for u in ended.tolist():
                self.req_cands.pop(u, None)
            self._place(ended)

    def _load(self, active: NDArray[np.bool_]) -> tuple[F64, I64]:
        """Step 3: per-node processing time (M/M/c below ``rho_cap``, fluid backlog above) and container count."""
        cfg = self.cfg
        offered = np.bincount(self.host[active], weights=self.rate[active],
                              minlength=self.n_nodes) * cfg.cycles_per_request
        rho = offered / self.cpu_hz
        self.backlog = np.clip(self.backlog + (offered - cfg.rho_cap * self.cpu_hz) * self.dt, 0.0,
                               cfg.max_wait_s * self.cpu_hz)
        service_s = cfg.cycles_per_request / cfg.core_hz
        t_proc = mmc_response_s(cfg.cores_per_node, np.minimum(rho, cfg.rho_cap), service_s)
        self.util = rho
        return t_proc + self.backlog / self.cpu_hz, np.bincount(self.host, minlength=self.n_nodes)

    def _rates(self, prev: F64, active: NDArray[np.bool_]) -> None:
        """Step 2b: each user's request rate this tick, from its speed (moving or stopped), mean ``rate_rps``."""
        cfg = self.cfg
        speed = np.hypot(*(self.pos - prev).T) / self.dt
        w = np.where(speed < cfg.stopped_below_mps, cfg.stopped_rate_ratio, 1.0) * active
        mean_w = w[active].mean() if active.any() else 1.0
        self.rate = w * (self.rate_rps / mean_w)

    def _latency(self, t_proc_node: F64) -> tuple[F64, F64, F64, F64]:
        """Step 4: per-user network and processing latency, the jitter sample, and the downtime wait."""
        cfg = self.cfg
        d = np.hypot(*(self.pos - self.node_xy[self.host]).T)
        sigma = self.path_sigma_s[self.host] * (1.0 + d / cfg.jitter_scale_m)
        jitter = np.abs(self.rng.standard_normal(self.n_users)) * sigma
        t_net = cfg.user_latency_s + cfg.l_d_s_per_m * d + jitter
        down = self.down_left_s > 0
        wait = np.zeros(self.n_users)
        if down.any():  # requests arriving during the downtime wait for its end: half of it on average
            frac = np.minimum(self.down_left_s[down], self.dt) / self.dt
            wait[down] = frac * self.down_total_s[down] / 2.0
        return t_net, t_proc_node[self.host] + wait, jitter, wait

    def _measure(self, step: int, active: NDArray[np.bool_], jitter: F64, t_proc_node: F64,
                 n_containers: I64) -> Reports:
        """Step 5: moving latency variance and alpha_e per node, and this tick's reports."""
        cfg = self.cfg
        h = self.host[active]
        cnt = np.bincount(h, minlength=self.n_nodes)
        seen = cnt > 0
        j = jitter[active]
        s1 = np.bincount(h, weights=j, minlength=self.n_nodes)[seen] / cnt[seen]
        s2 = np.bincount(h, weights=j * j, minlength=self.n_nodes)[seen] / cnt[seen]
        # the paper's "past moving average latency variance": this tick's variance over the node's requests,
        # averaged with weight var_weight (costs.shareon.ewm_update is the per-sample form for a real node)
        w = cfg.var_weight
        self.var_s2[seen] = (1.0 - w) * self.var_s2[seen] + w * np.maximum(s2 - s1 * s1, 0.0)
        alpha = alpha_from_measurement(t_proc_node, cfg.t_p_avg_s, self.util)
        moving = self.mig_dst >= 0
        incoming = np.bincount(self.mig_dst[moving], minlength=self.n_nodes)
        outgoing = np.bincount(self.host[moving], minlength=self.n_nodes)
        return Reports(step, n_containers.astype(np.int64), self.util.copy(), alpha, self.var_s2.copy(),
                       incoming.astype(np.int64), outgoing.astype(np.int64))

    def _decide(self, step: int, t_net: F64, t_proc: F64, now: Reports) -> int:
        """Step 7: the nodes whose answers arrive now decide; returns the number of migrations started."""
        q = step - self.delay_steps
        if self.policy is None or q < 0:
            return 0
        deciders = np.flatnonzero((q - self.phase) % self.period_steps == 0)
        if deciders.size == 0:
            return 0
        cfg = self.cfg
        nb = self.neighbours[deciders]
        migrating = (self.mig_dst >= 0) | (self.down_left_s > 0) | (self.req_due >= 0)
        ctx = DecisionContext(
            now_s=step * self.dt, age_s=self.delay_steps * self.dt, deciders=deciders, neighbours=nb,
            answered=self.rng.random(nb.shape) >= cfg.answer_loss, node_xy_m=self.node_xy, cpu_hz=self.cpu_hz,
            ram_bytes=self.ram_bytes, t_p_avg_s=cfg.t_p_avg_s, bandwidth_bps=cfg.inter_edge_bps,
            reports=self.history[q], now=now, host=self.host, user_xy_m=self.pos,
            demand_hz=self.rate * cfg.cycles_per_request, t_net_s=t_net,
            t_proc_s=t_proc, migrating=migrating, container_bytes=cfg.container_bytes)
        users, dests = self.policy.decide(ctx)
        users, dests = np.asarray(users, dtype=np.int64), np.asarray(dests, dtype=np.int64)
        if dests.ndim == 1:
            dests = dests[:, None]
        if users.ndim != 1 or dests.ndim != 2 or dests.shape[0] != users.size:
            raise ValidationError(f"policy {self.policy.name}: users and destinations differ in shape")
        if users.size == 0:
            return 0
        cands, dests = dests, dests[:, 0]
        in_range = ((users >= 0) & (users < self.n_users) & (dests >= 0) & (cands < self.n_nodes).all(axis=1)
                    & (cands >= -1).all(axis=1))
        if not in_range.all():
            raise ValidationError(f"policy {self.policy.name}: user or node index out of range")
        own = np.isin(self.host[users], deciders)
        if not own.all():  # a node decides only for its own containers: a policy breaking this is a bug
            raise ValidationError(f"policy {self.policy.name}: moved a container its node does not host")
        ok = ~migrating[users] & (dests != self.host[users])
        _, first = np.unique(users, return_index=True)
        ok &= np.isin(np.arange(users.size), first)
        users, dests, cands = users[ok], dests[ok], cands[ok]
        if self.admission is not None:
            # the request travels to the destination and its answer back: one round trip, like a query
            self.req_due[users] = step + self.delay_steps
            self.req_src[users] = self.host[users]
            for u, row in zip(users.tolist(), cands.tolist(), strict=True):
                self.req_cands[u] = [j for j in row if j >= 0 and j != self.host[u]]
            return 0
        self._start(users, dests, step)
        return int(users.size)

    def _start(self, users: I64, dests: I64, step: int) -> None:
        self.mig_dst[users] = dests
        self.mig_left_bytes[users] = self.cfg.container_bytes
        self.mig_started_at[users] = step * self.dt
        self.mig_demand_hz[users] = self.rate[users] * self.cfg.cycles_per_request

    def _admit(self, step: int, now: Reports) -> int:
        """Step 7b: the migration requests whose answer arrives now, in random order (as they reach the
        destinations): each destination checks with its current state and what it already admitted (the
        in-flight migrations heading to it, with the loads their sources declared); a refused request goes
        on to the source's next candidate (one more round trip), or is dropped when there is none. Returns
        the number of migrations started."""
        due = np.flatnonzero(self.req_due == step)
        if due.size == 0 or self.admission is None:
            return 0
        moving = self.mig_dst >= 0
        res_n = np.bincount(self.mig_dst[moving], minlength=self.n_nodes)
        res_hz = np.bincount(self.mig_dst[moving], weights=self.mig_demand_hz[moving], minlength=self.n_nodes)
        started = []
        for u in self.rng.permutation(due).tolist():
            self.req_due[u] = -1
            cands = self.req_cands.pop(u, [])
            if self.host[u] != self.req_src[u] or not cands:  # the session ended meanwhile
                continue
            j, demand = cands[0], float(self.rate[u] * self.cfg.cycles_per_request)
            if self.admission(float(self.cpu_hz[j]), float(self.ram_bytes[j]), int(now.n_containers[j]),
                              float(now.util_fac[j]), int(res_n[j]), float(res_hz[j]), demand):
                res_n[j] += 1
                res_hz[j] += demand
                started.append((u, j))
                continue
            self.refusals += int(step >= self.warmup_steps)
            if len(cands) > 1:
                self.req_cands[u] = cands[1:]
                self.req_due[u] = step + self.delay_steps
        if started:
            us, js = np.array(started, dtype=np.int64).T
            self._start(us, js, step)
        return len(started)

    def _migrate(self, step: int) -> int:
        """Step 8: pre-copy transfers share each node's inter-edge link; finished ones switch host after a
        downtime. Returns the number of migrations whose destination took over this tick."""
        cfg = self.cfg
        np.maximum(self.down_left_s - self.dt, 0.0, out=self.down_left_s)
        pre = np.flatnonzero(self.mig_dst >= 0)
        if pre.size == 0:
            return 0
        src, dst = self.host[pre], self.mig_dst[pre]
        n_out = np.bincount(src, minlength=self.n_nodes)
        n_in = np.bincount(dst, minlength=self.n_nodes)
        rate_bytes_per_s = cfg.inter_edge_bps / BITS_PER_BYTE / np.maximum(n_out[src], n_in[dst])
        self.mig_left_bytes[pre] -= rate_bytes_per_s * self.dt
        done = self.mig_left_bytes[pre] <= 0
        if not done.any():
            return 0
        u = pre[done]
        downtime = cfg.dirty_fraction * cfg.container_bytes / rate_bytes_per_s[done] + cfg.restore_s
        self.host[u] = self.mig_dst[u]
        self.mig_dst[u] = -1
        self.down_left_s[u] = downtime
        self.down_total_s[u] = downtime
        if step >= self.warmup_steps:
            self.bytes_moved += float(u.size) * cfg.container_bytes * (1.0 + cfg.dirty_fraction)
            self.migration_s.extend((step * self.dt + self.dt - self.mig_started_at[u] + downtime).tolist())
        return int(u.size)

    def run(self) -> ShareOnResult:
        """Run ``duration_s`` and return the records after ``warmup_s`` and the totals."""
        self._reset()
        rows = self.n_steps - self.warmup_steps
        rec = {name: np.zeros(rows) for name in ("time_s", "response_s", "net_s", "proc_s", "max_util")}
        counts = {name: np.zeros(rows, dtype=np.int64) for name in ("migrations_started", "migrations_done",
                                                                     "migrating")}
        for step in range(self.n_steps):
            prev = self.pos
            self.pos = np.asarray(self.mobility.step(self.dt), dtype=np.float64)
            active = np.asarray(self.mobility.active, dtype=bool)
            self._rates(prev, active)
            self._sessions()
            t_proc_node, n_containers = self._load(active)
            t_net, t_proc, jitter, _ = self._latency(t_proc_node)
            now = self._measure(step, active, jitter, t_proc_node, n_containers)
            self.history[step] = now
            self.history.pop(step - self.delay_steps - 1, None)
            started = self._admit(step, now) + self._decide(step, t_net, t_proc, now)
            finished = self._migrate(step)
            r = step - self.warmup_steps
            if r >= 0:
                total = (t_net + t_proc)[active]
                rec["time_s"][r] = (step + 1) * self.dt
                rec["response_s"][r] = total.mean() if total.size else np.nan
                rec["net_s"][r] = t_net[active].mean() if total.size else np.nan
                rec["proc_s"][r] = t_proc[active].mean() if total.size else np.nan
                rec["max_util"][r] = float(self.util.max())
                counts["migrations_started"][r] = started
                counts["migrations_done"][r] = finished
                counts["migrating"][r] = int(((self.mig_dst >= 0) | (self.down_left_s > 0)).sum())
        return ShareOnResult(StepRecord(**rec, **counts), self._totals(rec, counts))

    def _totals(self, rec: dict[str, F64], counts: dict[str, I64]) -> dict[str, float]:
        hours = (self.n_steps - self.warmup_steps) * self.dt / 3600.0
        return {
            "mean_response_s": float(np.nanmean(rec["response_s"])),
            "mean_net_s": float(np.nanmean(rec["net_s"])),
            "mean_proc_s": float(np.nanmean(rec["proc_s"])),
            "migrations": float(counts["migrations_started"].sum()),
            "migrations_per_user_h": float(counts["migrations_started"].sum()) / self.n_users / hours,
            "migrated_gb": self.bytes_moved / 1e9,
            "mean_migration_s": float(np.mean(self.migration_s)) if self.migration_s else 0.0,
            "rate_rps": self.rate_rps,
            "mean_max_util": float(np.mean(rec["max_util"])),
            "refusals_per_user_h": self.refusals / self.n_users / hours,
        }


@dataclass(frozen=True, slots=True)
class ShareOnResult:
    records: StepRecord
    totals: dict[str, float]
