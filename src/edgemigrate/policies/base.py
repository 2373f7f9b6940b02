"""The one policy protocol and the policy registry.

A policy decides where each queued task runs: an edge node 0..N-1 or the cloud N. It serves two callers:

* the simulator, through ``decide(view, tasks)`` on a whole tick's queue (vectorised heuristics are fast);
* a Gymnasium env (``edgemigrate/PPCM-v0``), through ``act(obs, info)`` one decision at a time.

``BatchPolicy`` implements ``act`` on top of ``decide`` when the env passes the simulator view and the task
in ``info`` (keys ``"view"`` and ``"task"``), so a heuristic is written once; ``task`` None (an episode
without any task) gets the cloud.

Build a policy by name with :func:`edgemigrate.policies.make_policy` (in :mod:`~edgemigrate.policies.catalog`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.registry import Registry
from edgemigrate.sim.view import SimView


@runtime_checkable
class Policy(Protocol):
    name: str

    def reset(self, seed: int | None = None) -> None: ...

    def act(self, obs: Any, info: dict[str, Any]) -> int: ...


class BatchPolicy:
    """Base for policies that decide a whole queue at once from the simulator view."""

    name = "batch"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        raise NotImplementedError

    def act(self, obs: Any, info: dict[str, Any]) -> int:
        if info["task"] is None:  # an empty episode of the env: nothing to place, the cloud is its one action
            return int(info["view"].cloud)
        return int(self.decide(info["view"], np.array([info["task"]], dtype=np.int64))[0])


POLICIES: Registry[type] = Registry("policy")
"""Name -> policy class. Each policy module registers its own classes; :mod:`edgemigrate.policies.catalog`
imports every built-in one, so this module needs none of them (it is what they import)."""
