"""PPO for the PPCM agent, readable top to bottom (CleanRL style): Liu et al. 2024, sec. V, Algorithm 1, Table I.

``train(env_fn, cfg, expert=None, out_dir=...)`` runs, in order:

1. **Expert demonstrations** (Liu et al. 2024, sec. V-B, Algorithm 1 lines 4-8): if an ``expert`` Policy is
   given and ``cfg.demo_episodes`` (the paper's ``alpha``) > 0, the expert plays ``alpha`` whole episodes; their
   transitions fill a demonstration buffer (observations, expert actions, discounted Monte-Carlo returns).
   Samples whose action the mask forbids are dropped.
2. **Behaviour-cloning warm start**: ``bc_epochs`` of minibatch cross-entropy of the masked actor on the expert's
   actions, and (so PPO does not start from a random critic that would wreck the cloned actor) regression of the
   critic on the demonstrations' normalised returns. (Steps 1-2 live in :mod:`edgemigrate.policies.rl.demos`.)
3. **PPO** (eqs. 23-25): ``num_envs`` Gymnasium vector envs (``SyncVectorEnv``; ``AsyncVectorEnv`` with
   ``async_envs``) in same-step autoreset mode, rollouts of ``num_steps``, GAE(``gamma``, ``gae_lambda``),
   ``update_epochs`` epochs of clipped-surrogate minibatch updates with value clipping, entropy bonus and
   gradient clipping. Truncated episodes bootstrap from the value of their final observation.
   **Decaying demonstration share** (Liu et al. 2024, sec. V-B: "the number of demonstration samples is gradually
   reduced"): in update ``u`` each minibatch is joined by ``round(share_u * minibatch)`` demonstration samples,
   ``share_u = demo_share * max(0, 1 - u / demo_decay_updates)`` (linear decay to zero), and the loss is
   ``(1 - share_u) * L_PPO + share_u * bc_coef * L_BC`` with ``L_BC`` the expert actions' negative log-likelihood.
   Without an expert (or with ``demo_episodes = 0``) this is plain PPO - Liu et al. 2024's "PPO" baseline.

In the code, :func:`train` runs these steps top to bottom: ``_warm_start`` (steps 1-2), then per update
``_collect_rollout``, ``_flatten_with_gae``, ``_update`` (``_ppo_loss`` per minibatch) and ``_log_row``, and
finally ``_save_outputs``.

Rewards are ``-T_k`` in seconds and can be large, so with ``normalize_reward`` they are divided by the running
standard deviation of the discounted return (per env), as Gymnasium's ``NormalizeReward`` / SB3's ``VecNormalize``
do; the statistics are primed with the demonstrations' discounted returns. Seeding: ``torch.manual_seed(seed)``, the vector
env reset with ``seed`` (env ``i`` gets ``seed + i``), demonstration episodes with ``seed + 100_000 + i``, NumPy
draws from ``SeedTree(seed)``. torch and OpenMP run single-threaded (``torch_threads``; 2 threads on a 2-core
machine made PPO 5-80x slower).

Outputs under ``out_dir/{scenario}__{algo}__{seed}__{unix time}/`` (``-2``, ``-3``... appended when parallel
runs start in the same second): ``train.csv`` (policy loss, value loss,
entropy, KL, clip fraction, BC loss, demo share, mean episode reward per update; ``rollout_entropy`` = mean
entropy of the acting policy over the rollout's states and ``rollout_cloud_share`` = share of rollout actions
that chose the cloud - update 1's values are those of the warm-started policy), ``train.png`` (Liu et al. 2024, fig. 7),
``config.json`` (with ``warm_start``: demonstration steps, the expert's cloud share, the policy's mean entropy
on the demonstration states before and after behaviour cloning, BC accuracy and the cloned policy's cloud share)
and ``checkpoint/`` (loadable with :meth:`PPCMPolicy.load`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from numpy.typing import NDArray

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.core.registry import suggest
from edgemigrate.core.runs import new_run_dir, run_name
from edgemigrate.core.seeding import SeedTree
from edgemigrate.policies.rl.agent import ActorCritic, PPCMPolicy, index_obs, obs_to_torch
from edgemigrate.policies.rl.demos import (
    Demonstrations,
    behaviour_cloning,
    collect_demonstrations,
    policy_entropy,
)
from edgemigrate.policies.rl.networks import OBS_KEYS, ObsDims
from edgemigrate.policies.rl.normalize import RewardScaler
from edgemigrate.policies.rl.trainlog import TrainLog

if TYPE_CHECKING:
    from edgemigrate.policies.base import Policy

log = logging.getLogger(__name__)
EnvFn = Callable[[], gym.Env[Any, Any]]


def _f(default: Any, help: str) -> Any:  # noqa: A002 - the dataclass field's help text
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class PPOConfig:
    """PPCM/PPO hyperparameters; defaults follow Liu et al. 2024, Table I where it gives a value."""

    total_timesteps: int = _f(200_000, "environment steps to train for (after the demonstrations)")
    num_envs: int = _f(4, "parallel environments in the vector env")
    num_steps: int = _f(128, "steps per env per rollout; rollout batch = num_envs * num_steps (Table I: 512)")
    learning_rate: float = _f(5e-4, "Adam learning rate (Table I)")
    anneal_lr: bool = _f(False, "linearly anneal the learning rate to 0")
    gamma: float = _f(0.99, "discount factor gamma (Table I)")
    gae_lambda: float = _f(0.95, "GAE lambda (Table I)")
    update_epochs: int = _f(10, "optimisation epochs per rollout (Table I)")
    num_minibatches: int = _f(4, "minibatches per epoch")
    clip_coef: float = _f(0.2, "PPO clipping epsilon (Table I)")
    clip_vloss: bool = _f(True, "clip the value loss like the policy ratio")
    ent_coef: float = _f(0.01, "entropy coefficient c_h (Table I)")
    vf_coef: float = _f(0.5, "value-loss coefficient")
    max_grad_norm: float = _f(0.5, "global gradient-norm clip")
    norm_adv: bool = _f(True, "normalise advantages per minibatch")
    target_kl: float | None = _f(None, "stop the epoch loop early when approx. KL exceeds this")
    normalize_reward: bool = _f(True, "divide rewards by the running std of the discounted return")
    actor: str = _f("dcn", "actor network: dcn | mlp")
    critic: str = _f("attention", "critic network: attention | mlp")
    embed_dim: int = _f(16, "layer-embedding size d (DCN actor and attention critic)")
    cross_layers: int = _f(3, "cross-network depth (DCN actor)")
    deep_hidden: tuple[int, ...] = _f((64, 64), "deep-network widths (DCN actor; Table I gives none)")
    attention_dim: int = _f(32, "token width of the attention critic")
    attention_heads: int = _f(4, "attention heads of the critic")
    mlp_hidden: tuple[int, ...] = _f((256, 256), "hidden widths of the MLP actor/critic (ablations)")
    demo_episodes: int = _f(20, "alpha: expert episodes collected as demonstrations (0 = plain PPO)")
    bc_epochs: int = _f(30, "behaviour-cloning epochs over the demonstrations before PPO")
    demo_share: float = _f(0.25, "initial share of demonstration samples in each PPO minibatch")
    demo_decay_updates: int = _f(20, "PPO updates over which the demonstration share decays linearly to 0")
    bc_coef: float = _f(1.0, "weight of the behaviour-cloning loss on demonstration samples")
    seed: int = _f(1, "random seed (torch, envs, minibatch order)")
    torch_threads: int = _f(1, "torch / OpenMP threads")
    async_envs: bool = _f(False, "use AsyncVectorEnv (one process per env) instead of SyncVectorEnv")

    def __post_init__(self) -> None:
        ints = (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "update_epochs",
            "num_minibatches",
            "torch_threads",
        )
        for name in ints:
            if getattr(self, name) < 1:
                raise ValidationError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("demo_episodes", "bc_epochs", "demo_decay_updates", "seed"):
            if getattr(self, name) < 0:
                raise ValidationError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size % self.num_minibatches:
            raise ValidationError(
                f"PPOConfig: num_envs * num_steps = {self.batch_size} not divisible by num_minibatches "
                f"= {self.num_minibatches}"
            )
        if not (0.0 <= self.demo_share < 1.0):
            raise ValidationError(f"PPOConfig.demo_share must be in [0, 1), got {self.demo_share}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValidationError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    def network_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Keyword arguments for the chosen actor and critic classes."""
        actor = (
            {
                "embed_dim": self.embed_dim,
                "cross_layers": self.cross_layers,
                "deep_hidden": list(self.deep_hidden),
            }
            if self.actor == "dcn"
            else {"hidden": list(self.mlp_hidden)}
        )
        critic = (
            {"embed_dim": self.embed_dim, "model_dim": self.attention_dim, "heads": self.attention_heads}
            if self.critic == "attention"
            else {"hidden": list(self.mlp_hidden)}
        )
        return actor, critic

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (for CLI options)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "PPO config") -> PPOConfig:
        """Build from e.g. a TOML table; unknown keys are rejected with a "did you mean"."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{source}: unknown key '{key}'{suggest(key, known)}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class TrainResult:
    run_name: str
    run_dir: Path
    checkpoint_dir: Path
    log_csv: Path
    plot_png: Path
    policy: PPCMPolicy
    global_steps: int
    rows: list[dict[str, Any]]
    demo_mean_return: float | None
    bc_accuracy: float | None
    warm_start: dict[str, float] = field(default_factory=dict)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al. 2016; Liu et al. 2024, eq. 25) for ``(T, E)`` rollouts.

    ``dones[t]`` = the transition ``t -> t + 1`` ended its episode (its reward already holds any truncation
    bootstrap), so neither the value nor the advantage of step ``t + 1`` flows back across it.
    ``next_value`` is ``V`` of the observation after the last step.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        nv = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * nv * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        advantages[t] = last
    return advantages


def _make_envs(env_fn: EnvFn, cfg: PPOConfig) -> gym.vector.VectorEnv[Any, Any, Any]:
    fns = [env_fn] * cfg.num_envs
    mode = gym.vector.AutoresetMode.SAME_STEP
    if cfg.async_envs:
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def _set_threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)  # inherited by AsyncVectorEnv workers
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # can only be set once per process, before inter-op work
        pass


@dataclass(frozen=True, slots=True)
class _WarmStart:
    """What steps 1-2 leave for PPO: the demonstrations (as tensors, for the BC term) and their statistics."""

    demos: Demonstrations | None
    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    bc_accuracy: float | None
    stats: dict[str, float]  # ``warm_start`` of config.json


@dataclass(frozen=True, slots=True)
class _Rollout:
    """Rollout buffers, ``(num_steps, num_envs)`` per field; every update overwrites them in place."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor

    @classmethod
    def zeros(cls, cfg: PPOConfig, space: spaces.Dict) -> _Rollout:
        shape = (cfg.num_steps, cfg.num_envs)
        obs = {
            k: torch.zeros((*shape, *(space[k].shape or ())), dtype=torch.bool if k == "action_mask" else torch.float32)
            for k in OBS_KEYS
        }
        logprobs, rewards, dones, values = (torch.zeros(shape) for _ in range(4))
        return cls(obs, torch.zeros(shape, dtype=torch.long), logprobs, rewards, dones, values)


class _RolloutEnd(NamedTuple):
    next_obs: dict[str, torch.Tensor]  # where the next rollout starts
    finished: list[float]  # returns of the episodes that ended during the rollout
    entropy: float  # mean entropy of the acting policy over the rollout's states


class _Batch(NamedTuple):
    """A rollout flattened to ``batch_size`` samples, with its GAE advantages and returns."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor


class _Losses(NamedTuple):
    total: torch.Tensor  # what the optimiser minimises: pg - ent_coef * entropy + vf_coef * v
    pg: torch.Tensor
    v: torch.Tensor
    entropy: torch.Tensor
    approx_kl: float
    clip_fraction: float


def train(
    env_fn: EnvFn,
    cfg: PPOConfig = PPOConfig(),
    expert: Policy | None = None,
    out_dir: str | Path = "runs",
    *,
    scenario: str = "custom",
    algo: str | None = None,
    on_update: Callable[[int, PPCMPolicy, dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train PPCM (or plain PPO when ``expert`` is None); see the module docstring for the procedure.

    ``on_update(update, greedy_policy, row)`` is called after every PPO update with the current agent as a
    greedy policy and the log row (``wall_s`` = seconds since training started, demonstrations included);
    returning True stops training early (used by benchmarks that evaluate along the way).
    """
    t_start = time.perf_counter()
    _set_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    seeds = SeedTree(cfg.seed)
    algo = algo or ("ppcm" if expert is not None and cfg.demo_episodes > 0 else "ppo")
    run_dir = new_run_dir(Path(out_dir), run_name(scenario, algo, cfg.seed))

    envs = _make_envs(env_fn, cfg)
    dims = ObsDims.from_space(envs.single_observation_space)
    actor_kw, critic_kw = cfg.network_kwargs()
    agent = ActorCritic(dims, cfg.actor, cfg.critic, actor_kw, critic_kw)
    scaler = RewardScaler(cfg.num_envs, cfg.gamma, cfg.normalize_reward)

    # 1-2. demonstrations and behaviour-cloning warm start
    warm = _warm_start(env_fn, cfg, expert, agent, scaler, seeds)

    # 3. PPO
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5)
    space = cast(spaces.Dict, envs.single_observation_space)
    buf = _Rollout.zeros(cfg, space)
    mb_rng = seeds.rng("minibatches")
    demo_rng = seeds.rng("demo-samples")
    csv_log = TrainLog(run_dir / "train.csv")
    ep_return, global_step = np.zeros(cfg.num_envs), 0
    next_obs_np, _ = envs.reset(seed=cfg.seed)
    next_obs = obs_to_torch(next_obs_np)
    for update in range(cfg.num_updates):
        lr = cfg.learning_rate * (1.0 - update / cfg.num_updates if cfg.anneal_lr else 1.0)
        optimizer.param_groups[0]["lr"] = lr
        rollout = _collect_rollout(envs, agent, scaler, cfg, buf, next_obs, ep_return)
        next_obs, global_step = rollout.next_obs, global_step + cfg.batch_size
        batch = _flatten_with_gae(agent, cfg, buf, next_obs)
        share = _demo_share(cfg, update, warm.demos is not None)
        stats = _update(agent, optimizer, cfg, batch, warm, share, mb_rng, demo_rng)
        cloud_share = float((buf.actions == space["action_mask"].shape[0] - 1).float().mean())
        row = _log_row(update, global_step, lr, share, stats, rollout, cloud_share, time.perf_counter() - t_start)
        csv_log.write({k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()})
        log.info("update %d/%d step %d reward %.3f", update + 1, cfg.num_updates, global_step,
                 row["mean_episode_reward"])
        if on_update is not None:
            agent.eval()
            if on_update(update + 1, PPCMPolicy(agent, name=algo, threads=None), row):
                break
    envs.close()
    csv_log.close()

    # outputs
    return _save_outputs(agent, cfg, expert, warm, run_dir=run_dir, scenario=scenario, algo=algo, dims=dims,
                         global_step=global_step, csv_log=csv_log)


def _warm_start(
    env_fn: EnvFn, cfg: PPOConfig, expert: Policy | None, agent: ActorCritic, scaler: RewardScaler, seeds: SeedTree
) -> _WarmStart:
    """Steps 1-2: the expert's demonstrations and behaviour cloning on them (nothing without an expert)."""
    stats: dict[str, float] = {}
    if expert is None or cfg.demo_episodes <= 0:
        return _WarmStart(None, {}, torch.zeros(0, dtype=torch.long), None, stats)
    demos = collect_demonstrations(env_fn, expert, cfg.demo_episodes, cfg.seed, cfg.gamma)
    cloud = demos.obs["action_mask"].shape[1] - 1
    stats["demo_steps"] = float(len(demos))
    stats["demo_cloud_share"] = float(np.mean(demos.actions == cloud))
    stats["entropy_before_bc"] = policy_entropy(agent, demos.obs)
    if cfg.normalize_reward:
        scaler.rms.update(demos.returns)  # prime the return statistics with the expert's returns
    bc_loss, bc_acc = behaviour_cloning(
        agent,
        demos,
        scaler.scale,
        seeds.rng("bc"),
        epochs=cfg.bc_epochs,
        minibatch_size=cfg.minibatch_size,
        learning_rate=cfg.learning_rate,
        vf_coef=cfg.vf_coef,
        max_grad_norm=cfg.max_grad_norm,
    )
    stats["entropy_after_bc"] = policy_entropy(agent, demos.obs)
    stats["bc_accuracy"] = bc_acc
    stats["bc_loss"] = bc_loss
    stats["bc_cloud_share"] = float(np.mean(_greedy(agent, demos.obs) == cloud))
    log.info(
        "demonstrations: %d steps, mean episode return %.3f; BC loss %.4f, accuracy %.3f",
        len(demos),
        demos.episode_returns.mean(),
        bc_loss,
        bc_acc,
    )
    return _WarmStart(demos, obs_to_torch(demos.obs), torch.as_tensor(demos.actions), bc_acc, stats)


def _collect_rollout(
    envs: gym.vector.VectorEnv[Any, Any, Any],
    agent: ActorCritic,
    scaler: RewardScaler,
    cfg: PPOConfig,
    buf: _Rollout,
    next_obs: dict[str, torch.Tensor],
    ep_return: NDArray[np.float64],
) -> _RolloutEnd:
    """Act ``num_steps`` times in every env with the current policy, filling ``buf`` with scaled rewards;
    ``ep_return`` carries the returns of unfinished episodes from one rollout to the next."""
    finished: list[float] = []
    entropies: list[float] = []
    agent.eval()
    for t in range(cfg.num_steps):
        for k in OBS_KEYS:
            buf.obs[k][t] = next_obs[k]
        with torch.no_grad():
            action, logp, entropy, value = agent.act_value(next_obs)
        entropies.append(float(entropy.mean()))
        buf.actions[t], buf.logprobs[t], buf.values[t] = action, logp, value
        next_obs_np, reward, term, trunc, info = envs.step(action.numpy())
        reward = np.asarray(reward, dtype=np.float64)
        done = np.logical_or(term, trunc)
        ep_return += reward
        finished.extend(ep_return[done].tolist())
        ep_return[done] = 0.0
        r = scaler(reward, done)
        boot = np.flatnonzero(np.asarray(trunc) & ~np.asarray(term))
        if boot.size:  # truncated, not terminated: bootstrap from the final observation's value
            final = {k: np.stack([info["final_obs"][i][k] for i in boot]) for k in OBS_KEYS}
            with torch.no_grad():
                r[boot] += cfg.gamma * agent.value(obs_to_torch(final)).numpy()
        buf.rewards[t] = torch.as_tensor(r, dtype=torch.float32)
        buf.dones[t] = torch.as_tensor(done, dtype=torch.float32)
        next_obs = obs_to_torch(next_obs_np)
    return _RolloutEnd(next_obs, finished, float(np.mean(entropies)))


def _flatten_with_gae(
    agent: ActorCritic, cfg: PPOConfig, buf: _Rollout, next_obs: dict[str, torch.Tensor]
) -> _Batch:
    """GAE advantages and returns (eq. 25) of the rollout in ``buf``, flattened over steps and envs."""
    with torch.no_grad():
        advantages = compute_gae(buf.rewards, buf.values, buf.dones, agent.value(next_obs), cfg.gamma, cfg.gae_lambda)
        returns = advantages + buf.values
    obs = {k: v.reshape(cfg.batch_size, *v.shape[2:]) for k, v in buf.obs.items()}
    return _Batch(
        obs,
        buf.actions.reshape(-1),
        buf.logprobs.reshape(-1),
        advantages.reshape(-1),
        returns.reshape(-1),
        buf.values.reshape(-1),
    )


def _demo_share(cfg: PPOConfig, update: int, has_demos: bool) -> float:
    """Share of demonstration samples in the minibatches of update ``update`` (0-based): linear decay to 0."""
    if not has_demos or cfg.demo_decay_updates <= 0:
        return 0.0
    return cfg.demo_share * max(0.0, 1.0 - update / cfg.demo_decay_updates)


def _update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    cfg: PPOConfig,
    batch: _Batch,
    warm: _WarmStart,
    share: float,
    mb_rng: np.random.Generator,
    demo_rng: np.random.Generator,
) -> dict[str, list[float]]:
    """``update_epochs`` epochs of minibatch steps on the PPO loss, each minibatch joined by ``share`` of
    demonstration samples whose BC loss weighs ``share * bc_coef``; returns per-minibatch statistics."""
    n_demo = max(1, round(share * cfg.minibatch_size)) if share > 0 else 0
    agent.train()
    stats: dict[str, list[float]] = {k: [] for k in ("pg", "v", "ent", "kl", "clip", "bc")}
    for _epoch in range(cfg.update_epochs):
        perm = mb_rng.permutation(cfg.batch_size)
        for start in range(0, cfg.batch_size, cfg.minibatch_size):
            losses = _ppo_loss(agent, cfg, batch, perm[start : start + cfg.minibatch_size])
            stats["kl"].append(losses.approx_kl)
            stats["clip"].append(losses.clip_fraction)
            loss = losses.total
            if n_demo:
                d_idx = torch.as_tensor(demo_rng.integers(0, warm.actions.shape[0], size=n_demo))
                bc = F.cross_entropy(agent.logits(index_obs(warm.obs, d_idx)), warm.actions[d_idx])
                loss = (1.0 - share) * loss + share * cfg.bc_coef * bc
                stats["bc"].append(float(bc.item()))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            stats["pg"].append(float(losses.pg.item()))
            stats["v"].append(float(losses.v.item()))
            stats["ent"].append(float(losses.entropy.item()))
        if cfg.target_kl is not None and np.mean(stats["kl"][-cfg.num_minibatches :]) > cfg.target_kl:
            break
    return stats


def _ppo_loss(agent: ActorCritic, cfg: PPOConfig, batch: _Batch, idx: NDArray[np.int64]) -> _Losses:
    """PPO loss of minibatch ``idx``: clipped surrogate (eq. 24), clipped value loss, entropy bonus."""
    _, new_logp, entropy, new_value = agent.act_value(index_obs(batch.obs, idx), batch.actions[idx])
    log_ratio = new_logp - batch.logprobs[idx]
    ratio = log_ratio.exp()
    with torch.no_grad():
        approx_kl = float(((ratio - 1) - log_ratio).mean())
        clip_fraction = float(((ratio - 1.0).abs() > cfg.clip_coef).float().mean())
    adv = batch.advantages[idx]
    if cfg.norm_adv and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    pg_loss = torch.max(
        -adv * ratio, -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
    ).mean()  # eq. 24, as a loss to minimise
    ret, old_value = batch.returns[idx], batch.values[idx]
    if cfg.clip_vloss:
        v_clipped = old_value + torch.clamp(new_value - old_value, -cfg.clip_coef, cfg.clip_coef)
        v_loss = 0.5 * torch.max((new_value - ret) ** 2, (v_clipped - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - ret) ** 2).mean()
    ent = entropy.mean()
    total = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
    return _Losses(total, pg_loss, v_loss, ent, approx_kl, clip_fraction)


def _log_row(
    update: int,
    global_step: int,
    lr: float,
    share: float,
    stats: dict[str, list[float]],
    rollout: _RolloutEnd,
    cloud_share: float,
    wall_s: float,
) -> dict[str, Any]:
    """One row of train.csv (columns: :data:`edgemigrate.policies.rl.trainlog.COLUMNS`)."""
    finished = rollout.finished
    return {
        "update": update + 1,
        "global_step": global_step,
        "policy_loss": np.mean(stats["pg"]),
        "value_loss": np.mean(stats["v"]),
        "entropy": np.mean(stats["ent"]),
        "rollout_entropy": rollout.entropy,
        "rollout_cloud_share": cloud_share,
        "approx_kl": np.mean(stats["kl"]),
        "clip_fraction": np.mean(stats["clip"]),
        "bc_loss": np.mean(stats["bc"]) if stats["bc"] else float("nan"),
        "demo_share": share,
        "learning_rate": lr,
        "episodes": len(finished),
        "mean_episode_reward": float(np.mean(finished)) if finished else float("nan"),
        "wall_s": wall_s,
    }


def _save_outputs(
    agent: ActorCritic,
    cfg: PPOConfig,
    expert: Policy | None,
    warm: _WarmStart,
    *,
    run_dir: Path,
    scenario: str,
    algo: str,
    dims: ObsDims,
    global_step: int,
    csv_log: TrainLog,
) -> TrainResult:
    """Checkpoint, train.png and config.json under ``run_dir``; the result handed back to the caller."""
    run_name = run_dir.name
    agent.eval()
    meta = {"run_name": run_name, "scenario": scenario, "algo": algo, "global_steps": global_step}
    policy = PPCMPolicy(agent, name=algo, meta=meta)
    ckpt = policy.save(run_dir / "checkpoint")
    png = csv_log.plot(run_dir / "train.png", title=run_name)
    resolved = {
        "ppo": dataclasses.asdict(cfg),
        "dims": dims.to_dict(),
        "run_name": run_name,
        "expert": getattr(expert, "name", None),
        "warm_start": warm.stats,
        "versions": {"torch": torch.__version__},
    }
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2, default=list))
    return TrainResult(
        run_name=run_name,
        run_dir=run_dir,
        checkpoint_dir=ckpt,
        log_csv=csv_log.path,
        plot_png=png,
        policy=policy,
        global_steps=global_step,
        rows=csv_log.rows,
        demo_mean_return=float(warm.demos.episode_returns.mean()) if warm.demos is not None else None,
        bc_accuracy=warm.bc_accuracy,
        warm_start=warm.stats,
    )


def _greedy(agent: ActorCritic, obs: dict[str, Any], batch: int = 4096) -> NDArray[np.int64]:
    """Arg-max actions of the masked actor over stacked observations."""
    n = int(obs["action_mask"].shape[0])
    out = np.empty(n, dtype=np.int64)
    with torch.no_grad():
        for start in range(0, n, batch):
            part = obs_to_torch({k: v[start : start + batch] for k, v in obs.items()})
            out[start : start + batch] = agent.logits(part).argmax(-1).numpy()
    return out
