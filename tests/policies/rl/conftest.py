"""Fixtures shared by the RL tests: a small contract env, random contract observations, expert agreement."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgemigrate.policies.rl.toyenv import LayerOverlapEnv


def small_env() -> LayerOverlapEnv:
    """3 edge nodes + cloud, 8 layers, 16 tasks per episode, the download column hidden (learn from layers)."""
    return LayerOverlapEnv(n_nodes=3, n_layers=8, horizon=16, layers_per_task=2)


def random_obs(
    rng: np.random.Generator, n_nodes: int, n_layers: int, f_node: int = 9, f_task: int = 5, batch: int = 1
) -> dict[str, Any]:
    m = n_nodes + 1
    mask = (rng.random((batch, m)) < 0.5).astype(np.int8)
    mask[:, -1] = 1
    return {
        "nodes": rng.normal(size=(batch, m, f_node)).astype(np.float32),
        "node_layers": (rng.random((batch, m, n_layers)) < 0.3).astype(np.float32),
        "task": rng.normal(size=(batch, f_task)).astype(np.float32),
        "task_layers": (rng.random((batch, n_layers)) < 0.3).astype(np.float32),
        "action_mask": mask,
    }


def agreement_with_expert(policy: Any, steps: int = 400, seed: int = 999) -> float:
    """Share of steps on which ``policy`` picks the env's least-delay feasible choice (held-out states)."""
    env = small_env()
    obs, info = env.reset(seed=seed)
    policy.reset(seed)
    hits = 0
    for _ in range(steps):
        a = policy.act(obs, info)
        hits += int(a == info["expert_action"])
        obs, _, term, trunc, info = env.step(a)
        if term or trunc:
            obs, info = env.reset()
    return hits / steps


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def make_obs() -> Any:
    return random_obs


@pytest.fixture
def agreement() -> Any:
    return agreement_with_expert
