"""Simulator parameters and the enums naming its phases and task events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

from edgemigrate.core.config import Limit, check_limits
from edgemigrate.core.errors import ValidationError

MAX_STEPS = 1_000_000
"""Upper bound of ``n_steps``: the recorder preallocates one row per tick (~20 columns, ~160 MB at this bound;
a million 1 s ticks are 11.6 days), so a typo like 1e9 fails at load time instead of exhausting memory."""


class Phase(enum.IntEnum):
    """The fixed order of work inside one tick (see ``sim/engine.py``)."""

    MOVE = 0
    ASSOCIATE = 1
    ARRIVE = 2
    DECIDE = 3
    APPLY = 4
    DOWNLOAD = 5
    COST = 6
    RECORD = 7


class DecisionKind(enum.IntEnum):
    """Why a task is in the queue: a new arrival or one of the two migration triggers (Liu et al. 2024,
    sec. III-B)."""

    ARRIVAL = 0
    PROACTIVE = 1  # its node fell below the resource threshold (eq. 12)
    PASSIVE = 2  # its user left the node's coverage


@dataclass(frozen=True, slots=True)
class SimParams:
    """Engine parameters.

    Equations and sections are those of Liu et al. 2024. ``sigma_storage``/``sigma_cpu`` are the thresholds
    of eq. (12) (0.2 in VI-A: migrate when less than 20 % of a resource is free); ``wait_factor`` is
    sigma^wait of eq. (5); ``backhaul_s_per_hop`` is sigma^bh of eq. (9) (0.02 s/hop in VI-A).
    ``max_decisions_per_step`` (0 = unlimited) bounds how many queued tasks are placed per tick; the rest
    wait, which eq. (4) charges. With ``placement_within_coverage`` an edge node is a candidate only while the
    task's user is inside its service range (III-B: "each edge node has a limited service range, exceeding it
    compels the user to switch to another node"); otherwise a placement out of range would trigger a passive
    migration at once.
    """

    # a tick of more than a day says nothing about migrations that take seconds to minutes
    dt_s: Annotated[float, Limit(0.0, 86_400.0, lo_open=True)] = 5.0
    n_steps: Annotated[int, Limit(1, MAX_STEPS)] = 360
    sigma_storage: Annotated[float, Limit(0.0, 1.0, hi_open=True)] = 0.2
    sigma_cpu: Annotated[float, Limit(0.0, 1.0, hi_open=True)] = 0.2
    wait_factor: Annotated[float, Limit(0.0, 1e6)] = 1.0
    backhaul_s_per_hop: Annotated[float, Limit(0.0, 3600.0)] = 0.02
    max_decisions_per_step: Annotated[int, Limit(0, 1_000_000_000)] = 0
    placement_within_coverage: bool = True

    def __post_init__(self) -> None:
        if self.dt_s <= 0:
            raise ValidationError("sim.dt_s must be > 0")
        if self.n_steps < 1:
            raise ValidationError("sim.n_steps must be >= 1")
        for name in ("sigma_storage", "sigma_cpu"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValidationError(f"sim.{name} must be in [0, 1)")
        if self.wait_factor < 0 or self.backhaul_s_per_hop < 0:
            raise ValidationError("sim.wait_factor and sim.backhaul_s_per_hop must be >= 0")
        if self.max_decisions_per_step < 0:
            raise ValidationError("sim.max_decisions_per_step must be >= 0")
        check_limits(self, "sim")  # also NaN and infinities, which pass the comparisons above
