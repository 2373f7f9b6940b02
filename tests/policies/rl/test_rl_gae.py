"""GAE and the truncation bootstrap."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from edgemigrate.policies.rl.agent import obs_to_torch
from edgemigrate.policies.rl.ppo import PPOConfig, compute_gae, train


def test_gae_by_hand() -> None:
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [1.5]])
    d = torch.tensor([[0.0], [1.0], [0.0]])  # the episode ends after step 1
    nv = torch.tensor([2.0])
    g, lam = 0.9, 0.8
    d2 = 3.0 + g * 2.0 - 1.5
    d1 = 2.0 - 1.0  # no bootstrap across the episode end
    d0 = 1.0 + g * 1.0 - 0.5
    want = torch.tensor([[d0 + g * lam * d1], [d1], [d2]])
    torch.testing.assert_close(compute_gae(r, v, d, nv, g, lam), want)
    # lambda = 1, gamma = 1: advantages are returns-to-go minus values
    adv = compute_gae(r, v, torch.zeros(3, 1), torch.zeros(1), 1.0, 1.0)
    torch.testing.assert_close(adv + v, torch.tensor([[6.0], [5.0], [3.0]]))


class _ConstantEnv(gym.Env[dict[str, Any], int]):
    """Reward -1 every step; the observation never changes; time-limit truncation after 4 steps."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {
                "nodes": spaces.Box(0.0, 1.0, (2, 3), np.float32),
                "node_layers": spaces.Box(0.0, 1.0, (2, 2), np.float32),
                "task": spaces.Box(0.0, 1.0, (2,), np.float32),
                "task_layers": spaces.Box(0.0, 1.0, (2,), np.float32),
                "action_mask": spaces.Box(0, 1, (2,), np.int8),
            }
        )
        self.action_space = spaces.Discrete(2)
        self._obs = {k: np.ones(s.shape, dtype=s.dtype) for k, s in self.observation_space.spaces.items()}
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs, {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        self._t += 1
        return self._obs, -1.0, False, self._t >= 4, {}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_truncated_episodes_bootstrap_from_the_final_observation(tmp_path: Path) -> None:
    """With gamma = 0.5 the infinite-horizon value is -2; ignoring truncation would average the 4-step
    returns-to-go (-1.875, -1.75, -1.5, -1) to about -1.53, since the observation does not reveal time."""
    cfg = dataclasses.replace(
        PPOConfig(),
        total_timesteps=4096,
        num_envs=4,
        num_steps=32,
        num_minibatches=2,
        update_epochs=4,
        learning_rate=3e-3,
        gamma=0.5,
        normalize_reward=False,
        clip_vloss=False,
        actor="mlp",
        critic="mlp",
        mlp_hidden=(16,),
        demo_episodes=0,
    )
    res = train(_ConstantEnv, cfg, out_dir=tmp_path)
    obs, _ = _ConstantEnv().reset()
    with torch.no_grad():
        value = float(res.policy.model.value(obs_to_torch(obs))[0])
    assert value == pytest.approx(-2.0, abs=0.15)
