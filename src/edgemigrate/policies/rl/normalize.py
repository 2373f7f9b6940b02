"""Reward normalisation for PPO: rewards are -T_k seconds and can be large."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


class RunningMeanStd:
    """Parallel (Chan et al.) running mean/variance, as in Gymnasium's normalisation wrappers."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: NDArray[np.float64]) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.size == 0:
            return
        b_mean, b_var, n = float(x.mean()), float(x.var()), x.size
        delta, tot = b_mean - self.mean, self.count + n
        self.mean += delta * n / tot
        self.var = (self.var * self.count + b_var * n + delta**2 * self.count * n / tot) / tot
        self.count = tot

    @property
    def std(self) -> float:
        return math.sqrt(self.var + 1e-8)


class RewardScaler:
    """``r / std(discounted return)`` with per-env return accumulators reset at episode ends."""

    def __init__(self, num_envs: int, gamma: float, enabled: bool) -> None:
        self.ret = np.zeros(num_envs)
        self.gamma, self.enabled = gamma, enabled
        self.rms = RunningMeanStd()

    def __call__(self, reward: NDArray[np.float64], done: NDArray[np.bool_]) -> NDArray[np.float64]:
        if not self.enabled:
            return reward
        self.ret = self.ret * self.gamma + reward
        self.rms.update(self.ret)
        self.ret[done] = 0.0
        return reward / self.rms.std

    @property
    def scale(self) -> float:
        return self.rms.std if self.enabled else 1.0
