"""The store's rows as frozen dataclasses, its states as enums, and the action state machine.

Every row checks itself on construction (identifiers with :func:`~edgemigrate.core.ids.check_id`, numbers
and strings with :mod:`.checks`), so nothing unchecked reaches SQL whichever back end is behind the store.
Names follow the project's units convention: ``_bytes``, ``_bps`` (bits per second), ``_s``, ``_m``,
``_dbm``. Quantities are those of Ngo et al. 2020, sec. IV: host capacities ``Res(s)`` (eq. 3c), a base
station's user limit ``N_b`` (eq. 3e), task E2E delays and sizes ``d``, ``S_u`` (eq. 4), RSSI (eq. 3d), and the
checkpoint/restore history from which the monitor fits ``psi_s`` and ``rho_s`` (eq. 5).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from edgemigrate.controller.store.checks import (
    MAX_COUNT,
    MAX_DETAIL,
    check_address,
    check_bytes,
    check_float,
    check_int,
    check_opt_time,
    check_rssi,
    check_text,
    check_time,
)
from edgemigrate.controller.store.errors import IllegalTransitionError
from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id

MAX_CPU_CORES = 1e6
MAX_CPU_SCORE = 1e12
MAX_BANDWIDTH_BPS = 1e15
MAX_POSITION_M = 1e8  # local projected coordinates; the Earth is ~4e7 m around
MAX_DELAY_S = 1e6
MAX_REPORT_ITEMS = 1000  # tasks or base stations in one MU report, services in one host report
# a host's agent certificate is named after the host; ``mu-<user>`` names a mobile user's certificate at the
# controller's API (controller/api.py), so no host may be called that
RESERVED_HOST_PREFIX = "mu-"


class HostRole(enum.Enum):
    EDGE = "edge"
    CLOUD = "cloud"


class HostState(enum.Enum):
    UP = "up"
    DOWN = "down"


class CheckpointKind(enum.Enum):
    CHECKPOINT = "checkpoint"
    RESTORE = "restore"


class ActionKind(enum.Enum):
    MIGRATION = "migration"
    HANDOVER = "handover"
    MIGRATION_HANDOVER = "migration_handover"  # the coordinated plan of Ngo et al. 2020, sec. IV-B


class ActionState(enum.Enum):
    PLANNED = "planned"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"

    @property
    def in_flight(self) -> bool:
        return self in IN_FLIGHT


IN_FLIGHT = frozenset({ActionState.PLANNED, ActionState.RUNNING})

# PLANNED -> FAILED is allowed: a plan that never started (its host went down, or a restarted controller
# finds it stale) has nothing to roll back, and must still leave the in-flight list. Terminal states have
# no way out: a finished action is history, and a new attempt is a new action.
TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    ActionState.PLANNED: frozenset({ActionState.RUNNING, ActionState.FAILED}),
    ActionState.RUNNING: frozenset({ActionState.DONE, ActionState.FAILED, ActionState.ROLLED_BACK}),
    ActionState.DONE: frozenset(),
    ActionState.FAILED: frozenset(),
    ActionState.ROLLED_BACK: frozenset(),
}


def check_transition(action_id: str, old: ActionState, new: ActionState) -> None:
    """Raise :class:`IllegalTransitionError` unless ``old -> new`` is an edge of the state machine."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.name for s in TRANSITIONS[old])) or "none (terminal)"
        raise IllegalTransitionError(
            f"action {action_id}: {old.name} -> {new.name} is not allowed (from {old.name}: {allowed})")


def new_action_id() -> str:
    """A fresh action id; it doubles as the migration session id the agents journal under."""
    return "act-" + secrets.token_hex(8)


def _check_enum(value: object, cls: type[enum.Enum], what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what}: expected a {cls.__name__}, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Host:
    """An edge server or the cloud (Ngo et al. 2020 treat the cloud as a server with larger capacity)."""

    name: str
    role: HostRole
    address: str  # host:port of its agent
    cpu_cores: float
    memory_bytes: int
    disk_bytes: int
    state: HostState = HostState.UP
    # C_s of Ngo et al. 2020, sec. IV-A: computing power from a CPU benchmark run once per host (e.g.
    # sysbench's events per second); eq. 4 and 5 use only ratios of it, so any one benchmark will do
    cpu_events_per_s: float | None = None

    def __post_init__(self) -> None:
        check_id(self.name, "host.name")
        if self.name.startswith(RESERVED_HOST_PREFIX):
            raise ValidationError(f"host.name: {self.name!r} starts with {RESERVED_HOST_PREFIX!r}, which names "
                                  "mobile users' certificates at the controller; rename the host")
        _check_enum(self.role, HostRole, "host.role")
        check_address(self.address, "host.address")
        check_float(self.cpu_cores, "host.cpu_cores", hi=MAX_CPU_CORES, lo_open=True)
        check_bytes(self.memory_bytes, "host.memory_bytes")
        check_bytes(self.disk_bytes, "host.disk_bytes")
        _check_enum(self.state, HostState, "host.state")
        if self.cpu_events_per_s is not None:
            check_float(self.cpu_events_per_s, "host.cpu_events_per_s", hi=MAX_CPU_SCORE, lo_open=True)


@dataclass(frozen=True, slots=True)
class BaseStation:
    name: str
    x_m: float
    y_m: float
    bandwidth_bps: float  # B_bs: the station's backhaul to the edge
    max_users: int  # N_b, eq. 3e

    def __post_init__(self) -> None:
        check_id(self.name, "base_station.name")
        check_float(self.x_m, "base_station.x_m", lo=-MAX_POSITION_M, hi=MAX_POSITION_M)
        check_float(self.y_m, "base_station.y_m", lo=-MAX_POSITION_M, hi=MAX_POSITION_M)
        check_float(self.bandwidth_bps, "base_station.bandwidth_bps", hi=MAX_BANDWIDTH_BPS, lo_open=True)
        check_int(self.max_users, "base_station.max_users", lo=1, hi=MAX_COUNT)


@dataclass(frozen=True, slots=True)
class User:
    """A mobile user; ``sla_delay_s`` is the E2E delay above which the monitor asks the planner for a move."""

    name: str
    sla_delay_s: float | None = None

    def __post_init__(self) -> None:
        check_id(self.name, "user.name")
        if self.sla_delay_s is not None:
            check_float(self.sla_delay_s, "user.sla_delay_s", hi=MAX_DELAY_S, lo_open=True)


@dataclass(frozen=True, slots=True)
class Placement:
    """User ``user``'s service ``service`` runs on ``host`` and is reached through ``base_station``."""

    user: str
    service: str
    host: str
    base_station: str

    def __post_init__(self) -> None:
        check_id(self.user, "placement.user")
        check_id(self.service, "placement.service")
        check_id(self.host, "placement.host")
        check_id(self.base_station, "placement.base_station")


@dataclass(frozen=True, slots=True)
class TaskDelay:
    """One offloaded task's E2E delay as the MU measured it, and the task's size ``S_u`` if known."""

    service: str
    e2e_delay_s: float
    task_size_bytes: int | None = None

    def __post_init__(self) -> None:
        check_id(self.service, "task.service")
        check_float(self.e2e_delay_s, "task.e2e_delay_s", hi=MAX_DELAY_S)
        if self.task_size_bytes is not None:
            check_bytes(self.task_size_bytes, "task.task_size_bytes")


@dataclass(frozen=True, slots=True)
class BsRssi:
    base_station: str
    rssi_dbm: float

    def __post_init__(self) -> None:
        check_id(self.base_station, "rssi.base_station")
        check_rssi(self.rssi_dbm, "rssi.rssi_dbm")


def _check_items(items: object, cls: type, what: str) -> None:
    if not isinstance(items, tuple):
        raise ValidationError(f"{what}: expected a tuple, got {type(items).__name__}")
    if len(items) > MAX_REPORT_ITEMS:
        raise ValidationError(f"{what}: {len(items)} entries, at most {MAX_REPORT_ITEMS} allowed")
    for item in items:
        if not isinstance(item, cls):
            raise ValidationError(f"{what}: expected {cls.__name__} entries, got {type(item).__name__}")


@dataclass(frozen=True, slots=True)
class MuReport:
    """What a mobile user's Local Monitor sends (Ngo et al. 2020, sec. III): delays and nearby RSSI."""

    user: str
    at_s: float
    delays: tuple[TaskDelay, ...] = ()
    rssi: tuple[BsRssi, ...] = ()

    def __post_init__(self) -> None:
        check_id(self.user, "mu_report.user")
        check_time(self.at_s, "mu_report.at_s")
        _check_items(self.delays, TaskDelay, "mu_report.delays")
        _check_items(self.rssi, BsRssi, "mu_report.rssi")


@dataclass(frozen=True, slots=True)
class DelaySample:
    """One stored task delay (a :class:`TaskDelay` with who reported it and when)."""

    user: str
    at_s: float
    service: str
    e2e_delay_s: float
    task_size_bytes: int | None


@dataclass(frozen=True, slots=True)
class RssiSample:
    user: str
    at_s: float
    base_station: str
    rssi_dbm: float


@dataclass(frozen=True, slots=True)
class HostReport:
    """A host agent's resource report: use of CPU, memory and disk, and the services it runs."""

    host: str
    at_s: float
    cpu_used_cores: float
    memory_used_bytes: int
    disk_used_bytes: int
    services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_id(self.host, "host_report.host")
        check_time(self.at_s, "host_report.at_s")
        check_float(self.cpu_used_cores, "host_report.cpu_used_cores", hi=MAX_CPU_CORES)
        check_bytes(self.memory_used_bytes, "host_report.memory_used_bytes")
        check_bytes(self.disk_used_bytes, "host_report.disk_used_bytes")
        _check_items(self.services, str, "host_report.services")
        for s in self.services:
            check_id(s, "host_report.services")
        if len(set(self.services)) != len(self.services):
            raise ValidationError("host_report.services: a service is listed twice")


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """One checkpoint or restore on ``host``: how many bytes, how long (the data psi_s, rho_s are fitted to)."""

    host: str
    service: str
    kind: CheckpointKind
    at_s: float
    size_bytes: int
    duration_s: float

    def __post_init__(self) -> None:
        check_id(self.host, "checkpoint.host")
        check_id(self.service, "checkpoint.service")
        _check_enum(self.kind, CheckpointKind, "checkpoint.kind")
        check_time(self.at_s, "checkpoint.at_s")
        check_bytes(self.size_bytes, "checkpoint.size_bytes")
        check_float(self.duration_s, "checkpoint.duration_s", hi=MAX_DELAY_S)


_NEEDS = {
    ActionKind.MIGRATION: ("source_host", "dest_host"),
    ActionKind.HANDOVER: ("source_bs", "dest_bs"),
    ActionKind.MIGRATION_HANDOVER: ("source_host", "dest_host", "source_bs", "dest_bs"),
}


@dataclass(frozen=True, slots=True)
class Action:
    """A migration and/or handover the controller ordered, with its state (see :data:`TRANSITIONS`).

    ``migrate_at_s``/``handover_at_s`` are the planned trigger times (Ngo et al. 2020, sec. IV-B, Fig. 2).
    ``created_at_s``/``updated_at_s`` are set by the store. The id is also the session id under which
    the agents journal the migration, which is how a restarted controller finds out how far it got.
    """

    id: str
    kind: ActionKind
    user: str
    service: str
    source_host: str | None = None
    dest_host: str | None = None
    source_bs: str | None = None
    dest_bs: str | None = None
    state: ActionState = ActionState.PLANNED
    migrate_at_s: float | None = None
    handover_at_s: float | None = None
    detail: str = ""
    created_at_s: float | None = None
    updated_at_s: float | None = None

    def __post_init__(self) -> None:
        check_id(self.id, "action.id")
        _check_enum(self.kind, ActionKind, "action.kind")
        _check_enum(self.state, ActionState, "action.state")
        check_id(self.user, "action.user")
        check_id(self.service, "action.service")
        for field in ("source_host", "dest_host", "source_bs", "dest_bs"):
            value = getattr(self, field)
            if value is not None:
                check_id(value, f"action.{field}")
            elif field in _NEEDS[self.kind]:
                raise ValidationError(f"action.{field}: required for a {self.kind.value} action")
        if self.source_host is not None and self.source_host == self.dest_host:
            raise ValidationError(f"action.dest_host: {self.dest_host!r} is also the source host")
        for field in ("migrate_at_s", "handover_at_s", "created_at_s", "updated_at_s"):
            check_opt_time(getattr(self, field), f"action.{field}")
        check_text(self.detail, "action.detail", max_len=MAX_DETAIL, allow_empty=True)
