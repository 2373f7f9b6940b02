"""Planning around users no base station covers.

Constraint 3d of Ngo et al. 2020 admits a (user, BS) pair only when the measured and the estimated RSSI both
reach the receiver's minimum. A user that hears no BS that well has no admissible pair at all, so any planner
given it finds the whole problem infeasible and the round plans nobody. :func:`plan_covered` plans the
covered users and leaves the uncovered ones where they are (same server, same BS, no action), naming them in
``Plan.uncovered``: the controller reports them and they are planned again once they hear a BS. Their
containers keep running, so the servers' capacities (3c) left for the others are reduced by their needs.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
from numpy.typing import NDArray

from edgemigrate.planning.base import Planner
from edgemigrate.planning.estimate import Plan, Timing, link_ok
from edgemigrate.planning.snapshot import Snapshot, Users


def covered_users(snap: Snapshot) -> NDArray[np.bool_]:
    """(U,) users with at least one BS admissible under 3d (RSSI now and at t' >= the minimum, with a rate)."""
    return np.asarray(link_ok(snap).any(axis=1), dtype=bool)


def _subset(snap: Snapshot, keep: NDArray[np.bool_]) -> Snapshot:
    U = snap.users
    users = Users(**{f.name: getattr(U, f.name)[keep] for f in fields(Users)})
    need = np.zeros((snap.servers.n, 3))
    out = ~keep
    np.add.at(need, U.server[out], np.stack([U.cpu_cores[out], U.memory_bytes[out], U.disk_bytes[out]], axis=1))
    S = snap.servers
    servers = replace(S, cpu_cores=np.maximum(S.cpu_cores - need[:, 0], 0.0),
                      memory_bytes=np.maximum(S.memory_bytes - need[:, 1], 0.0),
                      disk_bytes=np.maximum(S.disk_bytes - need[:, 2], 0.0))
    return replace(snap, servers=servers, users=users, replan=None if snap.replan is None else snap.replan[keep])


def _stay(snap: Snapshot, name: str, timing: Timing) -> Plan:
    """Everyone keeps server and BS: no gain, no downtime, no trigger."""
    U = snap.users
    nan = np.full(U.n, np.nan)
    return Plan(planner=name, server=U.server.copy(), bs=U.bs.copy(), delay_s=np.full(U.n, np.inf),
                task_delay_s=np.zeros(U.n), gain_s=nan, downtime_s=np.zeros(U.n), premigration_at_s=nan,
                migration_at_s=nan.copy(), handover_at_s=nan.copy(), timing=timing)


def plan_covered(planner: Planner, snap: Snapshot, rng: np.random.Generator) -> Plan:
    """``planner``'s plan for the covered users; the uncovered stay put and are listed in ``Plan.uncovered``.

    An uncovered user's row has its current server and BS, an infinite ``delay_s`` (no link), no gain
    (nan), no downtime and no trigger times; its ``task_delay_s`` is 0 so ``Plan.cost_s`` stays the
    covered users' cost. Raises what the planner raises for the covered users (e.g. capacity, 3c/3e).
    """
    covered = covered_users(snap)
    if covered.all():
        return planner.plan(snap, rng)
    uncovered = np.flatnonzero(~covered).astype(np.int64)
    full = _stay(snap, planner.name, Timing.COORDINATED)
    if not covered.any():
        return replace(full, uncovered=uncovered)
    sub = planner.plan(_subset(snap, covered), rng)
    cols = {}
    for f in ("server", "bs", "delay_s", "task_delay_s", "gain_s", "downtime_s", "premigration_at_s",
              "migration_at_s", "handover_at_s"):
        col = np.array(getattr(full, f))
        col[covered] = getattr(sub, f)
        col.setflags(write=False)
        cols[f] = col
    uncovered.setflags(write=False)
    return replace(sub, **cols, uncovered=uncovered)
