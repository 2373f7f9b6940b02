"""The discrete-time mobile-edge simulator (NumPy only)."""

from __future__ import annotations

from edgemigrate.sim.config import DecisionKind, Phase, SimParams
from edgemigrate.sim.engine import Costs, Decider, Mobility, Simulator
from edgemigrate.sim.view import SimView
from edgemigrate.sim.world import World, zipf_probs

__all__ = ["Costs", "Decider", "DecisionKind", "Mobility", "Phase", "SimParams", "SimView", "Simulator", "World",
           "zipf_probs"]
