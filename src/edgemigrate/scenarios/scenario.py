"""Scenarios: TOML files -> a :class:`Scenario` config tree -> a ready :class:`~edgemigrate.sim.Simulator`.

Bundled scenarios live in ``edgemigrate/scenarios/*.toml`` (``edgemigrate scenarios`` lists them); a path to
any TOML file works too. Every table and key is documented by the dataclass fields below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from edgemigrate.core.config import Limit, apply_overrides, convert_field, load_into, read_toml
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.core.registry import suggest
from edgemigrate.core.seeding import SeedTree
from edgemigrate.model.images import ImageCatalog
from edgemigrate.model.nodes import BaseStations, CloudNode, EdgeNodes
from edgemigrate.model.topology import Backhaul, manhattan_grid, mst, three_tier
from edgemigrate.model.workload import WorkloadSpec
from edgemigrate.radio.association import HandoverConfig
from edgemigrate.radio.pathloss import LogDistancePathLoss
from edgemigrate.radio.uplink import PAPER_UPLINK_MBIT
from edgemigrate.sim import SimParams, Simulator, World, zipf_probs

Range = tuple[float, float]

# Every number of a scenario has a range, checked when the file is loaded (core/config.py), so a typo fails
# with the file and key instead of deep inside the simulator. Bounds are generous but finite; where a value
# sizes an allocation, the bound keeps it within a workstation's memory (reasons at each constant).
MAX_NODES = 2000
"""Per-pair hop and distance matrices are N x N (with the cloud): 2000 nodes take ~80 MB; a city-scale
deployment has at most a few hundred edge sites."""
MAX_USERS = 100_000
"""Positions, association and per-user state are O(users) per tick and the radio step compares every user
with the nearby stations; the largest real trace sets hold a few thousand vehicles."""
MAX_GRID_CELLS = 1_000_000
"""A ``grid`` node layout enumerates every cell of the area before picking ``nodes.count`` of them."""
MAX_ARRIVALS_PER_TICK = 1_000_000
"""Expected task arrivals per tick (users x rate x dt): the task table and the decision queue grow with it."""

_Lat = Annotated[float, Limit(-90.0, 90.0)]
_Lon = Annotated[float, Limit(-180.0, 180.0)]
_Metres = Annotated[float, Limit(0.0, 1e6, lo_open=True)]  # 1000 km: beyond that the local projection is useless
_Mbit = Annotated[float, Limit(0.0, 1e7, lo_open=True)]  # 10 Tbit/s
_MbitRange = Annotated[Range, Limit(0.0, 1e7, lo_open=True, ordered=True)]
_Watts = Annotated[float, Limit(0.0, 1e6)]
# 1 PHz and 1 PB: thousands of servers' worth in one edge node
_HzRange = Annotated[Range, Limit(0.0, 1e15, lo_open=True, ordered=True)]
_BytesRange = Annotated[Range, Limit(0.0, 1e15, lo_open=True, ordered=True)]


@dataclass(frozen=True, slots=True)
class AreaConfig:
    """The simulated area: a box of ``width_m`` x ``height_m`` centred on (``origin_lat``, ``origin_lon``)."""

    origin_lat: _Lat = 37.7649
    origin_lon: _Lon = -122.4294
    width_m: _Metres = 8000.0
    height_m: _Metres = 8000.0

    def area(self) -> Area:
        return Area(-self.width_m / 2, -self.height_m / 2, self.width_m / 2, self.height_m / 2)

    def projection(self) -> LocalProjection:
        return LocalProjection(self.origin_lat, self.origin_lon)


@dataclass(frozen=True, slots=True)
class NodesConfig:
    """Edge nodes. ``source = "towers"`` clusters real cell sites of ``towers`` (a bundled name: sf, rome, or a
    CSV path) and picks ``count`` spread-out sites; ``source = "grid"`` puts one node in the centre of each
    ``cell_m`` grid cell (Liu et al. 2024, sec. VI-A: 1 km cells). Ranges are uniform [low, high] per node."""

    source: Literal["towers", "grid"] = "towers"
    towers: str = "sf"
    cluster_radius_m: _Metres = 200.0
    count: Annotated[int, Limit(1, MAX_NODES)] = 25
    cell_m: _Metres = 1000.0
    cpu_hz: _HzRange = (128e9, 128e9)
    memory_bytes: _BytesRange = (64e9, 64e9)
    storage_bytes: _BytesRange = (30e9, 100e9)
    wired_mbit: _MbitRange = (800.0, 1024.0)
    backhaul_mbit: _MbitRange = (400.0, 600.0)
    max_containers: Annotated[int, Limit(1, 1_000_000)] = 30
    coverage_m: _Metres = 1200.0
    idle_power_w: _Watts = 100.0
    max_power_w: _Watts = 250.0

    def __post_init__(self) -> None:
        if self.max_power_w < self.idle_power_w:
            raise ValidationError(f"nodes.max_power_w: expected >= nodes.idle_power_w ({self.idle_power_w:g}), "
                                  f"got {self.max_power_w:g}")


@dataclass(frozen=True, slots=True)
class BackhaulConfig:
    """Backhaul between nodes: ``manhattan`` (Liu et al. 2024), ``mst`` (Ghafouri et al. 2022) or
    ``three_tier`` (Ngo et al. 2020)."""

    kind: Literal["manhattan", "mst", "three_tier"] = "mst"
    cell_m: _Metres = 1000.0
    regions: Annotated[int, Limit(1, MAX_NODES)] = 4


@dataclass(frozen=True, slots=True)
class CloudConfig:
    cpu_hz: Annotated[float, Limit(0.0, 1e18, lo_open=True)] = 1e12  # a whole data centre, generously
    wired_mbit: _Mbit = 100.0
    backhaul_mbit: _Mbit = 100.0
    hops: Annotated[int, Limit(1, 1000)] = 10


@dataclass(frozen=True, slots=True)
class RadioConfig:
    tx_power_dbm: Annotated[float, Limit(-50.0, 90.0)] = 43.0  # 90 dBm = 1 MW, past any transmitter
    exponent: Annotated[float, Limit(1.0, 6.0)] = 3.5  # the path-loss model's own range
    hysteresis_db: Annotated[float, Limit(0.0, 100.0)] = 7.0
    handover_time_s: Annotated[float, Limit(0.0, 3600.0)] = 0.5
    # one rate per distance band: at least one, and more than a thousand bands is a mistake
    uplink_mbit: Annotated[tuple[float, ...], Limit(0.0, 1e7, lo_open=True, items=(1, 1000))] = PAPER_UPLINK_MBIT


@dataclass(frozen=True, slots=True)
class UsersConfig:
    """Users: ``model`` = taxi_like | random_waypoint | manhattan_grid | trace (``trace`` = an imported .npz)."""

    model: Literal["taxi_like", "random_waypoint", "manhattan_grid", "trace"] = "taxi_like"
    count: Annotated[int, Limit(1, MAX_USERS)] = 300
    trace: str = ""
    speed_mps: Annotated[Range, Limit(0.0, 100.0, lo_open=True, ordered=True)] = (1.0, 15.0)  # 360 km/h
    block_m: _Metres = 200.0


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    """Container images: ``source = "dockerhub"`` (bundled real Docker Hub layer lists) or a JSON/CSV path."""

    source: str = "dockerhub"
    zipf_s: Annotated[float, Limit(0.0, 10.0)] = 1.0  # beyond ~10 every task asks for the most popular image


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "unnamed"
    description: str = ""
    seed: Annotated[int, Limit(0, 2**63 - 1)] = 0  # SeedSequence wants >= 0; int64 keeps it in every table
    policy: str = "nearest"
    sim: SimParams = field(default_factory=SimParams)
    area: AreaConfig = field(default_factory=AreaConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    backhaul: BackhaulConfig = field(default_factory=BackhaulConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    radio: RadioConfig = field(default_factory=RadioConfig)
    users: UsersConfig = field(default_factory=UsersConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)

    def __post_init__(self) -> None:
        # checks across tables; each message names the key to change
        w, h = self.area.width_m, self.area.height_m
        if self.nodes.source == "grid":
            cells = max(1, int(w // self.nodes.cell_m)) * max(1, int(h // self.nodes.cell_m))
            if cells > MAX_GRID_CELLS:
                raise ValidationError(f"nodes.cell_m: expected at most {MAX_GRID_CELLS} cells of "
                                      f"{self.nodes.cell_m:g} m in the {w:g} x {h:g} m area, got {cells}")
        if self.users.model == "manhattan_grid" and self.users.block_m > min(w, h):
            raise ValidationError(f"users.block_m: expected at most the area's side ({min(w, h):g} m), "
                                  f"got {self.users.block_m:g}")
        if self.users.model != "trace":
            per_tick = self.users.count * self.workload.arrival_rate_per_user_s * self.sim.dt_s
            if per_tick > MAX_ARRIVALS_PER_TICK:
                raise ValidationError(
                    f"workload.arrival_rate_per_user_s: expected at most {MAX_ARRIVALS_PER_TICK} arrivals per "
                    f"tick (users.count x rate x sim.dt_s), got {per_tick:g}")


# ---------------------------------------------------------------------------- finding and loading
def bundled_scenarios() -> dict[str, str]:
    """Name -> first line of the description, for every bundled scenario."""
    out = {}
    for entry in sorted(resources.files("edgemigrate.scenarios").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            table = read_toml(Path(str(entry)))
            out[entry.name[:-5]] = str(table.get("description", "")).strip().splitlines()[0:1]
    return {k: (v[0] if v else "") for k, v in out.items()}


def scenario_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise ConfigError(f"{path}: no such scenario file")
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; expected a scenario TOML file or a bundled scenario name")
        return path
    names = bundled_scenarios()
    if name_or_path not in names:
        raise ConfigError(f"unknown scenario '{name_or_path}'{suggest(name_or_path, names)}")
    return Path(str(resources.files("edgemigrate.scenarios").joinpath(f"{name_or_path}.toml")))


def load_scenario(name_or_path: str, overrides: list[str] | None = None, seed: int | None = None) -> Scenario:
    """Load a bundled scenario or a TOML file, apply ``--set`` overrides and the seed, and check every value.

    A bad value raises :class:`ConfigError` naming its origin: ``<file>: <key>: expected ..., got ...``, or
    ``--set <key>: ...`` / ``--seed: ...`` when an override brought it.
    """
    path = scenario_path(name_or_path)
    file_table = read_toml(path)
    overrides = list(overrides or [])
    table = apply_overrides(file_table, overrides, Scenario)  # checks each overriding value on its own
    if seed is not None:
        table["seed"] = convert_field(Scenario, "seed", seed, "--seed")
    try:
        return load_into(Scenario, table)
    except ConfigError as exc:
        origin = str(path)
        if overrides or seed is not None:
            # a check across keys failed: if the file alone passes, the overrides brought the conflict
            try:
                load_into(Scenario, file_table)
            except ConfigError:
                pass
            else:
                via = [f"--set {', '.join(o.split('=', 1)[0].strip() for o in overrides)}"] if overrides else []
                origin = f"{path} with {' and '.join(via + (['--seed'] if seed is not None else []))}"
        raise ConfigError(f"{origin}: {exc}") from None


# ---------------------------------------------------------------------------- building
def _uniform(rng: np.random.Generator, r: Range, n: int) -> np.ndarray:
    return rng.uniform(r[0], r[1], n) if r[1] > r[0] else np.full(n, float(r[0]))


def _node_positions(sc: Scenario, rng: np.random.Generator) -> np.ndarray:
    area = sc.area.area()
    nc = sc.nodes
    if nc.source == "grid":
        nx = max(1, int(area.width_m // nc.cell_m))
        ny = max(1, int(area.height_m // nc.cell_m))
        ij = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij"), -1).reshape(-1, 2)
        xy = np.column_stack([area.xmin_m + (ij[:, 0] + 0.5) * nc.cell_m, area.ymin_m + (ij[:, 1] + 0.5) * nc.cell_m])
        if nc.count < len(xy):
            xy = xy[np.sort(rng.choice(len(xy), nc.count, replace=False))]
        return xy
    from edgemigrate.datasets import towers as tw

    table = tw.read_opencellid(nc.towers) if nc.towers.endswith(".csv") else tw.bundled_towers(nc.towers)
    sites = tw.cluster_sites(table.lat, table.lon, sc.area.projection(), radius_m=nc.cluster_radius_m)
    n_inside = int(area.contains(sites.xy_m).sum())
    if n_inside < nc.count:
        raise ConfigError(f"nodes.count = {nc.count} but only {n_inside} tower sites lie in the area "
                          f"({area.width_m:.0f} x {area.height_m:.0f} m); lower nodes.count or enlarge the area")
    return sites.xy_m[tw.pick_sites(sites.xy_m, nc.count, rng, area)]


def _catalog(sc: Scenario) -> ImageCatalog:
    from edgemigrate.datasets import layers

    if sc.images.source == "dockerhub":
        return layers.bundled_catalog()
    return layers.read_dockerhub(sc.images.source)


def build_world(sc: Scenario) -> World:
    seeds = SeedTree(sc.seed)
    rng = seeds.rng("world")
    xy = _node_positions(sc, rng)
    n = len(xy)
    nc = sc.nodes
    nodes = EdgeNodes(
        xy_m=xy, cpu_hz=_uniform(rng, nc.cpu_hz, n), memory_bytes=_uniform(rng, nc.memory_bytes, n),
        storage_bytes=_uniform(rng, nc.storage_bytes, n), wired_bps=_uniform(rng, nc.wired_mbit, n) * 1e6,
        backhaul_bps=_uniform(rng, nc.backhaul_mbit, n) * 1e6, max_containers=np.full(n, nc.max_containers),
        coverage_m=np.full(n, nc.coverage_m), idle_power_w=np.full(n, nc.idle_power_w),
        max_power_w=np.full(n, nc.max_power_w))
    stations = BaseStations(xy_m=xy, coverage_m=np.full(n, nc.coverage_m), max_users=np.full(n, 10_000),
                            node=np.arange(n))
    bc = sc.backhaul
    backhaul: Backhaul
    if bc.kind == "manhattan":
        backhaul = manhattan_grid(xy - xy.min(axis=0), bc.cell_m)
    elif bc.kind == "mst":
        backhaul = mst(xy)
    else:
        backhaul = three_tier(xy, bc.regions)
    cc = sc.cloud
    cloud = CloudNode(cpu_hz=cc.cpu_hz, wired_bps=cc.wired_mbit * 1e6, backhaul_bps=cc.backhaul_mbit * 1e6,
                      hops=cc.hops)
    catalog = _catalog(sc)
    rc = sc.radio
    return World(nodes=nodes, stations=stations, cloud=cloud, backhaul=backhaul, catalog=catalog,
                 workload=sc.workload, image_probs=zipf_probs(catalog.n_images, sc.images.zipf_s, rng),
                 pathloss=LogDistancePathLoss(tx_power_dbm=rc.tx_power_dbm, exponent=rc.exponent),
                 handover=HandoverConfig(rc.hysteresis_db, rc.handover_time_s), uplink_mbit=rc.uplink_mbit)


def build_mobility(sc: Scenario) -> Any:
    from edgemigrate import mobility as mob

    uc, area = sc.users, sc.area.area()
    if uc.model == "taxi_like":
        return mob.TaxiLike(uc.count, area)
    if uc.model == "random_waypoint":
        return mob.RandomWaypoint(uc.count, area, speed_mps=uc.speed_mps)
    if uc.model == "manhattan_grid":
        return mob.ManhattanGrid(uc.count, area, block_m=uc.block_m, speed_mps=uc.speed_mps)
    if not uc.trace:
        raise ConfigError("users.trace: set the path of an imported trace (.npz) when users.model = 'trace'")
    traj = mob.Trajectories.load(uc.trace)
    return mob.TraceMobility(reproject(traj, sc.area.projection(), area))


def reproject(traj: Any, projection: LocalProjection, area: Area) -> Any:
    """Express an imported trace in the scenario's own frame (its origin) and deactivate users outside the
    scenario area, so traces imported with any origin line up with the scenario's nodes."""
    from edgemigrate.mobility import Trajectories

    same = (traj.projection.origin_lat, traj.projection.origin_lon) == (projection.origin_lat, projection.origin_lon)
    xy = traj.xy_m if same else projection.to_xy(*np.moveaxis(traj.projection.to_latlon(traj.xy_m), -1, 0))
    inside = area.contains(xy)
    if not inside[traj.active].any():
        raise ConfigError(f"users.trace: no fix of '{traj.metadata.get('source', 'the trace')}' lies inside the "
                          f"scenario area ({area.width_m:.0f} x {area.height_m:.0f} m around "
                          f"{projection.origin_lat:.5f}, {projection.origin_lon:.5f}); set area.origin_lat/lon")
    return Trajectories(ids=traj.ids, t0_s=traj.t0_s, dt_s=traj.dt_s, xy_m=xy, active=traj.active & inside,
                        projection=projection, metadata=dict(traj.metadata))


def build_simulator(sc: Scenario) -> Simulator:
    try:
        return Simulator(build_world(sc), build_mobility(sc), sc.sim, seed=sc.seed)
    except EdgeMigrateError:
        raise
    except ValueError as exc:  # a model-level range check we did not wrap
        raise ConfigError(f"scenario '{sc.name}': {exc}") from None
