"""Compiled inner loop of the APPLY phase.

Placements within a tick depend on each other (a placement changes the containers, CPU, layer cache and
download queue the next one sees), so APPLY is inherently sequential. This loop is compiled with Numba: per
decision it costs about as much as one NumPy call, which keeps 10,000-user ticks within a few milliseconds.

The arithmetic is that of Liu et al. 2024: FIFO layer downloads at the node bandwidth, z_l^n = d_l / b_n
(eq. 2), the task's download delay D = max over its layers of the completion time (eq. 3), and the node
workload w_t seen by the task (eq. 6). The pure functions in ``edgemigrate.costs.four_delay`` are the
reference; tests check the two agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

BITS = 8.0

# The kernels take their arrays in NamedTuples grouped by what they describe, so a call cannot silently swap
# two arrays of the same dtype and shape; Numba compiles and caches NamedTuples of arrays like plain tuples.
# Each kernel reads the fields it needs into locals once, before its loops: the same loops reading the fields
# from the NamedTuples at every access ran about 3x slower per decision (Numba 0.68).


class TaskArrays(NamedTuple):
    """Columns of the task table, indexed by task id (``node`` is written by APPLY)."""

    image: NDArray[np.int64]
    cpu_hz: NDArray[np.float64]
    cycles: NDArray[np.float64]
    node: NDArray[np.int64]
    user: NDArray[np.int64]


class ImageLayers(NamedTuple):
    """Layers of each image in CSR form: image ``i`` uses ``indices[indptr[i]:indptr[i + 1]]``, base first."""

    indptr: NDArray[np.int64]
    indices: NDArray[np.int64]
    layer_bytes: NDArray[np.float64]


class NodeLimits(NamedTuple):
    """Per-row constants (N edge nodes, then the cloud): capacities, thresholds, service range, bandwidth."""

    max_containers: NDArray[np.int64]
    cpu_cap_hz: NDArray[np.float64]  # the eq. 12 CPU threshold
    storage_cap_bytes: NDArray[np.float64]  # the eq. 12 storage threshold on active layers
    storage_bytes: NDArray[np.float64]  # the whole layer cache
    wired_bps: NDArray[np.float64]
    xy_m: NDArray[np.float64]
    coverage_m: NDArray[np.float64]  # inf: serves every user


class NodeArrays(NamedTuple):
    """Mutable per-row state (see :class:`edgemigrate.sim.state.NodeState`); the kernels update it in place."""

    containers: NDArray[np.int64]
    cpu_used_hz: NDArray[np.float64]
    load_cycles: NDArray[np.float64]
    active_bytes: NDArray[np.float64]
    stored_bytes: NDArray[np.float64]
    queue_free_at_s: NDArray[np.float64]
    completion_s: NDArray[np.float64]
    refcount: NDArray[np.int32]
    last_used_s: NDArray[np.float64]


class ApplyOut(NamedTuple):
    """Per-decision results of APPLY, one row per placed task."""

    node: NDArray[np.int64]  # where the task went (the cloud when its choice was infeasible)
    download_s: NDArray[np.float64]  # D of eq. 3
    load_before_cycles: NDArray[np.float64]  # the node workload w_t the task sees (eq. 6)
    fallback: NDArray[np.bool_]


@njit(cache=True)
def _evict(node, short, lo, hi, layers, ns):
    """Drop unused cached layers of ``node`` (least recently used first, never the task's own, which are
    ``layers.indices[lo:hi]``) until ``short`` bytes are free."""
    indices, layer_bytes = layers.indices, layers.layer_bytes
    completion, refcount, last_used = ns.completion_s, ns.refcount, ns.last_used_s
    n_layers = completion.shape[1]
    cand = np.empty(n_layers, dtype=np.int64)
    k = 0
    for layer in range(n_layers):
        if refcount[node, layer] == 0 and completion[node, layer] != np.inf:
            own = False
            for j in range(lo, hi):
                if indices[j] == layer:
                    own = True
                    break
            if not own:
                cand[k] = layer
                k += 1
    keys = np.empty(k)
    for i in range(k):
        keys[i] = last_used[node, cand[i]]
    order = np.argsort(keys, kind="mergesort")
    freed = 0.0
    for i in range(k):
        if freed >= short - 1e-6:
            break
        layer = cand[order[i]]
        completion[node, layer] = np.inf
        freed += layer_bytes[layer]
    ns.stored_bytes[node] -= freed


@njit(cache=True)
def apply_kernel(ids, actions, now, n_edge, tasks, user_xy, layers, limits, ns, out):
    """Place tasks ``ids`` on ``actions`` (an edge node, or ``n_edge`` for the cloud) in order, updating ``ns``
    and ``tasks.node``; an infeasible edge choice goes to the cloud. Writes one row of ``out`` per task."""
    t_image, t_cpu, t_cycles, t_node, t_user = tasks.image, tasks.cpu_hz, tasks.cycles, tasks.node, tasks.user
    indptr, indices, layer_bytes = layers.indptr, layers.indices, layers.layer_bytes
    max_containers, cpu_cap, storage_cap = limits.max_containers, limits.cpu_cap_hz, limits.storage_cap_bytes
    storage_bytes, wired_bps, node_xy, coverage = limits.storage_bytes, limits.wired_bps, limits.xy_m, limits.coverage_m
    containers, cpu_used, load_cycles = ns.containers, ns.cpu_used_hz, ns.load_cycles
    active_bytes, stored_bytes, queue_free_at = ns.active_bytes, ns.stored_bytes, ns.queue_free_at_s
    completion, refcount, last_used = ns.completion_s, ns.refcount, ns.last_used_s
    nodes_out, download, load_before, fallback = out.node, out.download_s, out.load_before_cycles, out.fallback
    for i in range(ids.shape[0]):
        task = ids[i]
        node = actions[i]
        img = t_image[task]
        lo = indptr[img]
        hi = indptr[img + 1]
        if node < n_edge:  # eq. 11, eq. 12 thresholds, service range; else the cloud
            ok = containers[node] < max_containers[node] and cpu_used[node] + t_cpu[task] <= cpu_cap[node]
            if ok and coverage[node] != np.inf:
                u = t_user[task]
                dx = user_xy[u, 0] - node_xy[node, 0]
                dy = user_xy[u, 1] - node_xy[node, 1]
                ok = np.sqrt(dx * dx + dy * dy) <= coverage[node]
            if ok:
                new_active = 0.0
                for j in range(lo, hi):
                    if refcount[node, indices[j]] == 0:
                        new_active += layer_bytes[indices[j]]
                ok = active_bytes[node] + new_active <= storage_cap[node]
            if not ok:
                node = n_edge
                fallback[i] = True
        need = 0.0
        for j in range(lo, hi):
            if completion[node, indices[j]] == np.inf:
                need += layer_bytes[indices[j]]
        if need > 0.0:
            short = stored_bytes[node] + need - storage_bytes[node]
            if short > 0.0:
                _evict(node, short, lo, hi, layers, ns)
            t = max(queue_free_at[node], now)
            for j in range(lo, hi):  # base layer first, each after the previous one (FIFO, eq. 2)
                layer = indices[j]
                if completion[node, layer] == np.inf:
                    t += layer_bytes[layer] * BITS / wired_bps[node]
                    completion[node, layer] = t
            queue_free_at[node] = t
            stored_bytes[node] += need
        d = 0.0
        for j in range(lo, hi):  # eq. 3
            layer = indices[j]
            d = max(d, completion[node, layer] - now)
            if refcount[node, layer] == 0:
                active_bytes[node] += layer_bytes[layer]
            refcount[node, layer] += 1
            last_used[node, layer] = now
        download[i] = d
        if node < n_edge:
            load_before[i] = load_cycles[node]
            load_cycles[node] += t_cycles[task]
        containers[node] += 1
        cpu_used[node] += t_cpu[task]
        t_node[task] = node
        nodes_out[i] = node


@njit(cache=True)
def release_kernel(ids, n_edge, tasks, layers, ns):
    """Free the resources of placed tasks (finished or leaving): containers, CPU, workload, layer refs."""
    t_node, t_image, t_cpu, t_cycles = tasks.node, tasks.image, tasks.cpu_hz, tasks.cycles
    indptr, indices, layer_bytes = layers.indptr, layers.indices, layers.layer_bytes
    containers, cpu_used, load_cycles = ns.containers, ns.cpu_used_hz, ns.load_cycles
    refcount, active_bytes = ns.refcount, ns.active_bytes
    for i in range(ids.shape[0]):
        task = ids[i]
        node = t_node[task]
        if node < 0:
            continue
        containers[node] -= 1
        cpu_used[node] -= t_cpu[task]
        if node < n_edge:
            load_cycles[node] -= t_cycles[task]
        img = t_image[task]
        for j in range(indptr[img], indptr[img + 1]):
            layer = indices[j]
            refcount[node, layer] -= 1
            if refcount[node, layer] == 0:
                active_bytes[node] -= layer_bytes[layer]
        if containers[node] == 0:  # clear float drift when a node empties
            load_cycles[node] = 0.0
            cpu_used[node] = 0.0
            active_bytes[node] = 0.0


@njit(cache=True)
def finishing_bytes_kernel(completion, rows, now, nxt, layer_sizes):
    """Bytes of the layer downloads on nodes ``rows`` that complete in (now, nxt] (phase DOWNLOAD's metric)."""
    total = 0.0
    for n in rows:
        for layer in range(completion.shape[1]):
            c = completion[n, layer]
            if c > now and c <= nxt:
                total += layer_sizes[layer]
    return total


@njit(cache=True)
def left_coverage_kernel(tasks, t_user, t_node, user_xy, node_xy, coverage, out):
    """Write into ``out`` the tasks whose user is outside their node's service range; returns how many."""
    k = 0
    for i in range(tasks.shape[0]):
        task = tasks[i]
        node = t_node[task]
        user = t_user[task]
        dx = user_xy[user, 0] - node_xy[node, 0]
        dy = user_xy[user, 1] - node_xy[node, 1]
        if dx * dx + dy * dy > coverage[node] * coverage[node]:
            out[k] = task
            k += 1
    return k
