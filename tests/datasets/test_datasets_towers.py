from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError, DataFormatError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.datasets import bundled_towers, cluster_sites, pick_sites, read_opencellid


def _count_rows(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            counts[row["radio"]] = counts.get(row["radio"], 0) + 1
    return counts


def test_reads_both_layouts(shared_data: Path) -> None:
    sf_path = shared_data / "towers" / "sf_verizon_lte_2019.csv"
    sf = read_opencellid(sf_path)
    assert sf.layout == "standard" and len(sf) == 1999  # PROVENANCE / README: 1,999 Verizon LTE cells
    assert set(sf.radio.tolist()) == {"LTE"}
    assert sf.lat.min() >= 37.600 - 5e-4 and sf.lat.max() <= 37.810 + 5e-4  # README box, 3 decimals
    assert sf.lon.min() >= -122.512 - 5e-4 and sf.lon.max() <= -122.359 + 5e-4
    rome_path = shared_data / "towers" / "rome_2016.csv"
    rome = read_opencellid(rome_path)
    assert rome.layout == "reduced" and len(rome) == 7287
    radios, counts = np.unique(rome.radio, return_counts=True)
    assert dict(zip(radios.tolist(), counts.tolist(), strict=True)) == _count_rows(rome_path)
    # first data row of the Rome file: GSM,10,29369,12.630353,41.892274,10568,2,...
    assert (rome.radio[0], rome.lon[0], rome.lat[0], rome.range_m[0], rome.samples[0]) == (
        "GSM", 12.630353, 41.892274, 10568.0, 2)


def test_bundled_copies_equal_the_shared_files(shared_data: Path) -> None:
    for name, file in (("sf", "sf_verizon_lte_2019.csv"), ("rome", "rome_2016.csv")):
        shipped, shared = bundled_towers(name), read_opencellid(shared_data / "towers" / file)
        for field in ("radio", "lat", "lon", "range_m", "samples"):
            np.testing.assert_array_equal(getattr(shipped, field), getattr(shared, field))
    with pytest.raises(ConfigError, match="did you mean 'rome'"):
        bundled_towers("roma")


def test_bundled_tower_licence_is_shipped() -> None:
    from importlib import resources

    folder = resources.files("edgemigrate") / "data" / "towers"
    notice = (folder / "NOTICE").read_text()
    readme = (folder / "README.md").read_text()
    for text in (notice, readme):
        assert "(c) OpenCelliD contributors" in text and "CC BY-SA 4.0" in text


def test_malformed_tower_files(tmp_path: Path) -> None:
    path = tmp_path / "cells.csv"
    path.write_text("radio,lon,lat,range,samples\nLTE,12.5,41.9,500,3\nLTR,12.5,41.9,500,3\n")
    with pytest.raises(DataFormatError, match=r"cells.csv:3: unknown radio 'LTR' \(did you mean 'LTE'\?\)"):
        read_opencellid(path)
    path.write_text("radio,lon,lat,range\nLTE,12.5,41.9,500\n")
    with pytest.raises(DataFormatError, match="cells.csv:1: header lacks column"):
        read_opencellid(path)
    path.write_text("radio,lon,lat,range,samples\nLTE,12.5,north,500,3\n")
    with pytest.raises(DataFormatError, match="cells.csv:2: non-numeric"):
        read_opencellid(path)
    path.write_text("radio,lon,lat,range,samples\nLTE,12.5,141.9,500,3\n")
    with pytest.raises(DataFormatError, match="cells.csv:2: position"):
        read_opencellid(path)
    path.write_text("radio,lon,lat,range,samples\n")
    with pytest.raises(DataFormatError, match="no cells"):
        read_opencellid(path)
    with pytest.raises(DataFormatError, match="no such file"):
        read_opencellid(tmp_path / "missing.csv")


def test_cluster_small_example() -> None:
    proj = LocalProjection(41.9, 12.5)
    xy = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 40.0], [1000.0, 0.0], [5000.0, 5000.0], [5150.0, 5000.0]])
    ll = proj.to_latlon(xy)
    sites = cluster_sites(ll[:, 0], ll[:, 1], proj, radius_m=200.0)
    assert len(sites) == 3
    assert sorted(sites.n_cells.tolist()) == [1, 2, 3]
    assert sites.cell_site[0] == sites.cell_site[1] == sites.cell_site[2]
    assert sites.cell_site[4] == sites.cell_site[5] != sites.cell_site[3]
    s0 = sites.cell_site[0]
    np.testing.assert_allclose(sites.xy_m[s0], [10.0, 40.0 / 3], atol=1e-6)
    np.testing.assert_allclose(np.column_stack([sites.lat, sites.lon]), proj.to_latlon(sites.xy_m))
    with pytest.raises(ValidationError, match="radius_m"):
        cluster_sites(ll[:, 0], ll[:, 1], proj, radius_m=0)


@pytest.mark.parametrize("name", ["sf", "rome"])
@pytest.mark.parametrize("radius_m", [100.0, 300.0])
def test_cluster_real_towers_invariants(name: str, radius_m: float) -> None:
    cells = bundled_towers(name)
    proj = cells.centroid()
    sites = cluster_sites(cells.lat, cells.lon, proj, radius_m=radius_m)
    assert (sites.cell_site >= 0).all() and sites.n_cells.sum() == len(cells)
    np.testing.assert_array_equal(np.bincount(sites.cell_site, minlength=len(sites)), sites.n_cells)
    cell_xy = proj.to_xy(cells.lat, cells.lon)
    # every cell lies within 2 * radius of its site centre (members are within radius of one seed)
    assert (np.hypot(*(cell_xy - sites.xy_m[sites.cell_site]).T) <= 2 * radius_m + 1e-6).all()
    assert 1 < len(sites) < len(cells)  # cells do share masts
    again = cluster_sites(cells.lat, cells.lon, proj, radius_m=radius_m)
    np.testing.assert_array_equal(again.cell_site, sites.cell_site)


def test_cluster_radius_orders_site_counts() -> None:
    cells = bundled_towers("sf")
    counts = [len(cluster_sites(cells.lat, cells.lon, cells.centroid(), radius_m=r)) for r in (100, 200, 300)]
    assert counts[0] > counts[1] > counts[2]


@pytest.mark.parametrize("method", ["kmeans", "farthest"])
def test_pick_sites_spread_distinct_deterministic(method: str) -> None:
    cells = bundled_towers("sf")
    sites = cluster_sites(cells.lat, cells.lon, cells.centroid())
    area = Area(-5000.0, -8000.0, 5000.0, 8000.0)
    picks = pick_sites(sites.xy_m, 9, np.random.default_rng(1), area, method=method)
    assert picks.shape == (9,) and np.unique(picks).size == 9
    assert area.contains(sites.xy_m[picks]).all()
    np.testing.assert_array_equal(picks, pick_sites(sites.xy_m, 9, np.random.default_rng(1), area, method=method))
    # spread out: the closest two of 9 picks are far apart compared with the closest two of 9 random sites
    def min_gap(idx: np.ndarray) -> float:
        p = sites.xy_m[idx]
        d = np.hypot(*(p[:, None, :] - p[None, :, :]).transpose(2, 0, 1))
        return float(d[np.triu_indices(len(idx), 1)].min())

    rng = np.random.default_rng(0)
    inside = np.flatnonzero(area.contains(sites.xy_m))
    random_gaps = [min_gap(rng.choice(inside, 9, replace=False)) for _ in range(50)]
    assert min_gap(picks) > np.median(random_gaps)
    assert min_gap(picks) > 1500.0


def test_pick_sites_many_and_errors() -> None:
    cells = bundled_towers("rome")
    sites = cluster_sites(cells.lat, cells.lon, cells.centroid())
    picks = pick_sites(sites.xy_m, 1000, np.random.default_rng(3))
    assert np.unique(picks).size == 1000
    with pytest.raises(ValidationError, match="only"):
        pick_sites(sites.xy_m, 10, np.random.default_rng(0), Area(0.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValidationError, match="positive integer"):
        pick_sites(sites.xy_m, 0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="did you mean 'kmeans'"):
        pick_sites(sites.xy_m, 3, np.random.default_rng(0), method="kmean")
    assert pick_sites(sites.xy_m, len(sites), np.random.default_rng(0)).size == len(sites)
