from __future__ import annotations

import math

import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.mobileuser import SPEED_COMPUTE_M_PER_S, SPEED_SIMPLE_M_PER_S, BackAndForthPath


def test_paper_speeds() -> None:
    assert (SPEED_COMPUTE_M_PER_S, SPEED_SIMPLE_M_PER_S) == (0.5, 1.0)


def test_round_trips_between_start_and_end() -> None:
    p = BackAndForthPath(0.0, 0.0, 120.0, 0.0, speed_m_per_s=1.0)
    assert p.round_trip_s == 240.0
    assert p.position_m(0.0) == (0.0, 0.0)
    assert p.position_m(60.0) == (60.0, 0.0)
    assert p.position_m(120.0) == (120.0, 0.0)
    assert p.position_m(180.0) == (60.0, 0.0)  # on the way back
    assert p.position_m(240.0) == (0.0, 0.0)
    assert p.position_m(240.0 * 7 + 30.0) == pytest.approx((30.0, 0.0))
    assert p.heading_out(30.0) and not p.heading_out(150.0)


def test_speed_scales_time_and_direction_is_any() -> None:
    slow = BackAndForthPath(10.0, 10.0, 40.0, 50.0, speed_m_per_s=0.5)  # a 50 m segment
    assert slow.length_m == 50.0
    x, y = slow.position_m(50.0)  # 25 m along
    assert (x, y) == pytest.approx((25.0, 30.0))
    for t in (0.0, 13.7, 99.9, 100.0, 1234.5):
        assert 0.0 <= slow.along_m(t) <= slow.length_m
        assert slow.along_m(t) == pytest.approx(slow.along_m(t + slow.round_trip_s))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"speed_m_per_s": 0.0}, "speed_m_per_s"),
    ({"speed_m_per_s": math.nan}, "speed_m_per_s"),
    ({"end_x_m": 0.0}, "start and end must differ"),
    ({"start_x_m": math.inf}, "start_x_m"),
    ({"start_y_m": True}, "start_y_m"),
])
def test_invalid_paths(kwargs: dict, match: str) -> None:
    args = {"start_x_m": 0.0, "start_y_m": 0.0, "end_x_m": 10.0, "end_y_m": 0.0} | kwargs
    with pytest.raises(ValidationError, match=match):
        BackAndForthPath(**args)


def test_time_must_be_a_finite_non_negative_number() -> None:
    p = BackAndForthPath(0.0, 0.0, 1.0, 0.0)
    for bad in (-1.0, math.nan, "3"):
        with pytest.raises(ValidationError, match="t_s"):
            p.position_m(bad)  # type: ignore[arg-type]
