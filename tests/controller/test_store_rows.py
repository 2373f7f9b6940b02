"""Rows, bounds and the action state machine, without a database."""

from __future__ import annotations

import itertools
import math

import pytest

from edgemigrate.controller.store import (
    TRANSITIONS,
    Action,
    ActionKind,
    ActionState,
    BaseStation,
    BsRssi,
    CheckpointKind,
    CheckpointRecord,
    Host,
    HostReport,
    HostRole,
    IllegalTransitionError,
    MuReport,
    Placement,
    TaskDelay,
    User,
    check_transition,
    new_action_id,
    open_store,
)
from edgemigrate.controller.store.backends import redact
from edgemigrate.core.errors import EdgeMigrateError, ValidationError
from edgemigrate.core.ids import check_id

GIB = 1 << 30
S = ActionState
LEGAL = {(S.PLANNED, S.RUNNING), (S.PLANNED, S.FAILED), (S.RUNNING, S.DONE), (S.RUNNING, S.FAILED),
         (S.RUNNING, S.ROLLED_BACK)}


def test_transition_table_is_the_documented_machine() -> None:
    edges = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert edges == LEGAL
    assert {s for s in S if not TRANSITIONS[s]} == {S.DONE, S.FAILED, S.ROLLED_BACK}
    assert {s for s in S if s.in_flight} == {S.PLANNED, S.RUNNING}


@pytest.mark.parametrize(("old", "new"), sorted(itertools.product(S, S), key=lambda p: (p[0].value, p[1].value)))
def test_check_transition_every_pair(old: ActionState, new: ActionState) -> None:
    if (old, new) in LEGAL:
        check_transition("act-1", old, new)
    else:
        with pytest.raises(IllegalTransitionError, match=f"act-1: {old.name} -> {new.name} is not allowed"):
            check_transition("act-1", old, new)


def _host(**kw: object) -> Host:
    args: dict[str, object] = dict(name="e1", role=HostRole.EDGE, address="10.0.0.1:7070", cpu_cores=4.0,
                                   memory_bytes=16 * GIB, disk_bytes=100 * GIB)
    args.update(kw)
    return Host(**args)  # type: ignore[arg-type]


BAD_ROWS = [
    ("host.name", lambda: _host(name="Edge 1")),
    ("host.name", lambda: _host(name="e1\n")),
    ("host.role", lambda: _host(role="edge")),
    ("host.address", lambda: _host(address="x" * 10_000)),
    ("host.address", lambda: _host(address="10.0.0.1 :7070")),
    ("host.address", lambda: _host(address="10.0.0.1\x00")),
    ("host.address", lambda: _host(address="")),
    ("host.cpu_cores", lambda: _host(cpu_cores=math.nan)),
    ("host.cpu_cores", lambda: _host(cpu_cores=0.0)),
    ("host.cpu_cores", lambda: _host(cpu_cores=math.inf)),
    ("host.cpu_cores", lambda: _host(cpu_cores="4")),
    ("host.memory_bytes", lambda: _host(memory_bytes=-1)),
    ("host.memory_bytes", lambda: _host(memory_bytes=1 << 70)),
    ("host.memory_bytes", lambda: _host(memory_bytes=1.5)),
    ("host.disk_bytes", lambda: _host(disk_bytes=True)),
    ("host.cpu_events_per_s", lambda: _host(cpu_events_per_s=-3.0)),
    ("base_station.x_m", lambda: BaseStation("b1", math.nan, 0.0, 1e9, 4)),
    ("base_station.bandwidth_bps", lambda: BaseStation("b1", 0.0, 0.0, -1e9, 4)),
    ("base_station.max_users", lambda: BaseStation("b1", 0.0, 0.0, 1e9, 0)),
    ("user.name", lambda: User("../etc")),
    ("user.sla_delay_s", lambda: User("u1", sla_delay_s=-0.1)),
    ("placement.base_station", lambda: Placement("u1", "svc", "e1", "B1")),
    ("task.e2e_delay_s", lambda: TaskDelay("svc", -0.001)),
    ("task.e2e_delay_s", lambda: TaskDelay("svc", math.nan)),
    ("task.task_size_bytes", lambda: TaskDelay("svc", 0.1, -5)),
    ("rssi.rssi_dbm", lambda: BsRssi("b1", 10_000.0)),
    ("mu_report.at_s", lambda: MuReport("u1", -1.0)),
    ("mu_report.delays", lambda: MuReport("u1", 1.0, delays=tuple(TaskDelay("svc", 0.1) for _ in range(1001)))),
    ("mu_report.rssi", lambda: MuReport("u1", 1.0, rssi=[BsRssi("b1", -70.0)])),  # type: ignore[arg-type]
    ("mu_report.rssi", lambda: MuReport("u1", 1.0, rssi=(("b1", -70.0),))),  # type: ignore[arg-type]
    ("host_report.cpu_used_cores", lambda: HostReport("e1", 1.0, -0.5, 0, 0)),
    ("host_report.services", lambda: HostReport("e1", 1.0, 0.5, 0, 0, ("a", "a"))),
    ("host_report.services", lambda: HostReport("e1", 1.0, 0.5, 0, 0, ("ok", "Not OK"))),
    ("checkpoint.size_bytes", lambda: CheckpointRecord("e1", "svc", CheckpointKind.RESTORE, 1.0, -1, 0.1)),
    ("checkpoint.duration_s", lambda: CheckpointRecord("e1", "svc", CheckpointKind.RESTORE, 1.0, 1, math.inf)),
    ("checkpoint.kind", lambda: CheckpointRecord("e1", "svc", "restore", 1.0, 1, 0.1)),  # type: ignore[arg-type]
    ("action.id", lambda: Action("ACT 1", ActionKind.MIGRATION, "u1", "svc", "e1", "e2")),
    ("action.dest_host", lambda: Action("a1", ActionKind.MIGRATION, "u1", "svc", "e1")),
    ("action.dest_host", lambda: Action("a1", ActionKind.MIGRATION, "u1", "svc", "e1", "e1")),
    ("action.source_bs", lambda: Action("a1", ActionKind.HANDOVER, "u1", "svc", dest_bs="b2")),
    ("action.state", lambda: Action("a1", ActionKind.MIGRATION, "u1", "svc", "e1", "e2", state="done")),
    ("action.detail", lambda: Action("a1", ActionKind.MIGRATION, "u1", "svc", "e1", "e2", detail="x" * 5000)),
    ("action.migrate_at_s", lambda: Action("a1", ActionKind.MIGRATION, "u1", "svc", "e1", "e2",
                                           migrate_at_s=math.nan)),
]


@pytest.mark.parametrize(("field", "make"), BAD_ROWS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_ROWS)])
def test_bad_rows_are_refused_naming_the_field(field: str, make: object) -> None:
    with pytest.raises(ValidationError) as info:
        make()  # type: ignore[operator]
    message = str(info.value)
    assert message.startswith(field), message
    assert "\n" not in message and len(message) < 300


def test_good_rows_construct() -> None:
    assert _host().state.value == "up"
    report = MuReport("u1", 12.5, delays=(TaskDelay("svc", 0.08, 4096),), rssi=(BsRssi("b2", -71.5),))
    assert report.rssi[0].rssi_dbm == -71.5
    a = Action(new_action_id(), ActionKind.MIGRATION_HANDOVER, "u1", "svc", "e1", "e2", "b1", "b2",
               migrate_at_s=10.0, handover_at_s=10.4)
    assert check_id(a.id, "id") == a.id and a.state is S.PLANNED


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:/x.db", "sqlite://x.db", "sqlite:///", "sqlite:///a.db?mode=ro",
                                 "", "postgresql://u@h:notaport/db", "postgresql://u@h:5432/", 42, "sqlite:///\x00"])
def test_bad_store_urls_are_refused_in_one_line(url: object) -> None:
    with pytest.raises(EdgeMigrateError) as info:
        open_store(url)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "store URL" in str(info.value)


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    import socket

    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(EdgeMigrateError) as info:
            open_store(f"postgresql://ctl:s3cret@127.0.0.1:{port}/edge")
    message = str(info.value)
    assert "cannot connect" in message and "s3cret" not in message and "\n" not in message


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://ctl:pw@db:5432/edge") == "postgresql://ctl:***@db:5432/edge"
    assert redact("postgresql://ctl@db/edge") == "postgresql://ctl@db/edge"


def test_memory_store_opens_and_is_empty() -> None:
    with open_store("sqlite://:memory:") as store:
        assert store.backend_name == "sqlite"
        assert store.hosts() == [] and store.in_flight() == []
