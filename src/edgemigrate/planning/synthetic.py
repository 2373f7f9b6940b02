"""A seeded synthetic snapshot shaped like Ngo et al. 2020's testbed, scaled up (benchmarks and tests).

Geometry: base stations on a jittered grid with ``spacing_m`` between neighbours; the first S-1 servers are
edge servers co-located with BSs 0..S-2 (layer 1), the remaining BSs have no server of their own (layer 2),
and server S-1 is the cloud, with no capacity limit (the paper's cloud dwarfs its edge servers). Links follow the paper's sec. V-A set-up: 100 Mbit/s between edge servers,
75 Mbit/s and 150 ms to the cloud, 1 Gbit/s from a BS to its co-located server; wired RTT grows 2 ms per km.
Users stand within ``reach_m`` of a random BS and move at 0.5-5 m/s for ``horizon_s``; RSSIs now and at t'
come from :data:`~edgemigrate.radio.pathloss.WIFI_PATHLOSS` (Wi-Fi-like parameters: the paper's
access points; ref. [7] of the paper is the same log-distance model).
"""

from __future__ import annotations

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.units import GB, MBIT
from edgemigrate.planning.snapshot import BaseStations, Servers, Snapshot, Users

# the access points' path loss lives in radio/ (its domain); still importable from here for older callers
from edgemigrate.radio.pathloss import WIFI_PATHLOSS

__all__ = ["WIFI_PATHLOSS", "synthetic_snapshot"]


def synthetic_snapshot(users: int, servers: int, bss: int, seed: int, *, spacing_m: float = 150.0,
                       reach_m: float = 90.0, horizon_s: float = 30.0, max_users_per_bs: int = 8,
                       edge_cores: float = 8.0) -> Snapshot:
    """Build the instance; the same arguments always give the same snapshot."""
    if servers < 2 or bss < servers - 1 or users < 1:
        raise ValidationError(f"synthetic_snapshot needs users >= 1, servers >= 2 and bss >= servers - 1; "
                              f"got {users}, {servers}, {bss}")
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(bss)))
    grid = np.stack(np.divmod(np.arange(bss), side), axis=1).astype(np.float64) * spacing_m
    bs_xy = grid + rng.uniform(-0.2, 0.2, grid.shape) * spacing_m
    n_edge = servers - 1
    edge_xy = bs_xy[:n_edge]
    dist_km = np.linalg.norm(bs_xy[:, None, :] - edge_xy[None, :, :], axis=2) / 1000.0
    rtt = np.empty((bss, servers))
    rtt[:, :n_edge] = 0.002 + 0.002 * dist_km
    rtt[:, n_edge] = 0.150
    backhaul = np.full((bss, servers), 100.0 * MBIT)
    backhaul[:, n_edge] = 75.0 * MBIT
    backhaul[np.arange(n_edge), np.arange(n_edge)] = 1000.0 * MBIT
    link = np.full((servers, servers), 100.0 * MBIT)
    link[:, n_edge] = link[n_edge, :] = 75.0 * MBIT
    cloud = np.zeros(servers, dtype=bool)
    cloud[n_edge] = True
    srv = Servers(cpu_power=np.where(cloud, 1500.0, 1000.0), cpu_cores=np.where(cloud, np.inf, edge_cores),
                  memory_bytes=np.where(cloud, np.inf, 16.0 * GB), disk_bytes=np.where(cloud, np.inf, 200 * GB),
                  is_cloud=cloud, link_bps=link, psi=rng.uniform(2e-6, 3e-6, servers),
                  rho=rng.uniform(1.5e-6, 2.5e-6, servers))
    base = BaseStations(backhaul_bps=backhaul, rtt_s=rtt, max_users=np.full(bss, max_users_per_bs))
    home = rng.integers(0, bss, users)
    angle = rng.uniform(0, 2 * np.pi, users)
    r = reach_m * np.sqrt(rng.uniform(0, 1, users))
    xy = bs_xy[home] + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    heading = rng.uniform(0, 2 * np.pi, users)
    speed = rng.uniform(0.5, 5.0, users)
    xy_next = xy + (speed * horizon_s)[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    xy_next = np.clip(xy_next, bs_xy.min(axis=0), bs_xy.max(axis=0))  # nobody walks out of every BS's range
    rssi_now = WIFI_PATHLOSS.rssi_dbm(np.linalg.norm(xy[:, None] - bs_xy[None], axis=2))
    rssi_next = WIFI_PATHLOSS.rssi_dbm(np.linalg.norm(xy_next[:, None] - bs_xy[None], axis=2))
    cur_bs = np.argmax(rssi_now, axis=1)
    image = rng.uniform(0.07, 2.0, users) * GB
    chk = image * rng.uniform(0.05, 0.35, users)  # the paper's table I: 11-585 MB for 74 MB-1.86 GB images
    cores = rng.uniform(0.5, 2.0, users)
    memory = rng.uniform(0.2, 2.0, users) * GB
    cur_srv = _current_servers(srv, rtt[cur_bs], rng.uniform(size=users) < 0.1, cores, memory, image)
    usr = Users(server=cur_srv, bs=cur_bs, rssi_now_dbm=rssi_now, rssi_next_dbm=rssi_next,
                task_bytes=rng.uniform(20e3, 200e3, users), tasks=rng.integers(10, 100, users).astype(float),
                proc_s=rng.uniform(0.0, 0.4, users), cpu_cores=cores, memory_bytes=memory, disk_bytes=image,
                image_bytes=image, checkpoint_bytes=chk, delta_bytes=chk * rng.uniform(0.005, 0.05, users))
    return Snapshot(servers=srv, bss=base, users=usr, now_s=0.0, horizon_s=horizon_s)


def _current_servers(srv: Servers, rtt_s: np.ndarray, on_cloud: np.ndarray, cores: np.ndarray,
                     memory_bytes: np.ndarray, disk_bytes: np.ndarray) -> np.ndarray:
    """Where the containers run now: the edge server nearest (by RTT) to the user's BS with room, else the cloud.

    ``on_cloud`` users start on the cloud. Keeping 3c at time t makes the snapshot a state a controller could
    actually be in.
    """
    free = np.stack([srv.cpu_cores, srv.memory_bytes, srv.disk_bytes], axis=1).astype(np.float64)
    need = np.stack([cores, memory_bytes, disk_bytes], axis=1)
    cloud = int(np.flatnonzero(srv.is_cloud)[0])
    out = np.full(len(cores), cloud, dtype=np.int64)
    for u in np.flatnonzero(~on_cloud):
        room = np.all(free >= need[u], axis=1) & ~srv.is_cloud
        if room.any():
            out[u] = int(np.argmin(np.where(room, rtt_s[u], np.inf)))
        free[out[u]] -= need[u]
    return out
