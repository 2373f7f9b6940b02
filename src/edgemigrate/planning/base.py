"""The planner interface, its registry and its error type.

A planner turns one :class:`~edgemigrate.planning.snapshot.Snapshot` into a
:class:`~edgemigrate.planning.estimate.Plan`. It is pure decision logic: it reads no database and moves no
container, so the simulator backend and the real testbed backend of the controller call the same code.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.core.registry import Registry
from edgemigrate.planning.estimate import Plan
from edgemigrate.planning.snapshot import Snapshot


class PlanningError(EdgeMigrateError):
    """No plan satisfies the constraints (e.g. too little capacity, no BS a user can hear)."""


@runtime_checkable
class Planner(Protocol):
    name: str

    def plan(self, snapshot: Snapshot, rng: np.random.Generator) -> Plan: ...


PLANNERS: Registry[type[Planner]] = Registry("planner")
