"""``edgemigrate/PPCM-v0``: one decision per queued task over the simulator (Liu et al. 2024, sec. V-A).

Each env step places ONE queued task (a new arrival, or a task being migrated proactively or passively) on
an edge node or the cloud. Ticks advance between decisions whenever the queue of the current tick is empty.

Observation (``Dict``, all float32 except the mask; N edge nodes + the cloud as row N, L layers):

* ``nodes`` (N+1, 12) per-node state of eq. (15): position x, y; distance to the task's user; bytes the task
  would still download there (z_n); total data size of the tasks running there (s_u); CPU Hz (f_n);
  wired bandwidth (b_n); free storage fraction; container fraction; CPU use fraction; hops from the user's
  access node; cloud flag. Scaled to O(1) by fixed constants of the world (documented in ``_node_features``).
* ``node_layers`` (N+1, L) layer presence per node (sparse 0/1; L_n in eq. 15).
* ``task`` (9,) task state of eq. (16): user position x, y; CPU demand (f_u); data size (the bandwidth demand
  b_u); processing density; service size; total download size D_u; wait so far; migration flag.
* ``task_layers`` (L,) the task's layer vector.
* ``action_mask`` (N+1,) int8, 1 where the placement is feasible (eq. 11, eq. 12 thresholds); the cloud is
  always feasible. An infeasible action is still executed as the simulator does: the task falls back to the
  cloud.

Reward: ``-T_k`` of eq. (10) for the placed task, in seconds. ``info`` carries ``task`` (id), ``view``
(the :class:`~edgemigrate.sim.SimView`, so heuristic policies act inside the env), ``costs`` of the last
decision, and ``expert_action`` when an expert policy is attached (``expert=`` argument).

The world (nodes, images) is fixed by the scenario's seed; ``reset(seed=...)`` re-seeds the dynamics
(mobility, task arrivals) so episodes differ and the same seed replays exactly.

An episode in which no task arrives at all (a tiny task rate, a short horizon) has nothing to decide; the
simulator has run all its ticks by the time ``reset`` returns, so there is no task to wait for. Such an
episode is EMPTY: ``reset`` returns a placeholder observation (all zeros but the cloud row's flag, and a
mask allowing only the cloud) with ``info["task"] = None``, and the first ``step`` ends it
(``terminated=True``, reward 0, the action ignored, ``info["empty_episode"] = True``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from edgemigrate.scenarios import Scenario, build_simulator, load_scenario
from edgemigrate.sim import Simulator
from edgemigrate.sim.config import DecisionKind

NODE_FEATURES = 12
TASK_FEATURES = 9


class PPCMEnv(gym.Env):  # type: ignore[type-arg]
    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Scenario = "ppcm-paper", overrides: list[str] | None = None,
                 expert: Any = None, seed: int | None = None) -> None:
        sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario, overrides or [], seed)
        self.scenario = sc
        self.sim: Simulator = build_simulator(sc)
        self.expert = expert
        w = self.sim.world
        self.n_nodes = w.n_nodes
        self.n_layers = w.catalog.n_layers
        n1 = self.n_nodes + 1
        self.observation_space: spaces.Dict = spaces.Dict({
            "nodes": spaces.Box(-np.inf, np.inf, (n1, NODE_FEATURES), np.float32),
            "node_layers": spaces.Box(0.0, 1.0, (n1, self.n_layers), np.float32),
            "task": spaces.Box(-np.inf, np.inf, (TASK_FEATURES,), np.float32),
            "task_layers": spaces.Box(0.0, 1.0, (self.n_layers,), np.float32),
            "action_mask": spaces.Box(0, 1, (n1,), np.int8),
        })
        self.action_space: spaces.Discrete = spaces.Discrete(n1)
        xy = w.nodes.xy_m
        self._centre = xy.mean(axis=0)
        self._scale_m = max(float(np.ptp(xy, axis=0).max()), 1000.0)
        self._max_image_bytes = float(w.catalog.image_size_bytes.max())
        self._queue: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._pos = 0
        self._obs: dict[str, NDArray] | None = None
        self._empty_pending = False  # reset found no task; the next step ends the episode

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, NDArray], dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else int(seed)
        self.sim.reset(episode_seed)
        if self.expert is not None and hasattr(self.expert, "reset"):
            self.expert.reset(episode_seed)
        self._queue, self._pos = np.zeros(0, dtype=np.int64), 0
        self._advance()
        self._empty_pending = self._pos >= len(self._queue)
        if self._empty_pending:
            return self._empty_observation(), self._empty_info()
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[dict[str, NDArray], float, bool, bool, dict[str, Any]]:
        if self._empty_pending:
            self._empty_pending = False
            return self._empty_observation(), 0.0, True, False, {"empty_episode": True}
        if self._pos >= len(self._queue):
            raise RuntimeError("step() called on a finished episode; call reset()")
        task = self._queue[self._pos]
        costs = self.sim.apply(np.array([task]), np.array([int(action)], dtype=np.int64))
        self._pos += 1
        reward = -float(costs.total_s[0])
        self._advance()
        terminated = self._pos >= len(self._queue)
        obs = self._observe() if not terminated else self._obs
        info = self._info() if not terminated else {}
        info["costs"] = {k: float(getattr(costs, k)[0]) for k in
                         ("migration_s", "computation_s", "deployment_s", "backhaul_s", "total_s")}
        assert obs is not None
        return obs, reward, terminated, False, info

    # ------------------------------------------------------------------ internals
    def _advance(self) -> None:
        """Move to the next queued task, running ticks (with their arrivals/migrations) as needed."""
        sim = self.sim
        while self._pos >= len(self._queue):
            if self._queue.size:  # the tick whose queue we just emptied
                sim.end_tick()
                self._queue, self._pos = np.zeros(0, dtype=np.int64), 0
            if sim.done:
                return
            self._queue, self._pos = sim.begin_tick(), 0
            if self._queue.size == 0:
                sim.end_tick()

    @property
    def current_task(self) -> int:
        return int(self._queue[self._pos])

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"task": self.current_task, "view": self.sim.view}
        if self.expert is not None:
            info["expert_action"] = int(self.expert.act(self._obs, info))
        return info

    def _empty_observation(self) -> dict[str, NDArray]:
        n1 = self.n_nodes + 1
        nodes = np.zeros((n1, NODE_FEATURES), dtype=np.float32)
        nodes[self.n_nodes, 11] = 1.0
        mask = np.zeros(n1, dtype=np.int8)
        mask[self.n_nodes] = 1  # a masked policy needs one allowed action; the cloud always is
        self._obs = {
            "nodes": nodes,
            "node_layers": np.zeros((n1, self.n_layers), dtype=np.float32),
            "task": np.zeros(TASK_FEATURES, dtype=np.float32),
            "task_layers": np.zeros(self.n_layers, dtype=np.float32),
            "action_mask": mask,
        }
        return self._obs

    def _empty_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"task": None, "view": self.sim.view, "empty_episode": True}
        if self.expert is not None:
            info["expert_action"] = self.n_nodes  # the one allowed action
        return info

    def _observe(self) -> dict[str, NDArray]:
        task = np.array([self.current_task])
        view = self.sim.view
        mask = view.mask(task)[0]
        obs = {
            "nodes": self._node_features(task, view),
            "node_layers": view.layer_present().astype(np.float32),
            "task": self._task_features(task, view),
            "task_layers": view.task_layers(task)[0].astype(np.float32),
            "action_mask": mask.astype(np.int8),
        }
        self._obs = obs
        return obs

    def _node_features(self, task: NDArray[np.int64], view: Any) -> NDArray[np.float32]:
        """Scales: positions and distances by the node layout's extent; bytes by the largest image; CPU by
        128 GHz (Liu et al. 2024, sec. VI-A); bandwidth by 1 Gbit/s; hops by 10. The cloud row sits at the
        centre."""
        n1 = self.n_nodes + 1
        f = np.zeros((n1, NODE_FEATURES), dtype=np.float32)
        xy = (view.node_xy_m - self._centre) / self._scale_m
        f[: self.n_nodes, 0:2] = xy
        f[: self.n_nodes, 2] = view.user_node_distance_m(task)[0] / self._scale_m
        f[self.n_nodes, 2] = 1.0
        f[:, 3] = view.missing_bytes(task)[0] / self._max_image_bytes
        f[:, 4] = view.running_bytes() / 1e8
        f[:, 5] = np.minimum(view.cpu_hz / 128e9, 10.0)
        f[:, 6] = view.wired_bps / 1e9
        f[:, 7] = view.storage_free_frac()
        containers = view.containers().astype(np.float64)
        f[: self.n_nodes, 8] = containers[: self.n_nodes] / self.sim.max_containers[: self.n_nodes]
        f[: self.n_nodes, 9] = view.cpu_used_hz()[: self.n_nodes] / view.cpu_hz[: self.n_nodes]
        f[:, 10] = view.hops[view.access_node(task)[0]] / 10.0
        f[self.n_nodes, 11] = 1.0
        return f

    def _task_features(self, task: NDArray[np.int64], view: Any) -> NDArray[np.float32]:
        xy = (view.user_xy_m(view.task_user(task))[0] - self._centre) / self._scale_m
        kind = view.task_attr("kind", task)[0]
        wait = view.now_s - view.task_attr("queued_at_s", task)[0]
        image_bytes = float(view.task_layers(task)[0].astype(np.float64) @ view.layer_sizes_bytes)
        return np.array([
            xy[0], xy[1], view.task_attr("cpu_hz", task)[0] / 1e10, view.task_attr("data_bytes", task)[0] / 5e6,
            view.task_attr("density_cpb", task)[0] / 1e4, view.task_attr("service_bytes", task)[0] / 1e8,
            image_bytes / self._max_image_bytes, wait / 60.0, float(kind != DecisionKind.ARRIVAL),
        ], dtype=np.float32)
