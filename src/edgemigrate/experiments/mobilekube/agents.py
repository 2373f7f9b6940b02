"""Agents by name (``best-fit``, ``latency-greedy``, ``optimum``, ``stay``, ``random``) or by checkpoint path.

A path is handed to the RLlib loader ``edgemigrate.experiments.mobilekube.training.load_agent(path,
env_config)`` (it builds the env to check the checkpoint's sizes, which ``policies/`` may not import). It is looked up at run time: without it, or without Ray, naming a checkpoint is a one-line
error that says what is missing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.registry import suggest
from edgemigrate.policies.mobilekube import AGENTS, PlacementAgent, make_agent

RLLIB_LOADER = "edgemigrate.experiments.mobilekube.training"


def check_agent_spec(spec: str) -> None:
    """Fail early (before a results folder exists) on a name that is neither built in nor a path."""
    if spec not in AGENTS and not Path(spec).exists():
        raise ConfigError(f"unknown agent '{spec}': neither a built-in agent{suggest(spec, AGENTS.names())} "
                          "nor an existing checkpoint path")


def resolve_agent(spec: str, env_config: dict[str, Any]) -> tuple[str, PlacementAgent]:
    """(label, agent) for a name or a checkpoint path; the env_config is the one the agent will see."""
    if spec in AGENTS:
        return spec, make_agent(spec)
    check_agent_spec(spec)
    path = Path(spec)
    try:
        loader = importlib.import_module(RLLIB_LOADER)
    except ImportError as exc:
        raise ConfigError(f"RLlib agents need {RLLIB_LOADER} and ray[rllib] installed ({exc}); "
                          f"cannot load checkpoint {path}") from None
    agent = loader.load_agent(path, env_config)
    label = str(getattr(agent, "name", "") or path.name)
    return label, agent
