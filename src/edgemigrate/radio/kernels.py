"""Compiled per-user association loop (Numba): one pass over users, a few candidate stations each."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _nearest(x, y, ox, oy, cell, nx, ny, cand, cand_x, cand_y):
    i = int(math.floor((x - ox) / cell))
    j = int(math.floor((y - oy) / cell))
    i = min(max(i, 0), nx - 1)
    j = min(max(j, 0), ny - 1)
    c = i * ny + j
    best = -1
    bd2 = np.inf
    for k in range(cand.shape[1]):
        dx = cand_x[c, k] - x
        dy = cand_y[c, k] - y
        d2 = dx * dx + dy * dy
        if d2 < bd2:
            bd2 = d2
            best = cand[c, k]
    return best, math.sqrt(bd2)


@njit(cache=True)
def nearest_kernel(user_xy, ox, oy, cell, nx, ny, cand, cand_x, cand_y, out_station, out_dist):
    for u in range(user_xy.shape[0]):
        out_station[u], out_dist[u] = _nearest(user_xy[u, 0], user_xy[u, 1], ox, oy, cell, nx, ny, cand, cand_x,
                                               cand_y)


@njit(cache=True)
def associate_kernel(user_xy, current, ox, oy, cell, nx, ny, cand, cand_x, cand_y, st_xy, coverage, keep_ratio,
                     ref_m, out_station, out_handed, out_dist):
    """Strongest station with hysteresis. With log-distance path loss, "the best station's RSSI beats the
    current one's by less than H dB" is ``max(d_cur, d0) < max(d_best, d0) * 10^(H / (10 n))``, so no
    logarithm is taken per user (``keep_ratio`` is that power of ten)."""
    for u in range(user_xy.shape[0]):
        x = user_xy[u, 0]
        y = user_xy[u, 1]
        best, bd = _nearest(x, y, ox, oy, cell, nx, ny, cand, cand_x, cand_y)
        cur = current[u]
        out_handed[u] = False
        if cur >= 0:
            cd = math.hypot(x - st_xy[cur, 0], y - st_xy[cur, 1])
            if cd <= coverage[cur] and (best == cur or max(cd, ref_m) < max(bd, ref_m) * keep_ratio):
                out_station[u] = cur
                out_dist[u] = cd
                continue
        if bd <= coverage[best]:
            out_station[u] = best
            out_dist[u] = bd
            out_handed[u] = cur >= 0 and best != cur
        else:
            out_station[u] = -1
            out_dist[u] = np.inf
