from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import DataFormatError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.mobility.area_users import load_area_users
from edgemigrate.mobility.traces import Trajectories
from edgemigrate.mobility.writers import write_cabspotting

PROJ = LocalProjection(37.75, -122.415)
AREA = Area(-3000.0, -3300.0, 3000.0, 3300.0)
T0 = 1211302694.0


def straight(ids: list[str], start_xy: list[tuple[float, float]], v_mps: float = 1.0, steps: int = 80,
             dt_s: float = 60.0) -> Trajectories:
    xy = np.array([[[x + v_mps * dt_s * k, y] for x, y in start_xy] for k in range(steps)], dtype=np.float64)
    return Trajectories(tuple(ids), T0, dt_s, xy, np.ones(xy.shape[:2], bool), PROJ)


def test_resamples_to_five_minutes_and_reads_gzip(tmp_path: Path) -> None:
    tr = straight(["a", "b", "c"], [(-2000, 0), (0, 1000), (500, -1000)])
    write_cabspotting(tmp_path, tr, compress=True)
    users = load_area_users(tmp_path, PROJ, AREA, 3, dt_s=300.0)
    assert users.dt_s == 300.0 and users.ids == ("a", "b", "c")
    # 80 one-minute fixes -> rows every 5 minutes, linear in between: x advances 300 m per row
    np.testing.assert_allclose(np.diff(users.xy_m[:, 0, 0]), 300.0, atol=2.0)
    assert users.n_steps == 16


def test_picks_the_cabs_inside_and_clips_them(tmp_path: Path) -> None:
    tr = straight(["in1", "in2", "edge", "far"], [(-2000, 0), (-1000, 0), (2000, 0), (50_000, 0)])
    write_cabspotting(tmp_path, tr)
    users = load_area_users(tmp_path, PROJ, AREA, 2)
    assert users.ids == ("in1", "in2")  # "edge" leaves the area early, "far" never enters it
    users3 = load_area_users(tmp_path, PROJ, AREA, 3, min_inside_fraction=0.1)
    assert users3.ids == ("edge", "in1", "in2")
    assert AREA.contains(users3.xy_m).all()  # leaving the box = waiting at its border


def test_a_trace_outside_the_area_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    write_cabspotting(tmp_path, straight(["in1", "far"], [(-2000, 0), (50_000, 0)]))
    with pytest.raises(DataFormatError, match=r"new_far\.txt: trace lies entirely outside the towers' area"):
        load_area_users(tmp_path, PROJ, AREA, 1, cab_ids=["in1", "far"])
    with pytest.raises(DataFormatError, match=r"only 1 of 2 traces .* 2 users needed; outside: new_far\.txt") as e:
        load_area_users(tmp_path, PROJ, AREA, 2)
    assert "\n" not in str(e.value)


def test_interleaved_vehicles_become_two_users(tmp_path: Path) -> None:
    # one cab id whose fixes alternate between two taxis 4 km apart (the brief's "two vehicles per cab id")
    a = straight(["x"], [(-2500, -1500)], v_mps=0.5, steps=120)
    b = straight(["x"], [(-2500, 2500)], v_mps=0.5, steps=120)
    xy = np.where((np.arange(120) % 2 == 0)[:, None, None], a.xy_m, b.xy_m)
    write_cabspotting(tmp_path, Trajectories(("x",), T0, 60.0, xy, np.ones((120, 1), bool), PROJ))
    users = load_area_users(tmp_path, PROJ, AREA, 2)
    assert users.ids == ("x#1", "x#2")
    assert abs(users.xy_m[5, 0, 1] - users.xy_m[5, 1, 1]) > 3000


def test_npz_and_bad_paths(tmp_path: Path) -> None:
    tr = straight(["a", "b"], [(-2000, 0), (0, 1000)], steps=16, dt_s=300.0)
    tr.save(tmp_path / "t.npz")
    assert load_area_users(tmp_path / "t.npz", PROJ, AREA, 2).n_steps == 16
    with pytest.raises(DataFormatError, match="sampled every 300 s, expected 60 s"):
        load_area_users(tmp_path / "t.npz", PROJ, AREA, 2, dt_s=60.0)
    with pytest.raises(DataFormatError, match="no such trace file or folder"):
        load_area_users(tmp_path / "missing", PROJ, AREA, 2)
