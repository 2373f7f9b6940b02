"""The four-delay task cost model of Liu et al. 2024 (PPCM), section III-B, eqs. (1)-(10).

Every function is pure and vectorised: arguments broadcast like NumPy arrays, results are seconds.
Sizes are bytes and rates bits per second; the functions convert (x 8) where a size meets a rate.

Symbols (Liu et al. 2024):
    s_u^s  service (memory state) size moved by a migration        -> ``service_bytes``
    eta^migr  bandwidth of the migration path                       -> ``migration_bps``
    sigma^migr  migration delay factor, s per hop (U[1, 3] in VI-A) -> ``migration_s_per_hop``
    d_t  hop distance between previous and new node                 -> ``hops``
    z_l^n  completion time of layer l on node n (eq. 2)
    w  waiting time in the task queue (eq. 4)                       -> ``wait_s``
    s_u^k  task (offloaded data) size                               -> ``task_bytes``
    kappa  processing density, cycles per bit                       -> ``density_cpb``
    rho  wireless uplink rate                                       -> ``uplink_bps``
    eta^bh, sigma^bh, y_t  backhaul bandwidth, s per hop, hops      -> ``backhaul_bps``, ``backhaul_s_per_hop``
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.units import BITS_PER_BYTE

F64 = NDArray[np.float64]


def migration_move_s(service_bytes: ArrayLike, migration_bps: ArrayLike, migration_s_per_hop: ArrayLike,
                     hops: ArrayLike) -> F64:
    """Eq. (1): M = 0 if d_t = 0, else s_u^s / eta^migr + sigma^migr * d_t."""
    hops = np.asarray(hops, dtype=np.float64)
    move = (np.asarray(service_bytes, dtype=np.float64) * BITS_PER_BYTE / np.asarray(migration_bps, dtype=np.float64)
            + np.asarray(migration_s_per_hop, dtype=np.float64) * hops)
    return np.where(hops == 0, 0.0, move)


def layer_download_s(layer_bytes: ArrayLike, node_bps: ArrayLike) -> F64:
    """Eq. (2): z_l^n = d_l^u / b_n, the download time of one layer at the node's bandwidth."""
    return np.asarray(layer_bytes, dtype=np.float64) * BITS_PER_BYTE / np.asarray(node_bps, dtype=np.float64)


def fifo_completion_s(queue_free_at_s: float, now_s: float, layer_bytes: ArrayLike, node_bps: float) -> F64:
    """Completion times of layers appended, in order, to a node's FIFO download queue (eqs. 2-3).

    The queue is busy until ``queue_free_at_s``; each layer starts when the previous one finishes.
    Returned times are absolute (same clock as ``now_s``).
    """
    start = max(float(queue_free_at_s), float(now_s))
    return start + np.cumsum(layer_download_s(layer_bytes, node_bps))


def download_delay_s(completion_at_s: ArrayLike, needed: ArrayLike, now_s: ArrayLike) -> F64:
    """Eq. (3): D = max_l z_l^n x_c^l, measured from ``now_s``; z = 0 for layers present (completed).

    ``completion_at_s`` (..., L) are absolute completion times per layer (<= now when present),
    ``needed`` (..., L) the task's layer indicator x_c^l.
    """
    remaining = np.maximum(np.asarray(completion_at_s, dtype=np.float64) - np.asarray(now_s)[..., None], 0.0)
    return np.max(np.where(np.asarray(needed, dtype=bool), remaining, 0.0), axis=-1)


def migration_delay_s(move_s: ArrayLike, download_s: ArrayLike, wait_s: ArrayLike, wait_factor: ArrayLike) -> F64:
    """Eq. (5): S = max(M, D) + sigma^wait * w, with w = t - t_u from eq. (4)."""
    return np.maximum(np.asarray(move_s, dtype=np.float64), download_s) + np.asarray(wait_factor) * np.asarray(wait_s)


def computation_delay_s(task_bytes: ArrayLike, density_cpb: ArrayLike, node_load_cycles: ArrayLike,
                        cpu_hz: ArrayLike) -> F64:
    """Eq. (6): C = (w_t + c_t) / f(n_t), with c_t = s_u^k * kappa and w_t the node's running workload in cycles.

    Resources are shared proportionally to cycle demand, so the task finishes when the node's whole
    current workload plus this task would.
    """
    c_t = np.asarray(task_bytes, dtype=np.float64) * BITS_PER_BYTE * np.asarray(density_cpb, dtype=np.float64)
    return (np.asarray(node_load_cycles, dtype=np.float64) + c_t) / np.asarray(cpu_hz, dtype=np.float64)


def access_delay_s(task_bytes: ArrayLike, uplink_bps: ArrayLike) -> F64:
    """Eq. (7): A = s_u^k / rho_t, the wireless upload of the task's data."""
    return np.asarray(task_bytes, dtype=np.float64) * BITS_PER_BYTE / np.asarray(uplink_bps, dtype=np.float64)


def deployment_delay_s(access_s: ArrayLike, download_s: ArrayLike) -> F64:
    """Eq. (8): P = max(A, D); upload and image download overlap."""
    return np.maximum(np.asarray(access_s, dtype=np.float64), download_s)


def backhaul_delay_s(task_bytes: ArrayLike, backhaul_bps: ArrayLike, backhaul_s_per_hop: ArrayLike,
                     hops: ArrayLike) -> F64:
    """Eq. (9): B = s_u^k / eta^bh + sigma^bh * y_t (y_t = hops between the user's access node and the server).

    Taken literally from the paper: the transfer term applies even at y_t = 0.
    """
    hops = np.asarray(hops, dtype=np.float64)
    transfer = np.asarray(task_bytes, dtype=np.float64) * BITS_PER_BYTE / np.asarray(backhaul_bps, dtype=np.float64)
    return transfer + np.asarray(backhaul_s_per_hop) * hops


def total_delay_s(s: ArrayLike, c: ArrayLike, p: ArrayLike, b: ArrayLike) -> F64:
    """Eq. (10): T_k = S + C + P + B."""
    return (np.asarray(s, dtype=np.float64) + np.asarray(c, dtype=np.float64) + np.asarray(p, dtype=np.float64)
            + np.asarray(b, dtype=np.float64))
