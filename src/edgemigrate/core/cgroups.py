"""Where a host's containers live in the cgroup tree, and how a host's subtree is removed when the host goes.

runc creates ``/edgemigrate/<netns>/<service>`` in every controller hierarchy (per host, so the two copies of
a service during a migration never share a cgroup) and removes only the leaf when the container is deleted:
the per-host parents stay behind, one per controller, for every testbed ever brought up. The testbed removes
them when it takes the host's namespace down (:func:`remove_host_cgroups`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SERVICE_CGROUP_PARENT = "edgemigrate"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def service_cgroup_path(netns_name: str, service: str) -> str:
    """The ``cgroupsPath`` of ``service`` on the host whose network namespace is ``netns_name``."""
    return f"/{SERVICE_CGROUP_PARENT}/{netns_name}/{service}"


def remove_host_cgroups(netns_name: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove ``<root>/<controller>/edgemigrate/<netns_name>`` (and what is left below it) in every hierarchy,
    deepest first; returns the directories removed. A cgroup that still holds a task refuses (EBUSY) and is
    left for the next ``down``: this never kills anything. ``netns_name`` must be a plain name (no path)."""
    if not _NAME.fullmatch(netns_name) or netns_name in (".", ".."):
        raise ValueError(f"not a namespace name: {netns_name!r}")
    removed: list[Path] = []
    for top in sorted(root.glob(f"*/{SERVICE_CGROUP_PARENT}/{netns_name}")):
        if top.is_symlink() or not top.is_dir():
            continue
        for here, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(here)  # a cgroup directory goes with its control files; a busy one refuses
            except OSError:
                continue
            removed.append(Path(here))
    return removed


__all__ = ["CGROUP_ROOT", "SERVICE_CGROUP_PARENT", "remove_host_cgroups", "service_cgroup_path"]
