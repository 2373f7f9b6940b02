"""Where the virtual mobile user is: round trips between a start and an end point at constant speed.

Ngo et al. 2020, sec. V-A: the virtual MU "continuously make[s] round-trips between the starting point and
the end point", at 0.5 m/s for the compute services (Openface, Yolo) and 1 m/s for Simple. The position is a
pure function of time (a triangle wave along the segment), so a run is reproducible from its clock alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgemigrate.core.errors import ValidationError

SPEED_COMPUTE_M_PER_S = 0.5  # Ngo et al. 2020, sec. V-A (Openface, Yolo)
SPEED_SIMPLE_M_PER_S = 1.0  # Ngo et al. 2020, sec. V-A (Simple)
MAX_COORD_M = 1e7
MAX_SPEED_M_PER_S = 1e3


def _finite(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValidationError(f"{what}: expected a number in [{lo:g}, {hi:g}], got {value!r:.80}")
    return float(value)


@dataclass(frozen=True, slots=True)
class BackAndForthPath:
    """From ``start`` to ``end`` and back, forever, at ``speed_m_per_s``; ``t = 0`` is at ``start``."""

    start_x_m: float
    start_y_m: float
    end_x_m: float
    end_y_m: float
    speed_m_per_s: float = SPEED_SIMPLE_M_PER_S

    def __post_init__(self) -> None:
        for key in ("start_x_m", "start_y_m", "end_x_m", "end_y_m"):
            _finite(getattr(self, key), f"path.{key}", -MAX_COORD_M, MAX_COORD_M)
        _finite(self.speed_m_per_s, "path.speed_m_per_s", 0.0, MAX_SPEED_M_PER_S)
        if self.speed_m_per_s <= 0:
            raise ValidationError(f"path.speed_m_per_s: must be > 0, got {self.speed_m_per_s!r}")
        if self.length_m <= 0:
            raise ValidationError("path: start and end must differ")

    @property
    def length_m(self) -> float:
        return math.hypot(self.end_x_m - self.start_x_m, self.end_y_m - self.start_y_m)

    @property
    def round_trip_s(self) -> float:
        return 2.0 * self.length_m / self.speed_m_per_s

    def along_m(self, t_s: float) -> float:
        """Distance from ``start`` at time ``t_s`` (0 .. length, a triangle wave of period ``round_trip_s``)."""
        t = _finite(t_s, "path time t_s", 0.0, 1e12)
        travelled = (t * self.speed_m_per_s) % (2.0 * self.length_m)
        return travelled if travelled <= self.length_m else 2.0 * self.length_m - travelled

    def position_m(self, t_s: float) -> tuple[float, float]:
        f = self.along_m(t_s) / self.length_m
        return (self.start_x_m + f * (self.end_x_m - self.start_x_m),
                self.start_y_m + f * (self.end_y_m - self.start_y_m))

    def heading_out(self, t_s: float) -> bool:
        """True while moving from ``start`` towards ``end``."""
        t = _finite(t_s, "path time t_s", 0.0, 1e12)
        return (t * self.speed_m_per_s) % (2.0 * self.length_m) < self.length_m
