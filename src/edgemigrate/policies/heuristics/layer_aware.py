"""Layer- and image-aware baselines of Liu et al. 2024, sec. VI-A: DEP_SOFT, KUBE and DOWN.

All three score the FEASIBLE edge nodes of each task and fall back to the cloud when none is feasible
(Liu et al. 2024, sec. VI-A: "If any nodes lack sufficient resources, the task is offloaded to the cloud").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgemigrate.policies.base import POLICIES, BatchPolicy
from edgemigrate.sim.view import SimView

DEP_SOFT_THRESHOLD = 0.8  # a node qualifies when its score is >= 80 % of the best feasible score
KUBE_MIN_BYTES = 23 * 1024 * 1024  # Kubernetes ImageLocality: below this summed size the score is 0
KUBE_MAX_BYTES = 1000 * 1024 * 1024  # ... and above this (per container) it is maximal


def _pick(scores: NDArray[np.float64], mask: NDArray[np.bool_], cloud: int, rng: np.random.Generator,
          higher_is_better: bool = True) -> NDArray[np.int64]:
    """Best feasible node per row (random among ties); the cloud where no edge node is feasible."""
    s = scores if higher_is_better else -scores
    s = np.where(mask, s, -np.inf)
    best = s.max(axis=1, keepdims=True)
    tie = mask & (s >= best - 1e-9 * np.abs(best))
    noise = np.where(tie, rng.random(s.shape), -1.0)
    return np.where(mask.any(axis=1), np.argmax(noise, axis=1), cloud)


@POLICIES.register("dep_soft")
class DepSoft(BatchPolicy):
    """DEP_SOFT (Liu et al. 2024, sec. VI-A baseline 1, after its ref. [6]): score = bytes of the task's layers
    already on the node; a node is chosen at random among the feasible nodes scoring at least ``threshold`` x the
    best."""

    name = "dep_soft"

    def __init__(self, seed: int | None = None, threshold: float = DEP_SOFT_THRESHOLD) -> None:
        super().__init__(seed)
        self.threshold = threshold

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        n = view.n_nodes
        mask = view.mask(tasks)[:, :n]
        score = view.present_bytes(tasks)[:, :n]
        best = np.where(mask, score, -np.inf).max(axis=1, keepdims=True)
        qualify = mask & (score >= self.threshold * best)
        return _pick(np.zeros_like(score), qualify, view.cloud, self.rng)


@POLICIES.register("kube")
class Kube(BatchPolicy):
    """KUBE (Liu et al. 2024, sec. VI-A baseline 2): Kubernetes' ImageLocality score. A node scores the size of
    the task's image if the WHOLE image is present there, scaled by the image's spread (nodes holding it / all
    nodes), clamped to [23 MiB, 1000 MiB] and normalised - the kube-scheduler's rule; highest score wins."""

    name = "kube"

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        n = view.n_nodes
        mask = view.mask(tasks)[:, :n]
        present = view.image_present(tasks)[:, :n]
        size = view.task_layers(tasks).astype(np.float64) @ view.layer_sizes_bytes
        spread = present.sum(axis=1) / n
        raw = np.where(present, (size * spread)[:, None], 0.0)
        score = np.clip((raw - KUBE_MIN_BYTES) / (KUBE_MAX_BYTES - KUBE_MIN_BYTES), 0.0, 1.0)
        return _pick(score, mask, view.cloud, self.rng)


@POLICIES.register("down")
class Down(BatchPolicy):
    """DOWN (Liu et al. 2024, sec. VI-A baseline 4): like DEP_SOFT's layer score, but the score is the estimated
    download time of the missing layers (queue backlog + missing bytes / b_n, eqs. 2-3); the fastest node wins."""

    name = "down"

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        n = view.n_nodes
        mask = view.mask(tasks)[:, :n]
        return _pick(view.download_estimate_s(tasks)[:, :n], mask, view.cloud, self.rng, higher_is_better=False)
