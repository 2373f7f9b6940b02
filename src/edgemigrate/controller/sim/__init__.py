"""The controller against a simulated world: :class:`SimBackend` (the Backend Protocol), the scenarios and
calibration file it reads, and :class:`SimController`, which runs the controller's loop every tick in process."""

from __future__ import annotations

from edgemigrate.controller.sim.backend import SimBackend, build_topology
from edgemigrate.controller.sim.calibration import (
    CALIBRATION_FORMAT,
    Calibration,
    HostCalibration,
    calibration_to_json,
    load_calibration,
    parse_calibration,
)
from edgemigrate.controller.sim.driver import METRIC_COLUMNS, SimController, TickMetrics, metrics_columns
from edgemigrate.controller.sim.scenario import HandoverScenario, load_scenario, parse_scenario

__all__ = ["CALIBRATION_FORMAT", "METRIC_COLUMNS", "Calibration", "HandoverScenario", "HostCalibration",
           "SimBackend", "SimController", "TickMetrics", "build_topology", "calibration_to_json",
           "load_calibration", "load_scenario", "metrics_columns", "parse_calibration", "parse_scenario"]
