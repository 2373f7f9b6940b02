"""The first three policies: MONKEY (random, Liu et al. 2024, sec. VI-A baseline 3), nearest node, cloud only."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from edgemigrate.policies.base import POLICIES, BatchPolicy
from edgemigrate.sim.view import SimView

NEAREST_CANDIDATES = 8  # how many nearest nodes NearestNode tries before the cloud


@POLICIES.register("monkey")
class Monkey(BatchPolicy):
    """MONKEY: a uniformly random feasible node per task; the cloud when none is feasible."""

    name = "monkey"

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        mask = view.mask(tasks)[:, : view.n_nodes]
        scores = np.where(mask, self.rng.random(mask.shape), -1.0)
        pick = np.argmax(scores, axis=1)
        return np.where(mask.any(axis=1), pick, view.cloud)


@POLICIES.register("nearest")
class NearestNode(BatchPolicy):
    """The feasible edge node nearest to the task's user (up to 8 candidates), else the cloud."""

    name = "nearest"

    def __init__(self, seed: int | None = None, candidates: int = NEAREST_CANDIDATES) -> None:
        super().__init__(seed)
        self.candidates = candidates
        self._tree: cKDTree | None = None
        self._tree_of: int | None = None

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        if self._tree is None or self._tree_of != id(view.node_xy_m):
            self._tree, self._tree_of = cKDTree(view.node_xy_m), id(view.node_xy_m)
        k = min(self.candidates, view.n_nodes)
        _, cand = self._tree.query(view.user_xy_m(view.task_user(tasks)), k=k)
        cand = np.asarray(cand, dtype=np.int64).reshape(len(tasks), k)
        out = np.full(len(tasks), view.cloud, dtype=np.int64)
        todo = np.ones(len(tasks), dtype=bool)
        for j in range(k):
            if not todo.any():
                break
            idx = np.flatnonzero(todo)
            ok = view.feasible(tasks[idx], cand[idx, j])
            out[idx[ok]] = cand[idx[ok], j]
            todo[idx[ok]] = False
        return out


@POLICIES.register("cloud")
class CloudOnly(BatchPolicy):
    """Everything runs in the cloud (the no-edge reference)."""

    name = "cloud"

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.full(len(tasks), view.cloud, dtype=np.int64)
