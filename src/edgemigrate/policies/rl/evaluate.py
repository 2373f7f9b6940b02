"""One ``evaluate(policy, env_fn, episodes, seeds)`` for every ``Policy`` (Stable-Baselines3's idea).

Pure NumPy/Gymnasium - no torch - so heuristics and metaheuristics are scored exactly like the trained agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError

if TYPE_CHECKING:  # the protocol module imports the simulator; only the type is needed here
    from edgemigrate.policies.base import Policy


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Per-episode undiscounted return, length, seed, and the per-episode sums of ``info[key]``."""

    policy: str
    returns: NDArray[np.float64]
    lengths: NDArray[np.int64]
    seeds: tuple[int, ...]
    info_sums: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    infeasible_actions: int = 0

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def std_return(self) -> float:
        return float(self.returns.std(ddof=1)) if self.returns.size > 1 else 0.0


def evaluate(
    policy: Policy,
    env_fn: Callable[[], gym.Env[Any, Any]],
    episodes: int,
    seeds: Sequence[int] | None = None,
    *,
    sum_info_keys: Sequence[str] = (),
    max_steps: int = 1_000_000,
) -> EvalResult:
    """Run ``episodes`` episodes (env reset and ``policy.reset`` both get ``seeds[i]``, default ``0..n-1``).

    Counts actions outside ``obs["action_mask"]`` in ``infeasible_actions`` (a correct policy has 0).
    """
    if episodes < 1:
        raise ValidationError(f"evaluate: episodes must be >= 1, got {episodes}")
    seeds = tuple(range(episodes)) if seeds is None else tuple(int(s) for s in seeds)
    if len(seeds) != episodes:
        raise ValidationError(f"evaluate: got {len(seeds)} seeds for {episodes} episodes")
    env = env_fn()
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    sums = {k: np.zeros(episodes) for k in sum_info_keys}
    bad = 0
    try:
        for i, seed in enumerate(seeds):
            obs, info = env.reset(seed=seed)
            policy.reset(seed)
            done = False
            while not done:
                action = int(policy.act(obs, info))
                mask = obs.get("action_mask") if isinstance(obs, Mapping) else None
                if mask is not None and not (0 <= action < len(mask) and mask[action]):
                    bad += 1
                obs, reward, terminated, truncated, info = env.step(action)
                returns[i] += float(reward)
                lengths[i] += 1
                for k in sum_info_keys:
                    if k in info:
                        sums[k][i] += float(np.sum(info[k]))
                done = terminated or truncated or lengths[i] >= max_steps
    finally:
        env.close()
    return EvalResult(getattr(policy, "name", type(policy).__name__), returns, lengths, seeds, sums, bad)
