"""Decision policies: one protocol (``base.Policy``), heuristics, optimisation and RL."""

from __future__ import annotations

from edgemigrate.policies.base import POLICIES, BatchPolicy, Policy
from edgemigrate.policies.catalog import make_policy

__all__ = ["POLICIES", "BatchPolicy", "Policy", "make_policy"]
