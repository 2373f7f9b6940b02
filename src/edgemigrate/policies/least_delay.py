"""LEAST_DELAY: a per-decision expert that puts each task where its estimated T_k is least (Liu et al. 2024,
eqs. 1-10).

Written as a *strong* expert for PPCM's demonstrations (the controlled PPCM experiment: is PPCM weak because its
expert in Liu et al. 2024, DEP_SOFT, is weak in our model?). Unlike GA/DE/PSO it never searches: for every queued
task, in queue order, it evaluates Liu et al. 2024's cost model on every feasible choice (the N edge nodes and the
cloud) from what :class:`~edgemigrate.sim.view.SimView` exposes, and takes the cheapest. With one task per call
(the env's ``act``) this is exactly "pick the feasible node (or the cloud) of least estimated T_k".

Estimate for task k on choice j (seconds), following Liu et al. 2024, sec. III-B:

* M_j - eq. (1): migrations only, ``service_bytes * 8 / min(eta_prev, eta_j) + sigma_migr * hops(prev, j)``,
  0 when j is the previous node;
* D_j - eqs. (2)-(3): the node's download-queue backlog (when a layer is missing) + missing bytes * 8 / b_j
  (:meth:`SimView.download_estimate_s`);
* C_j - eq. (6): ``(w_j + c_k) / f_j`` with w_j the node's current workload in cycles;
* B_j - eq. (9): ``s_k * 8 / eta_j^bh + sigma^bh * hops(access, j)``;
* T_j = max(M_j, D_j) + C_j + D_j + B_j - eq. (10) with S = max(M, D) + sigma^wait w (eq. 5) and
  P = max(A, D) (eq. 8). The waiting term sigma^wait w and the upload A are the same for every choice (A depends
  only on the user's radio link, which the view does not expose), so P is estimated by D; this keeps the ranking
  of eq. (10) except where A > D on several nodes, where it slightly over-weights the download.

Within one call the policy updates its own copy of the state after each pick (workload, containers, layers now
on their way, download backlog), so a tick's queue does not pile onto the node that looked best at its start.
Feasibility: the simulator's mask (eq. 11 container cap, eq. 12 storage/CPU thresholds, service range) at the
start of the call plus the container count of the call's own picks; the cloud is always feasible.

Limitation (measured): the view reports a layer that is still downloading as present and exposes no per-layer
completion time, so a node pulling a layer the task needs looks download-free. On ``ppcm-paper`` (where C
dominates T_k) this expert is strong - 11.6 s vs DEP_SOFT's 33.7 s per task at 120 tasks/min over 20 ticks,
close to GA - but in download-dominated worlds (tests' synthetic world: 30 layers of up to 300 MB) it piles
tasks onto in-flight downloads and loses to DEP_SOFT (102.8 s vs 88.9 s per task).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.units import BITS_PER_BYTE
from edgemigrate.policies.base import POLICIES, BatchPolicy
from edgemigrate.sim.view import SimView


def separable_parts_s(view: SimView, tasks: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """(K, N+1) estimated M (eq. 1), C (eq. 6) and B (eq. 9) of each task on each choice: the parts that do not
    depend on where the other tasks go (GA/DE/PSO's per-task cost in
    :func:`edgemigrate.policies.search.problem_from_view`)."""
    tasks = np.asarray(tasks, dtype=np.int64)
    n1 = view.n_nodes + 1
    data = view.task_attr("data_bytes", tasks).astype(np.float64)
    cycles = view.task_attr("cycles", tasks).astype(np.float64)
    comp = (view.load_cycles()[None, :] + cycles[:, None]) / view.cpu_hz[None, :]
    hops = view.hops
    access = view.access_node(tasks)
    backhaul = data[:, None] * BITS_PER_BYTE / view.backhaul_bps[None, :] + view.backhaul_s_per_hop * hops[access]
    move = np.zeros((tasks.size, n1))
    prev = view.task_attr("prev_node", tasks)
    moving = prev >= 0
    if moving.any():
        p = prev[moving]
        bps = np.minimum(view.backhaul_bps[p][:, None], view.backhaul_bps[None, :])
        h = hops[p]
        mv = (view.task_attr("service_bytes", tasks)[moving][:, None] * BITS_PER_BYTE / bps
              + view.task_attr("migration_s_per_hop", tasks)[moving][:, None] * h)
        move[moving] = np.where(h > 0, mv, 0.0)
    return {"move_s": move, "computation_s": comp, "backhaul_s": backhaul}


def delay_parts_s(view: SimView, tasks: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """(K, N+1) estimated M (eq. 1), D (eqs. 2-3), C (eq. 6) and B (eq. 9) of each task on each choice."""
    parts = separable_parts_s(view, tasks)
    return {"move_s": parts["move_s"], "download_s": view.download_estimate_s(np.asarray(tasks, dtype=np.int64)),
            "computation_s": parts["computation_s"], "backhaul_s": parts["backhaul_s"]}


def combine_s(move_s: NDArray[np.float64], download_s: NDArray[np.float64], computation_s: NDArray[np.float64],
              backhaul_s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Eq. (10) without the choice-independent terms: max(M, D) + C + D + B (module docstring)."""
    return np.asarray(np.maximum(move_s, download_s) + computation_s + download_s + backhaul_s, dtype=np.float64)


def estimate_delay_s(view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.float64]:
    """(K, N+1) estimated T_k (up to the choice-independent wait and upload terms) from the current state."""
    return combine_s(**delay_parts_s(view, tasks))


@POLICIES.register("least_delay")
class LeastDelay(BatchPolicy):
    """Per task, the feasible edge node or the cloud of least estimated T_k (Liu et al. 2024, eqs. 1-10); ties at
    random. A strong, search-free expert for PPCM's demonstrations (``--expert least_delay``)."""

    name = "least_delay"

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        tasks = np.asarray(tasks, dtype=np.int64)
        out = np.full(tasks.size, view.cloud, dtype=np.int64)
        if tasks.size == 0:
            return out
        n, n1 = view.n_nodes, view.n_nodes + 1
        mask = view.mask(tasks)
        mask[:, n] = True
        layers = view.task_layers(tasks)
        sizes = view.layer_sizes_bytes.astype(np.float64)
        cycles = view.task_attr("cycles", tasks).astype(np.float64)
        cpu_hz = view.cpu_hz.astype(np.float64)
        wired = view.wired_bps.astype(np.float64)
        room = (view.max_containers - view.containers()).astype(np.int64)
        room[n] = np.iinfo(np.int64).max
        parts = delay_parts_s(view, tasks)
        # what the call's own picks change: C (eq. 6, more workload) and D (eqs. 2-3, more backlog, fewer
        # missing layers); backlog0 = each node's queue backlog as D's estimate saw it (where a layer was missing)
        download0 = parts["download_s"]
        missing0 = view.missing_bytes(tasks)
        backlog0 = np.where(missing0 > 0, download0 - missing0 * BITS_PER_BYTE / wired[None, :], 0.0)
        present = view.layer_present()
        extra_load = np.zeros(n1)
        extra_backlog_s = np.zeros(n1)
        extra_layers = np.zeros_like(present)
        for k in range(tasks.size):
            move, comp, bh = parts["move_s"][k], parts["computation_s"][k] + extra_load / cpu_hz, parts["backhaul_s"][k]
            download = download0[k]
            if k:
                missing = (layers[k][None, :] & ~present & ~extra_layers).astype(np.float64) @ sizes
                download = np.where(missing > 0, backlog0[k] + extra_backlog_s + missing * BITS_PER_BYTE / wired,
                                    0.0)
            row = combine_s(move, download, comp, bh)
            cand = np.flatnonzero(mask[k] & (room > 0))
            best = row[cand].min()
            ties = cand[row[cand] <= best + 1e-9 * max(abs(best), 1.0)]
            j = int(ties[self.rng.integers(ties.size)]) if ties.size > 1 else int(ties[0])
            out[k] = j
            if j < n:
                room[j] -= 1
                pulled = layers[k] & ~present[j] & ~extra_layers[j]
                extra_backlog_s[j] += float(pulled.astype(np.float64) @ sizes) * BITS_PER_BYTE / wired[j]
                extra_layers[j] |= layers[k]
                extra_load[j] += cycles[k]  # the cloud's workload is not charged (SimView.load_cycles: 0)
        return out
