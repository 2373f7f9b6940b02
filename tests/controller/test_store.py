"""The central store on both back ends (SQLite file, PostgreSQL server): every test runs on each."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from edgemigrate.controller.store import (
    SCHEMA_VERSION,
    TRANSITIONS,
    Action,
    ActionKind,
    ActionState,
    BaseStation,
    BsRssi,
    CheckpointKind,
    CheckpointRecord,
    ConflictError,
    DelaySample,
    Host,
    HostReport,
    HostRole,
    HostState,
    IllegalTransitionError,
    MuReport,
    NotFoundError,
    Placement,
    RssiSample,
    SchemaVersionError,
    Store,
    StoreError,
    TaskDelay,
    User,
    open_store,
)
from edgemigrate.core.errors import ValidationError
from tests.controller.helpers import GIB, raw_execute, seed

if TYPE_CHECKING:
    from tests.controller.conftest import PgServer

S = ActionState


class FakeClock:
    """Store timestamps without the wall clock: 1000.0, 1001.0, ..."""

    def __init__(self) -> None:
        self.now = 999.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url, clock=FakeClock()) as s:
        seed(s)
        yield s


def _migration(aid: str = "act-1", user: str = "u1") -> Action:
    return Action(aid, ActionKind.MIGRATION_HANDOVER, user, "svc", "e1", "e2", "b1", "b2",
                  migrate_at_s=50.0, handover_at_s=50.4)


# -- round trips ---------------------------------------------------------------------------------------

def test_hosts_base_stations_users_round_trip(store: Store) -> None:
    assert [h.name for h in store.hosts()] == ["cloud", "e1", "e2"]
    assert store.host("cloud") == Host("cloud", HostRole.CLOUD, "cloud.example:7070", 12.0, 128 * GIB, 4000 * GIB)
    assert store.host("e1").cpu_events_per_s == 2400.5
    store.put_host(Host("e1", HostRole.EDGE, "10.0.0.9:7070", 8.0, 32 * GIB, 1 << 60))  # replace
    assert store.host("e1") == Host("e1", HostRole.EDGE, "10.0.0.9:7070", 8.0, 32 * GIB, 1 << 60)
    store.set_host_state("e2", HostState.DOWN)
    assert store.host("e2").state is HostState.DOWN
    assert store.base_stations() == [BaseStation("b1", 0.0, 0.0, 1e9, 8), BaseStation("b2", 150.0, 0.0, 1e9, 8)]
    store.put_user(User("u2"))
    assert store.users() == [User("u1", 0.25), User("u2", None)]
    with pytest.raises(NotFoundError, match="host: 'e9' is not in the store"):
        store.host("e9")
    with pytest.raises(NotFoundError, match="host: 'e9'"):
        store.set_host_state("e9", HostState.UP)


def test_placements_round_trip_and_references_are_checked(store: Store) -> None:
    assert store.placement("u1", "svc") == Placement("u1", "svc", "e1", "b1")
    store.put_placement(Placement("u1", "db", "cloud", "b1"))
    store.put_placement(Placement("u1", "svc", "e2", "b2"))  # replace
    assert store.placements(user="u1") == [Placement("u1", "db", "cloud", "b1"), Placement("u1", "svc", "e2", "b2")]
    assert store.placements(host="cloud") == [Placement("u1", "db", "cloud", "b1")]
    for bad, field in ((Placement("u9", "svc", "e1", "b1"), "placement.user"),
                       (Placement("u1", "svc", "e9", "b1"), "placement.host"),
                       (Placement("u1", "svc", "e1", "b9"), "placement.base_station")):
        with pytest.raises(NotFoundError, match=field):
            store.put_placement(bad)
    store.remove_placement("u1", "db")
    assert [p.service for p in store.placements()] == ["svc"]
    with pytest.raises(NotFoundError):
        store.remove_placement("u1", "db")


def test_measurements_round_trip(store: Store) -> None:
    store.put_user(User("u2"))
    store.record_mu_report(MuReport("u1", 10.0, delays=(TaskDelay("svc", 0.08, 4096), TaskDelay("svc", 0.09)),
                                    rssi=(BsRssi("b1", -60.0), BsRssi("b2", -85.5))))
    store.record_mu_report(MuReport("u1", 11.0, rssi=(BsRssi("b1", -66.0),)))
    store.record_mu_report(MuReport("u2", 11.0, delays=(TaskDelay("svc", 1.0),)))
    assert store.task_delays("u1") == [DelaySample("u1", 10.0, "svc", 0.08, 4096),
                                       DelaySample("u1", 10.0, "svc", 0.09, None)]
    assert store.rssi_samples("u1", since_s=10.5) == [RssiSample("u1", 11.0, "b1", -66.0)]
    assert store.rssi_samples("u1", limit=2) == [RssiSample("u1", 10.0, "b2", -85.5), RssiSample("u1", 11.0, "b1", -66.0)]

    store.record_host_report(HostReport("e1", 5.0, 1.25, 3 * GIB, 20 * GIB, ("svc", "db")))
    store.record_host_report(HostReport("e1", 6.0, 0.0, 0, 0))
    assert store.host_reports("e1") == [HostReport("e1", 5.0, 1.25, 3 * GIB, 20 * GIB, ("db", "svc")),
                                        HostReport("e1", 6.0, 0.0, 0, 0, ())]
    assert store.host_reports("e2") == []

    chk = CheckpointRecord("e1", "svc", CheckpointKind.CHECKPOINT, 7.0, 300 << 20, 1.5)
    rst = CheckpointRecord("e1", "svc", CheckpointKind.RESTORE, 8.0, 310 << 20, 0.75)
    store.record_checkpoint(chk)
    store.record_checkpoint(rst)
    assert store.checkpoint_history("e1") == [chk, rst]
    assert store.checkpoint_history("e1", CheckpointKind.RESTORE) == [rst]


def test_a_report_is_written_whole_or_not_at_all(store: Store) -> None:
    bad = MuReport("u1", 10.0, delays=(TaskDelay("svc", 0.08),), rssi=(BsRssi("b1", -60.0), BsRssi("b7", -80.0)))
    with pytest.raises(NotFoundError, match="mu_report.rssi.base_station: 'b7'"):
        store.record_mu_report(bad)
    assert store.task_delays("u1") == [] and store.rssi_samples("u1") == []
    with pytest.raises(NotFoundError, match="mu_report.user: 'u7'"):
        store.record_mu_report(MuReport("u7", 1.0))
    with pytest.raises(NotFoundError, match="host_report.host"):
        store.record_host_report(HostReport("e7", 1.0, 0.5, 0, 0, ("svc",)))
    with pytest.raises(NotFoundError, match="checkpoint.host"):
        store.record_checkpoint(CheckpointRecord("e7", "svc", CheckpointKind.RESTORE, 1.0, 1, 0.1))


def test_bad_input_is_refused_before_writing(store: Store) -> None:
    with pytest.raises(ValidationError, match="^host: expected a Host, got dict$"):
        store.put_host({"name": "e3"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="^limit: 0 is outside"):
        store.task_delays("u1", limit=0)
    with pytest.raises(ValidationError, match="^since_s: nan is not a finite number"):
        store.rssi_samples("u1", since_s=float("nan"))
    with pytest.raises(ValidationError, match="^user: "):
        store.task_delays("U1; DROP TABLE users")
    store.plan_action(_migration())
    with pytest.raises(ValidationError, match="^action.detail: 5000 characters"):
        store.transition("act-1", S.PLANNED, S.RUNNING, detail="x" * 5000)
    with pytest.raises(ValidationError, match="^new: expected a ActionState"):
        store.transition("act-1", S.PLANNED, "running")  # type: ignore[arg-type]
    assert store.action("act-1").state is S.PLANNED
    assert [h.name for h in store.hosts()] == ["cloud", "e1", "e2"]


# -- actions -------------------------------------------------------------------------------------------

def _drive(store: Store, aid: str, target: ActionState) -> None:
    """Take a PLANNED action to ``target`` along legal edges."""
    path = {S.PLANNED: [], S.RUNNING: [S.RUNNING], S.DONE: [S.RUNNING, S.DONE], S.FAILED: [S.FAILED],
            S.ROLLED_BACK: [S.RUNNING, S.ROLLED_BACK]}[target]
    state = S.PLANNED
    for nxt in path:
        store.transition(aid, state, nxt)
        state = nxt


def test_every_legal_transition_is_taken_and_every_illegal_one_refused(store: Store) -> None:
    pairs = [(a, b) for a in S for b in S]
    for i, (old, new) in enumerate(pairs):
        user = f"p{i}"
        store.put_user(User(user))
        store.put_placement(Placement(user, "svc", "e1", "b1"))
        aid = f"act-{i}"
        store.plan_action(_migration(aid, user))
        _drive(store, aid, old)
        if new in TRANSITIONS[old]:
            after = store.transition(aid, old, new, detail=f"{old.name}->{new.name}")
            assert after.state is new and store.action(aid) == after, (old, new)
        else:
            with pytest.raises(IllegalTransitionError, match=f"{old.name} -> {new.name} is not allowed"):
                store.transition(aid, old, new)
            assert store.action(aid).state is old, (old, new)


def test_action_round_trip_and_timestamps(store: Store) -> None:
    planned = store.plan_action(_migration())
    assert planned.created_at_s == planned.updated_at_s and planned.state is S.PLANNED
    assert store.action("act-1") == planned
    running = store.transition("act-1", S.PLANNED, S.RUNNING, detail="pre-copy round 1")
    assert running.updated_at_s > planned.updated_at_s and running.created_at_s == planned.created_at_s
    assert store.action("act-1") == running and running.migrate_at_s == 50.0 and running.handover_at_s == 50.4
    assert store.actions(state=S.RUNNING) == [running] and store.actions(user="u1") == [running]
    failed = store.transition("act-1", S.RUNNING, S.FAILED)
    assert failed.detail == "pre-copy round 1"  # kept when no new detail is given
    with pytest.raises(NotFoundError, match="action: 'act-9'"):
        store.transition("act-9", S.PLANNED, S.RUNNING)


def test_done_moves_the_placement_atomically_and_failure_does_not(store: Store) -> None:
    store.put_placement(Placement("u1", "db", "e1", "b1"))
    store.plan_action(Action("m1", ActionKind.MIGRATION, "u1", "db", "e1", "cloud"))
    _drive(store, "m1", S.ROLLED_BACK)
    assert store.placement("u1", "db") == Placement("u1", "db", "e1", "b1")
    store.plan_action(Action("m2", ActionKind.MIGRATION, "u1", "db", "e1", "cloud"))
    _drive(store, "m2", S.DONE)
    assert store.placement("u1", "db") == Placement("u1", "db", "cloud", "b1")
    store.plan_action(_migration("mh"))
    _drive(store, "mh", S.DONE)
    # the handover moved the user's radio link, so every one of its services is reached via b2
    assert store.placements(user="u1") == [Placement("u1", "db", "cloud", "b2"), Placement("u1", "svc", "e2", "b2")]


def test_plan_refusals(store: Store) -> None:
    store.plan_action(_migration())
    with pytest.raises(ConflictError, match="already exists"):
        store.plan_action(_migration())
    with pytest.raises(ConflictError, match="u1/svc: action act-1 is planned"):
        store.plan_action(_migration("act-2"))
    with pytest.raises(ConflictError, match="u1/svc: action act-1"):
        store.put_placement(Placement("u1", "svc", "e2", "b2"))
    store.put_user(User("u2"))
    with pytest.raises(NotFoundError, match="u2/svc has no placement"):
        store.plan_action(_migration("act-3", "u2"))
    store.put_placement(Placement("u2", "svc", "e2", "b1"))
    with pytest.raises(ConflictError, match="source_host is 'e1' but u2/svc runs on 'e2'"):
        store.plan_action(Action("act-4", ActionKind.MIGRATION, "u2", "svc", "e1", "cloud"))
    with pytest.raises(ConflictError, match="source_bs is 'b2'"):
        store.plan_action(Action("act-5", ActionKind.HANDOVER, "u2", "svc", source_bs="b2", dest_bs="b1"))
    with pytest.raises(NotFoundError, match="action.dest_host: 'e7'"):
        store.plan_action(Action("act-6", ActionKind.MIGRATION, "u2", "svc", "e2", "e7"))
    with pytest.raises(ValidationError, match="a new action starts PLANNED, not RUNNING"):
        store.plan_action(Action("act-7", ActionKind.MIGRATION, "u2", "svc", "e2", "e1", state=S.RUNNING))
    assert [a.id for a in store.actions()] == ["act-1"]
    # once act-1 is over, the service may be planned again
    _drive(store, "act-1", S.FAILED)
    assert store.plan_action(_migration("act-8")).state is S.PLANNED


def test_a_restarted_store_has_every_action_in_flight(store_url: str) -> None:
    clock = FakeClock()
    with open_store(store_url, clock=clock) as first:
        seed(first, users=("u1", "u2", "u3", "u4"))
        first.plan_action(_migration("a-running", "u1"))
        first.transition("a-running", S.PLANNED, S.RUNNING, detail="frozen at source")
        first.plan_action(_migration("a-planned", "u2"))
        first.plan_action(_migration("a-done", "u3"))
        _drive(first, "a-done", S.DONE)
        first.plan_action(Action("a-handover", ActionKind.HANDOVER, "u4", "svc", source_bs="b1", dest_bs="b2"))
        before = first.in_flight()
        everything = first.actions()
    assert [a.id for a in before] == ["a-running", "a-planned", "a-handover"]
    with open_store(store_url, clock=clock) as second:  # the controller's next incarnation
        assert second.in_flight() == before
        assert second.actions() == everything
        assert second.placement("u3", "svc") == Placement("u3", "svc", "e2", "b2")
        # it finishes one and rolls the other back, as the agents' journals tell it
        second.transition("a-running", S.RUNNING, S.DONE, detail="destination reports the service running")
        second.transition("a-planned", S.PLANNED, S.FAILED, detail="stale plan after restart")
        assert [a.id for a in second.in_flight()] == ["a-handover"]
        assert second.placement("u1", "svc") == Placement("u1", "svc", "e2", "b2")


# -- schema version ------------------------------------------------------------------------------------

def test_schema_version_is_recorded_and_a_newer_one_refused(store_url: str) -> None:
    with open_store(store_url) as s:
        assert s.schema_version() == SCHEMA_VERSION
    with open_store(store_url) as s:  # reopening the current version is fine
        assert s.schema_version() == SCHEMA_VERSION
    raw_execute(store_url, f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError) as info:
        open_store(store_url)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in message and "\n" not in message
    raw_execute(store_url, "UPDATE schema_version SET version = 0")
    with pytest.raises(SchemaVersionError, match="schema version 0 is older"):
        open_store(store_url)
    raw_execute(store_url, "DELETE FROM schema_version")
    with pytest.raises(SchemaVersionError, match="one integer row, found 0"):
        open_store(store_url)


def test_a_database_of_something_else_is_not_taken_over(store_url: str) -> None:
    raw_execute(store_url, "CREATE TABLE inventory (item TEXT)")
    with pytest.raises(SchemaVersionError, match=r"holds tables \(inventory\) but no schema_version"):
        open_store(store_url)


def test_the_database_itself_refuses_bad_enum_values(store_url: str) -> None:
    """Defence in depth: a row written behind the store's back cannot hold an unknown state."""
    with open_store(store_url) as s:
        seed(s)
    with pytest.raises(Exception, match="(?i)check"):
        raw_execute(store_url, "UPDATE hosts SET state = 'exploded' WHERE name = 'e1'")
    with open_store(store_url) as s:
        assert s.host("e1").state is HostState.UP


def test_a_broken_postgres_connection_fails_one_call_and_is_reopened(pg_server: PgServer) -> None:
    url = pg_server.url(pg_server.create_database())
    with open_store(url) as store:
        seed(store)
        pid = store._db.conn.info.backend_pid  # type: ignore[attr-defined]
        # as a server restart or a dropped network would: the server ends the store's connection
        raw_execute(pg_server.url("postgres"), f"SELECT pg_terminate_backend({int(pid)}, 60000)")
        with pytest.raises(StoreError) as info:
            store.hosts()
        assert "\n" not in str(info.value)
        assert [h.name for h in store.hosts()] == ["cloud", "e1", "e2"]
        assert store._db.conn.info.backend_pid != pid  # type: ignore[attr-defined]


# -- atomicity under a failure half-way ----------------------------------------------------------------

class _Injected(Exception):
    pass


class _FailAfter:
    """A back end that lets ``n`` statements of a write transaction through and fails the next one
    (the real database underneath rolls back: that is what is being tested)."""

    def __init__(self, backend: object, n: int) -> None:
        self._backend = backend
        self._n = n

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    @contextlib.contextmanager
    def write(self) -> Iterator[object]:
        with self._backend.write() as tx:  # type: ignore[attr-defined]
            yield _CountingTx(tx, self._n)


class _CountingTx:
    def __init__(self, tx: object, n: int) -> None:
        self._tx, self._left = tx, n

    def _tick(self) -> None:
        if self._left == 0:
            raise _Injected("injected failure")
        self._left -= 1

    def run(self, sql: str, params: object = ()) -> object:
        self._tick()
        return self._tx.run(sql, params)  # type: ignore[attr-defined]

    def run_many(self, sql: str, rows: object) -> None:
        self._tick()
        self._tx.run_many(sql, rows)  # type: ignore[attr-defined]


def _snapshot(store: Store) -> tuple:
    return (store.task_delays("u1"), store.rssi_samples("u1"), store.host_reports("e1"), store.actions(),
            store.placements())


def _fails_whole_at_every_statement(store: Store, call: Callable[[], object]) -> int:
    """Fail ``call`` at its 1st, 2nd, ... statement until it succeeds; each failure must leave the store as
    it was. Returns how many failure points there were."""
    real = store._db  # type: ignore[attr-defined]
    for n in range(100):
        before = _snapshot(store)
        store._db = _FailAfter(real, n)  # type: ignore[attr-defined]
        try:
            call()
        except _Injected:
            store._db = real  # type: ignore[attr-defined]
            assert _snapshot(store) == before, f"partial write when statement {n + 1} failed"
            continue
        finally:
            store._db = real  # type: ignore[attr-defined]
        return n
    raise AssertionError("call never succeeded")


def test_every_multi_row_change_is_all_or_nothing(store: Store) -> None:
    report = MuReport("u1", 3.0, delays=tuple(TaskDelay("svc", 0.01 * i) for i in range(1, 300)),
                      rssi=(BsRssi("b1", -60.0), BsRssi("b2", -90.0)))
    assert _fails_whole_at_every_statement(store, lambda: store.record_mu_report(report)) >= 4
    assert len(store.task_delays("u1")) == 299 and len(store.rssi_samples("u1")) == 2
    host_report = HostReport("e1", 4.0, 2.0, GIB, 2 * GIB, ("svc", "db", "cache"))
    assert _fails_whole_at_every_statement(store, lambda: store.record_host_report(host_report)) >= 3
    assert store.host_reports("e1") == [HostReport("e1", 4.0, 2.0, GIB, 2 * GIB, ("cache", "db", "svc"))]
    assert _fails_whole_at_every_statement(store, lambda: store.plan_action(_migration())) >= 5
    store.transition("act-1", S.PLANNED, S.RUNNING)
    assert _fails_whole_at_every_statement(
        store, lambda: store.transition("act-1", S.RUNNING, S.DONE)) >= 3
    assert store.action("act-1").state is S.DONE
    assert store.placement("u1", "svc") == Placement("u1", "svc", "e2", "b2")


# -- BS-to-host RTTs (schema version 2) -------------------------------------------------------------------

def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_rows(store_url: str) -> None:
    with open_store(store_url) as s:
        seed(s)
    # what a version 1 store looked like: no RTT table
    raw_execute(store_url, "DROP TABLE bs_host_rtts")
    raw_execute(store_url, "UPDATE schema_version SET version = 1")
    with open_store(store_url) as s:
        assert s.schema_version() == SCHEMA_VERSION == 2
        assert s.placement("u1", "svc").host == "e1" and s.rtts() == {}
        s.put_rtt("b1", "e1", 0.001)
    with open_store(store_url) as s:  # and it stays upgraded
        assert s.rtts() == {("b1", "e1"): 0.001}


def test_rtts_are_upserted_and_checked(store: Store) -> None:
    seed(store)
    store.put_rtt("b1", "e2", 0.02)
    store.put_rtt("b1", "e2", 0.03)
    store.put_rtt("b2", "cloud", 0.15)
    assert store.rtts() == {("b1", "e2"): 0.03, ("b2", "cloud"): 0.15}
    for args, says in ((("b9", "e1", 0.01), "rtt.base_station: 'b9' is not in the store"),
                       (("b1", "e9", 0.01), "rtt.host: 'e9' is not in the store"),
                       (("b1", "e1", -0.1), "rtt.rtt_s"), (("b1", "e1", float("nan")), "rtt.rtt_s"),
                       (("b1", "e1", 3600.0), "rtt.rtt_s"), (("../b", "e1", 0.01), "rtt.base_station")):
        with pytest.raises((ValidationError, NotFoundError), match=says):
            store.put_rtt(*args)
