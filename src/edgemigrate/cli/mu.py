"""``edgemigrate mu``: run a virtual mobile user inside a client host of a testbed."""

from __future__ import annotations

import os
import sys

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--testbed", "testbed_name", required=True, help="Name of a running testbed (with base stations).")
@click.option("--host", required=True, help="The client host the mobile user runs on, e.g. client1.")
@click.argument("runner_args", nargs=-1, type=click.UNPROCESSED)
def mu(testbed_name: str, host: str, runner_args: tuple[str, ...]) -> None:
    """Move, report, discover and offload continuously as the virtual MU of Ngo et al. 2020 (sec. V-A).

    Everything after the options goes to the runner (``python -m edgemigrate.mobileuser --help``): --user,
    --service, --store, --endpoint, --log, --duration-s, --speed-m-per-s, --coordinated, ...
    """
    from edgemigrate.testbed import Testbed, netops

    tb = Testbed.load(testbed_name)
    tb.mu_ip(host)  # a one-line error unless the host is a client with a mobile-user address
    argv = netops.in_ns(tb.netns(host), [sys.executable, "-m", "edgemigrate.mobileuser", "--testbed",
                                         testbed_name, "--host", host, *runner_args])
    sys.stdout.flush()
    os.execvp(argv[0], argv)
