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

import numpy as np
from numba import njit

BITS = 8.0


@njit(cache=True)
def _evict(node, short, lo, hi, img_indices, layer_sizes, completion, refcount, last_used, stored_bytes):
    """Drop unused cached layers of ``node`` (least recently used first, never the task's own) until
    ``short`` bytes are free."""
    n_layers = completion.shape[1]
    cand = np.empty(n_layers, dtype=np.int64)
    k = 0
    for layer in range(n_layers):
        if refcount[node, layer] == 0 and completion[node, layer] != np.inf:
            own = False
            for j in range(lo, hi):
                if img_indices[j] == layer:
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
        freed += layer_sizes[layer]
    stored_bytes[node] -= freed


@njit(cache=True)
def apply_kernel(tasks, actions, now, n_edge,
                 t_image, t_cpu, t_cycles, t_node, t_user, user_xy, node_xy, coverage,
                 img_indptr, img_indices, layer_sizes,
                 containers, max_containers, cpu_used, cpu_cap, load_cycles, active_bytes, storage_cap,
                 stored_bytes, storage_bytes, queue_free_at, completion, refcount, last_used, wired_bps,
                 nodes_out, download, load_before, fallback):
    for i in range(tasks.shape[0]):
        task = tasks[i]
        node = actions[i]
        img = t_image[task]
        lo = img_indptr[img]
        hi = img_indptr[img + 1]
        if node < n_edge:  # eq. 11, eq. 12 thresholds, service range; else the cloud (seed 000 VI-A)
            ok = containers[node] < max_containers[node] and cpu_used[node] + t_cpu[task] <= cpu_cap[node]
            if ok and coverage[node] != np.inf:
                u = t_user[task]
                dx = user_xy[u, 0] - node_xy[node, 0]
                dy = user_xy[u, 1] - node_xy[node, 1]
                ok = np.sqrt(dx * dx + dy * dy) <= coverage[node]
            if ok:
                new_active = 0.0
                for j in range(lo, hi):
                    if refcount[node, img_indices[j]] == 0:
                        new_active += layer_sizes[img_indices[j]]
                ok = active_bytes[node] + new_active <= storage_cap[node]
            if not ok:
                node = n_edge
                fallback[i] = True
        need = 0.0
        for j in range(lo, hi):
            if completion[node, img_indices[j]] == np.inf:
                need += layer_sizes[img_indices[j]]
        if need > 0.0:
            short = stored_bytes[node] + need - storage_bytes[node]
            if short > 0.0:
                _evict(node, short, lo, hi, img_indices, layer_sizes, completion, refcount, last_used,
                       stored_bytes)
            t = max(queue_free_at[node], now)
            for j in range(lo, hi):  # base layer first, each after the previous one (FIFO, eq. 2)
                layer = img_indices[j]
                if completion[node, layer] == np.inf:
                    t += layer_sizes[layer] * BITS / wired_bps[node]
                    completion[node, layer] = t
            queue_free_at[node] = t
            stored_bytes[node] += need
        d = 0.0
        for j in range(lo, hi):  # eq. 3
            layer = img_indices[j]
            d = max(d, completion[node, layer] - now)
            if refcount[node, layer] == 0:
                active_bytes[node] += layer_sizes[layer]
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
def release_kernel(ids, t_node, t_image, t_cpu, t_cycles, img_indptr, img_indices, layer_sizes, n_edge,
                   containers, cpu_used, load_cycles, refcount, active_bytes):
    """Free the resources of placed tasks (finished or leaving): containers, CPU, workload, layer refs."""
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
        for j in range(img_indptr[img], img_indptr[img + 1]):
            layer = img_indices[j]
            refcount[node, layer] -= 1
            if refcount[node, layer] == 0:
                active_bytes[node] -= layer_sizes[layer]
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
