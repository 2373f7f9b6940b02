"""Handover scenarios for the simulator backend: base stations, servers, users and links, from TOML.

Two are bundled in ``src/edgemigrate/scenarios/handover/`` (apart from the simulator's scenarios, whose loader
would refuse their ``[handover]`` table): ``handover-testbed`` mirrors Ngo et al. 2020's testbed
(sec. V-A: three Wi-Fi base stations on a line, an edge server beside each, a cloud; one MU walking back and
forth) and ``handover-city`` puts San Francisco's LTE towers (``data/towers/``) under taxi-like users. The
TOML is read strictly: unknown keys and out-of-range values are one-line :class:`ConfigError`\\ s naming the key.

Links follow the paper's sec. V-A: edge-edge 100 Mbit/s and 50 ms, edge-cloud 75 Mbit/s and 150 ms; a BS
reaches its co-located edge server over ``bs_edge_bps``/``bs_edge_rtt_s`` and any other server through that
one (so the RTTs add).
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios" / "handover"
TOWER_DIR = Path(__file__).resolve().parents[2] / "data" / "towers"
MAX_SCENARIO_BYTES = 1 << 20
MAX_USERS = 100_000
MAX_BSS = 5_000
MAX_SERVERS = 1_000
EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True, slots=True)
class HandoverScenario:
    """Every number of one scenario. Positions in metres; ``bs_xy`` comes from ``bs_positions_m`` (a list of
    [x, y]) or from ``towers`` (a CSV of ``data/towers/``, ``bss`` of them picked with the seed)."""

    name: str
    seed: int = 0
    tick_s: float = 1.0
    ticks: int = 60
    horizon_s: float = 5.0
    handover_s: float = 0.5  # T_ho, Ngo et al. 2020 sec. V-A
    hysteresis_db: float = 3.0
    min_rssi_dbm: float = -82.0
    # radio: log-distance path loss
    tx_power_dbm: float = 20.0
    ref_loss_db: float = 40.0
    exponent: float = 2.7
    # base stations
    bs_positions_m: tuple[tuple[float, float], ...] = ()
    towers: str = ""
    bss: int = 0
    max_users_per_bs: int = 1000
    # servers: ``edge_servers`` edge servers beside evenly spread BSs, plus one cloud
    edge_servers: int = 0
    edge_cpu_power: float = 1000.0
    cloud_cpu_power: float = 1500.0
    edge_cpu_cores: float = 8.0
    edge_memory_bytes: float = 16e9
    psi: float = 1e-6  # eq. 5 defaults until a calibration file says otherwise (seconds * C_s per byte)
    rho: float = 1e-6
    # links (Ngo et al. 2020 sec. V-A)
    edge_edge_bps: float = 100e6
    edge_edge_rtt_s: float = 0.05
    edge_cloud_bps: float = 75e6
    edge_cloud_rtt_s: float = 0.15
    bs_edge_bps: float = 1e9
    bs_edge_rtt_s: float = 0.002
    # users
    users: int = 1
    mobility: str = "back_and_forth"  # or "taxi"
    path_m: tuple[tuple[float, float], ...] = ()  # back_and_forth: the two ends
    speed_m_per_s: tuple[float, float] = (1.0, 1.0)
    # service (per user; Ngo et al. 2020 table I scale)
    image_bytes: float = 50e6
    checkpoint_bytes: float = 20e6
    delta_bytes: float = 2e6
    task_bytes: float = 100e3
    proc_s: float = 0.01
    tasks: float = 10.0
    cpu_cores: float = 0.1
    memory_bytes: float = 64e6


_FIELDS = {f.name: f for f in fields(HandoverScenario)}
_INTS = frozenset({"seed", "ticks", "bss", "max_users_per_bs", "edge_servers", "users"})
_STRS = frozenset({"name", "towers", "mobility"})
_PAIRS = frozenset({"bs_positions_m", "path_m"})


def _value(key: str, value: Any) -> Any:
    what = f"handover.{key}"
    if key in _STRS:
        if not isinstance(value, str) or len(value) > 100:
            raise ConfigError(f"{what}: expected a string of at most 100 characters")
        return value
    if key in _INTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{what}: expected an integer >= 0, got {value!r}")
        return value
    if key in _PAIRS or key == "speed_m_per_s":
        if not isinstance(value, list) or len(value) > MAX_BSS:
            raise ConfigError(f"{what}: expected a list of at most {MAX_BSS} entries")
        if key == "speed_m_per_s":
            return tuple(_value_float(what, v) for v in _pair(what, value))
        return tuple(tuple(_value_float(f"{what}[{i}]", v, signed=True) for v in _pair(f"{what}[{i}]", p))
                     for i, p in enumerate(value))
    return _value_float(what, value, signed=key in ("tx_power_dbm", "min_rssi_dbm"))


def _pair(what: str, value: Any) -> list[Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{what}: expected a pair [a, b]")
    return value


def _value_float(what: str, value: Any, signed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what}: expected a finite number, got {value!r}")
    if not signed and value < 0:
        raise ConfigError(f"{what} = {value!r} must be >= 0")
    return float(value)


def parse_scenario(body: Any) -> HandoverScenario:
    """A scenario from a decoded TOML document with one ``[handover]`` table."""
    if not isinstance(body, dict) or set(body) != {"handover"} or not isinstance(body["handover"], dict):
        raise ConfigError("scenario: expected exactly one [handover] table")
    table = body["handover"]
    for key in table:
        if key not in _FIELDS:
            raise ConfigError(f"handover.{str(key)[:40]}: unknown key")
    if "name" not in table:
        raise ConfigError("handover.name: missing")
    sc = HandoverScenario(**{k: _value(k, v) for k, v in table.items()})
    _check(sc)
    return sc


def _check(sc: HandoverScenario) -> None:
    if not 1 <= sc.users <= MAX_USERS:
        raise ConfigError(f"handover.users = {sc.users} must be in [1, {MAX_USERS}]")
    if sc.mobility not in ("back_and_forth", "taxi"):
        raise ConfigError(f"handover.mobility: {sc.mobility!r} is not back_and_forth or taxi")
    if sc.mobility == "back_and_forth" and len(sc.path_m) != 2:
        raise ConfigError("handover.path_m: back_and_forth needs the two ends [[x, y], [x, y]]")
    if bool(sc.bs_positions_m) == bool(sc.towers):
        raise ConfigError("handover.bs_positions_m: give either bs_positions_m or towers, not both or neither")
    n_bs = len(sc.bs_positions_m) or sc.bss
    if not 1 <= n_bs <= MAX_BSS:
        raise ConfigError(f"handover.bss = {n_bs} must be in [1, {MAX_BSS}]")
    if not 1 <= sc.edge_servers <= min(n_bs, MAX_SERVERS):
        raise ConfigError(f"handover.edge_servers = {sc.edge_servers} must be in [1, {min(n_bs, MAX_SERVERS)}]")
    lo, hi = sc.speed_m_per_s
    if not 0 < lo <= hi:
        raise ConfigError(f"handover.speed_m_per_s = [{lo}, {hi}] must have 0 < low <= high")
    for key in ("tick_s", "horizon_s", "edge_cpu_power", "edge_cpu_cores", "edge_memory_bytes", "cloud_cpu_power", "edge_edge_bps", "edge_cloud_bps",
                "bs_edge_bps", "image_bytes"):
        if getattr(sc, key) <= 0:
            raise ConfigError(f"handover.{key} must be > 0")
    if not 1.0 <= sc.exponent <= 6.0:
        raise ConfigError(f"handover.exponent = {sc.exponent} must be in [1, 6]")


def load_scenario(name_or_path: str | Path) -> HandoverScenario:
    """A bundled scenario by name (``handover-testbed``) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    try:
        if path.stat().st_size > MAX_SCENARIO_BYTES:
            raise ConfigError(f"scenario: {path} is larger than {MAX_SCENARIO_BYTES} bytes")
        body = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"scenario: cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scenario: {path} is not TOML ({str(exc).splitlines()[0][:80]})") from None
    return parse_scenario(body)


def bs_positions_m(sc: HandoverScenario) -> np.ndarray:
    """(B, 2) base-station positions: the listed ones, or ``bss`` towers of the CSV (distinct sites, picked with
    the seed) projected around their mean onto a plane (equirectangular: a city is small against the Earth)."""
    if sc.bs_positions_m:
        return np.array(sc.bs_positions_m, dtype=np.float64)
    name = Path(sc.towers).name
    path = TOWER_DIR / name
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"handover.towers: cannot read {name}: {exc.strerror}") from None
    try:
        lonlat = np.unique(np.array([[float(r["lon"]), float(r["lat"])] for r in rows]), axis=0)
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"handover.towers: {name} has no numeric lon/lat columns") from None
    if len(lonlat) < sc.bss:
        raise ConfigError(f"handover.bss = {sc.bss}: {name} has only {len(lonlat)} distinct sites")
    pick = np.sort(np.random.default_rng(sc.seed).choice(len(lonlat), sc.bss, replace=False))
    lon, lat = np.radians(lonlat[pick, 0]), np.radians(lonlat[pick, 1])
    lat0 = float(np.mean(lat))
    x = (lon - float(np.mean(lon))) * math.cos(lat0) * EARTH_RADIUS_M
    y = (lat - lat0) * EARTH_RADIUS_M
    return np.stack([x, y], axis=1)
