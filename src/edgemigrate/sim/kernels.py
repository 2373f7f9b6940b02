"""Compiled inner loop of the APPLY phase.

Placements within a tick depend on each other (a placement changes the containers, CPU, layer cache and
download queue the next one sees), so APPLY is inherently sequential. This loop is compiled with Numba: per
decision it costs about as much as one NumPy call, which keeps 10,000-user ticks within a few milliseconds.

The arithmetic is seed 000's: FIFO layer downloads at the node bandwidth, z_l^n = d_l / b_n (eq. 2), the
task's download delay D = max over its layers of the completion time (eq. 3), and the node workload w_t seen
by the task (eq. 6). The pure functions in ``edgemigrate.costs.four_delay`` are the reference; tests check
the two agree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

BITS = 8.0

# The kernels take their arrays in NamedTuples grouped by what they describe, so a call cannot silently swap
# two arrays of the same dtype and shape. Numba compiles (and caches) NamedTuples of arrays like plain tuples;
# building one per call costs about a microsecond.


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
    n_layers = ns.completion_s.shape[1]
    cand = np.empty(n_layers, dtype=np.int64)
    k = 0
    for layer in range(n_layers):
        if ns.refcount[node, layer] == 0 and ns.completion_s[node, layer] != np.inf:
            own = False
            for j in range(lo, hi):
                if layers.indices[j] == layer:
                    own = True
                    break
            if not own:
                cand[k] = layer
                k += 1
    keys = np.empty(k)
    for i in range(k):
        keys[i] = ns.last_used_s[node, cand[i]]
    order = np.argsort(keys, kind="mergesort")
    freed = 0.0
    for i in range(k):
        if freed >= short - 1e-6:
            break
        layer = cand[order[i]]
        ns.completion_s[node, layer] = np.inf
        freed += layers.layer_bytes[layer]
    ns.stored_bytes[node] -= freed


@njit(cache=True)
def _fits(task, node, lo, hi, tasks, user_xy, layers, limits, ns):
    """Whether edge node ``node`` may take ``task`` now: eq. 11, the eq. 12 thresholds, its service range."""
    if ns.containers[node] >= limits.max_containers[node]:
        return False
    if not ns.cpu_used_hz[node] + tasks.cpu_hz[task] <= limits.cpu_cap_hz[node]:
        return False
    if limits.coverage_m[node] != np.inf:
        u = tasks.user[task]
        dx = user_xy[u, 0] - limits.xy_m[node, 0]
        dy = user_xy[u, 1] - limits.xy_m[node, 1]
        if not np.sqrt(dx * dx + dy * dy) <= limits.coverage_m[node]:
            return False
    new_active = 0.0
    for j in range(lo, hi):
        if ns.refcount[node, layers.indices[j]] == 0:
            new_active += layers.layer_bytes[layers.indices[j]]
    return ns.active_bytes[node] + new_active <= limits.storage_cap_bytes[node]


@njit(cache=True)
def _download(node, now, lo, hi, layers, limits, ns):
    """Queue the task's missing layers on ``node``'s FIFO download queue, evicting first if storage is short."""
    need = 0.0
    for j in range(lo, hi):
        if ns.completion_s[node, layers.indices[j]] == np.inf:
            need += layers.layer_bytes[layers.indices[j]]
    if need > 0.0:
        short = ns.stored_bytes[node] + need - limits.storage_bytes[node]
        if short > 0.0:
            _evict(node, short, lo, hi, layers, ns)
        t = max(ns.queue_free_at_s[node], now)
        for j in range(lo, hi):  # base layer first, each after the previous one (FIFO, eq. 2)
            layer = layers.indices[j]
            if ns.completion_s[node, layer] == np.inf:
                t += layers.layer_bytes[layer] * BITS / limits.wired_bps[node]
                ns.completion_s[node, layer] = t
        ns.queue_free_at_s[node] = t
        ns.stored_bytes[node] += need


@njit(cache=True)
def apply_kernel(ids, actions, now, n_edge, tasks, user_xy, layers, limits, ns, out):
    """Place tasks ``ids`` on ``actions`` (an edge node, or ``n_edge`` for the cloud) in order, updating ``ns``
    and ``tasks.node``; an infeasible edge choice goes to the cloud. Writes one row of ``out`` per task."""
    for i in range(ids.shape[0]):
        task = ids[i]
        node = actions[i]
        img = tasks.image[task]
        lo = layers.indptr[img]
        hi = layers.indptr[img + 1]
        if node < n_edge and not _fits(task, node, lo, hi, tasks, user_xy, layers, limits, ns):
            node = n_edge  # the cloud takes what the chosen node cannot
            out.fallback[i] = True
        _download(node, now, lo, hi, layers, limits, ns)
        d = 0.0
        for j in range(lo, hi):  # eq. 3
            layer = layers.indices[j]
            d = max(d, ns.completion_s[node, layer] - now)
            if ns.refcount[node, layer] == 0:
                ns.active_bytes[node] += layers.layer_bytes[layer]
            ns.refcount[node, layer] += 1
            ns.last_used_s[node, layer] = now
        out.download_s[i] = d
        if node < n_edge:
            out.load_before_cycles[i] = ns.load_cycles[node]
            ns.load_cycles[node] += tasks.cycles[task]
        ns.containers[node] += 1
        ns.cpu_used_hz[node] += tasks.cpu_hz[task]
        tasks.node[task] = node
        out.node[i] = node


@njit(cache=True)
def release_kernel(ids, n_edge, tasks, layers, ns):
    """Free the resources of placed tasks (finished or leaving): containers, CPU, workload, layer refs."""
    for i in range(ids.shape[0]):
        task = ids[i]
        node = tasks.node[task]
        if node < 0:
            continue
        ns.containers[node] -= 1
        ns.cpu_used_hz[node] -= tasks.cpu_hz[task]
        if node < n_edge:
            ns.load_cycles[node] -= tasks.cycles[task]
        img = tasks.image[task]
        for j in range(layers.indptr[img], layers.indptr[img + 1]):
            layer = layers.indices[j]
            ns.refcount[node, layer] -= 1
            if ns.refcount[node, layer] == 0:
                ns.active_bytes[node] -= layers.layer_bytes[layer]
        if ns.containers[node] == 0:  # clear float drift when a node empties
            ns.load_cycles[node] = 0.0
            ns.cpu_used_hz[node] = 0.0
            ns.active_bytes[node] = 0.0


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
