"""A taxi-like synthetic mobility model calibrated to the real San Francisco cabspotting statistics.

Targets (``shared/data/traces/FORMATS.md``, measured on 7 real cabs, 195,373 fixes sampled every ~58 s):
the median speed between consecutive fixes is 5.5 m/s and 21.6 % of the intervals are below 0.5 m/s
("stopped").

Model. Each taxi alternates *trips* and *dwells*. A trip goes to a destination drawn uniformly in the
part of the area within ``trip_half_width_m`` (per axis) of the taxi, along an L-shaped street route
(first along x or y, chosen at random), at a cruise speed drawn per trip from a log-normal distribution
(median ``cruise_median_mps``, log-sd ``cruise_sigma``). While driving, red lights / traffic stop the taxi
as a Poisson process of rate ``light_rate_per_s`` for U[``light_stop_s``] seconds. At the destination the
taxi dwells (drop-off, waiting for a fare) for a log-normal time (median ``dwell_median_s``, log-sd
``dwell_sigma``), then starts the next trip.

Calibration. The defaults were fitted by a grid search with :func:`fix_interval_speeds` (2,000 taxis in a
16 km x 20 km area - the size of the San Francisco peninsula cut - 30 min warm-up, 3 h, 1 s ticks, fixes
every 58 s, seeds 0 and 1): cruise median 9.0 m/s with dwell median 120 s gave 5.40 m/s and 21.9 %
stopped, 9.2 m/s with 115 s gave 5.52 m/s and 21.3 %; the defaults (9.2 m/s, 118 s, lights every 300 s
of driving for 10-40 s, dwell log-sd 0.8) sit between. The test suite checks that a seeded run reproduces
both targets within tolerance. The cruise speed (33 km/h) is above the 5.5 m/s target because the
fix-to-fix speed averages over traffic stops and the partial dwells at either end of a trip. In much
smaller areas trips are shorter (destinations are clipped to the area) and the taxis stop more often.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.geo import Area
from edgemigrate.mobility.models import MobilityModel, _check_dt, _check_range, _Synthetic

TARGET_MEDIAN_SPEED_MPS = 5.5
"""FORMATS.md: median speed between consecutive real cabspotting fixes."""
TARGET_STOPPED_FRACTION = 0.216
"""FORMATS.md: share of real cabspotting fix intervals below :data:`STOPPED_BELOW_MPS`."""
STOPPED_BELOW_MPS = 0.5
CABSPOTTING_FIX_INTERVAL_S = 58.0
"""FORMATS.md: median sampling interval of the real cabspotting traces."""


def _positive(value: float, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValidationError(f"{what} must be a positive number, got {value!r}")
    return float(value)


class TaxiLike(_Synthetic):
    """Taxi-like movement: trips on L-shaped street routes with traffic stops and dwells (module docstring)."""

    def __init__(
        self,
        n_users: int,
        area: Area,
        *,
        cruise_median_mps: float = 9.2,
        cruise_sigma: float = 0.35,
        trip_half_width_m: float = 3000.0,
        light_rate_per_s: float = 1.0 / 300.0,
        light_stop_s: tuple[float, float] = (10.0, 40.0),
        dwell_median_s: float = 118.0,
        dwell_sigma: float = 0.8,
    ) -> None:
        super().__init__(n_users, area)
        self.cruise_median_mps = _positive(cruise_median_mps, "cruise_median_mps")
        self.cruise_sigma = float(cruise_sigma)
        if not (math.isfinite(self.cruise_sigma) and self.cruise_sigma >= 0):
            raise ValidationError(f"cruise_sigma must be >= 0, got {cruise_sigma!r}")
        self.trip_half_width_m = _positive(trip_half_width_m, "trip_half_width_m")
        self.light_rate_per_s = float(light_rate_per_s)
        if not (math.isfinite(self.light_rate_per_s) and self.light_rate_per_s >= 0):
            raise ValidationError(f"light_rate_per_s must be >= 0, got {light_rate_per_s!r}")
        self.light_stop_s = _check_range(light_stop_s, "light_stop_s", allow_zero=True)
        self.dwell_median_s = _positive(dwell_median_s, "dwell_median_s")
        self.dwell_sigma = float(dwell_sigma)
        if not (math.isfinite(self.dwell_sigma) and self.dwell_sigma >= 0):
            raise ValidationError(f"dwell_sigma must be >= 0, got {dwell_sigma!r}")
        n = self.n_users
        # the route: leg 0 then leg 1, each along one axis (unit heading h0/h1, metres left L0/L1)
        self._dest_x, self._dest_y = np.zeros(n), np.zeros(n)
        self._h0x, self._h0y, self._h1x, self._h1y = (np.zeros(n) for _ in range(4))
        self._left0_m, self._left1_m = np.zeros(n), np.zeros(n)
        self._speed = np.ones(n)
        self._stop_left_s = np.zeros(n)
        self._drive_to_light_s = np.full(n, np.inf)  # driving time until the next traffic stop

    # -- drawing ------------------------------------------------------------------------------------------
    def _new_trips(self, rng: np.random.Generator, idx: NDArray[np.int64]) -> None:
        n = idx.size
        a, w = self.area, self.trip_half_width_m
        x, y = self._x[idx], self._y[idx]
        lox, hix = np.maximum(x - w, a.xmin_m), np.minimum(x + w, a.xmax_m)
        loy, hiy = np.maximum(y - w, a.ymin_m), np.minimum(y + w, a.ymax_m)
        u = rng.random((3, n))
        dest_x, dest_y = lox + u[0] * (hix - lox), loy + u[1] * (hiy - loy)
        dx, dy = dest_x - x, dest_y - y
        sx, sy = np.sign(dx), np.sign(dy)
        x_first = u[2] < 0.5
        zero = np.zeros(n)
        self._dest_x[idx], self._dest_y[idx] = dest_x, dest_y
        self._h0x[idx], self._h0y[idx] = np.where(x_first, sx, zero), np.where(x_first, zero, sy)
        self._h1x[idx], self._h1y[idx] = np.where(x_first, zero, sx), np.where(x_first, sy, zero)
        self._left0_m[idx] = np.where(x_first, np.abs(dx), np.abs(dy))
        self._left1_m[idx] = np.where(x_first, np.abs(dy), np.abs(dx))
        self._speed[idx] = self.cruise_median_mps * np.exp(self.cruise_sigma * rng.standard_normal(n))

    def _dwell(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self.dwell_median_s * np.exp(self.dwell_sigma * rng.standard_normal(n))

    def _light_clock(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        if self.light_rate_per_s == 0:
            return np.full(n, np.inf)
        return rng.exponential(1.0 / self.light_rate_per_s, n)

    # -- MobilityModel --------------------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]:
        self._rng = rng
        n = self.n_users
        self._x, self._y = self._uniform_xy(rng, n)
        self._new_trips(rng, np.arange(n))
        # start roughly in the stationary mix: about a third of the taxis part-way through a dwell
        dwelling = rng.random(n) < 0.35
        self._stop_left_s = np.where(dwelling, rng.random(n) * self._dwell(rng, n), 0.0)
        self._drive_to_light_s = self._light_clock(rng, n)
        return self.positions

    def step(self, dt_s: float) -> NDArray[np.float64]:
        """Advance every taxi by ``dt_s``: whole-array moves, random draws only for taxis with an event."""
        rng = self._need_rng()
        stop_left = self._stop_left_s - _check_dt(dt_s)
        budget_s = np.maximum(-stop_left, 0.0)  # driving time this step (0 while stopped)
        np.maximum(stop_left, 0.0, out=self._stop_left_s)
        reach = self._speed * budget_s
        route_m = self._left0_m + self._left1_m
        m0 = np.minimum(reach, self._left0_m)
        m1 = np.minimum(reach - m0, self._left1_m)
        self._x += self._h0x * m0 + self._h1x * m1
        self._y += self._h0y * m0 + self._h1y * m1
        self._left0_m -= m0
        self._left1_m -= m1
        self._drive_to_light_s -= budget_s
        red = np.flatnonzero(self._drive_to_light_s <= 0)
        if red.size:  # a traffic stop starts at the end of this step
            self._drive_to_light_s[red] = self._light_clock(rng, red.size)
            self._stop_left_s[red] = rng.uniform(*self.light_stop_s, red.size)
        arrived = np.flatnonzero((budget_s > 0) & (reach >= route_m))
        if arrived.size:  # snap to the destination, dwell (minus the time left in this step), next trip
            self._x[arrived] = self._dest_x[arrived]
            self._y[arrived] = self._dest_y[arrived]
            leftover_s = (reach[arrived] - route_m[arrived]) / self._speed[arrived]
            self._stop_left_s[arrived] = np.maximum(self._dwell(rng, arrived.size) - leftover_s, 0.0)
            self._new_trips(rng, arrived)
        return self.positions


def fix_interval_speeds(
    model: MobilityModel,
    rng: np.random.Generator,
    *,
    duration_s: float,
    interval_s: float = CABSPOTTING_FIX_INTERVAL_S,
    dt_s: float = 1.0,
    warmup_s: float = 1800.0,
) -> NDArray[np.float64]:
    """Speeds (m/s) between "GPS fixes" taken every ``interval_s`` from ``model`` stepped at ``dt_s``.

    This is how FORMATS.md measured the real traces (straight-line distance between consecutive fixes over
    the time between them), so it is the statistic the taxi-like model is calibrated on.
    """
    interval_s = _positive(interval_s, "interval_s")
    dt_s = _check_dt(dt_s)
    per_fix = max(int(round(interval_s / dt_s)), 1)
    model.reset(rng)
    for _ in range(int(round(warmup_s / dt_s))):
        model.step(dt_s)
    n_fix = int(duration_s // (per_fix * dt_s)) + 1
    fixes = np.empty((n_fix, model.n_users, 2))
    fixes[0] = model.step(dt_s)
    for k in range(1, n_fix):
        for _ in range(per_fix):
            pos = model.step(dt_s)
        fixes[k] = pos
    disp = np.hypot(*np.moveaxis(np.diff(fixes, axis=0), -1, 0))
    return (disp / (per_fix * dt_s)).ravel()
