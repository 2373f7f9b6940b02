"""``edgemigrate experiment ...``: the reproduced experiments of the papers in ``docs/references.md``."""

from __future__ import annotations

from pathlib import Path

import click

from edgemigrate.cli.compression import compression
from edgemigrate.cli.mobilekube import mobilekube
from edgemigrate.cli.shareon_emu import emulation as shareon_emulation
from edgemigrate.core.errors import ConfigError


@click.group()
def experiment() -> None:
    """Reproduce the papers' experiments (results folder with CSV, Markdown and PNG)."""


# short_help given where the help cites "Liu et al. 2024": click would end the first sentence at "al."
@experiment.group(short_help="PPCM (Liu et al. 2024): layer-aware proactive/passive migration.")
def ppcm() -> None:
    """Liu et al. 2024 (PPCM): layer-aware proactive/passive migration with PPO + DCN and eight baselines."""


def _common(f):  # type: ignore[no-untyped-def]
    opts = [
        click.option("--seeds", type=int, default=5, show_default=True,
                     help="Evaluation episodes per algorithm and point (95 % CIs need >= 2)."),
        click.option("--train-steps", type=int, default=50_000, show_default=True,
                     help="Environment steps to train each RL agent (PPCM, PPO) per point."),
        click.option("--algorithms", default=None, metavar="A,B,...",
                     help="Subset of: ppcm, ppo, dep_soft, down, pso, de, ga, monkey, kube."),
        click.option("--workers", type=int, default=2, show_default=True, help="Local worker processes."),
        click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
                     help="Run the grid on a Ray cluster instead ('local' starts one in-process)."),
        click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"),
                     show_default=True, help="Folder under which the results folder is created."),
        click.option("--scenario", default="ppcm-paper", show_default=True, help="Base scenario."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a scenario key for every point, e.g. --set sim.n_steps=30. Repeatable."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--expert", default="dep_soft", show_default=True, metavar="dep_soft|least_delay|ga",
                     help="Expert whose demonstrations warm-start PPCM (Liu et al. 2024 use DEP_SOFT; "
                          "least_delay = the feasible choice of least estimated T_k; ga = GA deciding one task at "
                          "a time)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _algos(text: str | None) -> tuple[str, ...] | None:
    return tuple(a.strip() for a in text.split(",") if a.strip()) if text else None


def _sweep(axis: str, points: str | None, seeds: int, train_steps: int, algorithms: str | None, workers: int,
           ray_address: str | None, out_root: Path, scenario: str, overrides: tuple[str, ...], quiet: bool,
           expert: str) -> None:
    from edgemigrate.experiments.ppcm.design import ALGORITHMS
    from edgemigrate.experiments.ppcm.sweep import run_sweep

    try:
        pts = tuple(float(p) if axis == "tasks" else int(p) for p in points.split(",")) if points else None
    except ValueError:
        raise ConfigError(f"--points '{points}': expected comma-separated numbers, e.g. 9,18,27") from None
    res = run_sweep(axis, points=pts, algorithms=_algos(algorithms) or ALGORITHMS, seeds=seeds,
                    train_steps=train_steps, out_root=out_root, workers=workers, ray_address=ray_address,
                    scenario=scenario, overrides=overrides, progress=not quiet, expert=expert)
    click.echo((res.out_dir / "summary.md").read_text())
    click.echo(f"results: {res.out_dir}")


@ppcm.command(short_help="Sweep the number of edge nodes (Liu et al. 2024, figures 3-4).")
@click.option("--points", default=None, metavar="9,18,...", help="Node counts (default 9,18,27,36).")
@_common
def nodes(points: str | None, **kw: object) -> None:
    """Sweep the number of edge nodes (Liu et al. 2024, figures 3-4)."""
    _sweep("nodes", points, **kw)  # type: ignore[arg-type]


@ppcm.command(short_help="Sweep the number of tasks (Liu et al. 2024, figures 5-6).")
@click.option("--points", default=None, metavar="30,60,...", help="Task arrivals per minute (default 30..150).")
@_common
def tasks(points: str | None, **kw: object) -> None:
    """Sweep the number of tasks (Liu et al. 2024, figures 5-6)."""
    _sweep("tasks", points, **kw)  # type: ignore[arg-type]


@ppcm.command()
@_common
def training(seeds: int, train_steps: int, algorithms: str | None, workers: int, ray_address: str | None,
             out_root: Path, scenario: str, overrides: tuple[str, ...], quiet: bool, expert: str) -> None:
    """Train PPCM on the scenario and evaluate it against all eight baselines; plots the training curves
    (Liu et al. 2024, fig. 7). With --algorithms ppcm,ppo,ppcm_mlp_actor,ppcm_mlp_critic it is the ablation."""
    from edgemigrate.experiments.ppcm.design import ALGORITHMS
    from edgemigrate.experiments.ppcm.sweep import run_training

    res = run_training(algorithms=_algos(algorithms) or ALGORITHMS, seeds=seeds, train_steps=train_steps,
                       out_root=out_root, workers=workers, ray_address=ray_address, scenario=scenario,
                       overrides=overrides, progress=not quiet, expert=expert)
    click.echo((res.out_dir / "summary.md").read_text())
    click.echo(f"results: {res.out_dir}")


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(f"{option} '{text}': expected comma-separated integers, e.g. 1,2,3") from None


@ppcm.command(short_help="Controlled test of why our PPCM disagrees with Liu et al. 2024 at high load.")
@click.option("--point", type=float, default=120.0, show_default=True, help="Task arrivals per minute.")
@click.option("--variants", default="ppcm,ppcm_light_bc,ppcm_strong,ppo", show_default=True, metavar="A,B,...",
              help="RL variants: ppcm, ppo, ppcm_light_bc (2 BC epochs), ppcm_no_bc (no warm start), "
                   "ppcm_strong (least_delay expert), "
                   "ppcm_strong_light_bc, ppcm_ga (GA expert), ppcm_mlp_actor, ppcm_mlp_critic.")
@click.option("--train-seeds", default="1,2", show_default=True, metavar="1,2,...",
              help="Training seeds per variant.")
@click.option("--references", default="dep_soft,least_delay,ga", show_default=True, metavar="A,B,...",
              help="Non-learning policies evaluated on the same seeds.")
@_common
def controlled(point: float, variants: str, train_seeds: str, references: str, seeds: int, train_steps: int,
               algorithms: str | None, workers: int, ray_address: str | None, out_root: Path, scenario: str,
               overrides: tuple[str, ...], quiet: bool, expert: str) -> None:
    """Controlled test of why our PPCM disagrees with Liu et al. 2024 at high load: PPCM variants (expert, BC
    strength) and PPO, several training seeds each, same budget; delays with 95 % CIs, entropy and cloud-share
    logs."""
    from edgemigrate.experiments.ppcm.controlled import run_controlled

    if algorithms:
        raise ConfigError("controlled takes --variants and --references, not --algorithms")
    res = run_controlled(point=point, variants=_algos(variants) or (), train_seeds=_ints(train_seeds, "--train-seeds"),
                         references=_algos(references) or (), seeds=seeds, train_steps=train_steps, expert=expert,
                         out_root=out_root, workers=workers, ray_address=ray_address, scenario=scenario,
                         progress=not quiet, overrides=overrides)
    click.echo((res.out_dir / "summary.md").read_text())
    click.echo(f"results: {res.out_dir}")


@ppcm.command("controlled-merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder under which the merged results folder is created.")
def controlled_merge(folders: tuple[Path, ...], out_root: Path) -> None:
    """Merge the results folders of 'controlled' runs at the same point (e.g. a variant added later) into one
    table and plot; nothing is re-run."""
    from edgemigrate.experiments.ppcm.controlled import merge_controlled

    res = merge_controlled(folders, out_root)
    click.echo((res.out_dir / "summary.md").read_text())
    click.echo(f"results: {res.out_dir}")


@experiment.group(short_help="ShareOn (Maheshwari et al. 2018): distributed traffic-aware migration.")
def shareon() -> None:
    """Maheshwari et al. 2018 (ShareOn): per-node migration agents against four baselines."""


@shareon.command(short_help="City-scale simulation sweep (figs. 8-9 analogues).")
@click.option("--axes", default="load,cores,bandwidth_mbit,user_latency_ms", show_default=True, metavar="A,B,...",
              help="Axes to sweep around the base point (load 0.7).")
@click.option("--points", "points_text", multiple=True, metavar="AXIS=V1,V2,...",
              help="Points of one axis, e.g. --points load=0.3,0.7. Repeatable.")
@click.option("--policies", default=None, metavar="A,B,...",
              help="Subset of: shareon, bandwidth_only, processing_only, equal_load, nearest.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Seeds per point and policy (>= 2).")
@click.option("--seed0", type=int, default=0, show_default=True, help="First seed.")
@click.option("--users", type=int, default=2000, show_default=True, help="Taxi-like users (ignored with --trace).")
@click.option("--nodes", type=int, default=50, show_default=True, help="Edge nodes on San Francisco tower sites.")
@click.option("--duration-s", type=float, default=900.0, show_default=True, help="Simulated seconds per run.")
@click.option("--warmup-s", type=float, default=300.0, show_default=True, help="Seconds not measured at the start.")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="An imported cabspotting trace (.npz from 'edgemigrate data import') instead of taxi-like users.")
@click.option("--workers", type=int, default=2, show_default=True, help="Local worker processes.")
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder under which the results folder is created.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def sweep(axes: str, points_text: tuple[str, ...], policies: str | None, seeds: int, seed0: int, users: int,
          nodes: int, duration_s: float, warmup_s: float, trace: str | None, workers: int, out_root: Path,
          quiet: bool) -> None:
    """Sweep load, compute per node, inter-edge bandwidth and user latency for ShareOn and the four baselines
    of sec. VI; mean system response time and migration cost with 95 % CIs (CSV, Markdown, PNG)."""
    from edgemigrate.experiments.shareon.design import POLICIES, WorldConfig
    from edgemigrate.experiments.shareon.sweep import run_sweep

    points: dict[str, tuple[float, ...]] = {}
    for item in points_text:
        axis, _, values = item.partition("=")
        try:
            points[axis.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"--points '{item}': expected AXIS=V1,V2,... with numbers") from None
    world = WorldConfig(n_users=users, n_nodes=nodes, trace=trace, duration_s=duration_s, warmup_s=warmup_s)
    res = run_sweep(axes=_algos(axes) or (), points=points, policies=_algos(policies) or POLICIES, seeds=seeds,
                    world=world, out_root=out_root, workers=workers, progress=not quiet, seed0=seed0)
    click.echo((res.out_dir / "summary.md").read_text())
    click.echo(f"results: {res.out_dir}")


shareon.add_command(shareon_emulation)
experiment.add_command(compression)


@mobilekube.command(short_help="Train PG/PPO/IMPALA with RLlib (Ghafouri et al. 2022, Table II, figs. 4-6).")
@click.option("--algo", "algos", default="impala", show_default=True, metavar="pg,ppo,impala",
              help="Algorithm(s) to train, comma-separated; each gets a checkpoint and a training curve.")
@click.option("--users", type=int, default=16, show_default=True, help="Users (= services unless --set n_services).")
@click.option("--timesteps", type=int, default=200_000, show_default=True, help="Sampled env steps per algorithm.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the network, the env and RLlib.")
@click.option("--ray", "ray_address", default=None, metavar="HOST:PORT",
              help="Train on an existing Ray cluster (its head's GCS address) instead of an in-process one.")
@click.option("--env-runners", type=int, default=1, show_default=True, help="RLlib env runners (1 CPU each).")
@click.option("--envs-per-runner", type=int, default=1, show_default=True, help="Vectorised envs per runner.")
@click.option("--checkpoint-every", type=int, default=5, show_default=True,
              help="Save the checkpoint every N iterations too (a run stopped early keeps its latest agent).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Env config (n_nodes=8, w2=0.05, episode_steps=100 ...) or ALGO.KEY=VALUE hyperparameter "
                   "(impala.lr=5e-4, ppo.num_epochs=10), the network as JSON: ppo.network='{\"placement_prior\": "
                   "true, \"near_init\": 4, \"near_powered_only\": true}' (docs/mobilekube.md). Repeatable.")
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder under which the results folder is created.")
@click.option("--init-from", type=click.Path(path_type=Path, exists=True), default=None, metavar="CHECKPOINT",
              help="Warm start from a checkpoint: its parameters that match by name and shape are copied.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def train(algos: str, users: int, timesteps: int, seed: int, ray_address: str | None, env_runners: int,
          envs_per_runner: int, checkpoint_every: int, overrides: tuple[str, ...], out_root: Path,
          init_from: Path | None, quiet: bool) -> None:
    """Train Mobile-Kube agents on edgemigrate/MobileKube-v0 (synthetic taxi movements) and plot the curves."""
    from edgemigrate.experiments.mobilekube.training import (
        TrainingRequest,
        parse_algos,
        parse_overrides,
        run_training,
    )

    env_over, hyper_over = parse_overrides(overrides)
    req = TrainingRequest(algos=parse_algos(algos), users=users, timesteps=timesteps, seed=seed,
                          ray_address=ray_address, num_env_runners=env_runners,
                          num_envs_per_env_runner=envs_per_runner, checkpoint_every=checkpoint_every,
                          env_overrides=env_over, hyper_overrides=hyper_over, init_from=init_from)

    def progress(algo: str, row: dict[str, float]) -> None:
        if not quiet:
            click.echo(f"{algo} it {row['iteration']:.0f}: {row['env_steps_sampled']:.0f}/{timesteps} steps, "
                       f"reward {row['episode_reward_mean']:.3f}, empty {row.get('empty_servers', float('nan')):.2f}, "
                       f"latency {1e3 * row.get('latency_s', float('nan')):.2f} ms", err=True)

    run = run_training(req, out_root, progress)
    click.echo((run / "training.md").read_text())
    click.echo(f"results: {run}")


experiment.add_command(mobilekube)


@experiment.command(short_help="Coordinated migration + handover on the real testbed (Ngo et al. 2020, sec. V).")
@click.option("--services", default="counter,facedetect", show_default=True, help="Comma-separated: counter, facedetect.")
@click.option("--planners", default="orchestrated,nearest,random", show_default=True,
              help="Comma-separated: orchestrated, nearest, random.")
@click.option("--repeats", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--duration-s", type=float, default=None,
              help="Seconds the MU walks per run [default: 42 for counter, 85 for facedetect].")
@click.option("--compression", type=click.Choice(["none", "rule", "model"]), default="none", show_default=True,
              help="How the agents compress checkpoints on the wire; none as in Ngo et al. 2020.")
@click.option("--precopy-read", type=click.Choice(["live", "dump"]), default="live", show_default=True,
              help="Pre-copy rounds read live (the service keeps running) or as CRIU leave-running dumps "
                   "(they freeze the service).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--testbed-name", default="ho", show_default=True, help="Name of the testbed it brings up (root).")
@click.option("--no-plots", is_flag=True)
@click.option("--reanalyse", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Recompute the tables and figures of this results folder from its records; nothing runs.")
def handover(services: str, planners: str, repeats: int, duration_s: float | None, compression: str,
             precopy_read: str, seed: int, out_root: Path, testbed_name: str, no_plots: bool,
             reanalyse: Path | None) -> None:
    """Ngo et al. 2020, sec. V (figs. 4-6, table I): bring up the testbed (3 edges, cloud, 3 base stations),
    agents and the controller with each planner, walk the virtual MU past the base stations, and record every
    request, migration and handover. Needs root, CRIU and runc. Prints one JSON line per run."""
    from edgemigrate.experiments.handover import HandoverConfig, run_experiment

    if reanalyse is not None:
        from edgemigrate.experiments.handover.experiment import reanalyse as again

        again(reanalyse, plot=not no_plots, progress=click.echo)
        return
    cfg = HandoverConfig(services=tuple(s.strip() for s in services.split(",") if s.strip()),
                         planners=tuple(p.strip() for p in planners.split(",") if p.strip()), repeats=repeats,
                         duration_s=duration_s, seed=seed, testbed_name=testbed_name, compression=compression,
                         precopy_read=precopy_read)
    folder = run_experiment(cfg, out_root, plot=not no_plots, progress=click.echo)
    click.echo(f"results: {folder}")
