"""Mobility models: the :class:`MobilityModel` protocol, trace replay and synthetic generators.

Every model keeps its state in NumPy arrays over users and advances all users at once (no per-user Python
loop). All randomness comes from the generator handed to ``reset``; a model owns its arrays, so two
instances never share state. Positions are local metres (x east, y north), shape (U, 2).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.geo import Area
from edgemigrate.mobility.traces import Trajectories


@runtime_checkable
class MobilityModel(Protocol):
    """Where the users are. ``step`` returns positions after advancing ``dt_s`` seconds.

    ``active[u]`` is False while user ``u`` has no known position (trace replay before/after its fixes or
    outside the area); its position is then held at the last known one.
    """

    n_users: int
    active: NDArray[np.bool_]

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]: ...

    def step(self, dt_s: float) -> NDArray[np.float64]: ...


def _check_users(n_users: int) -> int:
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1:
        raise ValidationError(f"n_users must be a positive integer, got {n_users!r}")
    return int(n_users)


def _check_range(value: float | tuple[float, float], what: str, *, allow_zero: bool) -> tuple[float, float]:
    try:
        lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValidationError(f"{what} must be a number or a (min, max) pair, got {value!r}") from None
    ok_lo = lo >= 0 if allow_zero else lo > 0
    if not (math.isfinite(lo) and math.isfinite(hi) and ok_lo and hi >= lo):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{what} must be (min, max) with {bound} and min <= max, got {value!r}")
    return lo, hi


def _check_dt(dt_s: float) -> float:
    if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0):
        raise ValidationError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
    return float(dt_s)


class _Synthetic:
    """Shared plumbing of the synthetic models (always active, confined to ``area``).

    Positions live in two contiguous 1-D arrays ``_x``/``_y``: NumPy loops over an (U, 2) array with an
    inner axis of length 2 (broadcasts, row fancy-indexing) are several times slower than over (U,).
    """

    def __init__(self, n_users: int, area: Area) -> None:
        if not isinstance(area, Area):
            raise ValidationError(f"area must be an edgemigrate.core.geo.Area, got {type(area).__name__}")
        self.n_users = _check_users(n_users)
        self.area = area
        self.active = np.ones(self.n_users, dtype=bool)
        self._rng: np.random.Generator | None = None
        self._x = np.zeros(self.n_users, dtype=np.float64)
        self._y = np.zeros(self.n_users, dtype=np.float64)

    @property
    def positions(self) -> NDArray[np.float64]:
        """Current positions, (U, 2) metres (a fresh array)."""
        out = np.empty((self.n_users, 2), dtype=np.float64)
        out[:, 0] = self._x
        out[:, 1] = self._y
        return out

    def _need_rng(self) -> np.random.Generator:
        if self._rng is None:
            raise ValidationError(f"{type(self).__name__}: call reset(rng) before step()")
        return self._rng

    def _uniform_xy(self, rng: np.random.Generator, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        a = self.area
        return rng.uniform(a.xmin_m, a.xmax_m, n), rng.uniform(a.ymin_m, a.ymax_m, n)


class TraceMobility:
    """Replay :class:`Trajectories` from row 0; ``step(dt_s)`` interpolates linearly between rows.

    An inactive user keeps its last active position (its first fix before it appears). After the last row
    every user is inactive. ``reset`` ignores the generator (replay is deterministic).
    """

    def __init__(self, trajectories: Trajectories) -> None:
        if not isinstance(trajectories, Trajectories):
            raise ValidationError(f"expected Trajectories, got {type(trajectories).__name__}")
        self.trajectories = trajectories
        self.n_users = trajectories.n_users
        self.active = np.zeros(self.n_users, dtype=bool)
        self._pos = np.zeros((self.n_users, 2), dtype=np.float64)
        self._t_s = 0.0

    @property
    def time_s(self) -> float:
        """Seconds since the first row (``trajectories.t0_s``)."""
        return self._t_s

    def reset(self, rng: np.random.Generator | None = None) -> NDArray[np.float64]:
        self._t_s = 0.0
        tr = self.trajectories
        self._pos = tr.xy_m[0].copy()
        self.active = tr.active[0].copy()
        return self._pos.copy()

    def step(self, dt_s: float) -> NDArray[np.float64]:
        self._t_s += _check_dt(dt_s)
        tr = self.trajectories
        k_float = self._t_s / tr.dt_s
        k = int(math.floor(k_float + 1e-9))
        if k >= tr.n_steps - 1:
            if k == tr.n_steps - 1 and abs(k_float - k) <= 1e-9:
                new, act = tr.xy_m[k], tr.active[k]
            else:
                self.active = np.zeros(self.n_users, dtype=bool)
                return self._pos.copy()
        else:
            frac = min(max(k_float - k, 0.0), 1.0)
            if frac <= 1e-9:
                new, act = tr.xy_m[k], tr.active[k]
            else:
                new = tr.xy_m[k] + frac * (tr.xy_m[k + 1] - tr.xy_m[k])
                act = tr.active[k] & tr.active[k + 1]
        self._pos = np.where(act[:, None], new, self._pos)
        self.active = act.copy()
        return self._pos.copy()


class RandomWaypoint(_Synthetic):
    """Random waypoint: go straight to a uniform random point at a uniform random speed, pause, repeat.

    Speeds are drawn from U[speed_mps] per leg (min must be > 0, else the average speed decays to zero, Yoon
    et al., INFOCOM 2003), pauses from U[pause_s]. Initial positions and destinations are uniform over the
    area; a user arriving mid-step spends the rest of the step pausing. State per user: unit heading,
    remaining leg length, speed, pause left; a step is a handful of whole-array operations, and random
    draws happen only for users that arrive.
    """

    def __init__(
        self,
        n_users: int,
        area: Area,
        speed_mps: float | tuple[float, float] = (1.0, 15.0),
        pause_s: float | tuple[float, float] = (0.0, 60.0),
    ) -> None:
        super().__init__(n_users, area)
        self.speed_mps = _check_range(speed_mps, "speed_mps", allow_zero=False)
        self.pause_s = _check_range(pause_s, "pause_s", allow_zero=True)
        n = self.n_users
        self._dest_x, self._dest_y = np.zeros(n), np.zeros(n)
        self._hx, self._hy = np.zeros(n), np.zeros(n)
        self._left_m = np.zeros(n)
        self._speed = np.ones(n)
        self._pause_left = np.zeros(n)

    def _new_legs(self, rng: np.random.Generator, idx: NDArray[np.int64]) -> None:
        dx_, dy_ = self._uniform_xy(rng, idx.size)
        ddx, ddy = dx_ - self._x[idx], dy_ - self._y[idx]
        dist = np.hypot(ddx, ddy)
        safe = np.where(dist > 0, dist, 1.0)
        self._dest_x[idx], self._dest_y[idx] = dx_, dy_
        self._hx[idx], self._hy[idx] = ddx / safe, ddy / safe
        self._left_m[idx] = dist
        self._speed[idx] = rng.uniform(*self.speed_mps, idx.size)

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]:
        self._rng = rng
        self._x, self._y = self._uniform_xy(rng, self.n_users)
        self._new_legs(rng, np.arange(self.n_users))
        self._pause_left = np.zeros(self.n_users)
        return self.positions

    def step(self, dt_s: float) -> NDArray[np.float64]:
        rng = self._need_rng()
        pause_left = self._pause_left - _check_dt(dt_s)
        budget_s = np.maximum(-pause_left, 0.0)  # time left for moving this step (0 while pausing)
        np.maximum(pause_left, 0.0, out=self._pause_left)
        reach = self._speed * budget_s
        move = np.minimum(reach, self._left_m)
        self._x += self._hx * move
        self._y += self._hy * move
        self._left_m -= move
        arrived = np.flatnonzero((budget_s > 0) & (reach >= self._left_m + move))
        if arrived.size:
            self._x[arrived] = self._dest_x[arrived]
            self._y[arrived] = self._dest_y[arrived]
            spent_s = move[arrived] / self._speed[arrived]
            self._pause_left[arrived] = rng.uniform(*self.pause_s, arrived.size) - (budget_s[arrived] - spent_s)
            self._new_legs(rng, arrived)
        return self.positions


# direction codes for grid models: 0 +x (east), 1 +y (north), 2 -x (west), 3 -y (south)
_DX = np.array([1, 0, -1, 0], dtype=np.int64)
_DY = np.array([0, 1, 0, -1], dtype=np.int64)


class ManhattanGrid(_Synthetic):
    """Manhattan grid: users drive along streets spaced ``block_m`` apart (from the area's lower-left corner).

    At each crossing a user goes straight with probability ``1 - turn_prob`` and turns left or right with
    ``turn_prob / 2`` each; a move that would leave the grid is replaced by another allowed one (straight,
    then the turns in random order, a U-turn only at a dead end). Speed is drawn per user from U[speed_mps]
    at reset. Several crossings can be passed in one step. State per user: direction code, distance to the
    next crossing, that crossing's grid coordinates.
    """

    def __init__(
        self,
        n_users: int,
        area: Area,
        block_m: float = 100.0,
        speed_mps: float | tuple[float, float] = (5.0, 15.0),
        turn_prob: float = 0.5,
    ) -> None:
        super().__init__(n_users, area)
        if not (isinstance(block_m, (int, float)) and math.isfinite(block_m) and block_m > 0):
            raise ValidationError(f"block_m must be positive, got {block_m!r}")
        if not (0.0 <= turn_prob <= 1.0):
            raise ValidationError(f"turn_prob must be in [0, 1], got {turn_prob!r}")
        self.block_m = float(block_m)
        self.turn_prob = float(turn_prob)
        self.speed_mps = _check_range(speed_mps, "speed_mps", allow_zero=False)
        self.nx = int(area.width_m // self.block_m)
        self.ny = int(area.height_m // self.block_m)
        if self.nx < 1 or self.ny < 1:
            raise ValidationError(f"block_m={block_m} is larger than the area ({area.width_m} x {area.height_m} m)")
        n = self.n_users
        self._dir = np.zeros(n, dtype=np.int64)
        self._speed = np.ones(n)
        self._to_cross_m = np.zeros(n)
        self._cx = np.zeros(n, dtype=np.int64)  # grid coordinates of the next crossing
        self._cy = np.zeros(n, dtype=np.int64)
        self._hx, self._hy = np.zeros(n), np.zeros(n)

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]:
        self._rng = rng
        n, b, a = self.n_users, self.block_m, self.area
        # start on a random street at a uniform position along it, heading to a neighbouring crossing
        along_x = rng.random(n) < 0.5
        street = np.where(along_x, rng.integers(0, self.ny + 1, n), rng.integers(0, self.nx + 1, n))
        seg = np.where(along_x, rng.integers(0, self.nx, n), rng.integers(0, self.ny, n))
        frac = rng.random(n)
        forward = rng.random(n) < 0.5
        along = (seg + frac) * b
        self._x = a.xmin_m + np.where(along_x, along, street * b)
        self._y = a.ymin_m + np.where(along_x, street * b, along)
        self._dir = np.where(along_x, np.where(forward, 0, 2), np.where(forward, 1, 3))
        nxt = np.where(forward, seg + 1, seg)
        self._cx = np.where(along_x, nxt, street)
        self._cy = np.where(along_x, street, nxt)
        self._to_cross_m = np.where(forward, 1.0 - frac, frac) * b
        self._hx, self._hy = _DX[self._dir].astype(np.float64), _DY[self._dir].astype(np.float64)
        self._speed = rng.uniform(*self.speed_mps, n)
        return self.positions

    def _choose(self, rng: np.random.Generator, who: NDArray[np.int64]) -> None:
        """New direction for users ``who`` standing on their crossing ``(_cx, _cy)[who]``."""
        d = self._dir[who]
        u = rng.random(who.size)
        half = self.turn_prob / 2
        new = (d + np.where(u < half, 1, np.where(u < self.turn_prob, 3, 0))) % 4
        cx, cy = self._cx[who], self._cy[who]
        nx, ny = cx + _DX[new], cy + _DY[new]
        bad = np.flatnonzero((nx < 0) | (nx > self.nx) | (ny < 0) | (ny > self.ny))
        if bad.size:  # at the edge of the grid: straight, the turns in random order, then a U-turn
            db = d[bad]
            turn_a = np.where(rng.random(bad.size) < 0.5, (db + 1) % 4, (db + 3) % 4)
            cands = np.stack([db, turn_a, (turn_a + 2) % 4, (db + 2) % 4], axis=1)
            cnx, cny = cx[bad][:, None] + _DX[cands], cy[bad][:, None] + _DY[cands]
            ok = (cnx >= 0) & (cnx <= self.nx) & (cny >= 0) & (cny <= self.ny)
            new[bad] = cands[np.arange(bad.size), np.argmax(ok, axis=1)]
        self._dir[who] = new
        self._hx[who], self._hy[who] = _DX[new], _DY[new]

    def step(self, dt_s: float) -> NDArray[np.float64]:
        rng = self._need_rng()
        remaining = self._speed * _check_dt(dt_s)
        move = np.minimum(remaining, self._to_cross_m)
        self._x += self._hx * move
        self._y += self._hy * move
        self._to_cross_m -= move
        remaining -= move
        hit = np.flatnonzero(remaining > 0)  # reached the crossing with distance to spare
        b, a = self.block_m, self.area
        while hit.size:
            self._x[hit] = a.xmin_m + self._cx[hit] * b  # snap: no drift off the streets
            self._y[hit] = a.ymin_m + self._cy[hit] * b
            self._choose(rng, hit)
            d = self._dir[hit]
            self._cx[hit] += _DX[d]
            self._cy[hit] += _DY[d]
            mv = np.minimum(remaining[hit], b)
            self._x[hit] += self._hx[hit] * mv
            self._y[hit] += self._hy[hit] * mv
            self._to_cross_m[hit] = b - mv
            remaining[hit] -= mv
            hit = hit[remaining[hit] > 0]
        return self.positions
