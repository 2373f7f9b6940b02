"""A small Gymnasium env with the observation/action contract of ``edgemigrate/MobileKube-v0``.

It exists so the RLlib agents (training, checkpoints, ``load_agent``, the two-node Ray cluster) are tested in
seconds on a problem where learning is visible, without building the Mobile-Kube scenario. It is *not*
Mobile-Kube: ``n_nodes`` nodes on a line, one user per service taking a random +-1 step per tick.

* observation: one-hot user -> node (where each user is) and one-hot service -> node, flattened, float32
  (Ghafouri et al. 2022, sec. V "States");
* action: ``MultiDiscrete`` service -> node;
* reward: ``-(mean distance)/n_nodes - w_energy * busy_nodes/n_nodes`` - the shape of eq. 13 with both terms
  normalised by the network size; a placement over ``capacity`` services on a node gets ``-1`` and is not
  applied (the previous placement stays);
* ``info``: ``empty_servers`` and ``latency_s`` (distance x ``hop_latency_s``), the keys MobileKube-v0 reports.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray


class ToyPlacementEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, n_nodes: int = 4, n_services: int = 3, capacity: int = 3, episode_steps: int = 20,
                 w_energy: float = 0.5, hop_latency_s: float = 0.005) -> None:
        self.n_nodes, self.n_services, self.capacity = n_nodes, n_services, capacity
        self.episode_steps, self.w_energy, self.hop_latency_s = episode_steps, w_energy, hop_latency_s
        size = 2 * n_services * n_nodes
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete(np.full(n_services, n_nodes, dtype=np.int64))
        self._users = np.zeros(n_services, dtype=np.int64)
        self._placement = np.zeros(n_services, dtype=np.int64)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self._users = self.np_random.integers(0, self.n_nodes, self.n_services)
        self._placement = self.np_random.integers(0, self.n_nodes, self.n_services)
        self._t = 0
        return self._obs(), self._info()

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.int64).reshape(self.n_services)
        if np.bincount(action, minlength=self.n_nodes).max() > self.capacity:
            reward = -1.0
        else:
            self._placement = action.copy()
            dist = np.abs(self._users - self._placement).mean()
            busy = len(np.unique(self._placement))
            reward = float(-dist / self.n_nodes - self.w_energy * busy / self.n_nodes)
        self._users = np.clip(self._users + self.np_random.integers(-1, 2, self.n_services), 0, self.n_nodes - 1)
        self._t += 1
        return self._obs(), reward, False, self._t >= self.episode_steps, self._info()

    def _obs(self) -> NDArray[np.float32]:
        eye = np.eye(self.n_nodes, dtype=np.float32)
        return np.concatenate([eye[self._users].ravel(), eye[self._placement].ravel()])

    def _info(self) -> dict[str, Any]:
        dist = float(np.abs(self._users - self._placement).mean())
        return {"empty_servers": float(self.n_nodes - len(np.unique(self._placement))),
                "latency_s": dist * self.hop_latency_s}


def make_toy_env(env_config: Any) -> ToyPlacementEnv:
    """Env creator for RLlib (``env_config`` -> env), a top-level function so Ray pickles it by reference."""
    return ToyPlacementEnv(**dict(env_config or {}))


def make_gym_env(env_config: Any) -> gym.Env[Any, Any]:
    """Env creator for any registered Gymnasium env: ``{"id": "CartPole-v1", **kwargs}`` (benchmarks, checks)."""
    cfg = dict(env_config or {})
    return gym.make(cfg.pop("id", "CartPole-v1"), **cfg)
