"""A small Gymnasium env with the exact observation/action contract of ``edgemigrate/PPCM-v0``.

It exists so the learning machinery (networks, PPO, demonstrations) can be tested and benchmarked in seconds,
and so users can check a custom policy against the contract without building a scenario. It is *not* the PPCM
simulator: one task arrives per step, is placed, and its delay is the reward.

Contract (shared with the real env; ``M = N + 1`` choices, index ``N`` = cloud):

* ``nodes`` ``(M, F_node)`` float32 - x, y, distance to the task's user, bytes the task would still download
  there (zero unless ``reveal_download=True``: then the agent must infer it from the sparse layer features),
  running size, CPU, bandwidth, free storage fraction, containers fraction; all ~O(1);
* ``node_layers`` ``(M, L)`` 0/1 - layer presence (the cloud holds every layer);
* ``task`` ``(F_task,)`` float32 - user x, y, CPU demand, bandwidth demand, download size;
* ``task_layers`` ``(L,)`` 0/1, ``action_mask`` ``(M,)`` int8 (the cloud is always feasible);
* reward ``-T`` seconds; ``info["expert_action"]`` = the feasible choice of least immediate delay,
  ``info["delay_s"]`` = ``T``.

Delay of placing the task on edge node ``n`` (a reduced form of Liu et al. 2024's four delays, eqs. 1-10):
``missing_bytes * 8 / bandwidth_n + distance_km * hop_delay_s_per_km + cycles / cpu_n``; on the cloud
``cloud_latency_s + cycles / cpu_cloud``. A node keeps the layers it pulled (so placements shape later costs),
holds at most ``max_containers`` containers (then it is masked) and each container ends with probability
``finish_prob`` per step. Layer sizes are a fixed catalogue drawn from ``catalogue_seed`` (like the Docker Hub
layer list), so an agent can learn which layers are big.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError

F_NODE = 9
F_TASK = 5


class LayerOverlapEnv(gym.Env[dict[str, Any], np.int64]):
    """Place one task per step on one of ``n_nodes`` edge nodes or the cloud; reward = -delay (s)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        n_nodes: int = 5,
        n_layers: int = 12,
        horizon: int = 32,
        *,
        reveal_download: bool = False,
        layers_per_task: int = 3,
        max_containers: int = 4,
        finish_prob: float = 0.15,
        blocked_prob: float = 0.15,
        cloud_latency_s: float = 4.0,
        hop_delay_s_per_km: float = 1.0,
        catalogue_seed: int = 0,
    ) -> None:
        if n_nodes < 1 or n_layers < 1 or horizon < 1 or not 1 <= layers_per_task <= n_layers:
            raise ValidationError(
                f"LayerOverlapEnv: need n_nodes, n_layers, horizon >= 1 and 1 <= layers_per_task <= n_layers, "
                f"got {n_nodes}, {n_layers}, {horizon}, {layers_per_task}"
            )
        self.n_nodes, self.n_layers, self.horizon = n_nodes, n_layers, horizon
        self.reveal_download = reveal_download
        self.layers_per_task = layers_per_task
        self.max_containers = max_containers
        self.finish_prob, self.blocked_prob = finish_prob, blocked_prob
        self.cloud_latency_s = cloud_latency_s
        self.hop_delay_s_per_km = hop_delay_s_per_km
        cat = np.random.default_rng(catalogue_seed)
        #: fixed layer catalogue: sizes 1-60 MB, Zipf-like popularity
        self.layer_size_bytes = np.round(cat.uniform(1e6, 60e6, n_layers))
        pop = 1.0 / np.arange(1, n_layers + 1) ** 0.8
        self.layer_popularity = pop / pop.sum()
        self._log_popularity = np.log(self.layer_popularity)
        m = n_nodes + 1
        self.observation_space = spaces.Dict(
            {
                "nodes": spaces.Box(0.0, 10.0, (m, F_NODE), np.float32),
                "node_layers": spaces.Box(0.0, 1.0, (m, n_layers), np.float32),
                "task": spaces.Box(0.0, 10.0, (F_TASK,), np.float32),
                "task_layers": spaces.Box(0.0, 1.0, (n_layers,), np.float32),
                "action_mask": spaces.Box(0, 1, (m,), np.int8),
            }
        )
        self.action_space = spaces.Discrete(m)
        self._t = 0

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        n, m = self.n_nodes, self.n_nodes + 1
        self._t = 0
        self._pos = np.vstack([rng.uniform(0.0, 1.0, (n, 2)), [[0.5, 0.5]]])  # km; the cloud row is nominal
        self._layers = rng.random((m, self.n_layers)) < 0.25
        self._layers[-1] = True
        self._bw_bps = np.append(rng.uniform(40e6, 200e6, n), 1e9)
        self._cpu_hz = np.append(rng.uniform(4e9, 16e9, n), 64e9)
        self._containers = np.zeros(m, dtype=np.int64)
        self._new_task()
        return self._obs(), self._info()

    def step(
        self, action: np.int64 | int
    ) -> tuple[dict[str, NDArray[Any]], float, bool, bool, dict[str, Any]]:
        a = int(action)
        if not (0 <= a <= self.n_nodes):
            raise ValidationError(f"LayerOverlapEnv.step: action {a} outside [0, {self.n_nodes}]")
        infeasible = not bool(self._mask[a])
        delay = float(self._delay[a])
        if infeasible:  # contract breach by the policy: charge it and send the task to the cloud
            delay = float(self._delay[-1]) + 10.0
            a = self.n_nodes
        if a < self.n_nodes:
            self._layers[a] |= self._task_layers
            self._containers[a] += 1
        done = self._containers[:-1] > 0
        self._containers[:-1] -= (self.np_random.random(self.n_nodes) < self.finish_prob) & done
        self._t += 1
        truncated = self._t >= self.horizon
        self._new_task()
        info = self._info()
        info["placed_delay_s"], info["infeasible_action"] = delay, infeasible
        return self._obs(), -delay, False, truncated, info

    # ------------------------------------------------------------------ internals
    def _new_task(self) -> None:
        rng = self.np_random
        n = self.n_nodes
        # weighted sampling without replacement by the Gumbel top-k trick (much faster than rng.choice with p)
        keys = self._log_popularity - np.log(-np.log(rng.random(self.n_layers)))
        idx = np.argpartition(keys, -self.layers_per_task)[-self.layers_per_task :]
        self._task_layers = np.zeros(self.n_layers, dtype=bool)
        self._task_layers[idx] = True
        self._user = rng.uniform(0.0, 1.0, 2)
        self._cycles = rng.uniform(2e9, 20e9)
        self._bw_demand = rng.uniform(0.0, 1.0)
        self._dist_km = np.linalg.norm(self._pos - self._user[None, :], axis=1)
        missing = self._task_layers[None, :] & ~self._layers
        self._missing_bytes = missing.astype(np.float64) @ self.layer_size_bytes
        delay = (
            self._missing_bytes * 8.0 / self._bw_bps
            + self.hop_delay_s_per_km * self._dist_km
            + self._cycles / self._cpu_hz
        )
        delay[-1] = self.cloud_latency_s + self._cycles / self._cpu_hz[-1]
        self._delay = delay
        mask = (self._containers < self.max_containers) & (rng.random(n + 1) >= self.blocked_prob)
        mask[-1] = True
        self._mask = mask

    def _obs(self) -> dict[str, NDArray[Any]]:
        m = self.n_nodes + 1
        nodes = np.zeros((m, F_NODE), dtype=np.float32)
        nodes[:, 0:2] = self._pos
        nodes[:, 2] = self._dist_km
        if self.reveal_download:
            nodes[:, 3] = self._missing_bytes / 1e8
        held = self._layers.astype(np.float64) @ self.layer_size_bytes
        nodes[:, 4] = self._containers / self.max_containers
        nodes[:, 5] = self._cpu_hz / 16e9
        nodes[:, 6] = self._bw_bps / 200e6
        nodes[:, 7] = 1.0 - held / self.layer_size_bytes.sum()
        nodes[:, 8] = self._containers / self.max_containers
        nodes[-1, 7:9] = (1.0, 0.0)
        task = np.array(
            [
                self._user[0],
                self._user[1],
                self._cycles / 2e10,
                self._bw_demand,
                float(self._task_layers @ self.layer_size_bytes) / 1e8,
            ],
            dtype=np.float32,
        )
        return {
            "nodes": nodes,
            "node_layers": self._layers.astype(np.float32),
            "task": task,
            "task_layers": self._task_layers.astype(np.float32),
            "action_mask": self._mask.astype(np.int8),
        }

    def _info(self) -> dict[str, Any]:
        best = int(np.argmin(np.where(self._mask, self._delay, np.inf)))
        return {"expert_action": best, "delay_s": self._delay.copy()}


class InfoExpert:
    """A ``Policy`` that plays ``info["expert_action"]`` (what the env recommends), e.g. for demonstrations."""

    name = "info-expert"

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, obs: dict[str, NDArray[Any]], info: dict[str, Any]) -> int:
        if "expert_action" not in info:
            raise ValidationError("InfoExpert: the env's info has no 'expert_action'")
        return int(info["expert_action"])


class RandomMaskedPolicy:
    """Uniformly random among feasible choices (Liu et al. 2024's MONKEY baseline on any contract env)."""

    name = "random"

    def __init__(self) -> None:
        self._rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, NDArray[Any]], info: dict[str, Any]) -> int:
        feasible = np.flatnonzero(np.asarray(obs["action_mask"]) > 0)
        return int(self._rng.choice(feasible))
