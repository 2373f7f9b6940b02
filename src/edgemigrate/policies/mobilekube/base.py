"""The placement-agent protocol of ``edgemigrate/MobileKube-v0`` and the registry of built-in agents.

Every Mobile-Kube decision maker - the baselines, the exact optimum and trained RL checkpoints (the RLlib
loader ``edgemigrate.experiments.mobilekube.training.load_agent`` returns one) - answers
``act(obs, info) -> action``: the env's observation and info in, the node of every container out (a ``MultiDiscrete`` action). Baselines read
what they need from ``info`` (``problem``, ``user_station``, ``placement``, see ``envs/mobilekube.py``); an RL
agent only needs ``obs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.registry import Registry
from edgemigrate.costs.mobilekube import Problem


@runtime_checkable
class PlacementAgent(Protocol):
    """Chooses the next placement: ``act(obs, info)`` -> int array (n_containers,) of node ids."""

    name: str

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]: ...


AGENTS: Registry[type] = Registry("mobilekube agent")


def state(info: Mapping[str, Any]) -> tuple[Problem, NDArray[np.int64], NDArray[np.int64]]:
    """(problem, user_station, placement) from an env info dict; a foreign dict is a one-line error."""
    try:
        problem, stations, placement = info["problem"], info["user_station"], info["placement"]
    except KeyError as exc:
        raise ValidationError(f"info lacks {exc.args[0]!r}: baselines need the info of edgemigrate/MobileKube-v0") from None
    if not isinstance(problem, Problem):
        raise ValidationError(f"info['problem'] must be a mobilekube Problem, got {type(problem).__name__}")
    return problem, np.asarray(stations, dtype=np.int64), np.asarray(placement, dtype=np.int64)


def make_agent(name: str, **kwargs: Any) -> PlacementAgent:
    """A built-in agent by name (``best-fit``, ``latency-greedy``, ``optimum``, ``random``, ``stay``)."""
    agent: PlacementAgent = AGENTS.get(name)(**kwargs)
    return agent
