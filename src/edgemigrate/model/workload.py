"""Workload specs: how tasks and their services are drawn (by default with the parameters of Liu et al.
2024, sec. VI-A)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from edgemigrate.core.config import Limit, check_limits
from edgemigrate.core.errors import ValidationError

# generous physical bounds: a task's data or service of a terabyte, a petahertz of CPU or an hour per hop
# is far beyond any edge workload, and values past them are typos (or NaN/inf) that would only surface as
# overflowing delays deep in the simulator
_Bytes = Annotated[tuple[float, float], Limit(0.0, 1e12, lo_open=True, ordered=True)]


def _range(name: str, lo_hi: tuple[float, float], *, positive: bool = True) -> None:
    lo, hi = lo_hi
    if not lo <= hi:
        raise ValidationError(f"{name} must be [low, high] with low <= high, got {list(lo_hi)}")
    if positive and lo <= 0:
        raise ValidationError(f"{name} must be > 0, got {list(lo_hi)}")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Task and service distributions. Ranges are uniform [low, high].

    Liu et al. 2024, sec. VI-A: task data U[0.05, 5] MB, processing density U[200, 10000] cycles/bit,
    service size U[0.5, 100] MB, migration delay factor U[1, 3] s/hop, Poisson arrivals. The CPU request p_k,
    the task lifetime and the Zipf exponent of image popularity are not given in the paper; ours are
    documented defaults (a 128 GHz node holds ~30 tasks of 1-8 GHz before the 20 % CPU threshold bites).
    """

    # the task table grows with the arrivals: 100 tasks per user per second is already absurd
    arrival_rate_per_user_s: Annotated[float, Limit(0.0, 100.0)] = 0.01
    mean_duration_s: Annotated[float, Limit(0.0, 1e7, lo_open=True)] = 120.0
    data_bytes: _Bytes = (0.05e6, 5e6)
    density_cycles_per_bit: Annotated[tuple[float, float], Limit(0.0, 1e7, lo_open=True, ordered=True)] = (
        200.0, 10_000.0)
    service_bytes: _Bytes = (0.5e6, 100e6)
    cpu_request_hz: Annotated[tuple[float, float], Limit(0.0, 1e15, lo_open=True, ordered=True)] = (1e9, 8e9)
    migration_s_per_hop: Annotated[tuple[float, float], Limit(0.0, 3600.0, lo_open=True, ordered=True)] = (
        1.0, 3.0)
    image_zipf_s: Annotated[float, Limit(0.0, 10.0)] = 1.0

    def __post_init__(self) -> None:
        if self.arrival_rate_per_user_s < 0:
            raise ValidationError("workload.arrival_rate_per_user_s must be >= 0")
        if self.mean_duration_s <= 0:
            raise ValidationError("workload.mean_duration_s must be > 0")
        if self.image_zipf_s < 0:
            raise ValidationError("workload.image_zipf_s must be >= 0")
        for name in ("data_bytes", "density_cycles_per_bit", "service_bytes", "cpu_request_hz",
                     "migration_s_per_hop"):
            _range(f"workload.{name}", getattr(self, name))
        check_limits(self, "workload")  # also NaN and infinities, which pass the comparisons above
