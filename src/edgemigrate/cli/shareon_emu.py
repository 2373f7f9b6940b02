"""``edgemigrate experiment shareon emulation``: ShareOn's real two-node emulation (root, real engine)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="ShareOn's two-node emulation (sec. IV-D, fig. 6) on the real testbed (root).")
@click.option("--repeats", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Repeats; each runs the ramp twice: with ShareOn on node 1 and without migration.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated images.")
@click.option("--step-s", type=click.FloatRange(min=1.0), default=8.0, show_default=True,
              help="Seconds at each load level.")
@click.option("--levels", type=click.IntRange(2, 21), default=6, show_default=True,
              help="Load levels from 0 to 1 (node 2: 1 to 0).")
@click.option("--threshold-ms", type=click.FloatRange(min=1.0), default=100.0, show_default=True,
              help="The application's total-delay threshold t_app,th (100 ms in the paper).")
@click.option("--host-cores", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="CPU quota of each emulated host (cores); 0: none.")
@click.option("--pin-cpus/--no-pin-cpus", default=True, show_default=True,
              help="Pin node 1 to CPU 0 and node 2 to CPU 1 (two one-CPU machines; needs two CPUs).")
@click.option("--stress-workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="stress-ng workers per host; their cgroup's CFS quota is the load level x the host's CPU.")
@click.option("--load-weight", type=click.IntRange(1, 100), default=8, show_default=True,
              help="The load cgroup's weight in processes: the service keeps at least 1/(1+weight) of its CPU.")
@click.option("--admit-below", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.85, show_default=True,
              help="Node 2 admits the move only if its CPU use stays below this (0 < x <= 1).")
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder under which the results folder is created.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def emulation(repeats: int, seed: int, step_s: float, levels: int, threshold_ms: float, host_cores: float,
              pin_cpus: bool, stress_workers: int, load_weight: int, admit_below: float, out_root: Path,
              quiet: bool) -> None:
    """Maheshwari et al. 2018, sec. IV-D: node 1's load ramps 0 -> 1 while node 2's ramps 1 -> 0 (stress-ng in
    each host's cgroup); when the measured delay crosses the threshold ShareOn on node 1 migrates the
    recognition service to node 2 by itself. Writes delay.csv, decisions.jsonl, summary.csv/.md, delay.png and
    manifest.json."""
    from edgemigrate.experiments.shareon.emulation import EmulationConfig, run_emulation

    cfg = EmulationConfig(repeats=repeats, seed=seed, step_s=step_s, levels=levels, threshold_s=threshold_ms / 1000,
                          host_cores=host_cores, pin_cpus=pin_cpus, stress_workers=stress_workers,
                          load_weight=load_weight, admit_below=admit_below)
    out, _ = run_emulation(cfg, out_root, (lambda _msg: None) if quiet else click.echo)
    click.echo((out / "summary.md").read_text())
    click.echo(f"results: {out}")
