"""Synthetic cabspotting tracks for tests: cabs driving loops, two cabs under one id, GPS glitches."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

T0 = 1_213_000_000  # 2008-06-09, inside the real set's period
M_PER_DEG = 111_195.0

# two loops of 1.5 km radius ~6 km apart in San Francisco: the cabs are always >= 3 km apart, which no
# plausible speed covers in the <= 40 s between their fixes
CENTRE_A = (37.75, -122.42)
CENTRE_B = (37.80, -122.39)


def loop(centre: tuple[float, float], t: NDArray[np.float64], speed_mps: float = 8.0,
         radius_m: float = 1500.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Positions of a cab driving a circle about ``centre`` at ``speed_mps``, rounded like the real files."""
    angle = speed_mps * (t - T0) / radius_m
    lat = centre[0] + radius_m * np.sin(angle) / M_PER_DEG
    lon = centre[1] + radius_m * np.cos(angle) / (M_PER_DEG * np.cos(np.radians(centre[0])))
    return np.round(lat, 5), np.round(lon, 5)


def single(hours: float = 4.0, seed: int = 0) -> tuple[NDArray[np.float64], ...]:
    """One cab reporting every 60 +- 5 s: (t, lat, lon)."""
    rng = np.random.default_rng(seed)
    n = int(hours * 60)
    t = T0 + 60.0 * np.arange(n) + rng.integers(-5, 6, n)
    return (t, *loop(CENTRE_A, t))


def interleaved(hours: float = 4.0, seed: int = 0) -> tuple[NDArray[np.float64], ...]:
    """Two cabs reporting in turn under one id, each every 60 +- 5 s: (t, lat, lon, vehicle 0/1), by time."""
    rng = np.random.default_rng(seed)
    n = int(hours * 60)
    t_a = T0 + 60.0 * np.arange(n) + rng.integers(-5, 6, n)
    t_b = T0 + 30.0 + 60.0 * np.arange(n) + rng.integers(-5, 6, n)
    t = np.concatenate([t_a, t_b])
    lat, lon = (np.concatenate(p) for p in zip(loop(CENTRE_A, t_a), loop(CENTRE_B, t_b), strict=True))
    vehicle = np.repeat([0, 1], n)
    order = np.argsort(t, kind="stable")
    return t[order], lat[order], lon[order], vehicle[order]


def write_cab(folder: Path, cab: str, t: NDArray[np.float64], lat: NDArray[np.float64], lon: NDArray[np.float64],
              *, gz: bool = False) -> Path:
    """Write ``new_<cab>.txt`` (or ``.txt.gz``) in the real format: 'lat lon occupancy time', newest first."""
    lines = [f"{la:.5f} {lo:.5f} {i % 2} {int(ti)}" for i, (ti, la, lo) in enumerate(zip(t, lat, lon, strict=True))]
    data = ("\n".join(reversed(lines)) + "\n").encode()
    path = folder / f"new_{cab}.txt{'.gz' if gz else ''}"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path
