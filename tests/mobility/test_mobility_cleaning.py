from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.core.geo import Area, LocalProjection, haversine_m
from edgemigrate.mobility import (
    MAX_PLAUSIBLE_SPEED_MPS,
    RawTraces,
    Trajectories,
    clean_track,
    read_cabspotting,
    read_roma,
    to_trajectories,
)
from edgemigrate.mobility.cleaning import split_interleaved
from tests.mobility import cabs

ORIGIN = LocalProjection(37.75, -122.42)


def _track_from_xy(t: list[float] | np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ll = ORIGIN.to_latlon(np.asarray(xy, dtype=np.float64))
    return np.asarray(t, dtype=np.float64), ll[:, 0], ll[:, 1]


def _line(n: int, speed_mps: float = 10.0, dt_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) * dt_s
    xy = np.column_stack([t * speed_mps, np.zeros(n)])
    return t, xy


def test_isolated_spike_is_dropped() -> None:
    t, xy = _line(10)
    xy[4] = [xy[4, 0], 20_000.0]  # 20 km off for one fix
    c = clean_track(*_track_from_xy(t, xy))
    assert c.glitches_dropped == 1 and not c.keep[4] and c.keep.sum() == 9
    assert c.relocations == 0 and not c.break_after.any()


def test_glitch_at_either_end_is_dropped() -> None:
    t, xy = _line(8)
    xy[0] = [-50_000.0, 0.0]
    xy[-1] = [0.0, 90_000.0]
    c = clean_track(*_track_from_xy(t, xy))
    assert not c.keep[0] and not c.keep[-1] and c.keep[1:-1].all()


def test_two_consecutive_glitches_are_dropped_by_the_forward_pass() -> None:
    t, xy = _line(12)
    xy[5] = [xy[5, 0], 30_000.0]
    xy[6] = [xy[6, 0], 30_100.0]
    c = clean_track(*_track_from_xy(t, xy))
    assert not c.keep[5] and not c.keep[6] and c.keep.sum() == 10 and c.relocations == 0


def test_persistent_jump_is_a_relocation_with_a_break() -> None:
    t, xy = _line(20)
    xy[10:, 1] += 60_000.0  # the rest of the track is 60 km away: a real relocation, not a glitch
    t_, lat, lon = _track_from_xy(t, xy)
    c = clean_track(t_, lat, lon)
    assert c.relocations == 1 and c.keep.all()
    assert c.break_after.tolist() == [i == 9 for i in range(20)]
    raw = RawTraces.from_lists({"cab": (t_, lat, lon)})
    tr = to_trajectories(raw, dt_s=10.0, projection=ORIGIN)
    times = tr.times_s() - tr.t0_s
    inside_jump = (times > t[9]) & (times < t[10])
    assert not tr.active[inside_jump, 0].any()
    assert tr.active[~inside_jump, 0].all()


def test_gaps_longer_than_max_gap_are_not_bridged() -> None:
    t = np.array([0.0, 60.0, 1000.0, 1060.0])
    xy = np.column_stack([[0.0, 600.0, 1200.0, 1800.0], np.zeros(4)])
    raw = RawTraces.from_lists({"u": _track_from_xy(t, xy)})
    tr = to_trajectories(raw, dt_s=20.0, projection=ORIGIN, max_gap_s=300.0)
    rel = tr.times_s() - tr.t0_s
    assert tr.active[(rel <= 60) | (rel >= 1000), 0].all()
    assert not tr.active[(rel > 60) & (rel < 1000), 0].any()
    assert tr.metadata["cleaning"]["glitches_dropped"] == 0


def test_no_extrapolation_and_area_clip() -> None:
    t_a, xy_a = _line(5, speed_mps=5.0)  # 0..240 s, x 0..1200 m
    t_b = t_a + 120.0
    xy_b = xy_a + [0.0, 100.0]
    raw = RawTraces.from_lists({"a": _track_from_xy(t_a, xy_a), "b": _track_from_xy(t_b, xy_b)})
    tr = to_trajectories(raw, dt_s=30.0, projection=ORIGIN, area=Area(-1.0, -1.0, 1000.0, 1000.0))
    assert tr.n_steps == 13 and tr.t0_s == 0.0
    rel = tr.times_s()
    # user b has no fix before 120 s: inactive, position held at its first fix
    assert not tr.active[rel < 120, 1].any()
    np.testing.assert_allclose(tr.xy_m[rel < 120, 1], np.tile(xy_b[0], ((rel < 120).sum(), 1)), atol=1e-6)
    # user a has no fix after 240 s; and x > 1000 m is outside the area
    assert not tr.active[rel > 240, 0].any()
    np.testing.assert_array_equal(tr.active[:, 0], (rel <= 240) & (rel * 5.0 <= 1000.0 + 1e-6))


def test_projection_defaults_to_the_centroid(shared_data: Path) -> None:
    raw = read_roma(shared_data / "traces" / "roma_format_sample.txt")
    tr = to_trajectories(raw, dt_s=5.0)
    lat = np.concatenate(raw.lat)
    lon = np.concatenate(raw.lon)
    assert tr.projection.origin_lat == pytest.approx(lat.mean())
    assert tr.projection.origin_lon == pytest.approx(lon.mean())
    assert np.abs(tr.xy_m).max() < 10_000  # the sample is a few km across


def test_real_sample_resampled_positions_match_fixes(shared_data: Path) -> None:
    raw = read_cabspotting(shared_data / "traces" / "cabspotting_format_sample")
    tr = to_trajectories(raw, dt_s=1.0)
    for u, (t, lat, lon) in enumerate(zip(raw.t_s, raw.lat, raw.lon, strict=True)):
        rows = np.round((t - tr.t0_s) / tr.dt_s).astype(int)
        np.testing.assert_allclose(tr.xy_m[rows, u], tr.projection.to_xy(lat, lon), atol=1e-6)
        assert tr.active[rows, u].all()
    # measured speeds are taxi-like, i.e. far below the glitch threshold
    speeds = [haversine_m(la[:-1], lo[:-1], la[1:], lo[1:]) / np.diff(t)
              for t, la, lo in zip(raw.t_s, raw.lat, raw.lon, strict=True)]
    assert np.concatenate(speeds).max() < MAX_PLAUSIBLE_SPEED_MPS


def test_bad_arguments_and_memory_guard() -> None:
    raw = RawTraces.from_lists({"u": _track_from_xy([0.0, 1e9], np.array([[0.0, 0.0], [10.0, 0.0]]))})
    with pytest.raises(ValidationError, match="dt_s"):
        to_trajectories(raw, dt_s=0)
    with pytest.raises(ValidationError, match="GiB"):
        to_trajectories(raw, dt_s=1.0, max_gap_s=2e9)
    empty = RawTraces.from_lists({"u": ([], [], [])})
    with pytest.raises(ValidationError, match="no fixes"):
        to_trajectories(empty, dt_s=1.0)


# -------------------------------------------------------------------------------------------- property tests

coords = st.floats(min_value=-20_000, max_value=20_000, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=12),
    pts=st.lists(st.tuples(coords, coords), min_size=13, max_size=13),
    dt=st.sampled_from([0.5, 1.0, 7.0]),
)
def test_resampling_reproduces_fixes_and_interpolates_linearly(steps: list[int], pts: list, dt: float) -> None:
    """Fixes on grid times come back exactly; grid points between fixes lie on the segment."""
    k = np.concatenate([[0], np.cumsum(steps)])
    t = 1_000_000.0 + k * dt
    xy = np.asarray(pts[: k.size], dtype=np.float64)
    raw = RawTraces.from_lists({"u": _track_from_xy(t, xy)})
    tr = to_trajectories(raw, dt_s=dt, projection=ORIGIN, max_speed_mps=1e12, max_gap_s=1e9)
    assert tr.n_steps == k[-1] + 1 and tr.active.all()
    np.testing.assert_allclose(tr.xy_m[k, 0], xy, atol=1e-5)
    for i in range(k.size - 1):
        for j in range(k[i] + 1, k[i + 1]):
            f = (j - k[i]) / (k[i + 1] - k[i])
            np.testing.assert_allclose(tr.xy_m[j, 0], xy[i] + f * (xy[i + 1] - xy[i]), atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(
    lat0=st.floats(min_value=-70, max_value=70),
    lon0=st.floats(min_value=-179, max_value=179),
    dx=coords,
    dy=coords,
)
def test_projection_round_trip(lat0: float, lon0: float, dx: float, dy: float) -> None:
    proj = LocalProjection(lat0, lon0)
    ll = proj.to_latlon(np.array([dx, dy]))
    np.testing.assert_allclose(proj.to_xy(ll[0], ll[1]), [dx, dy], atol=1e-6)
    # the local projection is accurate to < 0.5 % at city scale (< 30 km)
    d = float(haversine_m(lat0, lon0, ll[0], ll[1]))
    assert d == pytest.approx(np.hypot(dx, dy), rel=5e-3, abs=0.5)


# ------------------------------------------------------------------------------------------------- save/load


def test_save_load_round_trip(tmp_path: Path, shared_data: Path) -> None:
    raw = read_roma(shared_data / "traces" / "roma_format_sample.txt", taxi_ids=["17", "233"])
    tr = to_trajectories(raw, dt_s=2.0, area=Area(-2000, -2000, 2000, 2000))
    path = tr.save(tmp_path / "rome.npz")
    back = Trajectories.load(path)
    assert back.ids == tr.ids and back.t0_s == tr.t0_s and back.dt_s == tr.dt_s
    assert back.projection == tr.projection
    np.testing.assert_array_equal(back.xy_m, tr.xy_m)
    np.testing.assert_array_equal(back.active, tr.active)
    assert back.metadata["sha256"] == raw.sha256 and back.metadata["reader"] == "roma"
    assert back.metadata["reader_options"]["taxi_ids"] == ["17", "233"]
    assert back.metadata["cleaning"]["area"] == [-2000, -2000, 2000, 2000]


def test_load_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no such file"):
        Trajectories.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(DataFormatError, match="junk.npz"):
        Trajectories.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(DataFormatError, match="missing"):
        Trajectories.load(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, xy_m=np.zeros((1, 1, 2)), active=np.ones((1, 1), bool), ids=np.array(["a"]),
             meta=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(DataFormatError):
        Trajectories.load(pickled)
    wrong_version = tmp_path / "v9.npz"
    np.savez(wrong_version, xy_m=np.zeros((1, 1, 2)), active=np.ones((1, 1), bool), ids=np.array(["a"]),
             meta=np.array('{"format": "edgemigrate.trajectories", "version": 9}'))
    with pytest.raises(DataFormatError, match="version 9"):
        Trajectories.load(wrong_version)
    bad_shape = tmp_path / "shape.npz"
    np.savez(bad_shape, xy_m=np.zeros((2, 1, 2)), active=np.ones((3, 1), bool), ids=np.array(["a"]),
             meta=np.array('{"format": "edgemigrate.trajectories", "version": 1, "t0_s": 0, "dt_s": 1,'
                           ' "origin_lat": 0, "origin_lon": 0}'))
    with pytest.raises(DataFormatError, match="active has shape"):
        Trajectories.load(bad_shape)


# ------------------------------------------------------------------------- two vehicles under one id

def _far_glitch(lat: float, lon: float, rng: np.random.Generator) -> tuple[float, float]:
    """A fix 15-40 km off in a random direction."""
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(15_000, 40_000)
    return lat + dist * np.sin(angle) / cabs.M_PER_DEG, lon + dist * np.cos(angle) / cabs.M_PER_DEG


def test_two_vehicles_under_one_id_become_two_users_without_losing_a_fix() -> None:
    t, lat, lon, vehicle = cabs.interleaved(hours=4.0)
    parts = split_interleaved(t, lat, lon)
    assert parts is not None
    np.testing.assert_array_equal(parts[0], np.flatnonzero(vehicle == 0))  # the one reporting first is #1
    np.testing.assert_array_equal(parts[1], np.flatnonzero(vehicle == 1))
    # without the split, one of the vehicles would be lost as "glitches"
    assert clean_track(t, lat, lon).glitches_dropped > 200
    tr = to_trajectories(RawTraces.from_lists({"cab": (t, lat, lon)}), dt_s=1.0, projection=ORIGIN)
    assert tr.ids == ("cab#1", "cab#2")
    cleaning = tr.metadata["cleaning"]
    assert cleaning["ids_split"] == 1 and cleaning["glitches_dropped"] == 0 and cleaning["users_dropped"] == 0
    for u in (0, 1):  # every fix of each vehicle is a position of its user
        mine = vehicle == u
        rows = np.round((t[mine] - tr.t0_s) / tr.dt_s).astype(int)
        np.testing.assert_allclose(tr.xy_m[rows, u], ORIGIN.to_xy(lat[mine], lon[mine]), atol=1e-6)
        assert tr.active[rows, u].all()


def test_a_glitch_inside_an_interleaved_id_is_still_dropped() -> None:
    t, lat, lon, vehicle = cabs.interleaved(hours=4.0, seed=1)
    lat[100], lon[100] = _far_glitch(lat[100], lon[100], np.random.default_rng(0))
    tr = to_trajectories(RawTraces.from_lists({"cab": (t, lat, lon)}), dt_s=10.0, projection=ORIGIN)
    assert tr.n_users == 2 and tr.metadata["cleaning"]["glitches_dropped"] == 1
    assert tr.metadata["cleaning"]["fixes_in"] == t.size


def test_a_single_glitch_is_not_a_second_vehicle() -> None:
    t, lat, lon = cabs.single(hours=4.0)
    lat[50], lon[50] = _far_glitch(lat[50], lon[50], np.random.default_rng(1))
    assert split_interleaved(t, lat, lon) is None
    tr = to_trajectories(RawTraces.from_lists({"cab": (t, lat, lon)}), dt_s=10.0, projection=ORIGIN)
    assert tr.ids == ("cab",) and tr.metadata["cleaning"]["glitches_dropped"] == 1
    assert tr.metadata["cleaning"]["ids_split"] == 0


@pytest.mark.parametrize("seed", range(5))
def test_many_glitches_over_a_day_are_not_a_second_vehicle(seed: int) -> None:
    # enough implausible steps to look closer, and the lone bad fixes are hours apart, so at a plausible
    # speed they are "reachable" from one another: they chain into one track, but never a sustained one
    t, lat, lon = cabs.single(hours=24.0, seed=seed)
    rng = np.random.default_rng(seed)
    bad = np.sort(rng.choice(np.arange(1, t.size - 1, 3), 60, replace=False))
    for i in bad:
        lat[i], lon[i] = _far_glitch(lat[i], lon[i], rng)
    assert split_interleaved(t, lat, lon) is None
    c = clean_track(t, lat, lon)
    assert c.glitches_dropped == bad.size and not c.keep[bad].any()


def test_a_relocation_is_not_a_second_vehicle() -> None:
    t, lat, lon = cabs.single(hours=6.0)
    half = t.size // 2
    lat[half:] += 0.3  # from 37.75 to 38.05 for good, with no gap: one switch, not interleaving
    assert split_interleaved(t, lat, lon) is None
    # fixes back at the old place every 15 min (longer than max_gap_s) are no vehicle reporting there
    for i in range(half, t.size, 15):
        lat[i] -= 0.3
    assert split_interleaved(t, lat, lon) is None
    # every 5 min they are: a second cab still reporting there, if rarely
    for i in range(half, t.size, 5):
        lat[i] -= 0.3 if (i - half) % 15 else 0.0
    assert split_interleaved(t, lat, lon) is not None
