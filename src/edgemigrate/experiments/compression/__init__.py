"""The compression experiments (Zhang et al. 2019) on the real engine: what ``edgemigrate experiment compression``
runs.

* :mod:`.experiment` - one migration per configuration on a namespace testbed, the experiment plans and the sweep;
* :mod:`.model` - Zhang et al. 2019's migration-time model evaluated with a run's measured stage times;
* :mod:`.summary` - ``summary.md`` of a results folder;
* :mod:`.plots` - its PNG plots.
"""

from __future__ import annotations

from edgemigrate.experiments.compression.experiment import (
    Bench,
    RunConfig,
    json_line,
    plan_levels,
    plan_pipeline,
    plan_ratechange,
    plan_rates,
    plan_web,
    sweep,
)

__all__ = [
    "Bench",
    "RunConfig",
    "json_line",
    "plan_levels",
    "plan_pipeline",
    "plan_ratechange",
    "plan_rates",
    "plan_web",
    "sweep",
]
