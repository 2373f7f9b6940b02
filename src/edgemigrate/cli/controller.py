"""``edgemigrate controller``: the central controller process (monitor, planner, deployment, API)."""

from __future__ import annotations

import asyncio
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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store_url", required=True,
              help="Store URL: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:port/db.")
@click.option("--pki", type=click.Path(path_type=Path, file_okay=False), required=True,
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
              help="RTT from a base station to a host (repeatable); the others are 2 ms to an edge host, "
                   "50 ms to the cloud.")
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
def controller(store_url: str, pki: Path, listen: str, planner: str, strategy: str, interval_s: float,
               rtts: tuple[str, ...], seed: int, testbed_name: str | None, mus: tuple[str, ...],
               handover_at_freeze: bool, ready_file: Path | None) -> None:
    """Run the controller: resume what a previous run left in flight, then serve the API over mTLS.

    The agents it drives are the hosts in the store (their agent addresses); it talks to them with the
    PKI's client certificate.
    """
    from edgemigrate.control.client import AgentDirectory
    from edgemigrate.control.health import parse_addr
    from edgemigrate.controller.monitor import Monitor, SnapshotDefaults
    from edgemigrate.controller.service import Controller, serve
    from edgemigrate.controller.store import open_store
    from edgemigrate.controller.testbed_backend import TestbedBackend, TestbedHandover
    from edgemigrate.planning import make_planner

    ip, port = _listen(listen)
    chosen = make_planner(planner)
    store = open_store(store_url)
    try:
        directory = AgentDirectory({h.name: parse_addr(h.address) for h in store.hosts()}, pki)
        monitor = Monitor(store, SnapshotDefaults(bs_host_rtt_s=_rtts(rtts)))
        backend = TestbedBackend(directory, strategy=strategy)
        if testbed_name is not None:
            clients = dict(_pair(m) for m in mus)
            backend = TestbedBackend(directory, strategy=strategy, handover_at_freeze=handover_at_freeze,
                                     handover_hook=TestbedHandover(check_id(testbed_name, "--testbed"), clients))
        ctl = Controller.build(store, backend, chosen, monitor=monitor, seed=seed)

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
