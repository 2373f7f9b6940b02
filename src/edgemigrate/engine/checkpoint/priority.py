"""CPU priority of the processes a frozen service waits for.

While a service is frozen (the final dump, the address lock, the restore, the page daemon that serves its
first faults), its clients wait for a handful of short-lived processes: runc, CRIU, iptables. On an edge
host that also runs other services, those processes compete with every busy task for the CPU, and the
frozen window grows with the host's load, not with the service's size. They run at nice
``CRITICAL_NICE`` instead: under CFS a task at -10 weighs ~9x one at 0, so a busy host lends them most of a
core for the fraction of a second they need (measured: ``docs/results/precopy-stall``). Only root may raise
a priority; for anyone else the processes run as before.
"""

from __future__ import annotations

import os
import shutil

CRITICAL_NICE = -10


def critical(argv: list[str]) -> list[str]:
    """``argv`` run at ``CRITICAL_NICE`` (its children inherit it), when this process may raise priorities."""
    if os.geteuid() != 0 or shutil.which("nice") is None:
        return argv
    return ["nice", "-n", str(CRITICAL_NICE), *argv]
