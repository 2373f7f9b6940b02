"""The per-step metrics are defined once (``recorder.STEP_METRICS``); the engine fills exactly those."""

from __future__ import annotations

import dataclasses

from edgemigrate.policies import make_policy
from edgemigrate.sim.engine import Costs
from edgemigrate.sim.recorder import COST_SUMS, STEP_COLUMNS, STEP_METRICS, TICK_SUMS

from .worlds import make_sim


def test_every_tick_writes_exactly_the_step_metrics() -> None:
    sim = make_sim(seed=2, n_steps=15)
    rows: list[dict[str, float]] = []
    record = sim.recorder.record_step

    def spy(i: int, row: dict[str, float]) -> None:
        rows.append(dict(row))
        record(i, row)

    sim.recorder.record_step = spy  # type: ignore[method-assign]
    sim.run(make_policy("nearest"))
    assert len(rows) == 15
    assert all(sorted(row) == sorted(STEP_COLUMNS) for row in rows)
    assert sum(row["decisions"] for row in rows) > 0  # the cost sums were exercised


def test_metric_groups_come_from_the_one_list() -> None:
    names = [m.name for m in STEP_METRICS]
    assert len(set(names)) == len(names) == len(STEP_COLUMNS)
    assert set(COST_SUMS) <= set(TICK_SUMS) <= set(names)
    assert set(COST_SUMS) <= {f.name for f in dataclasses.fields(Costs)}  # summed from the Costs fields
