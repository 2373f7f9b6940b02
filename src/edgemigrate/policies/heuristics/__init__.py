"""Heuristic placement policies (vectorised over a tick's queue)."""

from __future__ import annotations

from edgemigrate.policies.heuristics.simple import CloudOnly, Monkey, NearestNode

__all__ = ["CloudOnly", "Monkey", "NearestNode"]
