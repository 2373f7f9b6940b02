"""Every built-in policy, registered, and :func:`make_policy` to build one by name.

Kept apart from :mod:`edgemigrate.policies.base`: the policy modules import the protocol and the registry from
``base``, and this module imports them, so the imports only go one way.
"""

from __future__ import annotations

from typing import Any

import edgemigrate.policies.heuristics  # noqa: F401  (registers monkey, nearest, cloud, dep_soft, kube, down)
import edgemigrate.policies.least_delay  # noqa: F401  (registers least_delay)
import edgemigrate.policies.search  # noqa: F401  (registers ga, de, pso)
from edgemigrate.policies.base import POLICIES, BatchPolicy

__all__ = ["POLICIES", "make_policy"]


def make_policy(name: str, seed: int | None = None, **kwargs: Any) -> BatchPolicy:
    """Build a registered policy by name (``edgemigrate scenarios`` lists them); an unknown name raises with
    the closest known ones."""
    return POLICIES.get(name)(seed=seed, **kwargs)
