"""The orchestrated planner of Ngo et al. 2020, sec. IV-A: max G - C (eqs. 1-3a) s.t. 3b-3e, as a MILP.

One binary z_ub's' per candidate (user, BS', server') pair. Rows: 3b (one pair per user, equality), 3c
(CPU cores, memory and disk per server, each row divided by the capacity so all coefficients are <= 1),
3e (at most N_b' users per BS). 3d is not a row: pairs whose BS the user cannot hear well enough now or at
t' are never created. The objective minimises sum n_u d_ub's' + DT (see ``estimate.pair_cost_s``), which has
the same argmax as G - C. Rows that cannot bind (the candidates' total demand fits) are left out.

Solver: HiGHS through ``highspy``, fed the column-wise sparse matrix in one ``passModel`` call. Why this and
not PuLP + CBC (the paper's solver): PuLP builds every term as a Python object and hands CBC the model
through an MPS file and a subprocess, per planning round; ``highspy`` takes NumPy arrays in-process. It is
maintained by the HiGHS team (HiGHS is also the solver behind SciPy's ``milp``), its wheels carry the solver
for Linux, macOS and Windows (no system package), and it solves the pruned 200 users x 50 servers x 50 BSs
round in well under a second on a 2-core machine (``benchmarks/bench_planner.py`` prints the numbers).

Pruning: per user the ``k`` cheapest pairs by their own objective coefficient, plus the cheapest pair that
keeps its current server (no migration) and the cheapest pair on each cloud server. Capacities push a user
off its cheapest pairs only under contention; the two fallbacks keep the model feasible in that case (the
current server already holds the container; the cloud is large). If the pruned model is still infeasible
the planner solves the unpruned one before giving up, so pruning never turns a feasible round infeasible.
The benchmark reports the objective gap against the unpruned model: on its 200 x 50 x 50 instances (seeds
0-2), k = 8 keeps ~1,800 of ~36,000 admissible pairs and loses 0, 0 and 0.007 % of the optimum; k = 2 loses
up to 0.23 %.

Users outside ``Snapshot.replan`` (not triggered this round) keep their current pair as their only column,
so a city-scale round solves for the triggered users while the others still take up capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.planning.base import PLANNERS, PlanningError
from edgemigrate.planning.estimate import Plan, Timing, evaluate, link_ok, pair_cost_s
from edgemigrate.planning.snapshot import Snapshot

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# users per block when pricing all (user, BS, server) pairs: bounds the block to ~2M floats
_BLOCK_PAIRS = 2_000_000


@dataclass(frozen=True, slots=True)
class Candidates:
    """The MILP's columns: parallel arrays of user, BS', server' and the objective coefficient n d + DT."""

    user: I64
    bs: I64
    server: I64
    cost: F64

    @property
    def n(self) -> int:
        return int(self.user.size)


def _need_fits(snap: Snapshot) -> NDArray[np.bool_]:
    """(U, S): the container alone fits the server (3c for one user) - pairs that fail can never be chosen."""
    S, U = snap.servers, snap.users
    fits = np.ones((U.n, S.n), dtype=bool)
    for need, cap in ((U.cpu_cores, S.cpu_cores), (U.memory_bytes, S.memory_bytes), (U.disk_bytes, S.disk_bytes)):
        fits &= need[:, None] <= cap[None, :]
    return fits


def candidates(snap: Snapshot, k: int | None) -> Candidates:
    """All admissible pairs (``k`` None) or the pruned set described in the module docstring.

    Users outside ``snap.replan`` get only their current pair - unless it is no longer admissible (link
    lost at t', a container that no longer fits), in which case they are replanned like the triggered ones.
    The others' pairs are priced per block of users over only the BSs each can use (3d: a handful out of B),
    so pricing costs O(replanned users x usable BSs x S) instead of O(U x B x S).
    """
    U, S = snap.users.n, snap.servers.n
    fits = _need_fits(snap)
    ok = link_ok(snap) & (snap.bss.max_users > 0)[None, :]
    users, cur_bs, cur_srv = np.arange(U), snap.users.bs, snap.users.server
    fixed = np.zeros(U, dtype=bool)
    if snap.replan is not None:
        fixed = ~snap.replan & ok[users, cur_bs] & fits[users, cur_srv]
    parts: list[tuple[I64, I64, I64]] = [(users[fixed], cur_bs[fixed], cur_srv[fixed])]
    free = users[~fixed]
    width = max(1, int(ok[free].sum(axis=1).max(initial=0)))
    slots = np.argsort(~ok[free], axis=1, kind="stable")[:, :width]  # usable BSs first, then padding
    block = max(1, _BLOCK_PAIRS // (width * S))
    clouds = np.flatnonzero(snap.servers.is_cloud)
    for lo in range(0, free.size, block):
        us, bs = free[lo:lo + block], slots[lo:lo + block]
        cost = pair_cost_s(snap, us[:, None, None], bs[:, :, None], np.arange(S)[None, None, :])
        cost = np.where(fits[us][:, None, :] & ok[us[:, None], bs][:, :, None], cost, np.inf)
        flat = cost.reshape(us.size, width * S)
        if k is None or k >= width * S:
            rows, cols = np.nonzero(np.isfinite(flat))
        else:
            rows, cols = _pruned(flat, cost, cur_srv[us], clouds, k)
        slot, server = np.divmod(cols, S)
        parts.append((us[rows], bs[rows, slot], server))
    user, bs_all, server = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(3))
    key = np.unique((user * snap.bss.n + bs_all) * S + server)  # sorted by user; drops repeated picks
    user, rest = np.divmod(key, snap.bss.n * S)
    bs_all, server = np.divmod(rest, S)
    missing = np.setdiff1d(users, user)
    if missing.size:
        u = int(missing[0])
        raise PlanningError(f"user {u}: no (BS, server) pair is admissible - no BS with RSSI >= "
                            f"{snap.min_rssi_dbm:g} dBm now and at t' (3d) or no server its container fits (3c)")
    return Candidates(user=user, bs=bs_all, server=server, cost=pair_cost_s(snap, user, bs_all, server))


def _pruned(flat: F64, cost: F64, current: I64, clouds: I64, k: int) -> tuple[I64, I64]:
    """(row, column) of the k cheapest pairs per row, the cheapest on the current server and on each cloud."""
    n, width, S = cost.shape
    picks = [np.argpartition(flat, k - 1, axis=1)[:, :k]]
    picks.append((np.argmin(cost[np.arange(n), :, current], axis=1) * S + current)[:, None])
    for c in clouds:
        picks.append((np.argmin(cost[:, :, c], axis=1) * S + c)[:, None])
    cols = np.concatenate(picks, axis=1)
    rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)
    keep = np.isfinite(flat[rows, cols])
    return rows[keep], cols[keep]


def _rows(snap: Snapshot, cand: Candidates) -> tuple[list[I64], list[I64], list[F64], list[float], list[float]]:
    """COO pieces (row, col, value) and row bounds of 3b, 3c and 3e; non-binding 3c/3e rows are skipped."""
    U, S = snap.users, snap.servers
    cols = np.arange(cand.n)
    r_idx, c_idx, vals = [cand.user], [cols], [np.ones(cand.n)]
    lower, upper = [1.0] * U.n, [1.0] * U.n  # 3b
    nrow = U.n
    for need, cap in ((U.cpu_cores, S.cpu_cores), (U.memory_bytes, S.memory_bytes), (U.disk_bytes, S.disk_bytes)):
        demand = np.bincount(cand.server, weights=need[cand.user], minlength=S.n)
        binding = np.flatnonzero(np.isfinite(cap) & (demand > cap))  # 3c rows that can be violated
        row_of = np.full(S.n, -1)
        row_of[binding] = nrow + np.arange(binding.size)
        sel = (row_of[cand.server] >= 0) & (need[cand.user] > 0)
        r_idx.append(row_of[cand.server[sel]])
        c_idx.append(cols[sel])
        vals.append(need[cand.user[sel]] / cap[cand.server[sel]])
        lower += [-np.inf] * binding.size
        upper += [1.0] * binding.size
        nrow += binding.size
    users_per_bs = np.bincount(cand.bs, minlength=snap.bss.n)  # upper bound on a BS's users (with repeats)
    binding = np.flatnonzero(snap.bss.max_users < users_per_bs)
    row_of = np.full(snap.bss.n, -1)
    row_of[binding] = nrow + np.arange(binding.size)
    sel = row_of[cand.bs] >= 0
    r_idx.append(row_of[cand.bs[sel]])
    c_idx.append(cols[sel])
    vals.append(np.ones(int(sel.sum())))
    lower += [-np.inf] * binding.size
    upper += [float(n) for n in snap.bss.max_users[binding]]
    return r_idx, c_idx, vals, lower, upper


def solve(snap: Snapshot, cand: Candidates, mip_rel_gap: float = 5e-3,
          time_limit_s: float | None = None) -> tuple[I64 | None, bool]:
    """Solve the MILP over ``cand``; returns (chosen candidate per user or None if infeasible, proven optimal)."""
    r_idx, c_idx, vals, lower, upper = _rows(snap, cand)
    nrow = len(lower)
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(r_idx), np.concatenate(c_idx))),
                      shape=(nrow, cand.n))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = cand.n, nrow
    lp.col_cost_ = cand.cost
    lp.col_lower_ = np.zeros(cand.n)
    lp.col_upper_ = np.ones(cand.n)
    lp.row_lower_ = np.asarray(lower)
    lp.row_upper_ = np.asarray(upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * cand.n
    h = quiet_highs()
    h.setOptionValue("random_seed", 0)  # the same snapshot gives the same plan
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return None, False
    if h.getInfo().primal_solution_status != highspy.SolutionStatus.kSolutionStatusFeasible:
        raise PlanningError(f"HiGHS found no plan: {h.modelStatusToString(status)}")
    x = np.asarray(h.getSolution().col_value) > 0.5
    chosen = np.flatnonzero(x)
    if chosen.size != snap.users.n or np.any(np.bincount(cand.user[chosen], minlength=snap.users.n) != 1):
        raise PlanningError("HiGHS returned a solution that does not give every user exactly one pair (3b)")
    return chosen[np.argsort(cand.user[chosen])], status == highspy.HighsModelStatus.kOptimal


def quiet_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing.

    ``highspy.Highs()`` enables its Python callbacks in the constructor, and that first call writes HiGHS's
    banner to file descriptor 1 before ``output_flag`` can be switched off (HiGHS's maintainers: set
    ``output_flag`` before any other method). Stdout carries our JSON lines, so build the pybind11 base class,
    which makes no such call, and switch the output off first; fall back to the public class if it moves.
    """
    base = getattr(getattr(highspy, "_core", None), "_Highs", None)
    h = base() if base is not None else highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


@PLANNERS.register("orchestrated")
class OrchestratedPlanner:
    """Ngo et al. 2020's planner: MILP placement (sec. IV-A) + coordinated trigger times (sec. IV-B).

    ``k`` is the pruning width (None: every admissible pair); ``time_limit_s`` bounds HiGHS (the best plan
    found so far is returned, with ``Plan.optimal`` False). ``mip_rel_gap`` is where HiGHS may stop: 0.5 %
    by default, because the costs are estimates (RSSI at t', eq. 4's and eq. 5's approximations) far coarser
    than that, and closing the last fraction of a percent on a contended city-scale round takes HiGHS tens of
    seconds instead of about one (``benchmarks/bench_planner.py``). Pass 0 for a proven optimum.
    """

    name = "orchestrated"

    def __init__(self, k: int | None = 8, mip_rel_gap: float = 5e-3, time_limit_s: float | None = None) -> None:
        if k is not None and k < 1:
            raise ValidationError(f"orchestrated planner: k = {k} must be >= 1 (or None for no pruning)")
        if not 0.0 <= mip_rel_gap < 1.0:
            raise ValidationError(f"orchestrated planner: mip_rel_gap = {mip_rel_gap} must be in [0, 1)")
        if time_limit_s is not None and not time_limit_s > 0:
            raise ValidationError(f"orchestrated planner: time_limit_s = {time_limit_s} must be > 0")
        self.k = k
        self.mip_rel_gap = mip_rel_gap
        self.time_limit_s = time_limit_s

    def plan(self, snapshot: Snapshot, rng: np.random.Generator) -> Plan:
        """Solve the pruned model; if it is infeasible the unpruned one; if users held in place by
        ``snapshot.replan`` make even that infeasible, replan everyone rather than return no plan."""
        attempts = [(snapshot, self.k)]
        if self.k is not None:
            attempts.append((snapshot, None))
        if snapshot.replan is not None:
            attempts.append((replace(snapshot, replan=None), None))
        for snap, k in attempts:
            cand = candidates(snap, k)
            chosen, optimal = solve(snap, cand, self.mip_rel_gap, self.time_limit_s)
            if chosen is not None:
                return evaluate(snapshot, self.name, cand.server[chosen], cand.bs[chosen], Timing.COORDINATED,
                                optimal=optimal, candidates=cand.n)
        raise PlanningError("no plan satisfies 3b-3e: too little server capacity (3c) or BS room (3e) "
                            "for the users' admissible pairs")
