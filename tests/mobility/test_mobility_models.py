from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.core.seeding import SeedTree
from edgemigrate.mobility import (
    ManhattanGrid,
    MobilityModel,
    RandomWaypoint,
    TaxiLike,
    TraceMobility,
    Trajectories,
    fix_interval_speeds,
)
from edgemigrate.mobility.taxi import STOPPED_BELOW_MPS, TARGET_MEDIAN_SPEED_MPS, TARGET_STOPPED_FRACTION

AREA = Area(-2000.0, -1500.0, 2000.0, 1500.0)
SF_SIZED = Area(-8000.0, -10000.0, 8000.0, 10000.0)

FACTORIES: dict[str, Callable[[int], MobilityModel]] = {
    "random_waypoint": lambda n: RandomWaypoint(n, AREA, speed_mps=(1.0, 20.0), pause_s=(0.0, 10.0)),
    "manhattan_grid": lambda n: ManhattanGrid(n, AREA, block_m=150.0, speed_mps=(5.0, 30.0), turn_prob=0.5),
    "taxi_like": lambda n: TaxiLike(n, AREA),
}


def _run(model: MobilityModel, seed: int, steps: int, dt_s: float = 1.0) -> np.ndarray:
    out = [model.reset(SeedTree(seed).rng("mobility"))]
    out += [model.step(dt_s) for _ in range(steps)]
    return np.stack(out)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_protocol_shapes_and_area(name: str) -> None:
    model = FACTORIES[name](300)
    assert isinstance(model, MobilityModel) and model.n_users == 300
    path = _run(model, 1, 400, dt_s=2.0)
    assert path.shape == (401, 300, 2) and np.isfinite(path).all()
    assert AREA.contains(path).all()
    assert model.active.shape == (300,) and model.active.all()
    assert (np.abs(np.diff(path, axis=0)) > 0).any(), "users must move"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_seed_same_paths_and_no_shared_state(name: str) -> None:
    make = FACTORIES[name]
    a = _run(make(200), 7, 200)
    b = _run(make(200), 7, 200)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _run(make(200), 8, 200))
    # two instances stepped in lockstep do not disturb each other
    m1, m2 = make(200), make(200)
    p1 = [m1.reset(SeedTree(7).rng("mobility"))]
    m2.reset(SeedTree(99).rng("mobility"))
    for _ in range(200):
        p1.append(m1.step(1.0))
        m2.step(3.0)
    np.testing.assert_array_equal(np.stack(p1), a)
    # returned arrays are copies: mutating one does not move the users
    pos = m1.step(1.0)
    pos[:] = 1e9
    assert AREA.contains(m1.step(1.0)).all()


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_step_before_reset_and_bad_dt(name: str) -> None:
    model = FACTORIES[name](3)
    with pytest.raises(ValidationError, match="reset"):
        model.step(1.0)
    model.reset(np.random.default_rng(0))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValidationError, match="dt_s"):
            model.step(bad)


def test_random_waypoint_speed_bounds_and_pauses() -> None:
    small = Area(0.0, 0.0, 200.0, 200.0)  # short legs (~100 m, ~25 s) so that pauses are frequent
    model = RandomWaypoint(300, small, speed_mps=(2.0, 6.0), pause_s=(5.0, 20.0))
    path = _run(model, 3, 600)
    assert small.contains(path).all()
    step = np.hypot(*np.moveaxis(np.diff(path, axis=0), -1, 0))
    assert step.max() <= 6.0 + 1e-9
    moving = step[step > 1e-9]
    assert np.median(moving) >= 2.0 - 1e-9  # whole steps move at the leg speed in [2, 6]
    paused = step < 1e-12
    # expected share of paused time: E[pause] / (E[pause] + E[leg]) with E[leg] ~ 104 m / ~3.7 m/s
    assert 0.2 < paused.mean() < 0.5
    # every pause in the middle of the run lasts >= 5 s, i.e. >= 4 whole paused steps
    for u in range(50):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], paused[:, u].astype(int), [0]])))
        runs = edges[1::2] - edges[::2]
        if runs.size > 2:
            assert runs[1:-1].min() >= 4
    with pytest.raises(ValidationError, match="speed_mps"):
        RandomWaypoint(5, AREA, speed_mps=(0.0, 3.0))
    with pytest.raises(ValidationError, match="pause_s"):
        RandomWaypoint(5, AREA, pause_s=(10.0, 1.0))
    with pytest.raises(ValidationError, match="n_users"):
        RandomWaypoint(0, AREA)
    for bad in ((1.0, 2.0, 3.0), "fast", None):
        with pytest.raises(ValidationError, match="speed_mps must be a number or a"):
            RandomWaypoint(5, AREA, speed_mps=bad)  # type: ignore[arg-type]


def test_manhattan_users_stay_on_streets_at_their_speed() -> None:
    block = 150.0
    model = ManhattanGrid(400, AREA, block_m=block, speed_mps=(5.0, 30.0), turn_prob=0.5)
    path = _run(model, 5, 300)
    gx = (path[..., 0] - AREA.xmin_m) / block
    gy = (path[..., 1] - AREA.ymin_m) / block
    on_street = (np.abs(gx - np.round(gx)) < 1e-6) | (np.abs(gy - np.round(gy)) < 1e-6)
    assert on_street.all()
    assert (gx >= -1e-9).all() and (gx <= model.nx + 1e-9).all()
    assert (gy >= -1e-9).all() and (gy <= model.ny + 1e-9).all()
    # an L1 step never exceeds the user's speed; on a straight stretch it equals it
    l1 = np.abs(np.diff(path, axis=0)).sum(axis=2)
    speed = model._speed
    assert (l1 <= speed[None, :] + 1e-6).all()
    assert np.isclose(l1, speed[None, :]).mean() > 0.5
    # turning happens: headings change for most users
    assert (np.abs(np.diff(path[:, :, 0], axis=0)) > 1e-9).any(axis=0).mean() > 0.8
    assert (np.abs(np.diff(path[:, :, 1], axis=0)) > 1e-9).any(axis=0).mean() > 0.8
    with pytest.raises(ValidationError, match="block_m"):
        ManhattanGrid(3, AREA, block_m=5000.0)
    with pytest.raises(ValidationError, match="turn_prob"):
        ManhattanGrid(3, AREA, turn_prob=1.5)


def test_manhattan_straight_only_bounces_at_the_edge() -> None:
    model = ManhattanGrid(50, Area(0.0, 0.0, 1000.0, 1000.0), block_m=100.0, speed_mps=10.0, turn_prob=0.0)
    path = _run(model, 2, 500)
    assert Area(0.0, 0.0, 1000.0, 1000.0).contains(path).all()


def test_taxi_like_reproduces_the_cabspotting_statistics() -> None:
    """Seeded statistical check of the calibration documented in edgemigrate.mobility.taxi."""
    speeds = fix_interval_speeds(TaxiLike(600, SF_SIZED), SeedTree(0).rng("taxi"), duration_s=3600.0,
                                 warmup_s=1800.0)
    assert speeds.size == 600 * 62
    assert np.median(speeds) == pytest.approx(TARGET_MEDIAN_SPEED_MPS, abs=0.35)
    assert (speeds < STOPPED_BELOW_MPS).mean() == pytest.approx(TARGET_STOPPED_FRACTION, abs=0.03)
    assert np.percentile(speeds, 99) < 25.0  # no implausible jumps


def test_taxi_like_parameters_are_validated() -> None:
    with pytest.raises(ValidationError, match="cruise_median_mps"):
        TaxiLike(5, AREA, cruise_median_mps=0.0)
    with pytest.raises(ValidationError, match="light_stop_s"):
        TaxiLike(5, AREA, light_stop_s=(30.0, 10.0))
    with pytest.raises(ValidationError, match="area"):
        TaxiLike(5, (0, 0, 1, 1))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- replay


def _trajectories() -> Trajectories:
    t = np.arange(6, dtype=np.float64)
    xy = np.zeros((6, 2, 2))
    xy[:, 0, 0] = 10.0 * t  # user a moves east 10 m per row
    xy[:, 1, 1] = -5.0 * t  # user b moves south
    active = np.ones((6, 2), dtype=bool)
    active[:2, 1] = False  # b appears at row 2
    active[4, 0] = False  # a drops out at row 4
    return Trajectories(("a", "b"), 100.0, 2.0, xy, active, LocalProjection(41.9, 12.5))


def test_trace_mobility_replays_interpolates_and_holds() -> None:
    tr = _trajectories()
    model = TraceMobility(tr)
    assert isinstance(model, MobilityModel) and model.n_users == 2
    np.testing.assert_array_equal(model.reset(np.random.default_rng(0)), tr.xy_m[0])
    assert model.active.tolist() == [True, False]
    pos = model.step(1.0)  # half-way between rows 0 and 1
    np.testing.assert_allclose(pos[0], [5.0, 0.0])
    np.testing.assert_allclose(pos[1], tr.xy_m[0, 1])  # still inactive: held
    pos = model.step(3.0)  # row 2
    assert model.active.tolist() == [True, True]
    np.testing.assert_allclose(pos, tr.xy_m[2])
    pos = model.step(4.0)  # row 4: a is inactive and held where it was last seen active (row 2)
    assert model.active.tolist() == [False, True]
    np.testing.assert_allclose(pos[0], tr.xy_m[2, 0])
    np.testing.assert_allclose(pos[1], tr.xy_m[4, 1])
    model.step(2.0)  # row 5, the last
    assert model.active.tolist() == [True, True]
    pos = model.step(2.0)  # past the end
    assert not model.active.any()
    np.testing.assert_allclose(pos, tr.xy_m[5])
    np.testing.assert_array_equal(model.reset(None), tr.xy_m[0])
    assert model.time_s == 0.0
