"""``edgemigrate/MobileKube-v0``: energy- and latency-aware service placement (Ghafouri et al. 2022).

The world (sec. VI-VII). ``n_nodes`` edge nodes sit on San Francisco tower sites (the bundled OpenCelliD
cut, cells clustered into sites, spread-out sites picked by k-means inside the paper's box lat 37.72-37.78,
lon -122.45 to -122.38), each co-located with its base station; the backhaul is the Euclidean minimum
spanning tree over the sites (``model.topology.mst``). Users attach to the nearest station. ``n_services``
containers of 0.125 CPU and 250 MiB each (the paper's guaranteed-QoS pods) are used by ``n_users / n_services``
users each (user ``k`` uses container ``k mod n_services``: 16/32/48 users -> 1/2/3 users per service).
Nodes have 4 CPU and 16 GiB (GKE e2-standard-4, sec. VII).

Users move on synthetic taxi-like movements (``trace="taxi"``, training, sec. VII: the real traces are too
short to train on) or replay an imported trace (``trace=<cabspotting folder | id,t,lat,lon CSV | .npz>``,
testing) resampled every ``step_s`` = 300 s, users = the cabs inside the box
(:func:`~edgemigrate.mobility.area_users.load_area_users`).

Observation (sec. V "States"): one-hot user -> station (o x m) then one-hot container -> node (n x m),
flattened, float32 in {0, 1}; with ``obs_utilisation`` also each node's CPU-request utilisation (m values). Action (sec. V "Actions"): ``MultiDiscrete([m] * n)``, the node of every
container at the next step.

A step: the action is checked against constraints 3-4 (capacity). A legal action becomes the placement; an
illegal one is NOT applied (the simulator never overloads a node) - in training it earns
``illegal_penalty`` and the episode continues, in evaluation (``training=False``) the step is scored on the
kept placement (sec. V "RL helper"). The step is scored on the stations the agent saw (eqs. 5-8, 13 in
``costs/mobilekube.py``), then users move ``step_s`` and re-attach. Episodes are truncated after
``episode_steps`` steps (or at the end of a trace).

``info`` (reset and step): ``problem`` (the :class:`~edgemigrate.costs.mobilekube.Problem`, what a baseline or
the optimum needs), ``user_station`` and ``placement`` for the NEXT decision; after a step also the scored
step's ``latency_s``, ``power_w``, ``empty_servers``, ``migrations``, ``illegal``, ``reward_energy``,
``reward_latency``, ``cost`` (eq. 2, normalised) and ``t`` (step index).

Randomness: the network is fixed by ``config.seed``; ``reset(seed=...)`` re-seeds the movements and the
initial placement, so the same seed replays exactly.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path
from scipy.spatial import cKDTree

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.core.registry import suggest
from edgemigrate.core.seeding import SeedTree
from edgemigrate.costs.mobilekube import (
    SPECPOWER_ML110_G5_IDLE_W,
    SPECPOWER_ML110_G5_MAX_W,
    LatencyModel,
    PowerModel,
    Problem,
    empty_servers,
    station_node_delay_s,
)
from edgemigrate.datasets.towers import bundled_towers, cluster_sites, pick_sites
from edgemigrate.mobility.area_users import load_area_users
from edgemigrate.mobility.taxi import TaxiLike
from edgemigrate.mobility.traces import Trajectories
from edgemigrate.model.topology import mst

GIB = 1 << 30
MIB = 1 << 20
PAPER_BOX = (37.72, 37.78, -122.45, -122.38)
"""Sec. VII: users move between these latitudes and longitudes (lat_min, lat_max, lon_min, lon_max)."""
SYNTHETIC_SUBSTEP_S = 60.0
"""The taxi model advances in 60 s sub-steps inside one 300 s step so trips end and restart within a step."""


@dataclass(frozen=True, slots=True)
class MobileKubeConfig:
    """Everything that defines a Mobile-Kube env. Fields are only ever ADDED (RLlib env_configs rely on them)."""

    n_nodes: int = 8
    n_users: int = 16
    n_services: int = 16
    trace: str = "taxi"
    """``"taxi"`` (synthetic taxi-like movements) or a path to a cabspotting folder, CSV or ``.npz``."""
    seed: int = 0
    """Fixes the network (site picking); episodes are seeded by ``reset(seed)``."""
    w1: float = 1.0
    """Weight of the energy term R_b (eq. 13)."""
    w2: float = 0.05
    """Weight of the latency term R_l (eq. 13); see docs/mobilekube.md for why energy dominates."""
    training: bool = True
    episode_steps: int = 100
    step_s: float = 300.0
    service_cpu: float = 0.125
    service_mem_bytes: float = 250.0 * MIB
    node_cpu: float = 4.0
    node_mem_bytes: float = 16.0 * GIB
    illegal_penalty: float = -1.0
    idle_w: float = SPECPOWER_ML110_G5_IDLE_W
    max_w: float = SPECPOWER_ML110_G5_MAX_W
    access_s: float = 0.005
    """Radio access delay (s), the latency floor of R_l."""
    per_hop_s: float = 0.002
    """Delay per backhaul hop (s)."""
    box: tuple[float, float, float, float] = PAPER_BOX
    towers: str = "sf"
    obs_utilisation: bool = False
    """Append each node's CPU-request utilisation (m values in [0, 1]) to the one-hots. Sec. V's state is the
    one-hots alone (the default); the packing agent needs the loads, which the one-hots only imply through a
    sum over 16 x 8 inputs its 64-unit layers must learn first (docs/mobilekube.md, "Why PPO did not pack")."""

    def __post_init__(self) -> None:
        for name in ("n_nodes", "n_users", "n_services", "episode_steps", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "seed" else 1):
                raise ConfigError(f"mobilekube.{name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                                  f"integer, got {v!r}")
        if self.n_users < self.n_services:
            raise ConfigError(f"mobilekube.n_users ({self.n_users}) must be >= n_services ({self.n_services}): "
                              "every service has at least one user")
        for name in ("step_s", "service_cpu", "service_mem_bytes", "node_cpu", "node_mem_bytes"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"mobilekube.{name} must be a positive number, got {v!r}")
        for name in ("w1", "w2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"mobilekube.{name} must be a number >= 0, got {v!r}")
        if self.n_services * self.service_cpu > self.n_nodes * self.node_cpu or \
                self.n_services * self.service_mem_bytes > self.n_nodes * self.node_mem_bytes:
            raise ConfigError(f"mobilekube: {self.n_services} services do not fit on {self.n_nodes} nodes")
        if len(self.box) != 4 or not (self.box[0] < self.box[1] and self.box[2] < self.box[3]):
            raise ConfigError(f"mobilekube.box must be (lat_min, lat_max, lon_min, lon_max), got {self.box!r}")

    @staticmethod
    def from_mapping(values: Mapping[str, Any] | MobileKubeConfig | None = None, **overrides: Any) -> MobileKubeConfig:
        """Build from a dict (an RLlib ``env_config``); an unknown key is a one-line error with a suggestion."""
        if isinstance(values, MobileKubeConfig):
            return dataclasses.replace(values, **overrides) if overrides else values
        merged = {**dict(values or {}), **overrides}
        known = {f.name for f in dataclasses.fields(MobileKubeConfig)}
        for key in merged:
            if key not in known:
                raise ConfigError(f"unknown mobilekube config key '{key}'{suggest(key, known)}")
        if "box" in merged:
            merged["box"] = tuple(float(v) for v in merged["box"])
        return MobileKubeConfig(**merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON / RLlib env_config)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class Network:
    """The fixed part of the world: sites, backhaul and the area users move in."""

    projection: LocalProjection
    area: Area
    node_xy_m: NDArray[np.float64]
    hops: NDArray[np.int32]
    path_m: NDArray[np.float64]


def build_network(cfg: MobileKubeConfig) -> Network:
    """Tower sites inside the box -> ``n_nodes`` spread-out nodes -> MST backhaul (hops and path lengths)."""
    lat0, lat1, lon0, lon1 = cfg.box
    projection = LocalProjection((lat0 + lat1) / 2, (lon0 + lon1) / 2)
    lo, hi = projection.to_xy(lat0, lon0), projection.to_xy(lat1, lon1)
    area = Area(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    cells = bundled_towers(cfg.towers)
    inside = (cells.lat >= lat0) & (cells.lat <= lat1) & (cells.lon >= lon0) & (cells.lon <= lon1)
    if not inside.any():
        raise ConfigError(f"mobilekube.box {cfg.box} holds no tower of the bundled set '{cfg.towers}'")
    sites = cluster_sites(cells.lat[inside], cells.lon[inside], projection)
    pick = pick_sites(sites.xy_m, cfg.n_nodes, SeedTree(cfg.seed).rng("mobilekube/sites"), area)
    xy = sites.xy_m[pick]
    backhaul = mst(xy)
    if cfg.n_nodes == 1:
        path = np.zeros((1, 1))
    else:  # path lengths along the same tree (hops come from the foundation's builder)
        d = backhaul.distance_m
        tree = minimum_spanning_tree(csr_matrix(d + 1e-9 * (d == 0)))
        path = shortest_path(tree, directed=False)
    return Network(projection, area, xy, backhaul.hops, np.asarray(path, dtype=np.float64))


def build_problem(cfg: MobileKubeConfig, net: Network) -> Problem:
    """The cost-model instance of ``cfg`` on ``net``."""
    latency = LatencyModel(access_s=cfg.access_s, per_hop_s=cfg.per_hop_s)
    n, m = cfg.n_services, cfg.n_nodes
    return Problem(
        delay_sn_s=station_node_delay_s(net.hops, net.path_m, latency),
        user_service=np.arange(cfg.n_users, dtype=np.int64) % n,
        cpu=np.full(n, float(cfg.service_cpu)), mem_bytes=np.full(n, float(cfg.service_mem_bytes)),
        node_cpu=np.full(m, float(cfg.node_cpu)), node_mem_bytes=np.full(m, float(cfg.node_mem_bytes)),
        power=PowerModel(cfg.idle_w, cfg.max_w), latency_floor_s=latency.access_s, w1=cfg.w1, w2=cfg.w2)


class MobileKubeEnv(gym.Env):  # type: ignore[type-arg]
    """See the module docstring. ``MobileKubeEnv(config_or_dict, **overrides)``."""

    metadata = {"render_modes": []}

    def __init__(self, config: MobileKubeConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        self.config = cfg = MobileKubeConfig.from_mapping(config, **overrides)
        self.network = build_network(cfg)
        self.problem = build_problem(cfg, self.network)
        self._stations = cKDTree(self.network.node_xy_m)
        m, n, o = cfg.n_nodes, cfg.n_services, cfg.n_users
        self.observation_space = spaces.Box(0.0, 1.0, ((o + n) * m + (m if cfg.obs_utilisation else 0),),
                                            np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(n, m, dtype=np.int64))
        self.trajectories: Trajectories | None = None
        if cfg.trace != "taxi":
            self.trajectories = load_area_users(cfg.trace, self.network.projection, self.network.area, o,
                                                dt_s=cfg.step_s)
        self._taxi = TaxiLike(o, self.network.area) if self.trajectories is None else None
        self._placement = np.zeros(n, dtype=np.int64)
        self._user_station = np.zeros(o, dtype=np.int64)
        self._t = 0
        self._start = 0
        self._horizon = cfg.episode_steps

    # -- helpers --------------------------------------------------------------------------------------------
    def _attach(self, xy: NDArray[np.float64]) -> None:
        _, idx = self._stations.query(xy)
        self._user_station = np.asarray(idx, dtype=np.int64)

    def _positions(self) -> NDArray[np.float64]:
        if self.trajectories is not None:
            return self.trajectories.xy_m[self._start + self._t]
        assert self._taxi is not None
        left = self.config.step_s
        while left > 1e-9:
            dt = min(SYNTHETIC_SUBSTEP_S, left)
            xy = self._taxi.step(dt)
            left -= dt
        return xy

    def _initial_placement(self, rng: np.random.Generator) -> NDArray[np.int64]:
        """Each container on a random node that still has room (the cluster as Kubernetes left it)."""
        p = self.problem
        cpu_left, mem_left = p.node_cpu.copy(), p.node_mem_bytes.copy()
        out = np.empty(p.n_containers, dtype=np.int64)
        for j in range(p.n_containers):
            room = np.flatnonzero((cpu_left >= p.cpu[j] - 1e-9) & (mem_left >= p.mem_bytes[j]))
            node = int(room[rng.integers(room.size)])
            out[j] = node
            cpu_left[node] -= p.cpu[j]
            mem_left[node] -= p.mem_bytes[j]
        return out

    def _obs(self) -> NDArray[np.float32]:
        m = self.config.n_nodes
        o, n = self._user_station.size, self._placement.size
        obs = np.zeros((o + n, m), dtype=np.float32)
        obs[np.arange(o), self._user_station] = 1.0
        obs[o + np.arange(n), self._placement] = 1.0
        if not self.config.obs_utilisation:
            return obs.ravel()
        p = self.problem
        util = np.bincount(self._placement, weights=p.cpu, minlength=m)[:m] / p.node_cpu
        return np.concatenate([obs.ravel(), np.minimum(util, 1.0).astype(np.float32)])

    def _state_info(self) -> dict[str, Any]:
        return {"problem": self.problem, "user_station": self._user_station.copy(),
                "placement": self._placement.copy()}

    # -- gymnasium ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """``options={"start_step": k}`` starts a trace episode at row ``k`` (default: a random row)."""
        super().reset(seed=seed)
        cfg = self.config
        rng = self.np_random
        self._t = 0
        self._placement = self._initial_placement(rng)
        if self.trajectories is not None:
            last = self.trajectories.n_steps - 1
            if last < 1:
                raise ValidationError(f"trace {cfg.trace} has a single {cfg.step_s:g} s step; need at least two")
            start = (options or {}).get("start_step")
            if start is None:
                start = int(rng.integers(0, max(last - cfg.episode_steps, 0) + 1))
            if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < last:
                raise ValidationError(f"start_step must be an integer in [0, {last - 1}], got {start!r}")
            self._start = int(start)
            self._horizon = min(cfg.episode_steps, last - self._start)
            self._attach(self._positions())
        else:
            assert self._taxi is not None
            self._horizon = cfg.episode_steps
            self._attach(self._taxi.reset(np.random.default_rng(rng.integers(2**63))))
        return self._obs(), self._state_info()

    def step(self, action: Any) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        cfg = self.config
        a = np.asarray(action)
        if a.shape != (cfg.n_services,) or not np.issubdtype(a.dtype, np.integer) or \
                a.min() < 0 or a.max() >= cfg.n_nodes:
            raise ValidationError(f"action must be {cfg.n_services} integer node ids in [0, {cfg.n_nodes - 1}], "
                                  f"got shape {a.shape} dtype {a.dtype}")
        a = a.astype(np.int64)
        illegal = not self.problem.fits(a)
        old = self._placement
        if not illegal:
            self._placement = a
        migrations = int((self._placement != old).sum())
        power_w, latency_s, t = self.problem.evaluate(self._placement, self._user_station)
        reward = cfg.illegal_penalty if (illegal and cfg.training) else t.reward
        step_info = {"latency_s": latency_s, "power_w": power_w, "t": self._t,
                     "empty_servers": empty_servers(self._placement, cfg.n_nodes), "migrations": migrations,
                     "illegal": illegal, "reward_energy": t.reward_energy, "reward_latency": t.reward_latency,
                     "cost": t.cost}
        self._t += 1
        truncated = self._t >= self._horizon
        self._attach(self._positions())
        return self._obs(), float(reward), False, truncated, {**self._state_info(), **step_info}
