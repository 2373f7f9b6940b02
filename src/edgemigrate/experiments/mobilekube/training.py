"""Training the Mobile-Kube agents on ``edgemigrate/MobileKube-v0`` (Ghafouri et al. 2022, sec. VII, figs. 4-6).

``edgemigrate experiment mobilekube train --algo impala,ppo,pg`` trains each algorithm in turn with Table II's
hyperparameters (``policies/rllib/config.py``) on synthetic taxi-like movements and writes one results folder::

    mobilekube-16u__impala+ppo__{seed}__{time}/
        manifest.json      command, seed, versions (ray, torch, gymnasium ...), git SHA
        config.json        the resolved env config and every algorithm's hyperparameters
        {algo}/train.csv   one row per RLlib iteration: env steps sampled/trained, episode reward, the env's
                           per-episode mean empty servers, latency, power, migrations, illegal-action rate
        {algo}/checkpoint/ the final RLlib checkpoint (``load_agent`` reads it)
        training.md        the last iteration of every algorithm
        plots/             fig4_empty_servers.png, fig5_latency.png, fig6_reward.png (+ steps_consumed.png)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.envs.mobilekube import MobileKubeConfig, MobileKubeEnv, build_network, build_problem
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table
from edgemigrate.policies.rllib.agent import PlacementAgent
from edgemigrate.policies.rllib.agent import load_agent as load_rllib_agent
from edgemigrate.policies.rllib.cluster import probe
from edgemigrate.policies.rllib.config import Algo, NetworkConfig, algo_config, as_dict, parse_algo
from edgemigrate.policies.rllib.trainer import TrainOutcome, TrainSpec, train

log = logging.getLogger(__name__)

INFO_KEYS = ("empty_servers", "latency_s", "power_w", "migrations", "illegal", "reward_energy", "reward_latency")
"""The numeric ``info`` keys of MobileKube-v0 averaged per episode during training (``envs/mobilekube.py``)."""


def make_mobilekube_env(env_config: Mapping[str, Any]) -> MobileKubeEnv:
    """RLlib's env creator (a top-level function: Ray pickles it by reference to the env runners)."""
    return MobileKubeEnv(MobileKubeConfig.from_mapping(dict(env_config or {})))


def load_agent(checkpoint_path: Path | str, env_config: Mapping[str, Any] | MobileKubeConfig) -> PlacementAgent:
    """The deterministic agent of a ``train`` checkpoint for the env ``env_config`` describes.

    A checkpoint trained for another number of users, services or nodes is a one-line error naming both sizes.
    """
    env = MobileKubeEnv(MobileKubeConfig.from_mapping(env_config))
    path = Path(checkpoint_path)
    name = path.parent.name if path.name == "checkpoint" else "rllib"
    return load_rllib_agent(path, env.observation_space, env.action_space, name=name)


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    algos: tuple[Algo, ...] = (Algo.IMPALA,)
    users: int = 16
    timesteps: int = 100_000
    seed: int = 0
    ray_address: str | None = None
    num_env_runners: int = 1
    num_envs_per_env_runner: int = 1
    checkpoint_every: int = 5
    """Iterations between checkpoints during training (the final one is always saved)."""
    env_overrides: Mapping[str, Any] = field(default_factory=dict)
    """MobileKubeConfig fields other than ``n_users`` (e.g. ``n_nodes``, ``episode_steps``, ``w2``)."""
    hyper_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """algo name -> hyperparameter overrides (``policies/rllib/config.py`` field names)."""
    init_from: Path | None = None
    """Warm start every algorithm from this checkpoint (``policies/rllib/trainer.py: warm_start``)."""

    def env_config(self) -> MobileKubeConfig:
        over = dict(self.env_overrides)
        # as evaluate and the env: 16 services shared by 16/32/48 users (sec. VII); fewer only for fewer users
        over.setdefault("n_services", min(self.users, MobileKubeConfig().n_services))
        return MobileKubeConfig.from_mapping({**over, "n_users": self.users, "seed": self.seed, "training": True})


def parse_algos(text: str) -> tuple[Algo, ...]:
    algos = tuple(parse_algo(a.strip()) for a in text.split(",") if a.strip())
    if not algos:
        raise ConfigError("--algo: expected one or more of pg, ppo, impala (comma-separated)")
    return tuple(dict.fromkeys(algos))


def run_training(req: TrainingRequest, out_root: Path, progress: Callable[[str, dict[str, float]], None] | None = None,
                 command: Sequence[str] | None = None) -> Path:
    """Train every algorithm of ``req`` and write the results folder; returns its path."""
    env_cfg = req.env_config()
    make_mobilekube_env(env_cfg.to_dict()).close()  # a bad config fails here, before Ray starts
    if req.ray_address not in (None, "local"):
        probe(req.ray_address)  # an unreachable cluster fails before a results folder exists
    hypers = {a: algo_config(a, dict(req.hyper_overrides.get(a.value, {}))) for a in req.algos}
    tag = "+".join(a.value for a in req.algos)
    run = new_run_dir(out_root, run_name(f"mobilekube-{req.users}u", tag, req.seed))
    write_json(run / "config.json", {
        "env": env_cfg.to_dict(), "timesteps": req.timesteps, "seed": req.seed, "ray_address": req.ray_address,
        "init_from": str(req.init_from) if req.init_from else None, "num_env_runners": req.num_env_runners, "num_envs_per_env_runner": req.num_envs_per_env_runner,
        "algorithms": {a.value: as_dict(h) for a, h in hypers.items()},
        "source": "Ghafouri et al. 2022, Table II (hyperparameters), sec. VII (setting)"})
    write_json(run / "manifest.json", manifest(req.seed, list(command) if command else list(sys.argv),
                                               {"ray": _ray_version()}))
    outcomes: dict[Algo, TrainOutcome] = {}
    for algo, hyper in hypers.items():
        spec = TrainSpec(algo=algo, hyper=hyper, env_name="MobileKube-v0", env_creator=make_mobilekube_env,
                         env_config=env_cfg.to_dict(), seed=req.seed, timesteps=req.timesteps,
                         num_env_runners=req.num_env_runners, num_envs_per_env_runner=req.num_envs_per_env_runner,
                         ray_address=req.ray_address, info_keys=INFO_KEYS, checkpoint_every=req.checkpoint_every,
                         module_layout=_layout(env_cfg, hyper.network) if hyper.network.placement_prior else None,
                         init_from=req.init_from)
        folder = run / algo.value
        folder.mkdir()
        log_csv = _CsvLog(folder / "train.csv", algo.value, progress)
        outcome = train(spec, folder / "checkpoint", on_iteration=log_csv)
        write_table(folder / "train.csv", _columns(outcome.rows))
        write_json(folder / "env_runners.json", [{"node_id": n, "env_steps": s} for n, s in outcome.runner_nodes])
        if outcome.warm_started:
            write_json(folder / "warm_start.json", {"from": str(req.init_from), **outcome.warm_started})
        outcomes[algo] = outcome
    _write_summary(run, outcomes, env_cfg)
    from edgemigrate.experiments.mobilekube.training_plots import plot_training

    plot_training(run, [a.value for a in req.algos])
    return run


def _layout(cfg: MobileKubeConfig, net: NetworkConfig) -> dict[str, Any]:
    """The observation layout ``policies/rllib/packing.py`` reads; the prior needs the utilisation feature.

    It carries the env's fixed station -> node delays (eqs. 5-6, fixed by ``cfg.seed``) and the user -> container
    map for the prior's nearness term (``net.near_prior``); the stations users are at come from the observation.
    """
    if not cfg.obs_utilisation:
        raise ConfigError("network.placement_prior reads the node utilisation: add --set obs_utilisation=true")
    from edgemigrate.policies.rllib.packing import layout  # imports ray: only where a prior is trained

    slot = cfg.service_cpu / cfg.node_cpu
    if not net.near_prior:
        return layout(cfg.n_users, cfg.n_services, cfg.n_nodes, slot)
    problem = build_problem(cfg, build_network(cfg))
    return layout(cfg.n_users, cfg.n_services, cfg.n_nodes, slot,
                  delay_sn_s=problem.delay_sn_s, user_service=problem.user_service, near_init=net.near_init,
                  near_powered_only=net.near_powered_only)


class _CsvLog:
    """Appends each iteration to ``train.csv`` as it comes (a long run stopped early keeps its curve)."""

    def __init__(self, path: Path, algo: str, progress: Callable[[str, dict[str, float]], None] | None) -> None:
        self.path, self.algo, self.progress = path, algo, progress
        self.keys: list[str] | None = None

    def __call__(self, row: dict[str, float]) -> None:
        import csv

        with self.path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if self.keys is None:
                self.keys = list(row)
                w.writerow(self.keys)
            w.writerow([repr(float(row.get(k, np.nan))) for k in self.keys])
        if self.progress is not None:
            self.progress(self.algo, row)


def _columns(rows: list[dict[str, float]]) -> dict[str, np.ndarray]:
    keys = list(rows[0]) if rows else []
    return {k: np.array([r.get(k, np.nan) for r in rows], dtype=np.float64) for k in keys}


def _ray_version() -> str:
    try:
        import ray

        return str(ray.__version__)
    except ImportError:  # pragma: no cover - the cluster extra is installed wherever this runs
        return "missing"


def _write_summary(run: Path, outcomes: Mapping[Algo, TrainOutcome], env_cfg: MobileKubeConfig) -> None:
    lines = [f"# Mobile-Kube training, {env_cfg.n_users} users, {env_cfg.n_nodes} nodes "
             "(Ghafouri et al. 2022, figs. 4-6)", "",
             "Last iteration of each algorithm; means over the 20 most recent episodes. "
             "`trained/sampled` is the learner's env steps over the sampled ones (PPO trains each step "
             "`num_epochs` times).", "",
             "| algo | env steps | trained/sampled | episode reward | empty servers | latency [ms] | illegal |",
             "|---|---|---|---|---|---|---|"]
    for algo, out in outcomes.items():
        r = out.rows[-1] if out.rows else {}
        sampled = r.get("env_steps_sampled", 0.0)
        ratio = r.get("env_steps_trained", 0.0) / sampled if sampled else float("nan")
        lines.append(f"| {algo.value} | {sampled:.0f} | {ratio:.2f} | {r.get('episode_reward_mean', np.nan):.3f} | "
                     f"{r.get('empty_servers', np.nan):.2f} | {1e3 * r.get('latency_s', np.nan):.2f} | "
                     f"{r.get('illegal', np.nan):.3f} |")
    (run / "training.md").write_text("\n".join(lines) + "\n")


def parse_overrides(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``KEY=VALUE`` -> env override, ``ALGO.KEY=VALUE`` -> hyperparameter override; values parsed as JSON-ish."""
    import json

    env: dict[str, Any] = {}
    hyper: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        head, dot, rest = key.partition(".")
        if dot:
            algo = parse_algo(head)
            hyper.setdefault(algo.value, {})[rest] = value
        else:
            env[key] = value
    return env, hyper
