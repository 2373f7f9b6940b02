"""Training a Mobile-Kube agent (Ghafouri et al. 2022, sec. VI-VII) with RLlib's new API stack.

The env comes as a creator function (``env_config -> gymnasium.Env``) so this package stays below ``envs`` and
works for any env: the experiments pass MobileKube-v0's, the tests a small one. Each iteration gives one row of
metrics: env steps sampled and trained (lifetime, RLlib's counters: their ratio says how much of the sampled
data the learner consumes), the mean episode return, and the per-episode mean of every numeric ``info`` value
the env reports (e.g. empty servers and latency), averaged over RLlib's window of recent episodes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.rllib.config import Algo, AlgoConfig, ImpalaConfig, PGConfig, PPOConfig

log = logging.getLogger(__name__)

EnvCreator = Callable[[Mapping[str, Any]], Any]
INFO_PREFIX = "info/"


@dataclass(frozen=True, slots=True)
class TrainSpec:
    algo: Algo
    hyper: AlgoConfig
    env_name: str
    """Name the env is registered under in Ray (any string; shown in RLlib's logs)."""
    env_creator: EnvCreator
    """Top-level function ``env_config -> gymnasium.Env`` (pickled by reference to the env runners)."""
    env_config: Mapping[str, Any]
    seed: int
    timesteps: int
    """Stop after this many sampled env steps (the iteration that crosses it is completed)."""
    num_env_runners: int = 1
    num_envs_per_env_runner: int = 1
    runner_cpus: float = 1.0
    """CPUs each env runner reserves; the driver's learner takes one more."""
    num_learners: int = 0
    """0 = the learner runs in the driver behind a blocking queue, so sampling waits for it and no batch is
    lost. RLlib's IMPALA default (1 remote learner, asynchronous updates) drops every batch that arrives while
    its requests are in flight: on 2 CPUs we measured it training on a fraction of the sampled steps
    (``benchmarks/bench_mobilekube_rllib.py``), which is why the default here is 0."""
    ray_address: str | None = None
    info_keys: Sequence[str] = ()
    """``info`` keys to average per episode; empty = every scalar numeric one."""
    max_iterations: int = 100_000
    smoothing_episodes: int = 20
    """Episodes the per-iteration means (return, info values) are averaged over. RLlib's default, 100, spans
    ten 1000-step iterations of 100-step episodes and flattens the training curves."""
    module_layout: Mapping[str, Any] | None = None
    """Observation layout for ``network.placement_prior`` (``packing.layout``); required when that is set."""
    checkpoint_every: int = 0
    """Also save the checkpoint every this many iterations (0 = only at the end): a long run that is stopped
    early keeps its latest agent."""
    init_from: Path | None = None
    """Warm start: an algorithm checkpoint whose RL module's parameters are copied into the new module where the
    name and shape match (``warm_start``); the rest keeps its initialisation, the optimiser starts fresh."""

    def __post_init__(self) -> None:
        if self.timesteps < 1:
            raise ValidationError(f"timesteps: expected >= 1, got {self.timesteps}")
        if self.hyper.network.placement_prior and (self.module_layout is None or isinstance(self.hyper, PGConfig)):
            raise ValidationError("network.placement_prior needs PPO or IMPALA and the env's observation layout")
        if self.num_env_runners < 1 and self.algo is Algo.IMPALA:
            raise ValidationError("num_env_runners: IMPALA samples asynchronously, it needs >= 1 env runner")


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    rows: list[dict[str, float]]
    checkpoint: Path
    runner_nodes: list[tuple[str, int]] = field(default_factory=list)
    """(Ray node id, env steps it sampled) per remote env runner."""
    warm_started: Mapping[str, list[str]] = field(default_factory=dict)
    """``loaded`` / ``kept`` parameter names of a warm start (empty without ``init_from``)."""


# -- callbacks run inside the env runners -------------------------------------------------------------------

def _on_episode_end(*, episode: Any, metrics_logger: Any = None, prev_episode_chunks: Any = None,
                    env_runner: Any = None, **_: Any) -> None:
    infos = []
    for chunk in [*(prev_episode_chunks or []), episode]:
        infos.extend(chunk.get_infos())
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for info in infos:
        for k, v in (info or {}).items():
            if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):  # bools become rates
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
    if metrics_logger is None:
        return
    window = getattr(getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100)
    for k, s in sums.items():
        metrics_logger.log_value(INFO_PREFIX + k, s / counts[k], reduce="mean", window=window)


def _on_sample_end(*, env_runner: Any = None, samples: Any = None, **_: Any) -> None:
    if env_runner is not None:
        env_runner._edgemigrate_steps = getattr(env_runner, "_edgemigrate_steps", 0) + sum(len(e) for e in samples)


def _runner_node(runner: Any) -> tuple[str, int]:
    import ray

    return ray.get_runtime_context().get_node_id(), int(getattr(runner, "_edgemigrate_steps", 0))


# -- building the RLlib config ----------------------------------------------------------------------------

def build_config(spec: TrainSpec, registered_env: str) -> Any:
    """The RLlib ``AlgorithmConfig`` for ``spec`` (new API stack, torch, seeded)."""
    from ray.rllib.algorithms.impala import IMPALAConfig
    from ray.rllib.algorithms.ppo import PPOConfig as RLlibPPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from edgemigrate.policies.rllib.pg import PGConfig as RLlibPGConfig

    h = spec.hyper
    net = DefaultModelConfig(fcnet_hiddens=list(h.network.hidden), fcnet_activation=h.network.activation,
                             head_fcnet_hiddens=[], vf_share_layers=False)
    if isinstance(h, PGConfig):
        cfg = RLlibPGConfig().training(lr=h.lr, gamma=h.gamma, train_batch_size_per_learner=h.train_batch_size,
                                       minibatch_size=h.train_batch_size, num_epochs=1)
    elif isinstance(h, PPOConfig):
        cfg = RLlibPPOConfig().training(lr=h.lr, gamma=h.gamma, train_batch_size_per_learner=h.train_batch_size,
                                        minibatch_size=h.minibatch_size, num_epochs=h.num_epochs)
    elif isinstance(h, ImpalaConfig):
        cfg = IMPALAConfig().training(lr=h.lr, gamma=h.gamma, train_batch_size_per_learner=h.train_batch_size,
                                      num_epochs=h.num_epochs, minibatch_size=h.minibatch_size,
                                      learner_queue_size=h.learner_queue_size,
                                      vf_loss_coeff=h.vf_loss_coeff, entropy_coeff=h.entropy_coeff,
                                      grad_clip=h.grad_clip)
        cfg = cfg.env_runners(rollout_fragment_length=h.rollout_fragment_length)
    else:  # pragma: no cover - the union is closed
        raise ValidationError(f"unknown hyperparameter type {type(h).__name__}")
    if h.network.placement_prior:
        from dataclasses import asdict

        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from edgemigrate.policies.rllib.packing import LAYOUT_KEY, PlacementPriorPPOModule

        cfg = cfg.rl_module(rl_module_spec=RLModuleSpec(
            module_class=PlacementPriorPPOModule,
            model_config={**asdict(net), LAYOUT_KEY: dict(spec.module_layout or {})}))
    else:
        cfg = cfg.rl_module(model_config=net)
    return (cfg.environment(registered_env, env_config=dict(spec.env_config))
            .framework("torch")
            .env_runners(num_env_runners=spec.num_env_runners, num_envs_per_env_runner=spec.num_envs_per_env_runner,
                         num_cpus_per_env_runner=spec.runner_cpus)
            .learners(num_learners=spec.num_learners)
            .callbacks(on_episode_end=_on_episode_end, on_sample_end=_on_sample_end)
            # one iteration = at least one train batch of samples: IMPALA's asynchronous training step returns
            # after every fragment, and RLlib's default for it is a 10 s clock instead (rows would depend on speed)
            .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=h.train_batch_size,
                       metrics_num_episodes_for_smoothing=spec.smoothing_episodes)
            .debugging(seed=spec.seed, log_level="ERROR"))


# -- warm start -------------------------------------------------------------------------------------------

def warm_start(algo: Any, checkpoint: Path) -> dict[str, list[str]]:
    """Copy a checkpoint's RL module parameters into ``algo``'s where name and shape match; returns the names.

    Why by name and shape: a checkpoint of the same env size continues as it was (every parameter matches, and
    a term added to the module since - e.g. the prior's ``near_raw`` - keeps its initial value); one of another
    number of users has a differently sized first layer, and then only the size-free parts (the prior's
    learned scalars, the later layers) carry over. Fixed buffers of the env (``packing.ENV_BUFFERS``) always
    come from the new env, never from the checkpoint.
    """
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.rl_module.rl_module import RLModule

    from edgemigrate.core.errors import ConfigError
    from edgemigrate.policies.rllib.agent import MODULE_PATH
    from edgemigrate.policies.rllib.packing import ENV_BUFFERS

    module_dir = Path(checkpoint).joinpath(*MODULE_PATH)
    if not module_dir.is_dir():
        raise ConfigError(f"--init-from {checkpoint}: not an RLlib algorithm checkpoint (no {'/'.join(MODULE_PATH)})")
    theirs = RLModule.from_checkpoint(str(module_dir.resolve())).get_state()
    weights = algo.learner_group.get_weights()
    ours = weights[DEFAULT_MODULE_ID]
    loaded: list[str] = []
    kept: list[str] = []
    for name, value in ours.items():
        old = theirs.get(name)
        if name not in ENV_BUFFERS and old is not None and np.shape(old) == np.shape(value):
            ours[name] = np.asarray(old)
            loaded.append(name)
        else:
            kept.append(name)
    if not loaded:
        raise ConfigError(f"--init-from {checkpoint}: no parameter of that checkpoint fits this module")
    algo.learner_group.set_weights(weights)
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
    log.info("warm start from %s: loaded %s; kept initial %s", checkpoint, loaded, kept)
    return {"loaded": loaded, "kept": kept}


# -- the loop ---------------------------------------------------------------------------------------------

def _get(result: Mapping[str, Any], *path: str, default: float = math.nan) -> float:
    cur: Any = result
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return default
        cur = cur[p]
    try:
        return float(cur)
    except (TypeError, ValueError):
        return default


def result_row(iteration: int, result: Mapping[str, Any], info_keys: Sequence[str], t0: float) -> dict[str, float]:
    runners = result.get("env_runners", {})
    row = {
        "iteration": float(iteration),
        "env_steps_sampled": _get(result, "num_env_steps_sampled_lifetime", default=0.0),
        "env_steps_trained": _get(result, "learners", "__all_modules__", "num_env_steps_trained_lifetime",
                                  default=0.0),
        "env_steps_dropped": _get(result, "learner_group", "learner_group_ts_dropped_lifetime", default=0.0),
        "episode_reward_mean": _get(runners, "episode_return_mean"),
        "episode_len_mean": _get(runners, "episode_len_mean"),
        "wall_s": time.monotonic() - t0,
    }
    keys = info_keys or sorted(k[len(INFO_PREFIX):] for k in runners if k.startswith(INFO_PREFIX))
    for k in keys:
        row[k] = _get(runners, INFO_PREFIX + k)
    return row


def train(spec: TrainSpec, checkpoint_dir: Path,
          on_iteration: Callable[[dict[str, float]], None] | None = None) -> TrainOutcome:
    """Train until ``spec.timesteps`` sampled env steps; save the final checkpoint in ``checkpoint_dir``."""
    import ray
    from ray.tune.registry import register_env

    from edgemigrate.policies.rllib.cluster import init_ray

    started = init_ray(spec.ray_address,
                       num_cpus=None if spec.ray_address else max(2, spec.num_env_runners + 1))
    algo = None
    try:
        registered = f"edgemigrate-rllib:{spec.env_name}"
        register_env(registered, spec.env_creator)
        algo = build_config(spec, registered).build_algo()
        warm = warm_start(algo, spec.init_from) if spec.init_from is not None else {}
        rows: list[dict[str, float]] = []
        t0 = time.monotonic()
        for it in range(1, spec.max_iterations + 1):
            row = result_row(it, algo.train(), spec.info_keys, t0)
            rows.append(row)
            if on_iteration is not None:
                on_iteration(row)
            if row["env_steps_sampled"] >= spec.timesteps:
                break
            if spec.checkpoint_every and it % spec.checkpoint_every == 0:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                algo.save_to_path(str(checkpoint_dir.resolve()))
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        algo.save_to_path(str(checkpoint_dir.resolve()))
        nodes = algo.env_runner_group.foreach_env_runner(_runner_node, local_env_runner=False)
        return TrainOutcome(rows=rows, checkpoint=checkpoint_dir, runner_nodes=[tuple(n) for n in nodes],
                            warm_started=warm)
    finally:
        if algo is not None:
            algo.stop()
        if started:
            ray.shutdown()
