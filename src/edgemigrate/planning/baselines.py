"""The cloud, random and nearest planners of Ngo et al. 2020, sec. V-A (the orchestrated one's baselines).

As in the paper they are triggered by the handover: each user's BS is the one the relative RSSI hysteresis
picks (strongest estimated RSSI at t', taken only when it beats the current BS by the hysteresis or the
current link is lost), and only users that hand over get a new server - except the cloud planner, which keeps
every container on the cloud. Migration and handover then run one after the other (``Timing.SEQUENTIAL``).

The paper's baselines ignore capacities; ours keep 3b-3e so that their plans can be executed: users are
served in index order and each takes its preferred BS/server among those with room left. A user with no
admissible choice raises :class:`PlanningError`. "Nearest" is the network distance: the server with the
smallest RTT from the user's new BS (the snapshot has no coordinates; edge servers sit next to their BSs).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgemigrate.planning.base import PLANNERS, PlanningError
from edgemigrate.planning.estimate import Plan, Timing, evaluate, link_ok
from edgemigrate.planning.snapshot import Snapshot

I64 = NDArray[np.int64]


def hysteresis_bs(snap: Snapshot) -> I64:
    """Each user's BS at t' under relative RSSI hysteresis, within 3d (min RSSI) and 3e (N_b users per BS)."""
    U = snap.users
    ok = link_ok(snap)
    room = snap.bss.max_users.copy()
    out = np.empty(U.n, dtype=np.int64)
    rssi = np.where(ok, U.rssi_next_dbm, -np.inf)
    order = np.argsort(-rssi, axis=1, kind="stable")  # strongest first
    for u in range(U.n):
        cur, best = int(U.bs[u]), int(order[u, 0])
        stay = ok[u, cur] and rssi[u, best] - rssi[u, cur] < snap.hysteresis_db
        prefs = [cur] if stay else []
        prefs += [int(b) for b in order[u] if ok[u, b]]
        chosen = next((b for b in prefs if room[b] > 0), None)
        if chosen is None:
            raise PlanningError(f"user {u}: no base station with RSSI >= {snap.min_rssi_dbm:g} dBm (3d) "
                                f"and room for another user (3e)")
        room[chosen] -= 1
        out[u] = chosen
    return out


class _ServerLoad:
    """Remaining CPU, memory and disk per server (3c) while users are placed one by one."""

    def __init__(self, snap: Snapshot) -> None:
        S = snap.servers
        self.free = np.stack([S.cpu_cores, S.memory_bytes, S.disk_bytes], axis=1).astype(np.float64)
        U = snap.users
        self.need = np.stack([U.cpu_cores, U.memory_bytes, U.disk_bytes], axis=1)

    def room(self, u: int) -> NDArray[np.bool_]:
        return np.all(self.free >= self.need[u], axis=1)

    def take(self, u: int, s: int) -> None:
        self.free[s] -= self.need[u]


class _HandoverTriggered:
    """Shared loop: fix the BS by hysteresis, keep non-replanned users, place the others with ``_choose``."""

    name = "baseline"

    def plan(self, snapshot: Snapshot, rng: np.random.Generator) -> Plan:
        snap = snapshot
        U = snap.users
        bs = hysteresis_bs(snap)
        replan = self._replanned(snap, bs)
        load = _ServerLoad(snap)
        server = U.server.copy()
        for u in np.flatnonzero(~replan):
            load.take(int(u), int(server[u]))
        if np.any(load.free < 0):
            s = int(np.argwhere(load.free < 0)[0, 0])
            raise PlanningError(f"server {s}: the users that stay on it already exceed its capacity (3c)")
        for u in np.flatnonzero(replan):
            room = load.room(int(u))
            s = self._choose(snap, int(u), int(bs[u]), room, rng)
            if s is None:
                raise PlanningError(f"user {int(u)}: no server has room for its container (3c) "
                                    f"under the {self.name} planner")
            load.take(int(u), s)
            server[u] = s
        return evaluate(snap, self.name, server, bs, Timing.SEQUENTIAL)

    def _replanned(self, snap: Snapshot, bs: I64) -> NDArray[np.bool_]:
        return bs != snap.users.bs

    def _choose(self, snap: Snapshot, u: int, b: int, room: NDArray[np.bool_],
                rng: np.random.Generator) -> int | None:
        raise NotImplementedError


def _closest(snap: Snapshot, b: int, allowed: NDArray[np.bool_]) -> int | None:
    if not allowed.any():
        return None
    rtt = np.where(allowed, snap.bss.rtt_s[b], np.inf)
    return int(np.argmin(rtt))  # first index on ties


@PLANNERS.register("cloud")
class CloudPlanner(_HandoverTriggered):
    """Every container on a cloud server (the one closest to the user's BS); only handovers move users."""

    name = "cloud"

    def _replanned(self, snap: Snapshot, bs: I64) -> NDArray[np.bool_]:
        on_cloud = snap.servers.is_cloud[snap.users.server]
        return (bs != snap.users.bs) | ~on_cloud

    def _choose(self, snap: Snapshot, u: int, b: int, room: NDArray[np.bool_],
                rng: np.random.Generator) -> int | None:
        if not snap.servers.is_cloud.any():
            raise PlanningError("the cloud planner needs a server with is_cloud set; the snapshot has none")
        return _closest(snap, b, room & snap.servers.is_cloud)


@PLANNERS.register("random")
class RandomPlanner(_HandoverTriggered):
    """A user that hands over gets a server drawn uniformly among those with room (cloud included)."""

    name = "random"

    def _choose(self, snap: Snapshot, u: int, b: int, room: NDArray[np.bool_],
                rng: np.random.Generator) -> int | None:
        options = np.flatnonzero(room)
        return int(rng.choice(options)) if options.size else None


@PLANNERS.register("nearest")
class NearestPlanner(_HandoverTriggered):
    """A user that hands over gets the edge server nearest (smallest RTT) to its new BS; the cloud if none fits."""

    name = "nearest"

    def _choose(self, snap: Snapshot, u: int, b: int, room: NDArray[np.bool_],
                rng: np.random.Generator) -> int | None:
        edge = _closest(snap, b, room & ~snap.servers.is_cloud)
        return edge if edge is not None else _closest(snap, b, room & snap.servers.is_cloud)
