"""Cell towers from OpenCelliD -> candidate edge-node sites.

- :func:`read_opencellid` reads both layouts found in ``shared/data/towers/``: the standard OpenCelliD header
  ``radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal`` and the
  reduced Rome header ``radio,net,cell,lon,lat,range,samples,distance,grado``. Columns are found by name,
  so any CSV with ``radio,lon,lat,range,samples`` columns works; other columns are ignored.
- :func:`cluster_sites`: OpenCelliD positions are estimates of *cells*; several cells (sectors, bands,
  operators) share one mast. Cells are grouped greedily on a KD-tree: the cell with the most neighbours
  within ``radius_m`` that is still unassigned seeds a site and takes every unassigned cell within
  ``radius_m`` of it; the site sits at the members' mean. A site therefore spans at most ``2 * radius_m``.
- :func:`pick_sites` chooses N spread-out sites as edge nodes (k-means by default, farthest-point optional).
- :func:`bundled_towers` reads the copies shipped in ``edgemigrate/data/towers/`` (CC BY-SA 4.0,
  "(c) OpenCelliD contributors"; see the README there).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from edgemigrate.core.errors import ConfigError, DataFormatError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.core.registry import suggest

RADIO_TYPES = frozenset({"GSM", "UMTS", "LTE", "CDMA", "NR", "NBIOT"})
REQUIRED_COLUMNS = ("radio", "lon", "lat", "range", "samples")
STANDARD_HEADER = ("radio", "mcc", "net", "area", "cell", "unit", "lon", "lat", "range", "samples")
DEFAULT_SITE_RADIUS_M = 200.0
"""Cells within this distance of a site's seed cell form one site. OpenCelliD positions are estimates, so the
cells of one mast scatter; 100-300 m is the usual range for merging them, and 200 m sits in its middle."""

BUNDLED_TOWERS: dict[str, tuple[str, str]] = {
    "sf": ("sf_verizon_lte_2019.csv", "San Francisco, Verizon LTE, OpenCelliD 2019-12"),
    "rome": ("rome_2016.csv", "Rome, 12 km around the Colosseum, all operators, OpenCelliD ~2016-01"),
}


@dataclass(frozen=True, slots=True)
class CellTable:
    """Cells read from an OpenCelliD CSV, one entry per row (arrays of equal length)."""

    radio: NDArray[np.str_]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    range_m: NDArray[np.float64]
    samples: NDArray[np.int64]
    source: str = ""
    layout: str = ""

    def __len__(self) -> int:
        return int(self.lat.size)

    def select(self, mask: NDArray[np.bool_]) -> CellTable:
        """The cells where ``mask`` is True (e.g. ``cells.radio == "LTE"``)."""
        return CellTable(self.radio[mask], self.lat[mask], self.lon[mask], self.range_m[mask], self.samples[mask],
                         self.source, self.layout)

    def centroid(self) -> LocalProjection:
        """A projection about the mean cell position (a natural scenario origin)."""
        return LocalProjection(float(self.lat.mean()), float(self.lon.mean()))


def read_opencellid(path: str | Path) -> CellTable:
    """Read an OpenCelliD CSV (standard or reduced header); a bad row raises ``DataFormatError(path, line, why)``."""
    path = Path(path)
    try:
        fh = path.open("r", encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataFormatError(path, None, "no such file") from None
    radio: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    rng_m: list[float] = []
    samples: list[int] = []
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataFormatError(path, 1, "empty file (expected an OpenCelliD header)")
        cols = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            raise DataFormatError(path, 1, f"header lacks column(s) {', '.join(missing)} "
                                           f"(expected an OpenCelliD header with {','.join(REQUIRED_COLUMNS)})")
        layout = "standard" if tuple(cols[: len(STANDARD_HEADER)]) == STANDARD_HEADER else "reduced"
        i_radio, i_lon, i_lat, i_range, i_samples = (cols.index(c) for c in REQUIRED_COLUMNS)
        width = max(i_radio, i_lon, i_lat, i_range, i_samples) + 1
        for row in reader:
            line = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            if len(row) < width:
                raise DataFormatError(path, line, f"expected {len(cols)} fields, got {len(row)}")
            r = row[i_radio].strip().upper()
            if r not in RADIO_TYPES:
                raise DataFormatError(path, line, f"unknown radio '{row[i_radio]}'{suggest(r, RADIO_TYPES)}")
            try:
                la, lo = float(row[i_lat]), float(row[i_lon])
                rg, sm = float(row[i_range]), int(row[i_samples])
            except ValueError as exc:
                raise DataFormatError(path, line, f"non-numeric lat/lon/range/samples ({exc})") from None
            if not (-90 <= la <= 90 and -180 <= lo <= 180):
                raise DataFormatError(path, line, f"position ({la}, {lo}) is not a valid lat/lon")
            if not (math.isfinite(rg) and rg >= 0) or sm < 0:
                raise DataFormatError(path, line, f"range ({rg}) and samples ({sm}) must be >= 0")
            radio.append(r)
            lat.append(la)
            lon.append(lo)
            rng_m.append(rg)
            samples.append(sm)
    if not lat:
        raise DataFormatError(path, None, "no cells in file")
    return CellTable(
        radio=np.asarray(radio, dtype=np.str_),
        lat=np.asarray(lat, dtype=np.float64),
        lon=np.asarray(lon, dtype=np.float64),
        range_m=np.asarray(rng_m, dtype=np.float64),
        samples=np.asarray(samples, dtype=np.int64),
        source=str(path),
        layout=layout,
    )


def bundled_towers(name: str) -> CellTable:
    """The shipped OpenCelliD cut ``"sf"`` or ``"rome"`` (CC BY-SA 4.0, "(c) OpenCelliD contributors")."""
    if name not in BUNDLED_TOWERS:
        raise ConfigError(f"unknown bundled tower set '{name}'{suggest(name, BUNDLED_TOWERS)}")
    ref = resources.files("edgemigrate").joinpath("data", "towers", BUNDLED_TOWERS[name][0])
    with resources.as_file(ref) as path:
        return read_opencellid(path)


@dataclass(frozen=True, slots=True)
class TowerSites:
    """Cells grouped into sites. ``cell_site[i]`` is the site of cell ``i``; ``n_cells[s]`` its cell count."""

    xy_m: NDArray[np.float64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    n_cells: NDArray[np.int64]
    cell_site: NDArray[np.int64]
    radius_m: float
    projection: LocalProjection

    def __len__(self) -> int:
        return int(self.xy_m.shape[0])


def cluster_sites(
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    projection: LocalProjection,
    radius_m: float = DEFAULT_SITE_RADIUS_M,
) -> TowerSites:
    """Group cells into sites, densest first (see module docstring). Deterministic for a given input."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != lon.shape or lat.ndim != 1 or lat.size == 0:
        raise ValidationError("cluster_sites: lat and lon must be equal-length non-empty 1-D arrays")
    if not (isinstance(radius_m, (int, float)) and math.isfinite(radius_m) and radius_m > 0):
        raise ValidationError(f"radius_m must be positive (100-300 m is typical), got {radius_m!r}")
    xy = projection.to_xy(lat, lon)
    tree = cKDTree(xy)
    density = tree.query_ball_point(xy, radius_m, return_length=True)
    order = np.lexsort((np.arange(lat.size), -np.asarray(density)))  # densest first, ties by index
    cell_site = np.full(lat.size, -1, dtype=np.int64)
    centres: list[NDArray[np.float64]] = []
    counts: list[int] = []
    for seed in order:
        if cell_site[seed] >= 0:
            continue
        near = np.asarray(tree.query_ball_point(xy[seed], radius_m), dtype=np.int64)
        members = near[cell_site[near] < 0]
        cell_site[members] = len(centres)
        centres.append(xy[members].mean(axis=0))
        counts.append(int(members.size))
    site_xy = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    ll = projection.to_latlon(site_xy)
    return TowerSites(
        xy_m=site_xy,
        lat=ll[:, 0],
        lon=ll[:, 1],
        n_cells=np.asarray(counts, dtype=np.int64),
        cell_site=cell_site,
        radius_m=float(radius_m),
        projection=projection,
    )


def pick_sites(
    sites_xy: NDArray[np.float64],
    n: int,
    rng: np.random.Generator,
    area: Area | None = None,
    *,
    method: str = "kmeans",
    iterations: int = 50,
) -> NDArray[np.int64]:
    """Choose ``n`` distinct, spread-out sites (indices into ``sites_xy``), optionally only inside ``area``.

    ``method="kmeans"`` (default): k-means over the candidate sites (k-means++ seeding from ``rng``, at
    most ``iterations`` Lloyd steps), then each centroid takes the nearest still-free site. Nodes follow the
    density of towers - more in the dense centre, fewer in the suburbs - as an operator would place them.
    ``method="farthest"``: farthest-point sampling from a random first site; covers the area evenly and
    reaches its edges first.
    """
    xy = np.asarray(sites_xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValidationError(f"sites_xy must have shape (S, 2), got {xy.shape}")
    cand = np.flatnonzero(area.contains(xy)) if area is not None else np.arange(xy.shape[0])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValidationError(f"number of sites must be a positive integer, got {n!r}")
    if n > cand.size:
        where = " inside the area" if area is not None else ""
        raise ValidationError(f"asked for {n} sites but only {cand.size} sites lie{where}")
    pts = xy[cand]
    if method == "farthest":
        chosen = [int(rng.integers(cand.size))]
        dmin = np.hypot(*(pts - pts[chosen[0]]).T)
        for _ in range(n - 1):
            nxt = int(np.argmax(dmin))
            chosen.append(nxt)
            np.minimum(dmin, np.hypot(*(pts - pts[nxt]).T), out=dmin)
        return cand[np.asarray(chosen, dtype=np.int64)]
    if method != "kmeans":
        raise ConfigError(f"unknown site-picking method '{method}'{suggest(method, ['kmeans', 'farthest'])}")
    centroids = _kmeans(pts, n, rng, iterations)
    # nearest free site per centroid, closest pairs first
    tree = cKDTree(pts)
    k = min(pts.shape[0], 16)
    dist, idx = tree.query(centroids, k=k)
    dist, idx = np.atleast_2d(dist), np.atleast_2d(idx)
    taken = np.zeros(pts.shape[0], dtype=bool)
    result = np.full(n, -1, dtype=np.int64)
    for j in np.argsort(dist[:, 0], kind="stable"):
        free = idx[j][~taken[idx[j]]]
        if free.size:
            pick = int(free[0])
        else:  # all k nearest taken (only for tiny, clumped inputs): nearest free overall
            d = np.hypot(*(pts - centroids[j]).T)
            d[taken] = np.inf
            pick = int(np.argmin(d))
        taken[pick] = True
        result[j] = pick
    return cand[result]


def _kmeans(pts: NDArray[np.float64], k: int, rng: np.random.Generator, iterations: int) -> NDArray[np.float64]:
    """Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007); all draws from ``rng``."""
    centres = np.empty((k, 2))
    centres[0] = pts[rng.integers(pts.shape[0])]
    d2 = ((pts - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = d2.sum()
        pick = int(rng.choice(pts.shape[0], p=d2 / total)) if total > 0 else int(rng.integers(pts.shape[0]))
        centres[j] = pts[pick]
        np.minimum(d2, ((pts - centres[j]) ** 2).sum(axis=1), out=d2)
    for _ in range(iterations):
        _, label = cKDTree(centres).query(pts)
        counts = np.bincount(label, minlength=k)
        sums = np.column_stack([np.bincount(label, weights=pts[:, 0], minlength=k),
                                np.bincount(label, weights=pts[:, 1], minlength=k)])
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        if np.allclose(new, centres, atol=1e-6, rtol=0):
            break
        centres = new
    return centres
