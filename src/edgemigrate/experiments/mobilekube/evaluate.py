"""Run agents on the test movements: ``evaluate`` (figs. 7-8 + gap to the optimum) and ``timeline`` (figs. 9-10).

Every agent of one users count sees the same episodes: the same trace rows (``start_step``) and the same
initial placement (``reset(seed)``), and the users' stations never depend on the actions, so the optimum's
cost is the paired reference of every episode. Evaluation mode (``training=False``): an illegal placement is
skipped and the step scored on the kept placement (Ghafouri et al. 2022, sec. V).

Results folder ``{mobilekube-evaluate|mobilekube-timeline}__{agents}__{seed}__{time}/``: ``config.json``
(every resolved option and env config), ``manifest.json`` (command, seed, versions, git SHA), CSVs, a Markdown
summary and PNGs.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.envs.mobilekube import MobileKubeConfig, MobileKubeEnv
from edgemigrate.experiments.mobilekube.agents import check_agent_spec, resolve_agent
from edgemigrate.experiments.mobilekube.data import write_synthetic_traces
from edgemigrate.experiments.mobilekube.report import (
    plot_timeline,
    plot_vs_users,
    summarise,
    timeline_markdown,
)
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table
from edgemigrate.policies.mobilekube import PlacementAgent

STEP_KEYS = ("latency_s", "empty_servers", "cost", "migrations", "illegal")
REFERENCE = "optimum"


@dataclass(frozen=True, slots=True)
class EvalOptions:
    """What ``evaluate`` and ``timeline`` run (saved as ``config.json``)."""

    agents: tuple[str, ...] = ("best-fit", "latency-greedy", "optimum")
    users: tuple[int, ...] = (16, 32, 48)
    episodes: int = 20
    episode_steps: int = 100
    traces: str | None = None
    """A cabspotting folder / CSV / .npz; None = held-out synthetic movements (data.py)."""
    seed: int = 0
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra MobileKubeConfig fields (w1, w2, n_nodes, ...)."""

    def __post_init__(self) -> None:
        if not self.agents:
            raise ConfigError("--agents: name at least one agent")
        if self.episodes < 1 or self.episode_steps < 1 or any(u < 1 for u in self.users) or not self.users:
            raise ConfigError("--episodes, --episode-steps and --users must be positive")
        MobileKubeConfig.from_mapping(self.env)  # unknown keys fail before anything runs


def run_episode(env: MobileKubeEnv, agent: PlacementAgent, seed: int, start_step: int | None
                ) -> dict[str, np.ndarray]:
    """One episode; per-step arrays of :data:`STEP_KEYS`."""
    options = None if start_step is None else {"start_step": start_step}
    obs, info = env.reset(seed=seed, options=options)
    out: dict[str, list[float]] = {k: [] for k in STEP_KEYS}
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.act(obs, info))
        for k in STEP_KEYS:
            out[k].append(float(info[k]))
        done = term or trunc
    return {k: np.asarray(v) for k, v in out.items()}


def _trace_folder(opts: EvalOptions, run_dir: Path, steps_needed: int) -> tuple[str, str]:
    if opts.traces is not None:
        return opts.traces, f"imported traces {opts.traces}"
    folder = run_dir / "synthetic_traces"
    write_synthetic_traces(folder, MobileKubeConfig.from_mapping(opts.env), max(opts.users), steps_needed,
                           seed=opts.seed + 1_000_003)  # a seed stream training never uses
    return str(folder), "held-out synthetic taxi-like movements (no --traces given), cabspotting format"


def _starts(env: MobileKubeEnv, episodes: int, episode_steps: int) -> list[int]:
    """Episode start rows spread evenly over the trace (non-overlapping when it is long enough)."""
    assert env.trajectories is not None
    last = env.trajectories.n_steps - 1
    span = max(last - episode_steps, 0)
    return [int(round(k * span / max(episodes - 1, 1))) for k in range(episodes)]


def _agents(specs: Sequence[str], env_cfg: dict[str, Any]) -> list[tuple[str, PlacementAgent]]:
    specs = list(dict.fromkeys([*specs, REFERENCE]))  # the optimum is always the reference
    return [resolve_agent(s, env_cfg) for s in specs]


def _env_config(opts: EvalOptions, trace: str, users: int) -> dict[str, Any]:
    return MobileKubeConfig.from_mapping(opts.env, n_users=users, trace=trace, training=False,
                                         episode_steps=opts.episode_steps, seed=opts.seed).to_dict()


def _begin(kind: str, opts: EvalOptions, out_root: Path, steps_needed: int) -> tuple[Path, str, str]:
    for spec in opts.agents:  # a mistyped agent fails before any folder exists
        check_agent_spec(spec)
    label = "-".join(Path(a).name for a in opts.agents)[:60]
    run_dir = new_run_dir(out_root, run_name(f"mobilekube-{kind}", label, opts.seed))
    with _removed_on_error(run_dir):
        trace, source = _trace_folder(opts, run_dir, steps_needed)
    return run_dir, trace, source


@contextmanager
def _removed_on_error(run_dir: Path) -> Iterator[None]:
    """A run that fails (a bad trace, an agent that cannot load) leaves no half-written results folder."""
    try:
        yield
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def run_evaluate(opts: EvalOptions, out_root: Path, echo: Callable[[str], None] = print,
                 command: list[str] | None = None) -> Path:
    """Figs. 7-8: every agent at every users count over ``episodes`` test episodes; returns the run folder."""
    t_start = time.time()
    run_dir, trace, source = _begin("evaluate", opts, out_root, opts.episodes * opts.episode_steps + 1)
    with _removed_on_error(run_dir):
        columns, env_configs = _evaluate_all(opts, trace, echo)
    write_table(run_dir / "episodes.csv", columns)
    summary = summarise(columns, REFERENCE)
    write_table(run_dir / "summary.csv", summary.table)
    (run_dir / "summary.md").write_text(summary.markdown(source))
    plot_vs_users(summary.table, run_dir)
    write_json(run_dir / "config.json", {"options": dataclasses.asdict(opts), "trace_source": source,
                                         "env_configs": env_configs})
    write_json(run_dir / "manifest.json", manifest(opts.seed, command, {"elapsed_s": time.time() - t_start}))
    return run_dir


def _evaluate_all(opts: EvalOptions, trace: str, echo: Callable[[str], None]
                  ) -> tuple[dict[str, np.ndarray], dict[int, dict[str, Any]]]:
    """Per-episode rows of every agent at every users count."""
    rows: dict[str, list[Any]] = {k: [] for k in ("users", "agent", "episode", "start_step", "steps", "latency_ms",
                                                  "empty_servers", "cost", "migrations", "illegal_steps")}
    env_configs = {}
    for users in opts.users:
        cfg = _env_config(opts, trace, users)
        env_configs[users] = cfg
        env = MobileKubeEnv(cfg)
        starts = _starts(env, opts.episodes, opts.episode_steps)
        for label, agent in _agents(opts.agents, cfg):
            t0 = time.perf_counter()
            for ep, start in enumerate(starts):
                r = run_episode(env, agent, opts.seed + ep, start)
                for k, v in (("users", users), ("agent", label), ("episode", ep), ("start_step", start),
                             ("steps", r["cost"].size), ("latency_ms", 1e3 * r["latency_s"].mean()),
                             ("empty_servers", r["empty_servers"].mean()), ("cost", r["cost"].mean()),
                             ("migrations", r["migrations"].sum()), ("illegal_steps", r["illegal"].sum())):
                    rows[k].append(v)
            echo(f"users={users} {label}: {len(starts)} episodes in {time.perf_counter() - t0:.1f} s")
    return {k: np.asarray(v) for k, v in rows.items()}, env_configs


def run_timeline(opts: EvalOptions, out_root: Path, start_step: int = 0, echo: Callable[[str], None] = print,
                 command: list[str] | None = None) -> Path:
    """Figs. 9-10: one ``episode_steps``-step test episode at ``opts.users[0]`` users, per step per agent."""
    t_start = time.time()
    users = opts.users[0]
    run_dir, trace, source = _begin("timeline", opts, out_root, start_step + opts.episode_steps + 1)
    cfg = _env_config(opts, trace, users)
    with _removed_on_error(run_dir):
        columns = _timeline_rows(opts, cfg, start_step, echo)
    write_table(run_dir / "timeline.csv", columns)
    (run_dir / "timeline.md").write_text(timeline_markdown(columns, users, source))
    plot_timeline(columns, run_dir, users)
    write_json(run_dir / "config.json", {"options": dataclasses.asdict(opts), "start_step": start_step,
                                         "trace_source": source, "env_config": cfg})
    write_json(run_dir / "manifest.json", manifest(opts.seed, command, {"elapsed_s": time.time() - t_start}))
    return run_dir


def _timeline_rows(opts: EvalOptions, cfg: dict[str, Any], start_step: int,
                   echo: Callable[[str], None]) -> dict[str, np.ndarray]:
    env = MobileKubeEnv(cfg)
    cols: dict[str, list[Any]] = {k: [] for k in ("agent", "step", "latency_ms", "empty_servers", "cost")}
    for label, agent in _agents(opts.agents, cfg):
        r = run_episode(env, agent, opts.seed, start_step)
        n = r["cost"].size
        cols["agent"] += [label] * n
        cols["step"] += list(range(n))
        cols["latency_ms"] += list(1e3 * r["latency_s"])
        cols["empty_servers"] += list(r["empty_servers"])
        cols["cost"] += list(r["cost"])
        echo(f"{label}: {n} steps, mean latency {1e3 * r['latency_s'].mean():.2f} ms, "
             f"mean empty servers {r['empty_servers'].mean():.2f}")
    return {k: np.asarray(v) for k, v in cols.items()}


__all__ = ["EvalOptions", "run_episode", "run_evaluate", "run_timeline"]
