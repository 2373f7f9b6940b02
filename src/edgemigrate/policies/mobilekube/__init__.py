"""Placement agents for ``edgemigrate/MobileKube-v0`` (Ghafouri et al. 2022): the protocol, the baselines and
the exact optimum. Importing this package registers them (``make_agent(name)``)."""

from __future__ import annotations

from edgemigrate.policies.mobilekube import heuristics, optimum  # noqa: F401  (register the agents)
from edgemigrate.policies.mobilekube.base import AGENTS, PlacementAgent, make_agent
from edgemigrate.policies.mobilekube.optimum import OptimumError, solve_placement

__all__ = ["AGENTS", "OptimumError", "PlacementAgent", "make_agent", "solve_placement"]
