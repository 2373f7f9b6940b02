"""Columnar, append-only metric storage: per-step rows and per-decision rows.

Per-step columns are preallocated for the whole run; per-decision columns grow by doubling, so recording
costs O(1) amortised per row and nothing is ever deep-copied (EdgeSimPy's per-tick dict copies made its
step cost grow with time).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray


class StepMetric(NamedTuple):
    """One per-step column and how the engine fills it during a tick: ``"count"`` is summed from 0 over the
    tick, ``"cost"`` is the sum of the tick's decisions' cost component of the same name (a field of
    :class:`edgemigrate.sim.engine.Costs`), ``"end"`` is written once when the tick ends."""

    name: str
    dtype: type
    fill: Literal["count", "cost", "end"]


# The one list of per-step metrics: the recorder's columns and the engine's per-tick counters come from it.
STEP_METRICS: tuple[StepMetric, ...] = (
    StepMetric("step", np.int64, "end"),
    StepMetric("time_s", np.float64, "end"),
    StepMetric("users_active", np.int64, "end"),
    StepMetric("handovers", np.int64, "count"),
    StepMetric("arrivals", np.int64, "count"),
    StepMetric("completions", np.int64, "count"),
    StepMetric("migrations_passive", np.int64, "count"),
    StepMetric("migrations_proactive", np.int64, "count"),
    StepMetric("decisions", np.int64, "count"),
    StepMetric("queued", np.int64, "end"),
    StepMetric("fallbacks_to_cloud", np.int64, "count"),
    StepMetric("tasks_edge", np.int64, "end"),
    StepMetric("tasks_cloud", np.int64, "end"),
    StepMetric("migration_s", np.float64, "cost"),
    StepMetric("computation_s", np.float64, "cost"),
    StepMetric("deployment_s", np.float64, "cost"),
    StepMetric("backhaul_s", np.float64, "cost"),
    StepMetric("total_s", np.float64, "cost"),
    StepMetric("cpu_util_mean", np.float64, "end"),
    StepMetric("cpu_util_max", np.float64, "end"),
    StepMetric("storage_util_mean", np.float64, "end"),
    StepMetric("containers_mean", np.float64, "end"),
    StepMetric("download_bytes", np.float64, "count"),
)
STEP_COLUMNS: dict[str, type] = {m.name: m.dtype for m in STEP_METRICS}
TICK_SUMS: tuple[str, ...] = tuple(m.name for m in STEP_METRICS if m.fill != "end")  # start at 0 every tick
COST_SUMS: tuple[str, ...] = tuple(m.name for m in STEP_METRICS if m.fill == "cost")

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
