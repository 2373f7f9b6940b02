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


def _pair(value: str) -> tuple[str, str]:
    user, sep, client = value.partition("=")
    if not sep:
        raise ConfigError(f"--mu {value!r}: expected USER=CLIENT")
    return check_id(user, "--mu user"), check_id(client, "--mu client")


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
@click.option("--testbed", "testbed_name", default=None,
              help="Hand mobile users over on this testbed's base stations (with --mu); else handovers are "
                   "only recorded.")
@click.option("--mu", "mus", multiple=True, metavar="USER=CLIENT",
              help="The client host whose mobile user is USER (repeatable; with --testbed).")
@click.option("--handover-at-freeze/--handover-after", default=True, show_default=True,
              help="With --testbed: start a migration's handover when the source freezes the service "
                   "(coordinated, Ngo et al. 2020 sec. IV-B), or after the migration.")
@click.option("--ready-file", type=click.Path(path_type=Path, dir_okay=False), hidden=True,
              help="Write the bound API port here once serving (tests).")
@click.pass_context
def controller(ctx: click.Context, store_url: str | None, pki: Path | None, listen: str, planner: str,
               strategy: str, interval_s: float, rtts: tuple[str, ...], seed: int, testbed_name: str | None,
               mus: tuple[str, ...], handover_at_freeze: bool, ready_file: Path | None) -> None:
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
    from edgemigrate.controller.store import Host, open_store
    from edgemigrate.controller.testbed_backend import TestbedBackend, TestbedHandover
    from edgemigrate.planning import make_planner

    ip, port = _listen(listen)
    chosen = make_planner(planner)
    store = open_store(store_url)
    try:
        directory = AgentDirectory({h.name: parse_addr(h.address) for h in store.hosts()}, pki)
        for (bs, host), rtt_s in _rtts(rtts).items():
            store.put_rtt(bs, host, rtt_s)
        monitor = Monitor(store, SnapshotDefaults())
        backend = TestbedBackend(directory, strategy=strategy)
        if testbed_name is not None:
            clients = dict(_pair(m) for m in mus)
            backend = TestbedBackend(directory, strategy=strategy, handover_at_freeze=handover_at_freeze,
                                     handover_hook=TestbedHandover(check_id(testbed_name, "--testbed"), clients))
        ctl = Controller.build(store, backend, chosen, monitor=monitor, seed=seed)

        def registered(host: Host) -> None:  # a host the operator registers is driven from now on
            directory.addrs[host.name] = parse_addr(host.address)

        ctl.on_host_registered = registered

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
    try:
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(output)
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot write ({exc.strerror})") from None
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
    try:
        result = compare(scenario, calibration, planner, out=out, ticks=ticks, seed=seed, service=service)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write ({exc.strerror})") from None
    click.echo(json.dumps(result))


def _register(controller_addr: str, pki: Path, op: str, fields: dict[str, object]) -> None:
    from edgemigrate.controller.client import ControllerClient

    ip, port = _listen(controller_addr)

    async def go() -> dict[str, object]:
        async with ControllerClient(ip, port, pki_dir=pki, cert="client", reply_timeout_s=30.0) as c:
            return await c.register(op, **{k: v for k, v in fields.items() if v is not None})

    try:
        reply = asyncio.run(go())
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"controller {controller_addr}: cannot reach it ({exc.__class__.__name__}: {exc})") from None
    click.echo(json.dumps(reply))


_CONTROLLER = click.option("--controller", "controller_addr", default="127.0.0.1:7500", show_default=True,
                           help="The running controller's API address, IP:PORT.")
_PKI = click.option("--pki", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
                    help="The PKI folder holding the operator's `client` certificate.")


@controller.group()
def register() -> None:
    """Register hosts, base stations, users and BS-to-host RTTs with a running controller (operator role).

    Every value is checked by the controller (identifier pattern, ranges, IP:PORT); a refusal is one line.
    """


@register.command("host")
@_CONTROLLER
@_PKI
@click.argument("name")
@click.option("--address", required=True, help="Its agent's IP:PORT.")
@click.option("--role", type=click.Choice(["edge", "cloud"]), default="edge", show_default=True)
@click.option("--cpu-cores", type=float, required=True)
@click.option("--memory-bytes", type=int, required=True)
@click.option("--disk-bytes", type=int, required=True)
@click.option("--cpu-events-per-s", type=float, default=None, help="Its CPU benchmark score (C_s of eq. 4-5).")
def register_host(controller_addr: str, pki: Path, name: str, address: str, role: str, cpu_cores: float,
                  memory_bytes: int, disk_bytes: int, cpu_events_per_s: float | None) -> None:
    """Add or replace host NAME."""
    _register(controller_addr, pki, "register_host",
              {"name": name, "address": address, "role": role, "cpu_cores": cpu_cores, "memory_bytes": memory_bytes,
               "disk_bytes": disk_bytes, "cpu_events_per_s": cpu_events_per_s})


@register.command("bs")
@_CONTROLLER
@_PKI
@click.argument("name")
@click.option("--x-m", type=float, required=True)
@click.option("--y-m", type=float, required=True)
@click.option("--bandwidth-bps", type=float, required=True, help="Its backhaul (B_bs of eq. 4), bits/s.")
@click.option("--max-users", type=int, required=True, help="N_b of constraint 3e.")
def register_bs(controller_addr: str, pki: Path, name: str, x_m: float, y_m: float, bandwidth_bps: float,
                max_users: int) -> None:
    """Add or replace base station NAME."""
    _register(controller_addr, pki, "register_base_station",
              {"name": name, "x_m": x_m, "y_m": y_m, "bandwidth_bps": bandwidth_bps, "max_users": max_users})


@register.command("user")
@_CONTROLLER
@_PKI
@click.argument("name")
@click.option("--sla-delay-s", type=float, default=None, help="E2E delay above which the user is replanned.")
def register_user(controller_addr: str, pki: Path, name: str, sla_delay_s: float | None) -> None:
    """Add or replace mobile user NAME."""
    _register(controller_addr, pki, "register_user", {"name": name, "sla_delay_s": sla_delay_s})


@register.command("rtt")
@_CONTROLLER
@_PKI
@click.argument("pair", metavar="BS:HOST=SECONDS")
def register_rtt(controller_addr: str, pki: Path, pair: str) -> None:
    """Set the wired RTT from a base station to a host (RTT_bs of eq. 4)."""
    ((bs, host), rtt_s), = _rtts((pair,)).items()
    _register(controller_addr, pki, "set_rtt", {"base_station": bs, "host": host, "rtt_s": rtt_s})
