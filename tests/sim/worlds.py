"""Small synthetic worlds for simulator tests (no data files needed)."""

from __future__ import annotations

import numpy as np

from edgemigrate.core.geo import Area
from edgemigrate.mobility.models import RandomWaypoint
from edgemigrate.model.images import ImageCatalog
from edgemigrate.model.nodes import BaseStations, CloudNode, EdgeNodes
from edgemigrate.model.topology import manhattan_grid
from edgemigrate.model.workload import WorkloadSpec
from edgemigrate.sim import SimParams, Simulator, World, zipf_probs


def synthetic_catalog(rng: np.random.Generator, n_images: int = 12, n_layers: int = 30) -> ImageCatalog:
    sizes = rng.integers(1_000_000, 300_000_000, n_layers)
    layers = tuple(np.sort(rng.choice(n_layers, size=rng.integers(2, 7), replace=False)) for _ in range(n_images))
    return ImageCatalog(tuple(f"img{i}" for i in range(n_images)), tuple(f"l{i}" for i in range(n_layers)),
                        sizes, layers)


def grid_world(n_side: int = 3, cell_m: float = 1000.0, seed: int = 0, *, storage_bytes: float | None = None,
               max_containers: int = 30, workload: WorkloadSpec | None = None) -> World:
    rng = np.random.default_rng(seed)
    n = n_side * n_side
    ij = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij"), -1).reshape(-1, 2)
    xy = (ij + 0.5) * cell_m
    nodes = EdgeNodes(
        xy_m=xy, cpu_hz=np.full(n, 128e9), memory_bytes=np.full(n, 64e9),
        storage_bytes=np.full(n, storage_bytes) if storage_bytes else rng.uniform(30e9, 100e9, n),
        wired_bps=rng.uniform(800e6, 1024e6, n), backhaul_bps=rng.uniform(400e6, 600e6, n),
        max_containers=np.full(n, max_containers), coverage_m=np.full(n, cell_m * 0.75),
        idle_power_w=np.full(n, 100.0), max_power_w=np.full(n, 250.0))
    stations = BaseStations(xy_m=xy, coverage_m=np.full(n, cell_m * 0.75), max_users=np.full(n, 1000),
                            node=np.arange(n))
    catalog = synthetic_catalog(rng)
    return World(nodes=nodes, stations=stations, cloud=CloudNode(), backhaul=manhattan_grid(xy, cell_m),
                 catalog=catalog, workload=workload or WorkloadSpec(arrival_rate_per_user_s=0.05),
                 image_probs=zipf_probs(catalog.n_images, 1.0))


def make_sim(n_users: int = 60, n_steps: int = 50, seed: int = 0, world: World | None = None,
             **params: float) -> Simulator:
    world = world or grid_world(seed=seed)
    area = Area(0.0, 0.0, float(world.nodes.xy_m[:, 0].max() + 500), float(world.nodes.xy_m[:, 1].max() + 500))
    mob = RandomWaypoint(n_users, area, speed_mps=(5.0, 20.0), pause_s=(0.0, 10.0))
    return Simulator(world, mob, SimParams(n_steps=n_steps, **params), seed=seed)
