"""User -> base station association: strongest RSSI with hysteresis and a handover interruption time.

Fast path for many users: the area is rasterised once into cells; each cell keeps the few stations that can
be nearest to any point inside it (a station is a candidate when its distance to the cell centre is within
the nearest distance + the cell diagonal). Each tick then evaluates only those candidates per user, in one
compiled pass (``radio/kernels.py``), so association costs O(users x candidates) instead of
O(users x stations). With equal transmit powers the
strongest station is the nearest one, which is what the candidates guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from edgemigrate.core.errors import ValidationError
from edgemigrate.radio.kernels import associate_kernel, nearest_kernel
from edgemigrate.radio.pathloss import LogDistancePathLoss


@dataclass(frozen=True, slots=True)
class HandoverConfig:
    """Hysteresis (dB) a new station must beat the current one by, and the interruption per handover (s)."""

    hysteresis_db: float = 7.0
    handover_time_s: float = 0.5

    def __post_init__(self) -> None:
        if self.hysteresis_db < 0 or self.handover_time_s < 0:
            raise ValidationError("radio.hysteresis_db and radio.handover_time_s must be >= 0")


class Associator:
    """Associates users with stations each tick. Holds only immutable geometry; per-user state is passed in."""

    def __init__(self, station_xy_m: NDArray[np.float64], coverage_m: NDArray[np.float64],
                 pathloss: LogDistancePathLoss, handover: HandoverConfig, cell_m: float | None = None) -> None:
        xy = np.asarray(station_xy_m, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise ValidationError("at least one base station with (x, y) is required")
        self.xy = xy
        self.coverage_m = np.broadcast_to(np.asarray(coverage_m, dtype=np.float64), (len(xy),)).copy()
        self.pathloss = pathloss
        self.handover = handover
        self._tree = cKDTree(xy)
        span = np.ptp(xy, axis=0).max() if len(xy) > 1 else 1000.0
        # cells about the size of the mean station spacing keep the candidate lists short
        if cell_m is None:
            cell_m = max(50.0, float(span) / max(1.0, np.sqrt(len(xy))) / 4)
        pad = float(self.coverage_m.max())
        self._origin = xy.min(axis=0) - pad
        extent = xy.max(axis=0) + pad - self._origin
        self._cell = float(cell_m)
        self._shape = np.maximum(np.ceil(extent / self._cell).astype(np.int64), 1)
        gx, gy = np.meshgrid(np.arange(self._shape[0]), np.arange(self._shape[1]), indexing="ij")
        centres = self._origin + (np.stack([gx.ravel(), gy.ravel()], axis=1) + 0.5) * self._cell
        d0, _ = self._tree.query(centres)
        radius = d0 + self._cell * np.sqrt(2) / 2 * 2.0001  # any point in the cell: nearest within d0 + diagonal
        lists = self._tree.query_ball_point(centres, radius)
        width = max(len(c) for c in lists)
        cand = np.full((len(lists), width), -1, dtype=np.int64)
        for i, c in enumerate(lists):
            cand[i, : len(c)] = c
        self._cand = cand
        # candidate coordinates per cell, padded with a far-away point so padding never wins
        far = 1e30
        self._cand_x = np.where(cand >= 0, xy[np.maximum(cand, 0), 0], far)
        self._cand_y = np.where(cand >= 0, xy[np.maximum(cand, 0), 1], far)

    def _raster(self) -> tuple[float, float, float, int, int]:
        return float(self._origin[0]), float(self._origin[1]), self._cell, int(self._shape[0]), int(self._shape[1])

    def nearest(self, user_xy: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Nearest station and its distance for each user (exact for users inside the raster)."""
        user_xy = np.ascontiguousarray(user_xy, dtype=np.float64)
        station = np.empty(len(user_xy), dtype=np.int64)
        dist = np.empty(len(user_xy))
        nearest_kernel(user_xy, *self._raster(), self._cand, self._cand_x, self._cand_y, station, dist)
        return station, dist

    def step(self, user_xy: NDArray[np.float64], current: NDArray[np.int64]
             ) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64]]:
        """One association round.

        ``current`` holds each user's station (-1 = none). Returns ``(station, handed_over, distance_m)``.
        A user switches to the best station when its RSSI beats the current station's by the hysteresis,
        or when the current station is out of coverage. Users outside every coverage get -1.
        """
        user_xy = np.ascontiguousarray(user_xy, dtype=np.float64)
        n = len(user_xy)
        station = np.empty(n, dtype=np.int64)
        handed = np.empty(n, dtype=np.bool_)
        dist = np.empty(n)
        pl = self.pathloss
        keep_ratio = 10.0 ** (self.handover.hysteresis_db / (10.0 * pl.exponent))
        associate_kernel(user_xy, np.ascontiguousarray(current, dtype=np.int64), *self._raster(), self._cand,
                         self._cand_x, self._cand_y, self.xy, self.coverage_m, keep_ratio, pl.ref_distance_m,
                         station, handed, dist)
        return station, handed, dist
