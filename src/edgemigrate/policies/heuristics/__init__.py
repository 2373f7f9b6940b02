"""Heuristic placement policies (vectorised over a tick's queue)."""

from __future__ import annotations

from edgemigrate.policies.heuristics.layer_aware import DepSoft, Down, Kube
from edgemigrate.policies.heuristics.simple import CloudOnly, Monkey, NearestNode

__all__ = ["CloudOnly", "DepSoft", "Down", "Kube", "Monkey", "NearestNode"]
