"""Scenarios: bundled TOML files (this folder) and the code that turns one into a simulator.

Sits between ``sim`` and ``envs``: it may import ``sim``, ``model``, ``mobility``, ``datasets``, ``radio``.
"""

from __future__ import annotations

from edgemigrate.scenarios.scenario import (
    Scenario,
    build_mobility,
    build_simulator,
    build_world,
    bundled_scenarios,
    load_scenario,
    scenario_path,
)

__all__ = ["Scenario", "build_mobility", "build_simulator", "build_world", "bundled_scenarios", "load_scenario",
           "scenario_path"]
