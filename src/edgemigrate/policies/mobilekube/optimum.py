"""The exact per-step optimum of Mobile-Kube's eq. 2 - the reference line RL papers do not show.

For the stations the agent sees, minimise the normalised eq. 2 cost (``costs/mobilekube.py``)
``w1 * p_total / (m p_max) + w2 * d_total / d_floor`` subject to constraints 3-4, as a MILP:

- binaries ``x[j, i]`` (container j on node i) and ``y[i]`` (node i powered);
- one node per container: ``sum_i x[j, i] = 1``;
- capacity (3, 4) and switching on: ``sum_j cpu_j x[j, i] <= C_i y[i]`` and the same for memory, plus
  ``x[j, i] <= y[i]`` (implied by the capacity rows, kept because it tightens the LP relaxation);
- eq. 7-8's power is linear in these: ``idle * y[i] + (max - idle) * sum_j cpu_j x[j, i] / C_i``; eq. 6's
  mean delay is ``sum_j sum_i x[j, i] * (sum of delays of j's users to node i) / o``.

HiGHS (``highspy``, as ``planning/milp.py``) solves it with a zero relative gap, so the answer is optimal
to HiGHS's feasibility tolerance; the tests compare it with brute-force enumeration on small instances. A
48-user x 8-node step has 136 binaries (``benchmarks/bench_mobilekube.py`` times it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.costs.mobilekube import Problem
from edgemigrate.planning.milp import quiet_highs
from edgemigrate.policies.mobilekube.base import AGENTS, state


class OptimumError(EdgeMigrateError):
    """HiGHS found no optimal placement (cannot happen for a valid env config; reported, not hidden)."""


def solve_placement(p: Problem, user_station: NDArray[np.int64]) -> tuple[NDArray[np.int64], float]:
    """The eq. 2 optimum for these stations: (placement, normalised cost)."""
    m, n, o = p.n_nodes, p.n_containers, p.n_users
    delay = np.zeros((n, m))
    np.add.at(delay, p.user_service, p.delay_sn_s[user_station])
    # columns: x[j, i] at j * m + i, then y[i] at n * m + i
    nx = n * m
    scale_p = p.w1 / (m * p.power.max_w)
    cost_x = (scale_p * (p.power.max_w - p.power.idle_w) * (p.cpu[:, None] / p.node_cpu[None, :])
              + p.w2 * delay / (o * p.latency_floor_s)).ravel()
    cost = np.concatenate([cost_x, np.full(m, scale_p * p.power.idle_w)])
    jj, ii = np.divmod(np.arange(nx), m)
    rows, cols, vals = [jj], [np.arange(nx)], [np.ones(nx)]          # one node per container: rows 0..n-1
    rows += [n + ii, nx + n + ii]                                      # CPU rows n..n+m-1, memory rows next
    cols += [np.arange(nx), np.arange(nx)]
    vals += [p.cpu[jj] / p.node_cpu[ii], p.mem_bytes[jj] / p.node_mem_bytes[ii]]
    rows += [n + np.arange(m), nx + n + np.arange(m)]                  # ... minus y[i] (capacity 1 when on)
    cols += [nx + np.arange(m)] * 2
    vals += [-np.ones(m)] * 2
    link0 = nx + n + m                                                 # x[j, i] - y[i] <= 0
    rows += [link0 + np.arange(nx), link0 + np.arange(nx)]
    cols += [np.arange(nx), nx + ii]
    vals += [np.ones(nx), -np.ones(nx)]
    n_rows = link0 + nx
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_rows, nx + m))
    lower = np.concatenate([np.ones(n), np.full(n_rows - n, -np.inf)])
    upper = np.concatenate([np.ones(n), np.zeros(n_rows - n)])
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nx + m, n_rows
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(nx + m)
    lp.col_upper_ = np.ones(nx + m)
    lp.row_lower_, lp.row_upper_ = lower, upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr
    lp.a_matrix_.index_ = a.indices
    lp.a_matrix_.value_ = a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * (nx + m)
    h = quiet_highs()
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise OptimumError(f"HiGHS found no optimal placement: {h.modelStatusToString(status)}")
    x = np.asarray(h.getSolution().col_value[:nx]).reshape(n, m)
    placement = x.argmax(axis=1).astype(np.int64)
    return placement, float(h.getInfo().objective_function_value)


@AGENTS.register("optimum")
class Optimum:
    """Solves eq. 2 exactly every step (knows the stations it is scored on, so no agent can beat it)."""

    name = "optimum"

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]:
        p, stations, _ = state(info)
        return solve_placement(p, stations)[0]
