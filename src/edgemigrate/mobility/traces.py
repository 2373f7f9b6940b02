"""Containers for mobility data: raw GPS fixes as read (:class:`RawTraces`) and resampled, projected
trajectories on the simulation tick (:class:`Trajectories`, saved as a compact ``.npz``).

The ``.npz`` import format (version 1) holds the arrays ``xy_m`` (T, U, 2) float64, ``active`` (T, U) bool,
``ids`` (U,) unicode, and ``meta``: a 0-d unicode array with a JSON object carrying ``format``
(``"edgemigrate.trajectories"``), ``version``, ``t0_s``, ``dt_s``, ``origin_lat``/``origin_lon`` of the
:class:`~edgemigrate.core.geo.LocalProjection` and free-form provenance (source file, its sha256, the reader
and its options, cleaning statistics). It is loaded with ``allow_pickle=False``: nothing in it is executed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.core.geo import LocalProjection

TRAJECTORY_FORMAT = "edgemigrate.trajectories"
TRAJECTORY_VERSION = 1
MAX_REASONS_KEPT = 5
"""How many skip reasons a lenient read keeps (the count is always exact)."""

TimeLike = float | int | str | datetime | None

_NUMERIC = re.compile(r"^[+-]?\d+(\.\d*)?$")


def parse_time(value: TimeLike, *, what: str = "time") -> float | None:
    """UNIX seconds from a number, a numeric string, an ISO-8601 string or a ``datetime``.

    ISO strings and datetimes without a UTC offset are taken as UTC (append ``+01:00`` for Rome local
    time). ``None`` stays ``None``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{what}: expected UNIX seconds or an ISO-8601 time, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValidationError(f"{what}: expected a finite time, got {value!r}")
        return float(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return dt.timestamp()
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC.match(text):
            return float(text)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(
                f"{what}: {value!r} is neither UNIX seconds nor an ISO-8601 time (e.g. 2008-05-18T10:00:00+00:00)"
            ) from None
        return parse_time(dt, what=what)
    raise ValidationError(f"{what}: expected UNIX seconds or an ISO-8601 time, got {type(value).__name__}")


def check_window(start_s: float | None, end_s: float | None) -> None:
    if start_s is not None and end_s is not None and not end_s > start_s:
        raise ValidationError(f"time window is empty: end ({end_s}) must be after start ({start_s})")


@dataclass(frozen=True, slots=True)
class RawTraces:
    """GPS fixes as read from a trace file, one ascending-time track per id.

    ``t_s[i]``, ``lat[i]``, ``lon[i]`` are float64 arrays of the fixes of ``ids[i]`` (UNIX seconds, WGS84
    degrees), sorted by time with duplicate timestamps removed (the first fix read wins). ``skipped_lines``
    counts malformed lines skipped by a lenient read; ``skip_reasons`` keeps the first few
    ``"path:line: reason"`` messages. ``source``/``sha256`` identify the input, ``reader``/``options`` how it
    was read (stored as provenance by :meth:`Trajectories.save`).
    """

    ids: tuple[str, ...]
    t_s: tuple[NDArray[np.float64], ...]
    lat: tuple[NDArray[np.float64], ...]
    lon: tuple[NDArray[np.float64], ...]
    source: str = ""
    sha256: str = ""
    reader: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    skipped_lines: int = 0
    skip_reasons: tuple[str, ...] = ()
    lines_read: int = 0

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.t_s) == len(self.lat) == len(self.lon) == n):
            raise ValidationError("RawTraces: ids, t_s, lat and lon must have the same length")
        if len(set(self.ids)) != n:
            raise ValidationError("RawTraces: duplicate ids")
        for i in range(n):
            if not (self.t_s[i].shape == self.lat[i].shape == self.lon[i].shape and self.t_s[i].ndim == 1):
                raise ValidationError(f"RawTraces: arrays of id '{self.ids[i]}' differ in shape")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def n_ids(self) -> int:
        return len(self.ids)

    @property
    def n_fixes(self) -> int:
        return int(sum(t.size for t in self.t_s))

    def time_range_s(self) -> tuple[float, float]:
        """(first, last) fix time over all ids; raises if there is no fix at all."""
        firsts = [t[0] for t in self.t_s if t.size]
        if not firsts:
            raise ValidationError(f"{self.source or 'traces'}: no fixes (check the ids and the time window)")
        return float(min(firsts)), float(max(t[-1] for t in self.t_s if t.size))

    @staticmethod
    def from_lists(
        tracks: Mapping[str, tuple[Any, Any, Any]],
        **kwargs: Any,
    ) -> RawTraces:
        """Build from ``{id: (t, lat, lon)}`` sequences in any order; sorts each track, drops repeated times.

        Ids keep the mapping's order.
        """
        ids, ts, lats, lons = [], [], [], []
        for key, (t, la, lo) in tracks.items():
            t = np.asarray(t, dtype=np.float64)
            la = np.asarray(la, dtype=np.float64)
            lo = np.asarray(lo, dtype=np.float64)
            order = np.argsort(t, kind="stable")
            t, la, lo = t[order], la[order], lo[order]
            if t.size > 1:
                keep = np.concatenate([[True], np.diff(t) > 0])
                t, la, lo = t[keep], la[keep], lo[keep]
            ids.append(str(key))
            ts.append(t)
            lats.append(la)
            lons.append(lo)
        return RawTraces(tuple(ids), tuple(ts), tuple(lats), tuple(lons), **kwargs)


@dataclass(frozen=True, slots=True)
class Trajectories:
    """User positions on a regular time grid, in local metres.

    Row ``k`` is time ``t0_s + k * dt_s`` (UNIX seconds). ``xy_m[k, u]`` is always finite: before a user's
    first fix it holds the first position, after the last fix the last position, in a gap the linear
    interpolation. ``active[k, u]`` says whether the position is backed by fixes (inside the fix span, not
    in an over-long gap, not across a glitch jump, inside the scenario area).
    """

    ids: tuple[str, ...]
    t0_s: float
    dt_s: float
    xy_m: NDArray[np.float64]
    active: NDArray[np.bool_]
    projection: LocalProjection
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy_m, dtype=np.float64)
        active = np.asarray(self.active, dtype=bool)
        n_users = len(self.ids)
        if xy.ndim != 3 or xy.shape[1:] != (n_users, 2):
            raise ValidationError(f"xy_m has shape {xy.shape}, expected (T, {n_users}, 2)")
        if active.shape != xy.shape[:2]:
            raise ValidationError(f"active has shape {active.shape}, expected {xy.shape[:2]}")
        if not (math.isfinite(self.dt_s) and self.dt_s > 0):
            raise ValidationError(f"dt_s must be a positive number, got {self.dt_s}")
        if not math.isfinite(self.t0_s):
            raise ValidationError(f"t0_s must be finite, got {self.t0_s}")
        if not np.isfinite(xy).all():
            raise ValidationError("xy_m holds non-finite values")
        object.__setattr__(self, "xy_m", xy)
        object.__setattr__(self, "active", active)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def n_steps(self) -> int:
        return int(self.xy_m.shape[0])

    @property
    def n_users(self) -> int:
        return len(self.ids)

    @property
    def duration_s(self) -> float:
        return (self.n_steps - 1) * self.dt_s

    def times_s(self) -> NDArray[np.float64]:
        return self.t0_s + self.dt_s * np.arange(self.n_steps, dtype=np.float64)

    def save(self, path: str | Path) -> Path:
        """Write the compressed ``.npz`` import file (see module docstring) and return its path."""
        path = Path(path)
        meta = {
            "format": TRAJECTORY_FORMAT,
            "version": TRAJECTORY_VERSION,
            "t0_s": self.t0_s,
            "dt_s": self.dt_s,
            "origin_lat": self.projection.origin_lat,
            "origin_lon": self.projection.origin_lon,
            "provenance": dict(self.metadata),
        }
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                xy_m=self.xy_m,
                active=self.active,
                ids=np.asarray(self.ids, dtype=np.str_) if self.ids else np.zeros(0, dtype="<U1"),
                meta=np.asarray(json.dumps(meta, sort_keys=True, default=str)),
            )
        return path

    @staticmethod
    def load(path: str | Path) -> Trajectories:
        """Read a file written by :meth:`save`; anything else raises :class:`DataFormatError`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = {"xy_m", "active", "ids", "meta"} - set(npz.files)
                if missing:
                    raise DataFormatError(path, None, f"not an edgemigrate trajectory file (missing {sorted(missing)})")
                meta = json.loads(str(npz["meta"][()]))
                xy, active, ids = npz["xy_m"], npz["active"], npz["ids"]
        except FileNotFoundError:
            raise DataFormatError(path, None, "no such file") from None
        except DataFormatError:
            raise
        except (OSError, ValueError, EOFError) as exc:  # zip/npy damage, JSON damage, pickled arrays
            raise DataFormatError(path, None, f"not a readable .npz trajectory file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != TRAJECTORY_FORMAT:
            raise DataFormatError(path, None, "not an edgemigrate trajectory file (wrong 'format' in meta)")
        if meta.get("version") != TRAJECTORY_VERSION:
            raise DataFormatError(
                path, None, f"trajectory format version {meta.get('version')!r} is not supported (expected 1)"
            )
        try:
            return Trajectories(
                ids=tuple(str(i) for i in ids.tolist()),
                t0_s=float(meta["t0_s"]),
                dt_s=float(meta["dt_s"]),
                xy_m=xy,
                active=active,
                projection=LocalProjection(float(meta["origin_lat"]), float(meta["origin_lon"])),
                metadata=meta.get("provenance", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(path, None, f"inconsistent trajectory file: {exc}") from None
