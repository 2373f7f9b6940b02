"""``edgemigrate controller``: the central controller process (monitor, planner, deployment, API), and its
sub-commands: ``calibrate`` (measured migrations -> the simulator's calibration file), ``simulate`` (a
calibrated scenario: simulated vs measured downtime) and ``register`` (hosts, base stations, users through
a running controller's operator API)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.ids import check_id

DEFAULT_LISTEN = "0.0.0.0:7500"


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {value!r}: expected IP:PORT (PORT 0 picks a free one)")
    return host, int(port)


def _rtts(values: tuple[str, ...]) -> dict[tuple[str, str], float]:
    out = {}
    for v in values:
        pair, sep, secs = v.partition("=")
        bs, sep2, host = pair.partition(":")
        try:
            value = float(secs)
        except ValueError:
            value = -1.0
        if not (sep and sep2 and bs and host) or not 0 <= value < 1e6:
            raise ConfigError(f"--rtt {v!r}: expected BS:HOST=SECONDS (SECONDS >= 0)")
        out[(check_id(bs, "--rtt base station"), check_id(host, "--rtt host"))] = value
    return out


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store_url",
              help="Store URL: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:port/db.")
@click.option("--pki", type=click.Path(path_type=Path, file_okay=False),
              help="The agent PKI folder (CA and the client certificate the agents accept); the controller's "
                   "own server certificate is issued into it on first start.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, help="API address, IP:PORT.")
@click.option("--planner", default="orchestrated", show_default=True,
              help="cloud, random, nearest or orchestrated (Ngo et al. 2020, sec. V-A).")
@click.option("--strategy", type=click.Choice(["precopy", "stop-and-copy"]), default="precopy",
              show_default=True, help="How the agents migrate.")
@click.option("--interval-s", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
              help="Seconds between rounds (poll the agents, plan for the users that need it).")
@click.option("--rtt", "rtts", multiple=True, metavar="BS:HOST=SECONDS",
              help="RTT from a base station to a host (repeatable), recorded in the store (see also "
                   "`controller register rtt`); pairs with none are taken as 2 ms to an edge host, 50 ms to "
                   "the cloud.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random planner.")
@click.option("--ready-file", type=click.Path(path_type=Path, dir_okay=False), hidden=True,
              help="Write the bound API port here once serving (tests).")
@click.pass_context
def controller(ctx: click.Context, store_url: str | None, pki: Path | None, listen: str, planner: str,
               strategy: str, interval_s: float, rtts: tuple[str, ...], seed: int, ready_file: Path | None) -> None:
    """Run the controller: resume what a previous run left in flight, then serve the API over mTLS
    (--store and --pki are required then). Or one of the sub-commands below.

    The agents it drives are the hosts in the store (their agent addresses); it talks to them with the
    PKI's client certificate.
    """
    if ctx.invoked_subcommand is not None:
        return
    if store_url is None or pki is None:
        raise ConfigError(f"controller: --{'store' if store_url is None else 'pki'} is required to run the "
                          "controller (see --help)")
    from edgemigrate.control.client import AgentDirectory
    from edgemigrate.control.health import parse_addr
    from edgemigrate.controller.monitor import Monitor, SnapshotDefaults
    from edgemigrate.controller.service import Controller, serve
    from edgemigrate.controller.store import open_store
    from edgemigrate.controller.testbed_backend import TestbedBackend
    from edgemigrate.planning import make_planner

    ip, port = _listen(listen)
    chosen = make_planner(planner)
    store = open_store(store_url)
    try:
        directory = AgentDirectory({h.name: parse_addr(h.address) for h in store.hosts()}, pki)
        for (bs, host), rtt_s in _rtts(rtts).items():
            store.put_rtt(bs, host, rtt_s)
        monitor = Monitor(store, SnapshotDefaults())
        ctl = Controller.build(store, TestbedBackend(directory, strategy=strategy), chosen, monitor=monitor,
                               seed=seed)

        def ready(bound: int) -> None:
            logging.getLogger(__name__).warning("controller serving on %s:%d (planner %s)", ip, bound, planner)
            if ready_file is not None:
                tmp = ready_file.with_name(ready_file.name + ".tmp")
                tmp.write_text(f"{bound}\n")
                tmp.replace(ready_file)

        try:
            asyncio.run(serve(ctl, pki, ip, port, interval_s=interval_s, ready=ready))
        except KeyboardInterrupt:
            pass
    finally:
        store.close()


@controller.command()
@click.option("--from", "results", type=click.Path(path_type=Path, exists=True), required=True,
              help="A results folder holding migrations.jsonl (searched recursively), or the file itself.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The calibration file to write (JSON, format edgemigrate-calibration/2).")
@click.option("--service", default=None, help="Fit only this service (default: every service measured).")
def calibrate(results: Path, output: Path, service: str | None) -> None:
    """Fit the simulator's pre-copy migration model to measured real migrations.

    One model per service (Clark et al. 2005 pre-copy rounds: dirty rate, per-round overhead, restore time
    against resident size); prints one JSON line per service with its fitted parameters.
    """
    from edgemigrate.controller.sim.measurements import find_migrations, fit_calibration, load_migrations

    if service is not None:
        check_id(service, "--service")
    files = find_migrations(results)
    records = [r for f in files for r in load_migrations(f)]
    click.echo(f"{len(records)} migrations from {len(files)} file(s)", err=True)
    body = fit_calibration(records, service)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(output)
    for name, model in body["services"].items():
        click.echo(json.dumps({"service": name, **model}))


@controller.command()
@click.option("--scenario", default="handover-testbed", show_default=True,
              help="A bundled handover scenario (handover-testbed, handover-city) or a TOML path.")
@click.option("--calibration", type=click.Path(path_type=Path, dir_okay=False, exists=True), required=True,
              help="The calibration file (edgemigrate controller calibrate).")
@click.option("--planner", default="orchestrated", show_default=True,
              help="cloud, random, nearest or orchestrated (Ngo et al. 2020, sec. V-A).")
@click.option("--service", default=None, help="The calibrated service to simulate (default: the only one).")
@click.option("--ticks", type=click.IntRange(min=1, max=1_000_000), default=None,
              help="Ticks to simulate (default: the scenario's).")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write comparison.json and manifest.json (seed, git sha, versions) here.")
def simulate(scenario: str, calibration: Path, planner: str, service: str | None, ticks: int | None,
             seed: int | None, out: Path | None) -> None:
    """Run a calibrated scenario on the simulator backend; print simulated vs measured downtime and the ratio."""
    from edgemigrate.experiments.handover_sim import compare
    from edgemigrate.planning import make_planner

    make_planner(planner)  # an unknown name is a one-line error before the run
    if service is not None:
        check_id(service, "--service")
    click.echo(json.dumps(compare(scenario, calibration, planner, out=out, ticks=ticks, seed=seed, service=service)))
