"""Mobile-Kube's two greedy baselines (Ghafouri et al. 2022, sec. VII) and two trivial references.

- ``best-fit``: bin-packing, the energy ground truth (Farahnakian et al. 2016, the seed's [18]). Every step
  the containers are re-packed, each into the open node with the LEAST room left that still fits it; a node
  is opened only when none fits. Nodes are opened in order of how many containers they already hold (ties
  by id), so a packed cluster stays packed and nothing moves without need. It ignores where users are.
- ``latency-greedy``: the latency ground truth (Brandherm et al. 2019, the seed's [6]): each container on
  the node of least mean delay from its users' stations (eq. 6 restricted to its users), the next best if
  that node is full; ties keep the current node, then the lowest id. It ignores energy.
- ``stay`` keeps the placement (what happens without an orchestrator); ``random`` draws a uniform action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.costs.mobilekube import Problem
from edgemigrate.policies.mobilekube.base import AGENTS, state

EPS = 1e-9


class _Room:
    """What is left on each node while one action is being built (both baselines place containers one by one)."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.cpu, self.mem = p.node_cpu.copy(), p.node_mem_bytes.copy()

    def fits(self, node: int, j: int) -> bool:
        return bool(self.cpu[node] >= self.p.cpu[j] - EPS and self.mem[node] >= self.p.mem_bytes[j] * (1 - EPS))

    def take(self, node: int, j: int) -> None:
        self.cpu[node] -= self.p.cpu[j]
        self.mem[node] -= self.p.mem_bytes[j]


@AGENTS.register("best-fit")
class BestFit:
    name = "best-fit"

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]:
        p, _, placement = state(info)
        m = p.n_nodes
        held = np.bincount(placement, minlength=m)
        open_order = sorted(range(m), key=lambda i: (-held[i], i))
        room = _Room(p)
        opened: list[int] = []
        out = np.empty(p.n_containers, dtype=np.int64)
        # biggest first (first-fit decreasing's order), ties by id
        for j in sorted(range(p.n_containers), key=lambda j: (-p.cpu[j], -p.mem_bytes[j], j)):
            fit = [i for i in opened if room.fits(i, j)]
            if fit:
                node = min(fit, key=lambda i: (room.cpu[i] / p.node_cpu[i], opened.index(i)))
            else:
                node = next(i for i in open_order if i not in opened and room.fits(i, j))
                opened.append(node)
            out[j] = node
            room.take(node, j)
        return out


@AGENTS.register("latency-greedy")
class LatencyGreedy:
    name = "latency-greedy"

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]:
        p, stations, placement = state(info)
        m, n = p.n_nodes, p.n_containers
        # (n, m) summed delay of each container's users to each node
        cost = np.zeros((n, m))
        np.add.at(cost, p.user_service, p.delay_sn_s[stations])
        room = _Room(p)
        out = np.empty(n, dtype=np.int64)
        for j in range(n):
            stay_bonus = np.where(np.arange(m) == placement[j], -1e-12, 0.0)  # ties keep the current node
            for node in np.argsort(cost[j] + stay_bonus, kind="stable"):
                if room.fits(int(node), j):
                    break
            out[j] = node
            room.take(int(node), j)
        return out


@AGENTS.register("stay")
class Stay:
    name = "stay"

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]:
        return state(info)[2].copy()


@AGENTS.register("random")
class RandomPlacement:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: NDArray[np.float32], info: Mapping[str, Any]) -> NDArray[np.int64]:
        p, _, _ = state(info)
        return self._rng.integers(0, p.n_nodes, p.n_containers).astype(np.int64)
