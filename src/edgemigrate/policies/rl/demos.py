"""Expert demonstrations and the behaviour-cloning warm start of PPCM (Liu et al. 2024, sec. V-B, Algorithm 1
l. 4-8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.rl.agent import ActorCritic, index_obs, masked_entropy, obs_to_torch
from edgemigrate.policies.rl.networks import OBS_KEYS

if TYPE_CHECKING:
    from edgemigrate.policies.base import Policy

EnvFn = Callable[[], gym.Env[Any, Any]]


@dataclass(frozen=True, slots=True)
class Demonstrations:
    """Expert transitions: stacked observations, actions, rewards and discounted returns (raw seconds)."""

    obs: dict[str, NDArray[Any]]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]
    returns: NDArray[np.float64]
    episode_returns: NDArray[np.float64]
    dropped: int

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def collect_demonstrations(
    env_fn: EnvFn, expert: Policy, episodes: int, seed: int, gamma: float
) -> Demonstrations:
    """Algorithm 1 lines 4-8: the expert plays ``episodes`` episodes; store its (s, a, r) and returns."""
    env = env_fn()
    obs_parts: dict[str, list[NDArray[Any]]] = {k: [] for k in OBS_KEYS}
    actions: list[int] = []
    rewards: list[float] = []
    returns: list[float] = []
    ep_returns: list[float] = []
    dropped = 0
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + 100_000 + ep)
            expert.reset(seed + 100_000 + ep)
            ep_r: list[float] = []
            keep: list[bool] = []
            done = False
            while not done:
                a = int(expert.act(obs, info))
                ok = 0 <= a < len(obs["action_mask"]) and bool(obs["action_mask"][a])
                keep.append(ok)
                if ok:
                    for k in OBS_KEYS:
                        obs_parts[k].append(np.asarray(obs[k]))
                    actions.append(a)
                else:
                    dropped += 1
                obs, r, term, trunc, info = env.step(a)
                ep_r.append(float(r))
                done = bool(term or trunc)
            g, disc = 0.0, []
            for r in reversed(ep_r):
                g = r + gamma * g
                disc.append(g)
            disc.reverse()
            returns.extend(d for d, ok in zip(disc, keep, strict=True) if ok)
            rewards.extend(r for r, ok in zip(ep_r, keep, strict=True) if ok)
            ep_returns.append(sum(ep_r))
    finally:
        env.close()
    if not actions:
        raise ValidationError("the expert produced no feasible demonstration step")
    stacked = {k: np.stack(v) for k, v in obs_parts.items()}
    return Demonstrations(
        stacked,
        np.asarray(actions, dtype=np.int64),
        np.asarray(rewards),
        np.asarray(returns),
        np.asarray(ep_returns),
        dropped,
    )


def behaviour_cloning(
    agent: ActorCritic,
    demos: Demonstrations,
    return_scale: float,
    rng: np.random.Generator,
    *,
    epochs: int,
    minibatch_size: int,
    learning_rate: float,
    vf_coef: float,
    max_grad_norm: float,
) -> tuple[float, float]:
    """Warm start: actor cross-entropy on expert actions + critic MSE on normalised returns.

    Returns (final BC loss, accuracy of the greedy actor on the demonstrations).
    """
    obs = obs_to_torch(demos.obs)
    actions = torch.as_tensor(demos.actions)
    targets = torch.as_tensor(demos.returns / return_scale, dtype=torch.float32)
    opt = torch.optim.Adam(agent.parameters(), lr=learning_rate, eps=1e-5)
    n, mb = len(demos), min(minibatch_size, len(demos))
    loss_v = float("nan")
    for _ in range(epochs):
        perm = rng.permutation(n)
        for start in range(0, n - mb + 1, mb):
            idx = perm[start : start + mb]
            o = index_obs(obs, idx)
            bc = F.cross_entropy(agent.logits(o), actions[idx])
            vloss = F.mse_loss(agent.value(o), targets[idx])
            loss = bc + vf_coef * vloss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
            opt.step()
            loss_v = float(bc.item())
    with torch.no_grad():
        acc = float((agent.logits(obs).argmax(-1) == actions).float().mean().item())
    return loss_v, acc


def policy_entropy(agent: ActorCritic, obs: dict[str, NDArray[Any]], batch: int = 4096) -> float:
    """Mean entropy (nats) of the masked action distribution over the stacked observations ``obs``.

    Measured on the demonstration states right before and right after behaviour cloning, it shows how far
    the warm start narrows exploration (the controlled PPCM experiment).
    """
    n = int(obs["action_mask"].shape[0])
    if n == 0:
        return float("nan")
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, batch):
            part = obs_to_torch({k: v[start : start + batch] for k, v in obs.items()})
            total += float(masked_entropy(agent.logits(part)).sum())
    return total / n
