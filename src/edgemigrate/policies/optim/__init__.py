"""Metaheuristic baselines (GA, DE, PSO) for assigning one step's pending tasks to nodes or the cloud."""

from __future__ import annotations

from edgemigrate.policies.optim.common import OptimResult, SearchConfig, local_search
from edgemigrate.policies.optim.de import DEConfig, de
from edgemigrate.policies.optim.ga import GAConfig, ga
from edgemigrate.policies.optim.problem import AssignmentProblem, LayerAssignmentProblem, brute_force
from edgemigrate.policies.optim.pso import PSOConfig, pso

#: name -> (solver, default config), for CLI/experiment wiring.
SOLVERS = {"ga": (ga, GAConfig()), "de": (de, DEConfig()), "pso": (pso, PSOConfig())}

__all__ = [
    "SOLVERS",
    "AssignmentProblem",
    "DEConfig",
    "GAConfig",
    "LayerAssignmentProblem",
    "OptimResult",
    "PSOConfig",
    "SearchConfig",
    "brute_force",
    "de",
    "ga",
    "local_search",
    "pso",
]
