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
    lo, hi = (value, value) if isinstance(value, (int, float)) else tuple(value)
    lo, hi = float(lo), float(hi)
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
    """Shared plumbing of the synthetic models (always active, confined to ``area``)."""

    def __init__(self, n_users: int, area: Area) -> None:
        if not isinstance(area, Area):
            raise ValidationError(f"area must be an edgemigrate.core.geo.Area, got {type(area).__name__}")
        self.n_users = _check_users(n_users)
        self.area = area
        self.active = np.ones(self.n_users, dtype=bool)
        self._rng: np.random.Generator | None = None
        self._pos = np.zeros((self.n_users, 2), dtype=np.float64)

    @property
    def positions(self) -> NDArray[np.float64]:
        return self._pos.copy()

    def _need_rng(self) -> np.random.Generator:
        if self._rng is None:
            raise ValidationError(f"{type(self).__name__}: call reset(rng) before step()")
        return self._rng

    def _uniform_points(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        a = self.area
        return np.column_stack([rng.uniform(a.xmin_m, a.xmax_m, n), rng.uniform(a.ymin_m, a.ymax_m, n)])


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
    area; a user arriving mid-step spends the rest of the step pausing.
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
        self._dest = np.zeros_like(self._pos)
        self._speed = np.zeros(self.n_users)
        self._pause_left = np.zeros(self.n_users)

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]:
        self._rng = rng
        self._pos = self._uniform_points(rng, self.n_users)
        self._dest = self._uniform_points(rng, self.n_users)
        self._speed = rng.uniform(*self.speed_mps, self.n_users)
        self._pause_left = np.zeros(self.n_users)
        return self._pos.copy()

    def step(self, dt_s: float) -> NDArray[np.float64]:
        rng = self._need_rng()
        dt_s = _check_dt(dt_s)
        pause_left = self._pause_left - dt_s
        budget_s = np.maximum(-pause_left, 0.0)  # time left for moving this step
        moving = budget_s > 0
        delta = self._dest - self._pos
        dist = np.hypot(delta[:, 0], delta[:, 1])
        reach = self._speed * budget_s
        arrive = moving & (reach >= dist)
        go = moving & ~arrive
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(go, reach / np.where(dist > 0, dist, 1.0), 0.0)
        self._pos += delta * frac[:, None]
        self._pause_left = np.where(moving, 0.0, pause_left)
        n_arr = int(arrive.sum())
        if n_arr:
            self._pos[arrive] = self._dest[arrive]
            spent = dist[arrive] / self._speed[arrive]
            self._pause_left[arrive] = rng.uniform(*self.pause_s, n_arr) - (budget_s[arrive] - spent)
            self._dest[arrive] = self._uniform_points(rng, n_arr)
            self._speed[arrive] = rng.uniform(*self.speed_mps, n_arr)
        return self._pos.copy()


# direction codes for grid models: 0 +x (east), 1 +y (north), 2 -x (west), 3 -y (south)
_DIR_XY = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


class ManhattanGrid(_Synthetic):
    """Manhattan grid: users drive along streets spaced ``block_m`` apart (from the area's lower-left corner).

    At each crossing a user goes straight with probability ``1 - turn_prob`` and turns left or right with
    ``turn_prob / 2`` each; a move that would leave the grid is replaced by another allowed one (a U-turn
    only at a dead end). Speed is drawn per user from U[speed_mps] at reset. Several crossings can be passed
    in one step.
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
        self.n_blocks = np.array(
            [int(area.width_m // self.block_m), int(area.height_m // self.block_m)], dtype=np.int64
        )
        if (self.n_blocks < 1).any():
            raise ValidationError(f"block_m={block_m} is larger than the area ({area.width_m} x {area.height_m} m)")
        self._origin = np.array([area.xmin_m, area.ymin_m])
        self._dir = np.zeros(self.n_users, dtype=np.int64)
        self._speed = np.zeros(self.n_users)

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]:
        self._rng = rng
        n = self.n_users
        # start on a random street: pick the axis, a street index and a uniform position along it
        self._dir = rng.integers(0, 4, n)
        along_x = self._dir % 2 == 0
        street = np.where(along_x, rng.integers(0, self.n_blocks[1] + 1, n), rng.integers(0, self.n_blocks[0] + 1, n))
        span = np.where(along_x, self.n_blocks[0], self.n_blocks[1]) * self.block_m
        offset = rng.uniform(0.0, 1.0, n) * span
        grid = np.where(along_x[:, None], np.column_stack([offset, street * self.block_m]),
                        np.column_stack([street * self.block_m, offset]))
        self._pos = self._origin + grid
        self._speed = rng.uniform(*self.speed_mps, n)
        return self._pos.copy()

    def _choose(self, rng: np.random.Generator, who: NDArray[np.int64], cell: NDArray[np.int64]) -> None:
        """New direction for users ``who`` standing on crossings ``cell`` (integer grid coordinates)."""
        d = self._dir[who]
        u = rng.random(who.size)
        half = self.turn_prob / 2
        pref = np.where(u < half, (d + 1) % 4, np.where(u < self.turn_prob, (d + 3) % 4, d))
        # fallbacks in order: chosen, straight, the two turns in random order, back (U-turn)
        flip = rng.random(who.size) < 0.5
        turn_a = np.where(flip, (d + 1) % 4, (d + 3) % 4)
        cands = np.stack([pref, d, turn_a, (turn_a + 2) % 4, (d + 2) % 4], axis=1)
        step = _DIR_XY[cands].astype(np.int64)  # (n, 5, 2)
        nxt = cell[:, None, :] + step
        ok = (nxt >= 0).all(axis=2) & (nxt <= self.n_blocks).all(axis=2)
        first = np.argmax(ok, axis=1)
        self._dir[who] = cands[np.arange(who.size), first]

    def step(self, dt_s: float) -> NDArray[np.float64]:
        rng = self._need_rng()
        remaining = self._speed * _check_dt(dt_s)
        b = self.block_m
        todo = np.arange(self.n_users)
        for _ in range(10_000):
            if todo.size == 0:
                break
            d = self._dir[todo]
            axis = d % 2
            sign = np.where(d < 2, 1.0, -1.0)
            coord = self._pos[todo, axis] - self._origin[axis]
            k = coord / b
            kr = np.round(k)
            on_cross = np.abs(k - kr) < 1e-9
            nxt = np.where(sign > 0, np.where(on_cross, kr + 1, np.ceil(k)), np.where(on_cross, kr - 1, np.floor(k)))
            to_cross = np.abs(nxt * b - coord)
            rem = remaining[todo]
            stop = rem < to_cross
            move = np.where(stop, rem, to_cross)
            self._pos[todo, axis] += sign * move
            remaining[todo] = rem - move
            hit = todo[~stop]
            if hit.size:
                hd = self._dir[hit]
                ax = hd % 2
                # snap to the crossing to avoid drift, then choose where to go
                self._pos[hit, ax] = self._origin[ax] + nxt[~stop] * b
                cell = np.rint((self._pos[hit] - self._origin) / b).astype(np.int64)
                self._choose(rng, hit, cell)
            todo = hit[remaining[hit] > 0]
        return self._pos.copy()
