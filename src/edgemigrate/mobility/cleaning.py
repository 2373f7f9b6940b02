"""Raw fixes -> :class:`Trajectories`: drop GPS glitches, cut gaps, resample, project, clip.

:func:`to_trajectories` does, per track:

0. **Two vehicles under one id.** Some real cab files hold two vehicles reporting under one id: consecutive
   fixes alternate between places kilometres apart, for days. Left alone, step 1 would keep one vehicle and
   drop the other's fixes as glitches. :func:`split_interleaved` assigns each fix to the track whose last
   fix it is reachable from at a plausible speed (``max_speed_mps``) and calls the id interleaved only when
   two tracks are both sustained (:data:`INTERLEAVE_MIN_FIXES` fixes each that follow their track's previous
   fix within ``max_gap_s``), alternate (:data:`INTERLEAVE_MIN_SWITCHES` switches) and both report at the
   same time for long (:data:`INTERLEAVE_MIN_OVERLAP_S`). Such an id becomes two users, ``<id>#1`` (the one
   reporting first) and ``<id>#2``. A GPS glitch (a lone fix), a relocation (one track after the other) or
   even many glitches over days (lone fixes, hours apart) never qualify and are handled by step 1 as before.
1. **Glitches.** A speed between consecutive fixes above ``max_speed_mps`` (default
   :data:`MAX_PLAUSIBLE_SPEED_MPS` = 50 m/s = 180 km/h; FORMATS.md reports GPS glitches with > 100 m/s in the
   real cabspotting traces) is implausible. First, isolated spikes (a fix whose incoming AND outgoing speeds are
   implausible, or an end fix whose only segment is implausible while its neighbour's is not) are removed,
   repeatedly, vectorised. Then a forward pass drops any fix still implausible from the last kept one; when
   more than :data:`MAX_GLITCH_RUN` fixes in a row would be dropped, the first of them is kept instead and
   treated as a relocation (a *break*: no interpolation across the jump).
2. **Gaps.** Consecutive fixes further apart than ``max_gap_s`` (default :data:`DEFAULT_MAX_GAP_S`) are also a
   break: the user is inactive in between (a taxi with its GPS off is not known to be anywhere).
3. **Resampling** on the grid ``t0_s + k * dt_s`` by linear interpolation of the projected positions; no
   extrapolation: outside a user's first..last fix the user is inactive (positions are held, see
   :class:`Trajectories`).
4. **Projection** with :class:`~edgemigrate.core.geo.LocalProjection` about ``projection`` or, if None, the
   centroid (mean lat, mean lon) of all kept fixes.
5. **Area.** Positions outside ``area`` (local metres) are inactive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.geo import Area, LocalProjection, haversine_m
from edgemigrate.core.units import EARTH_RADIUS_M
from edgemigrate.mobility.traces import RawTraces, TimeLike, Trajectories, parse_time

MAX_PLAUSIBLE_SPEED_MPS = 50.0
"""Speeds between fixes above this (180 km/h) are GPS glitches (FORMATS.md: glitches show > 100 m/s)."""

MAX_GLITCH_RUN = 5
"""More consecutive implausible fixes than this are taken as a real relocation, not a glitch."""

DEFAULT_MAX_GAP_S = 600.0
"""Fixes further apart than this (10 min; cabspotting samples every ~58 s, Rome every ~7 s) are not bridged."""

MAX_TRAJECTORY_BYTES = 4 << 30
"""Refuse to build a (T, U, 2) float64 array larger than this; cut the time window or raise dt_s instead."""

INTERLEAVE_MIN_FIXES = 30
"""Each of two interleaved vehicles has at least this many fixes that follow its previous fix within
``max_gap_s`` (half an hour at cabspotting's ~1 fix/min); glitches are lone fixes and never add up to this."""

INTERLEAVE_MIN_SWITCHES = 20
"""...the fixes switch between the two at least this often (a glitch switches twice, a relocation once)..."""

INTERLEAVE_MIN_OVERLAP_S = 3600.0
"""...and both report (fixes within ``max_gap_s`` of each other) at the same time for at least this long in
total: two vehicles on the road together, not a burst of bad fixes, which is over within minutes."""

_MAX_OPEN_TRACKS = 8
"""Tracks a fix is compared with while splitting; beyond this the stalest (a glitch's, usually) is closed."""

_SPIKE_PASSES = 10


@dataclass(frozen=True, slots=True)
class TrackCleaning:
    """Result of :func:`clean_track`: which fixes to keep and where interpolation must not bridge."""

    keep: NDArray[np.bool_]
    break_after: NDArray[np.bool_]
    """For the KEPT fixes: True at i when the segment (i, i+1) must not be interpolated."""
    glitches_dropped: int
    relocations: int


def _speeds(t: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    d_m = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dt > 0, d_m / np.where(dt > 0, dt, 1.0), np.inf)


def clean_track(
    t_s: NDArray[np.float64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    *,
    max_speed_mps: float = MAX_PLAUSIBLE_SPEED_MPS,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> TrackCleaning:
    """Glitch removal and break detection for one ascending-time track (see module docstring)."""
    n = t_s.size
    keep = np.ones(n, dtype=bool)
    if n >= 3:
        for _ in range(_SPIKE_PASSES):
            idx = np.flatnonzero(keep)
            if idx.size < 3:
                break
            fast = _speeds(t_s[idx], lat[idx], lon[idx]) > max_speed_mps
            if not fast.any():
                break
            fast_in = np.concatenate([[fast[0] and not fast[1]], fast])
            fast_out = np.concatenate([fast, [fast[-1] and not fast[-2]]])
            spike = fast_in & fast_out
            if not spike.any():
                break
            keep[idx[spike]] = False
    relocations = 0
    idx = np.flatnonzero(keep)
    breaks: set[int] = set()  # original index j: a break precedes kept fix j
    if idx.size >= 2 and (_speeds(t_s[idx], lat[idx], lon[idx]) > max_speed_mps).any():
        keep[:] = False
        keep[idx[0]] = True
        anchor, pos, run_start = idx[0], 1, -1
        while pos < idx.size:
            j = idx[pos]
            dt = t_s[j] - t_s[anchor]
            d_m = float(haversine_m(lat[anchor], lon[anchor], lat[j], lon[j]))
            if dt > 0 and d_m / dt <= max_speed_mps:
                keep[j] = True
                anchor, run_start = j, -1
                pos += 1
                continue
            if run_start < 0:
                run_start = pos
            if pos - run_start + 1 > MAX_GLITCH_RUN:
                j0 = idx[run_start]
                keep[j0] = True
                breaks.add(int(j0))
                relocations += 1
                anchor, pos, run_start = j0, run_start + 1, -1
            else:
                pos += 1
        # a trailing run shorter than MAX_GLITCH_RUN stays dropped (glitches at the end of a track)
    kept = np.flatnonzero(keep)
    break_after = np.zeros(kept.size, dtype=bool)
    if kept.size >= 2:
        break_after[:-1] = np.diff(t_s[kept]) > max_gap_s
        if breaks:
            starts = np.isin(kept, np.fromiter(breaks, dtype=np.int64))
            break_after[:-1] |= starts[1:]
    return TrackCleaning(keep, break_after, int(n - kept.size), relocations)


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    # scalar haversine (as core.geo.haversine_m): the track assignment calls it per fix and per track
    k = math.pi / 180.0
    p1, p2 = lat1 * k, lat2 * k
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * k / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def _assign_tracks(t_s: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64],
                   max_speed_mps: float, max_gap_s: float) -> NDArray[np.int64]:
    """Label each fix with a track: the nearest open track whose last fix it is reachable from at
    ``max_speed_mps``, else a new track. Tracks heard from within ``max_gap_s`` go first: after a long
    silence anything nearby is "reachable", and a stale track (an old glitch's, say) must not take fixes
    from the vehicle that reported a minute ago."""
    n = t_s.size
    label = np.empty(n, dtype=np.int64)
    last: list[list[float]] = []  # per track: [t, lat, lon]
    open_tracks: list[int] = []
    tl, la, lo = t_s.tolist(), lat.tolist(), lon.tolist()
    for i in range(n):
        best, best_key = -1, (True, math.inf)
        for k in open_tracks:
            t0, lat0, lon0 = last[k]
            d = _distance_m(lat0, lon0, la[i], lo[i])
            key = (tl[i] - t0 > max_gap_s, d)
            if d <= max_speed_mps * (tl[i] - t0) and key < best_key:
                best, best_key = k, key
        if best < 0:
            if len(open_tracks) >= _MAX_OPEN_TRACKS:
                open_tracks.remove(min(open_tracks, key=lambda k: last[k][0]))
            best = len(last)
            last.append([0.0, 0.0, 0.0])
            open_tracks.append(best)
        last[best][:] = (tl[i], la[i], lo[i])
        label[i] = best
    return label


def _reporting(t: NDArray[np.float64], max_gap_s: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The intervals (starts, ends) between consecutive fixes at most ``max_gap_s`` apart."""
    ok = np.diff(t) <= max_gap_s
    return t[:-1][ok], t[1:][ok]


def _overlap_s(x: tuple[NDArray[np.float64], NDArray[np.float64]],
               y: tuple[NDArray[np.float64], NDArray[np.float64]]) -> float:
    """Total length of the intersection of two sorted lists of disjoint intervals."""
    total, i, j = 0.0, 0, 0
    (xs, xe), (ys, ye) = x, y
    while i < xs.size and j < ys.size:
        total += max(0.0, min(xe[i], ye[j]) - max(xs[i], ys[j]))
        if xe[i] <= ye[j]:
            i += 1
        else:
            j += 1
    return float(total)


def split_interleaved(
    t_s: NDArray[np.float64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    *,
    max_speed_mps: float = MAX_PLAUSIBLE_SPEED_MPS,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """If one ascending-time track holds two vehicles reporting in turn, the sorted indices of each vehicle's
    fixes (the one reporting first first; together every index exactly once), else None (module docstring)."""
    n = t_s.size
    if n < 2 * INTERLEAVE_MIN_FIXES:
        return None
    # every switch between vehicles far apart is an implausible step, so few such steps rule it out cheaply
    if int((_speeds(t_s, lat, lon) > max_speed_mps).sum()) < INTERLEAVE_MIN_SWITCHES:
        return None
    label = _assign_tracks(t_s, lat, lon, max_speed_mps, max_gap_s)
    if label.max() < 1:
        return None
    # per track, its fixes that follow the track's previous fix within max_gap_s
    order = np.lexsort((t_s, label))
    same = label[order][1:] == label[order][:-1]
    close = same & (np.diff(t_s[order]) <= max_gap_s)
    sustained = np.bincount(label[order][1:][close], minlength=int(label.max()) + 1)
    a, b = (int(k) for k in np.argsort(-sustained, kind="stable")[:2])
    if sustained[b] < INTERLEAVE_MIN_FIXES:
        return None
    parts = [np.flatnonzero(label == a), np.flatnonzero(label == b)]
    seq = label[np.sort(np.concatenate(parts))]
    if int((seq[1:] != seq[:-1]).sum()) < INTERLEAVE_MIN_SWITCHES:
        return None
    if _overlap_s(*(_reporting(t_s[idx], max_gap_s) for idx in parts)) < INTERLEAVE_MIN_OVERLAP_S:
        return None
    rest = np.flatnonzero((label != a) & (label != b))
    if rest.size:
        # fixes of neither track (glitches, or a vehicle seen again after a GPS gap) go to the vehicle they
        # are the more plausible continuation of; step 1 then drops or keeps them as for any other track
        speed = np.empty((2, rest.size))
        for j, idx in enumerate(parts):
            pos = np.searchsorted(idx, rest)
            prev = idx[np.maximum(pos - 1, 0)]
            nxt = idx[np.minimum(pos, idx.size - 1)]
            use_prev = (pos > 0) & ((pos >= idx.size) | (t_s[rest] - t_s[prev] <= t_s[nxt] - t_s[rest]))
            near = np.where(use_prev, prev, nxt)
            d_m = haversine_m(lat[near], lon[near], lat[rest], lon[rest])
            speed[j] = d_m / np.maximum(np.abs(t_s[rest] - t_s[near]), 1e-9)
        to_b = speed[1] < speed[0]
        parts = [np.sort(np.concatenate([parts[0], rest[~to_b]])), np.sort(np.concatenate([parts[1], rest[to_b]]))]
    parts.sort(key=lambda idx: int(idx[0]))
    return parts[0], parts[1]


def to_trajectories(
    raw: RawTraces,
    *,
    dt_s: float,
    projection: LocalProjection | None = None,
    area: Area | None = None,
    max_speed_mps: float = MAX_PLAUSIBLE_SPEED_MPS,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    start: TimeLike = None,
    end: TimeLike = None,
    split: bool = True,
) -> Trajectories:
    """Clean, resample on a ``dt_s`` grid, project and clip ``raw`` (see module docstring).

    The grid runs from ``start`` (default: the first fix) to ``end`` (default: the last fix) inclusive. Ids
    without any fix left after cleaning are dropped (counted in ``metadata['cleaning']['users_dropped']``).
    With ``split``, an id holding two interleaved vehicles becomes two users ``<id>#1``, ``<id>#2`` (counted in
    ``metadata['cleaning']['ids_split']``).
    """
    if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0):
        raise ValidationError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
    if not (max_speed_mps > 0 and max_gap_s > 0):
        raise ValidationError("max_speed_mps and max_gap_s must be positive")
    cleaned, counts = _clean_all(raw, max_speed_mps=max_speed_mps, max_gap_s=max_gap_s, split=split)
    if projection is None:
        all_lat = np.concatenate([c.lat for c in cleaned])
        all_lon = np.concatenate([c.lon for c in cleaned])
        projection = LocalProjection(float(all_lat.mean()), float(all_lon.mean()))
    grid = _time_grid(cleaned, dt_s, start, end)
    xy, active = _resample(cleaned, grid, projection)
    if area is not None:
        active &= area.contains(xy)
    metadata = {
        "source": raw.source,
        "sha256": raw.sha256,
        "reader": raw.reader,
        "reader_options": dict(raw.options),
        "lines_read": raw.lines_read,
        "skipped_lines": raw.skipped_lines,
        "cleaning": {
            "fixes_in": raw.n_fixes,
            "glitches_dropped": counts.glitches_dropped,
            "relocations": counts.relocations,
            "users_dropped": counts.tracks - len(cleaned),
            "ids_split": counts.ids_split,
            "max_speed_mps": max_speed_mps,
            "max_gap_s": max_gap_s,
            "area": None if area is None else [area.xmin_m, area.ymin_m, area.xmax_m, area.ymax_m],
        },
    }
    return Trajectories(
        ids=tuple(c.ident for c in cleaned),
        t0_s=float(grid[0]),  # the start itself (t0 + dt_s * 0.0)
        dt_s=float(dt_s),
        xy_m=xy,
        active=active,
        projection=projection,
        metadata=metadata,
    )


@dataclass(frozen=True, slots=True)
class _CleanTrack:
    """One user's kept fixes (steps 0-2 done) and where interpolation must not bridge."""

    ident: str
    t_s: NDArray[np.float64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    break_after: NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _CleaningCounts:
    glitches_dropped: int
    relocations: int
    ids_split: int
    tracks: int  # users before dropping the empty ones (ids, plus one per split id)


def _clean_all(raw: RawTraces, *, max_speed_mps: float, max_gap_s: float,
               split: bool) -> tuple[list[_CleanTrack], _CleaningCounts]:
    """Steps 0-2 for every id: split interleaved vehicles, drop glitches, find breaks; drop emptied users."""
    cleaned = []
    glitches = relocations = ids_split = ids_out = 0
    for i in range(raw.n_ids):
        t_i, lat_i, lon_i = raw.t_s[i], raw.lat[i], raw.lon[i]
        parts = (split_interleaved(t_i, lat_i, lon_i, max_speed_mps=max_speed_mps, max_gap_s=max_gap_s)
                 if split else None)
        if parts is None:
            pieces = [(raw.ids[i], t_i, lat_i, lon_i)]
        else:
            ids_split += 1
            pieces = [(f"{raw.ids[i]}#{k + 1}", t_i[idx], lat_i[idx], lon_i[idx]) for k, idx in enumerate(parts)]
        for ident, t, lat, lon in pieces:
            ids_out += 1
            c = clean_track(t, lat, lon, max_speed_mps=max_speed_mps, max_gap_s=max_gap_s)
            glitches += c.glitches_dropped
            relocations += c.relocations
            if c.keep.any():
                cleaned.append(_CleanTrack(ident, t[c.keep], lat[c.keep], lon[c.keep], c.break_after))
    if not cleaned:
        raise ValidationError(f"{raw.source or 'traces'}: no fixes to build trajectories from")
    return cleaned, _CleaningCounts(glitches, relocations, ids_split, ids_out)


def _time_grid(cleaned: list[_CleanTrack], dt_s: float, start: TimeLike, end: TimeLike) -> NDArray[np.float64]:
    """The resampling times (step 3): ``start`` (or the first fix) to ``end`` (or the last fix) inclusive,
    refused when the (T, U, 2) positions would exceed :data:`MAX_TRAJECTORY_BYTES`."""
    start_s, end_s = parse_time(start, what="start"), parse_time(end, what="end")
    t0 = start_s if start_s is not None else min(float(c.t_s[0]) for c in cleaned)
    t_last = end_s if end_s is not None else max(float(c.t_s[-1]) for c in cleaned)
    if t_last < t0:
        raise ValidationError(f"time window is empty: end ({t_last}) is before start ({t0})")
    n_steps = int(math.floor((t_last - t0) / dt_s + 1e-9)) + 1
    n_users = len(cleaned)
    size_bytes = n_steps * n_users * 2 * 8
    if size_bytes > MAX_TRAJECTORY_BYTES:
        raise ValidationError(
            f"{n_steps} steps x {n_users} users would need {size_bytes / (1 << 30):.1f} GiB; "
            "cut the time window (start/end) or the ids, or raise dt_s"
        )
    return t0 + dt_s * np.arange(n_steps, dtype=np.float64)


def _resample(cleaned: list[_CleanTrack], grid: NDArray[np.float64],
              projection: LocalProjection) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Steps 3-4: projected positions interpolated on ``grid``, active only between a user's first and last
    fix and not across a break."""
    xy = np.empty((grid.size, len(cleaned), 2), dtype=np.float64)
    active = np.empty((grid.size, len(cleaned)), dtype=bool)
    for u, c in enumerate(cleaned):
        t = c.t_s
        pts = projection.to_xy(c.lat, c.lon)
        xy[:, u, 0] = np.interp(grid, t, pts[:, 0])
        xy[:, u, 1] = np.interp(grid, t, pts[:, 1])
        act = (grid >= t[0]) & (grid <= t[-1])
        if c.break_after.any():
            seg = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 1)
            act &= ~(c.break_after[seg] & (grid > t[seg]))
        active[:, u] = act
    return xy, active
