"""``edgemigrate experiment mobilekube ...``: Mobile-Kube's test experiments (Ghafouri et al. 2022)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgemigrate.core.errors import ConfigError


@click.group(short_help="Mobile-Kube (Ghafouri et al. 2022): energy- and latency-aware placement.")
def mobilekube() -> None:
    """Mobile-Kube (Ghafouri et al. 2022): services follow their moving users across edge nodes while as few
    nodes as possible stay powered. Agents: best-fit, latency-greedy, optimum (the exact eq. 2 MILP), stay,
    random, or an RLlib checkpoint path."""


def _list(text: str, option: str, cast: type = str) -> tuple[Any, ...]:
    try:
        items = tuple(cast(p.strip()) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{option} '{text}': expected a comma-separated list, e.g. 16,32,48") from None
    if not items:
        raise ConfigError(f"{option}: empty list")
    return items


def _options(f):  # type: ignore[no-untyped-def]
    opts = [
        click.option("--agents", default="best-fit,latency-greedy,optimum", show_default=True, metavar="A,B,...",
                     help="Agent names or RLlib checkpoint paths; the optimum is always added as the reference."),
        click.option("--traces", default=None, metavar="PATH",
                     help="Test movements: a cabspotting folder (new_<cab>.txt[.gz]), an id,t,lat,lon CSV or an "
                          "imported .npz. Default: held-out synthetic taxi-like movements."),
        click.option("--episode-steps", type=int, default=None, help="Steps (5 min each) per episode."),
        click.option("--seed", type=int, default=0, show_default=True, help="Network and episode seed."),
        click.option("--w1", type=float, default=None, help="Energy weight of eq. 13 / eq. 2 (default 1.0)."),
        click.option("--w2", type=float, default=None, help="Latency weight of eq. 13 / eq. 2 (default 0.05)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Env config field, repeatable: node_cpu=1.5 (the paper-energy capacity, "
                          "docs/mobilekube.md), obs_utilisation=true (what a packing checkpoint was trained on)."),
        click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"),
                     show_default=True, help="Folder under which the results folder is created."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _env(w1: float | None, w2: float | None, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    import json

    env: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            env[key] = json.loads(raw)
        except json.JSONDecodeError:
            env[key] = raw
    env.update({k: v for k, v in (("w1", w1), ("w2", w2)) if v is not None})
    return env


@mobilekube.command(short_help="Test latency and empty servers vs users, gap to the optimum (figs. 7-8).")
@click.option("--users", default="16,32,48", show_default=True, metavar="N,N,...", help="Users counts (8 nodes).")
@click.option("--episodes", type=int, default=20, show_default=True, help="Test episodes per agent and users count.")
@_options
def evaluate(users: str, episodes: int, agents: str, traces: str | None, episode_steps: int | None, seed: int,
             w1: float | None, w2: float | None, overrides: tuple[str, ...], out_root: Path) -> None:
    """Every agent on the test movements at each users count: mean latency and empty servers with 95 % CIs
    (figs. 7-8), each agent's gap to the exact eq. 2 optimum and its latency against best-fit's."""
    from edgemigrate.experiments.mobilekube.evaluate import EvalOptions, run_evaluate

    opts = EvalOptions(agents=_list(agents, "--agents"), users=_list(users, "--users", int), episodes=episodes,
                       episode_steps=episode_steps or 100, traces=traces, seed=seed, env=_env(w1, w2, overrides))
    run_dir = run_evaluate(opts, out_root, echo=lambda s: click.echo(s, err=True))
    click.echo((run_dir / "summary.md").read_text())
    click.echo(f"results: {run_dir}")


@mobilekube.command(short_help="One sample test episode step by step (figs. 9-10).")
@click.option("--users", type=int, default=16, show_default=True, help="Users (8 nodes).")
@click.option("--start-step", type=int, default=0, show_default=True, help="First trace row of the episode.")
@_options
def timeline(users: int, start_step: int, agents: str, traces: str | None, episode_steps: int | None, seed: int,
             w1: float | None, w2: float | None, overrides: tuple[str, ...], out_root: Path) -> None:
    """Empty servers and latency of every agent at every step of one test episode (default 200 steps)."""
    from edgemigrate.experiments.mobilekube.evaluate import EvalOptions, run_timeline

    opts = EvalOptions(agents=_list(agents, "--agents"), users=(users,), episodes=1,
                       episode_steps=episode_steps or 200, traces=traces, seed=seed, env=_env(w1, w2, overrides))
    run_dir = run_timeline(opts, out_root, start_step=start_step, echo=lambda s: click.echo(s, err=True))
    click.echo((run_dir / "timeline.md").read_text())
    click.echo(f"results: {run_dir}")


@mobilekube.command(short_help="Apply an agent's placements on Kubernetes or the testbed, through the controller.")
@click.option("--backend", type=click.Choice(["kubernetes", "testbed"]), required=True,
              help="kubernetes: a real API server (--kubeconfig, else a local one with a fake kubelet); "
                   "testbed: real containers (root, CRIU).")
@click.option("--agent", default="latency-greedy", show_default=True, metavar="NAME|CHECKPOINT",
              help="best-fit, latency-greedy, ... or an RLlib checkpoint folder.")
@click.option("--steps", type=int, default=5, show_default=True, help="Env steps (each one placement).")
@click.option("--nodes", "n_nodes", type=int, default=4, show_default=True)
@click.option("--users", "n_users", type=int, default=12, show_default=True)
@click.option("--services", "n_services", type=int, default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--strategy", default="live,recreate", show_default=True, metavar="live,recreate",
              help="Testbed: live pre-copy migration and/or Mobile-Kube's recreate, each on the same moves.")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), help="An existing cluster's kubeconfig.")
@click.option("--trace", default="taxi", show_default=True, help="taxi (synthetic) or a trace file/folder.")
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def apply(out_root: Path, quiet: bool, strategy: str, **kw: object) -> None:
    """Step edgemigrate/MobileKube-v0 with an agent and apply every placement through the controller: on
    Kubernetes by recreating pods (the seed's mechanism; empty nodes cordoned), on the testbed by live
    migration vs recreate of stateful counters, with the client-seen interruption and the state per move."""
    from edgemigrate.experiments.mobilekube.apply import ApplyConfig, json_lines, run_apply

    cfg = ApplyConfig(strategies=tuple(s.strip() for s in strategy.split(",") if s.strip()), **kw)  # type: ignore[arg-type]
    res = run_apply(cfg, out_root, progress=(lambda s: None) if quiet else (lambda s: click.echo(s, err=True)))
    click.echo((res.out_dir / "summary.md").read_text())
    for line in json_lines(res):
        click.echo(line)
    click.echo(f"results: {res.out_dir}")
