"""``edgemigrate run`` and ``edgemigrate scenarios``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgemigrate.core.errors import ConfigError


@click.command()
@click.argument("scenario", default="default")
@click.option("--seed", type=int, default=None, help="Root seed (overrides the scenario's `seed`).")
@click.option("--policy", default=None, help="Policy name (overrides the scenario's `policy`; see `scenarios`).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a scenario key, e.g. --set sim.n_steps=100 --set users.count=50. Repeatable.")
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder under which the run folder is created.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run(scenario: str, seed: int | None, policy: str | None, overrides: tuple[str, ...], out_root: Path,
        no_plots: bool, quiet: bool) -> None:
    """Simulate SCENARIO (a bundled name or a TOML path; default: `default`) and write a run folder.

    The folder holds the resolved config, versions and git SHA, per-step and per-decision metrics (CSV)
    and plots. Its path is printed on the last line.
    """
    from edgemigrate.experiments.runner import run_scenario
    from edgemigrate.policies import POLICIES, make_policy
    from edgemigrate.scenarios.scenario import load_scenario

    sets = list(overrides)
    if policy is not None:
        make_policy(policy)  # validate the name early, with suggestions
        sets.append(f'policy="{policy}"')
    sc = load_scenario(scenario, sets, seed)
    if sc.policy not in POLICIES:
        make_policy(sc.policy)
    res = run_scenario(sc, out_root, progress=not quiet and sys.stderr.isatty(), plots=not no_plots)
    s = res.summary
    click.echo(f"{sc.name}: {s['decisions']} decisions ({s['arrivals']} arrivals, {s['migrations_passive']} passive "
               f"+ {s['migrations_proactive']} proactive migrations, {s['fallbacks_to_cloud']} cloud fallbacks); "
               f"delay per task {s['per_task_total_s']:.2f} s (S {s['per_task_migration_s']:.2f} + "
               f"C {s['per_task_computation_s']:.2f} + P {s['per_task_deployment_s']:.2f} + "
               f"B {s['per_task_backhaul_s']:.2f}); {s['ms_per_step']:.2f} ms/step")
    click.echo(f"results: {res.out_dir.resolve()}")


@click.command()
def scenarios() -> None:
    """List the bundled scenarios and the available policies."""
    from edgemigrate.policies import POLICIES, make_policy
    from edgemigrate.scenarios.scenario import bundled_scenarios

    make_policy("cloud")  # loads the built-in registrations
    found = bundled_scenarios()
    if not found:
        raise ConfigError("no bundled scenarios found (is the package installed?)")
    width = max(map(len, found))
    click.echo("scenarios:")
    for name, desc in found.items():
        click.echo(f"  {name:<{width}}  {desc}")
    click.echo("policies: " + ", ".join(POLICIES.names()))
