"""Tiny hand-made snapshots and an exhaustive search over all their assignments (the MILP's reference)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from edgemigrate.core.units import GB, MBIT
from edgemigrate.planning import BaseStations, Servers, Snapshot, Users, evaluate
from edgemigrate.planning.estimate import Plan, Timing


def servers(n: int = 3, cloud: int | None = None, **over: Any) -> Servers:
    """``n`` identical edge servers (8 cores, 16 GB, 100 GB), server ``cloud`` (if any) flagged as the cloud."""
    is_cloud = np.zeros(n, dtype=bool)
    if cloud is not None:
        is_cloud[cloud] = True
    args: dict[str, Any] = dict(cpu_power=np.full(n, 1000.0), cpu_cores=np.full(n, 8.0),
                                memory_bytes=np.full(n, 16 * GB), disk_bytes=np.full(n, 100 * GB),
                                is_cloud=is_cloud, link_bps=np.full((n, n), 100 * MBIT),
                                psi=np.full(n, 2e-6), rho=np.full(n, 2e-6))
    args.update(over)
    return Servers(**args)


def bss(n_bs: int = 2, n_srv: int = 3, **over: Any) -> BaseStations:
    """BS b is co-located with server b (1 ms, 1 Gbit/s); everything else 20 ms, 100 Mbit/s."""
    rtt = np.full((n_bs, n_srv), 0.020)
    bh = np.full((n_bs, n_srv), 100 * MBIT)
    for b in range(min(n_bs, n_srv)):
        rtt[b, b] = 0.001
        bh[b, b] = 1000 * MBIT
    args: dict[str, Any] = dict(backhaul_bps=bh, rtt_s=rtt, max_users=np.full(n_bs, 10))
    args.update(over)
    return BaseStations(**args)


def users(n: int = 2, n_bs: int = 2, **over: Any) -> Users:
    """``n`` users on BS 0 and server 0, hearing BS 0 at -60 dBm now and -75 at t', BS 1 the other way round."""
    rssi_now = np.full((n, n_bs), -90.0)
    rssi_next = np.full((n, n_bs), -90.0)
    rssi_now[:, 0], rssi_next[:, 0] = -60.0, -75.0
    if n_bs > 1:
        rssi_now[:, 1], rssi_next[:, 1] = -75.0, -60.0
    args: dict[str, Any] = dict(server=np.zeros(n, dtype=int), bs=np.zeros(n, dtype=int), rssi_now_dbm=rssi_now,
                                rssi_next_dbm=rssi_next, task_bytes=np.full(n, 100e3), tasks=np.full(n, 50.0),
                                proc_s=np.full(n, 0.1), cpu_cores=np.full(n, 1.0), memory_bytes=np.full(n, 1 * GB),
                                disk_bytes=np.full(n, 1 * GB), image_bytes=np.full(n, 100e6),
                                checkpoint_bytes=np.full(n, 20e6), delta_bytes=np.full(n, 1e6))
    args.update(over)
    return Users(**args)


def snapshot(srv: Servers | None = None, base: BaseStations | None = None, usr: Users | None = None,
             **over: Any) -> Snapshot:
    args: dict[str, Any] = dict(servers=srv or servers(), bss=base or bss(), users=usr or users(), now_s=100.0,
                                horizon_s=10.0)
    args.update(over)
    return Snapshot(**args)


def feasible(snap: Snapshot, server: np.ndarray, bs: np.ndarray) -> bool:
    """3c, 3d and 3e checked directly from the snapshot's numbers (3b holds by construction: one pair each)."""
    S, U = snap.servers, snap.users
    for need, cap in ((U.cpu_cores, S.cpu_cores), (U.memory_bytes, S.memory_bytes), (U.disk_bytes, S.disk_bytes)):
        if np.any(np.bincount(server, weights=need, minlength=S.n) > cap + 1e-9):
            return False
    users = np.arange(U.n)
    if np.any(U.rssi_now_dbm[users, bs] < snap.min_rssi_dbm) or np.any(U.rssi_next_dbm[users, bs] < snap.min_rssi_dbm):
        return False
    return not np.any(np.bincount(bs, minlength=snap.bss.n) > snap.bss.max_users)


def brute_force(snap: Snapshot) -> Plan | None:
    """The feasible assignment with the largest G - C (eq. 3a), by enumerating all (server, BS)^U of them."""
    pairs = list(itertools.product(range(snap.servers.n), range(snap.bss.n)))
    best: Plan | None = None
    for combo in itertools.product(pairs, repeat=snap.users.n):
        server = np.array([p[0] for p in combo])
        bs = np.array([p[1] for p in combo])
        if not feasible(snap, server, bs):
            continue
        plan = evaluate(snap, "brute", server, bs, Timing.COORDINATED)
        if not np.all(np.isfinite(plan.delay_s)):
            continue
        if best is None or plan.profit_s > best.profit_s + 1e-12:
            best = plan
    return best
