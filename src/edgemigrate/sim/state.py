"""Mutable simulator state as NumPy arrays: the task table and per-node resources/layer caches.

Node arrays have N + 1 rows: rows 0..N-1 are edge nodes, row N is the cloud (unbounded capacity, its own
layer cache and download queue at the cloud bandwidth b_c, Liu et al. 2024, eq. 2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

TASK_FIELDS: dict[str, tuple[type, float]] = {
    "alive": (np.bool_, 0),
    "user": (np.int64, -1),
    "image": (np.int64, -1),
    "data_bytes": (np.float64, 0.0),
    "density_cpb": (np.float64, 0.0),
    "cycles": (np.float64, 0.0),
    "cpu_hz": (np.float64, 0.0),
    "service_bytes": (np.float64, 0.0),
    "migration_s_per_hop": (np.float64, 0.0),
    "node": (np.int64, -1),  # -1 while queued
    "prev_node": (np.int64, -1),  # -1 for a task never placed
    "kind": (np.int8, 0),
    "queued_at_s": (np.float64, 0.0),
    "end_s": (np.float64, 0.0),
    "total_s": (np.float64, 0.0),
    "migrations": (np.int64, 0),
}


class TaskTable:
    """Struct-of-arrays task storage with a free list; ids are row indices and are reused after release."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self.cols: dict[str, NDArray] = {k: np.full(capacity, fill, dtype=t) for k, (t, fill) in TASK_FIELDS.items()}
        self.n_used = 0  # rows ever used (high-water mark)
        self._free = np.zeros(0, dtype=np.int64)  # released rows, reused last-in first-out

    def __getattr__(self, name: str) -> NDArray:
        try:
            return self.__dict__["cols"][name]
        except KeyError:
            raise AttributeError(name) from None

    def _grow(self, need: int) -> None:
        cap = self.capacity
        while cap < need:
            cap *= 2
        for k, (t, fill) in TASK_FIELDS.items():
            arr: NDArray = np.full(cap, fill, dtype=t)
            arr[: self.capacity] = self.cols[k]
            self.cols[k] = arr
        self.capacity = cap

    def allocate(self, k: int) -> NDArray[np.int64]:
        reuse = min(k, len(self._free))
        ids = self._free[len(self._free) - reuse :][::-1]
        self._free = self._free[: len(self._free) - reuse]
        fresh = k - reuse
        if self.n_used + fresh > self.capacity:
            self._grow(self.n_used + fresh)
        out = np.empty(k, dtype=np.int64)
        out[:reuse] = ids
        out[reuse:] = np.arange(self.n_used, self.n_used + fresh)
        self.n_used += fresh
        for key, (_, fill) in TASK_FIELDS.items():
            self.cols[key][out] = fill
        self.cols["alive"][out] = True
        return out

    def free(self, ids: NDArray[np.int64]) -> None:
        self.cols["alive"][ids] = False
        self.cols["node"][ids] = -1
        self._free = np.concatenate([self._free, np.asarray(ids, dtype=np.int64)])

    def alive_ids(self) -> NDArray[np.int64]:
        return np.flatnonzero(self.cols["alive"][: self.n_used])


class NodeState:
    """Resources in use and layer caches of the N edge nodes plus the cloud row."""

    def __init__(self, n_nodes: int, n_layers: int) -> None:
        rows = n_nodes + 1
        self.containers = np.zeros(rows, dtype=np.int64)
        self.cpu_used_hz = np.zeros(rows, dtype=np.float64)
        self.load_cycles = np.zeros(rows, dtype=np.float64)  # w_t of eq. 6 (sum of running s*kappa)
        self.active_bytes = np.zeros(rows, dtype=np.float64)  # bytes of layers used by running tasks
        self.stored_bytes = np.zeros(rows, dtype=np.float64)  # bytes of layers present or downloading
        self.queue_free_at_s = np.zeros(rows, dtype=np.float64)  # when the FIFO download queue drains
        self.completion_s = np.full((rows, n_layers), np.inf)  # z: absolute completion time, inf = absent
        self.refcount = np.zeros((rows, n_layers), dtype=np.int32)  # running tasks using each layer
        self.last_used_s = np.full((rows, n_layers), -np.inf)
