"""Columnar, append-only metric storage: per-step rows and per-decision rows.

Per-step columns are preallocated for the whole run; per-decision columns grow by doubling, so recording
costs O(1) amortised per row and nothing is ever deep-copied (EdgeSimPy's per-tick dict copies made its
step cost grow with time).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

STEP_COLUMNS: dict[str, type] = {
    "step": np.int64,
    "time_s": np.float64,
    "users_active": np.int64,
    "handovers": np.int64,
    "arrivals": np.int64,
    "completions": np.int64,
    "migrations_passive": np.int64,
    "migrations_proactive": np.int64,
    "decisions": np.int64,
    "queued": np.int64,
    "fallbacks_to_cloud": np.int64,
    "tasks_edge": np.int64,
    "tasks_cloud": np.int64,
    "migration_s": np.float64,
    "computation_s": np.float64,
    "deployment_s": np.float64,
    "backhaul_s": np.float64,
    "total_s": np.float64,
    "cpu_util_mean": np.float64,
    "cpu_util_max": np.float64,
    "storage_util_mean": np.float64,
    "containers_mean": np.float64,
    "download_bytes": np.float64,
}

DECISION_COLUMNS: dict[str, type] = {
    "step": np.int64,
    "task": np.int64,
    "user": np.int64,
    "kind": np.int8,
    "prev_node": np.int64,
    "node": np.int64,
    "fallback": np.bool_,
    "wait_s": np.float64,
    "move_s": np.float64,
    "download_s": np.float64,
    "migration_s": np.float64,
    "computation_s": np.float64,
    "deployment_s": np.float64,
    "backhaul_s": np.float64,
    "total_s": np.float64,
}


class Recorder:
    def __init__(self, n_steps: int) -> None:
        self.steps: dict[str, NDArray] = {k: np.zeros(n_steps, dtype=t) for k, t in STEP_COLUMNS.items()}
        self._n_dec = 0
        self._cap = 1024
        self._dec: dict[str, NDArray] = {k: np.zeros(self._cap, dtype=t) for k, t in DECISION_COLUMNS.items()}
        self.n_steps_recorded = 0

    def record_step(self, i: int, row: dict[str, float]) -> None:
        for k, v in row.items():
            self.steps[k][i] = v
        self.n_steps_recorded = max(self.n_steps_recorded, i + 1)

    def record_decisions(self, cols: dict[str, NDArray]) -> None:
        k = len(cols["task"])
        if k == 0:
            return
        need = self._n_dec + k
        if need > self._cap:
            while self._cap < need:
                self._cap *= 2
            for name, arr in self._dec.items():
                grown = np.zeros(self._cap, dtype=arr.dtype)
                grown[: self._n_dec] = arr[: self._n_dec]
                self._dec[name] = grown
        for name, arr in self._dec.items():
            arr[self._n_dec : need] = cols[name]
        self._n_dec = need

    @property
    def decisions(self) -> dict[str, NDArray]:
        return {k: v[: self._n_dec] for k, v in self._dec.items()}

    def step_table(self) -> dict[str, NDArray]:
        return {k: v[: self.n_steps_recorded] for k, v in self.steps.items()}
