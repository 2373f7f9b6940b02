"""The ShareOn city-scale experiment (Maheshwari et al. 2018, secs. V-VI): the world, the five policies and
one run of one (axis, value, policy, seed) point.

World: edge nodes on real San Francisco tower sites (the bundled OpenCelliD cut, cells clustered into 200 m
sites, ``n_nodes`` of them picked by farthest-point sampling - an operator covering the city evenly - with a
seed-dependent first site, so each seed is another city layout), users from the calibrated taxi-like model
(``mobility/taxi.py``) in the same area, or an imported cabspotting trace (``.npz`` from
``edgemigrate data import``) reprojected onto it. The area is the San Francisco peninsula north of Daly City
(13 km x 15 km around the city centre).

Policies (sec. VI): ``shareon`` (Algorithm 2, one agent per node), ``bandwidth_only`` and
``processing_only`` (migrating baselines, same trigger), ``equal_load`` and ``nearest`` (no migration).
The three migrating policies start each session on the nearest node.

Algorithm 1's thresholds are set from what the application needs (sec. III-C: "pre-defined values needed to
run an application"): a container needs its mean request load ``D = rate x cycles``, so a node is High when
its processing per container ``s_p / k`` leaves less than ``D / 0.85`` (the per-container share a node has
at 85 % utilisation if all its containers were average) and Low above ``D / 0.6``; RAM per container is
High below one container's reservation (256 MiB) and Low above two. ``docs/shareon.md`` gives the reasons.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.core.seeding import SeedTree
from edgemigrate.costs.shareon import RegionThresholds
from edgemigrate.policies.shareon import ShareOnParams
from edgemigrate.policies.shareon.simpolicy import AgentPolicy
from edgemigrate.sim.shareon import Placement, Positions, ShareOnSim, ShareOnSimConfig

POLICIES = ("shareon", "bandwidth_only", "processing_only", "equal_load", "nearest")
MIGRATING = ("shareon", "bandwidth_only", "processing_only")
SF_ORIGIN = (37.7749, -122.4194)
SF_AREA = Area(-8000.0, -11000.0, 5000.0, 4000.0)
HIGH_UTIL = 0.85
"""Algorithm 1: processing per container below ``D / HIGH_UTIL`` is High."""
LOW_UTIL = 0.6
"""Algorithm 1: processing per container above ``D / LOW_UTIL`` (and RAM above m_th2) is Low."""


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """The city: users, nodes, where they come from, how long a run lasts."""

    n_users: int = 2000
    n_nodes: int = 50
    towers: str = "sf"
    site_radius_m: float = 200.0
    trace: str | None = None
    duration_s: float = 900.0
    warmup_s: float = 300.0


def node_positions(world: WorldConfig, seed: int) -> NDArray[np.float64]:
    """``n_nodes`` tower sites in :data:`SF_AREA`, spread out (farthest-point from a seeded first site)."""
    from edgemigrate.datasets import towers as tw

    table = tw.read_opencellid(world.towers) if world.towers.endswith(".csv") else tw.bundled_towers(world.towers)
    sites = tw.cluster_sites(table.lat, table.lon, LocalProjection(*SF_ORIGIN), radius_m=world.site_radius_m)
    inside = int(SF_AREA.contains(sites.xy_m).sum())
    if world.n_nodes > inside:
        raise ConfigError(f"n_nodes = {world.n_nodes}: only {inside} tower sites lie in the San Francisco area")
    return sites.xy_m[tw.pick_sites(sites.xy_m, world.n_nodes, SeedTree(seed).rng("nodes"), SF_AREA,
                                    method="farthest")]


def mobility(world: WorldConfig) -> Positions:
    """The users: the taxi-like model, or the imported trace reprojected onto the area."""
    from edgemigrate import mobility as mob

    if world.trace is None:
        return mob.TaxiLike(world.n_users, SF_AREA)
    from edgemigrate.scenarios.scenario import reproject

    traj = mob.Trajectories.load(world.trace)
    return mob.TraceMobility(reproject(traj, LocalProjection(*SF_ORIGIN), SF_AREA))


def agent_params(cfg: ShareOnSimConfig, n_users: int, n_nodes: int, **overrides: Any) -> ShareOnParams:
    """The agents' parameters for a simulated city (module docstring for the thresholds)."""
    demand_hz = cfg.rate_rps(n_users, n_nodes) * cfg.cycles_per_request
    th = RegionThresholds(sp_th1_hz=demand_hz / HIGH_UTIL, sp_th2_hz=demand_hz / LOW_UTIL,
                          m_th1_bytes=cfg.container_ram_bytes, m_th2_bytes=2 * cfg.container_ram_bytes)
    return ShareOnParams(th, l_d_s_per_m=cfg.l_d_s_per_m, user_latency_s=cfg.user_latency_s, **overrides)


AXES: dict[str, tuple[float, ...]] = {
    "load": (0.2, 0.4, 0.6, 0.7, 0.8),
    "cores": (4.0, 6.0, 8.0),
    "bandwidth_mbit": (100.0, 1000.0, 10000.0),
    "user_latency_ms": (5.0, 15.0, 40.0),
}
"""The swept axes and their default points; every other parameter stays at :data:`BASE` (load 0.7)."""
BASE = ShareOnSimConfig(load=0.7)


def point_config(axis: str, value: float, base: ShareOnSimConfig = BASE) -> ShareOnSimConfig:
    """``base`` with one axis set to ``value``."""
    if axis == "load":
        return dataclasses.replace(base, load=float(value))
    if axis == "cores":
        return dataclasses.replace(base, cores_per_node=int(value))
    if axis == "bandwidth_mbit":
        return dataclasses.replace(base, inter_edge_bps=float(value) * 1e6)
    if axis == "user_latency_ms":
        return dataclasses.replace(base, user_latency_s=float(value) / 1000.0)
    raise ConfigError(f"unknown sweep axis '{axis}' (expected one of {', '.join(AXES)})")


def run_one(axis: str, value: float, policy: str, seed: int, world: WorldConfig,
            base: ShareOnSimConfig = BASE, agent_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One simulation: returns a flat row (the point, the policy, the seed and the run's totals)."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy '{policy}' (expected one of {', '.join(POLICIES)})")
    cfg = dataclasses.replace(point_config(axis, value, base), duration_s=world.duration_s,
                              warmup_s=world.warmup_s)
    mob = mobility(world)
    xy = node_positions(world, seed)
    agent = None
    if policy in MIGRATING:
        agent = AgentPolicy.by_name(policy, agent_params(cfg, mob.n_users, len(xy), **(agent_overrides or {})))
    placement = Placement.EQUAL_LOAD if policy == "equal_load" else Placement.NEAREST
    res = ShareOnSim(cfg, xy, mob, placement=placement, policy=agent, seed=seed).run()
    return {"axis": axis, "value": float(value), "policy": policy, "seed": seed, **res.totals}
