"""Placement + handover planning for coordinated migration (Ngo et al. 2020, secs. III-V).

A planner reads one validated :class:`Snapshot` and returns a :class:`Plan`: per user the target server and
BS, the eq. 1-5 estimates and the trigger times of pre-migration, migration and handover. Planners: ``cloud``,
``random``, ``nearest`` (sec. V-A baselines) and ``orchestrated`` (the MILP of sec. IV-A with the coordinated
timing of sec. IV-B). :func:`plan_covered` plans around users no BS covers. This package imports only ``core``, ``costs`` and ``radio``-level code, so the
simulator and the real testbed backend of the controller share it.
"""

from __future__ import annotations

from typing import Any

from edgemigrate.planning.base import PLANNERS, Planner, PlanningError
from edgemigrate.planning.baselines import CloudPlanner, NearestPlanner, RandomPlanner, hysteresis_bs
from edgemigrate.planning.coverage import covered_users, plan_covered
from edgemigrate.planning.estimate import Plan, Timing, evaluate, triggered_users
from edgemigrate.planning.milp import OrchestratedPlanner
from edgemigrate.planning.snapshot import BaseStations, Servers, Snapshot, Users


def make_planner(name: str, **kwargs: Any) -> Planner:
    """Build a registered planner by name (``cloud``, ``random``, ``nearest``, ``orchestrated``)."""
    return PLANNERS.get(name)(**kwargs)


__all__ = ["PLANNERS", "BaseStations", "CloudPlanner", "NearestPlanner", "OrchestratedPlanner", "Plan", "Planner",
           "PlanningError", "RandomPlanner", "Servers", "Snapshot", "Timing", "Users", "covered_users", "evaluate",
           "hysteresis_bs", "make_planner", "plan_covered", "triggered_users"]
