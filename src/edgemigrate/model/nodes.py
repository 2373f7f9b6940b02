"""Edge nodes, base stations and the cloud as frozen, array-backed specs (validation only, no behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError


def _check_vec(name: str, arr: NDArray, n: int, *, positive: bool = True, integer: bool = False) -> NDArray:
    a = np.ascontiguousarray(arr, dtype=np.int64 if integer else np.float64)
    if a.shape != (n,):
        raise ValidationError(f"{name} has shape {a.shape}, expected ({n},)")
    if not np.isfinite(a).all():
        raise ValidationError(f"{name} has non-finite values")
    bad = a <= 0 if positive else a < 0
    if bad.any():
        raise ValidationError(f"{name}[{int(np.argmax(bad))}] = {a[bad][0]} must be {'> 0' if positive else '>= 0'}")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, slots=True)
class EdgeNodes:
    """N edge nodes (Liu et al. 2024, sec. III-A: CPU frequency f_n, bandwidth b_n, storage d_n;
    Ghafouri et al. 2022: idle/max power).

    ``wired_bps`` is b_n, the rate at which the node pulls image layers (eq. 2); ``backhaul_bps`` is the
    node's backhaul link eta (eqs. 1 and 9); ``coverage_m`` the radius within which its users are served
    without passive migration (III-B).
    """

    xy_m: NDArray[np.float64]
    cpu_hz: NDArray[np.float64]
    memory_bytes: NDArray[np.float64]
    storage_bytes: NDArray[np.float64]
    wired_bps: NDArray[np.float64]
    backhaul_bps: NDArray[np.float64]
    max_containers: NDArray[np.int64]
    coverage_m: NDArray[np.float64]
    idle_power_w: NDArray[np.float64]
    max_power_w: NDArray[np.float64]

    def __post_init__(self) -> None:
        xy = np.ascontiguousarray(self.xy_m, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise ValidationError(f"nodes.xy_m must have shape (N, 2) with N >= 1, got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValidationError("nodes.xy_m has non-finite values")
        xy.setflags(write=False)
        object.__setattr__(self, "xy_m", xy)
        n = len(xy)
        for f in fields(self):
            if f.name == "xy_m":
                continue
            positive = f.name not in ("idle_power_w", "max_power_w")
            object.__setattr__(self, f.name, _check_vec(f"nodes.{f.name}", getattr(self, f.name), n,
                                                        positive=positive, integer=f.name == "max_containers"))
        if (self.max_power_w < self.idle_power_w).any():
            raise ValidationError("nodes.max_power_w must be >= nodes.idle_power_w")

    @property
    def n(self) -> int:
        return len(self.xy_m)


@dataclass(frozen=True, slots=True)
class CloudNode:
    """The cloud: unlimited capacity (Liu et al. 2024 treat it as node n_{|N|+1}) behind a slow, distant
    link."""

    cpu_hz: float = 1e12
    wired_bps: float = 100e6
    backhaul_bps: float = 100e6
    hops: int = 10

    def __post_init__(self) -> None:
        for name in ("cpu_hz", "wired_bps", "backhaul_bps"):
            if not getattr(self, name) > 0:
                raise ValidationError(f"cloud.{name} must be > 0")
        if self.hops < 1:
            raise ValidationError("cloud.hops must be >= 1")


@dataclass(frozen=True, slots=True)
class BaseStations:
    """B base stations; ``node[b]`` is the edge node co-located with / wired to station b."""

    xy_m: NDArray[np.float64]
    coverage_m: NDArray[np.float64]
    max_users: NDArray[np.int64]
    node: NDArray[np.int64]

    def __post_init__(self) -> None:
        xy = np.ascontiguousarray(self.xy_m, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise ValidationError(f"stations.xy_m must have shape (B, 2), got {xy.shape}")
        xy.setflags(write=False)
        object.__setattr__(self, "xy_m", xy)
        b = len(xy)
        object.__setattr__(self, "coverage_m", _check_vec("stations.coverage_m", self.coverage_m, b))
        object.__setattr__(self, "max_users", _check_vec("stations.max_users", self.max_users, b, integer=True))
        object.__setattr__(self, "node", _check_vec("stations.node", self.node, b, positive=False, integer=True))

    @property
    def n(self) -> int:
        return len(self.xy_m)
