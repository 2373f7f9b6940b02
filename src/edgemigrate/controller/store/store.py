"""The controller's central store (Ngo et al. 2020, sec. III: the "Central Database").

One class over either back end (:mod:`.backends`), opened from a URL with :func:`open_store`. Every public
method is one transaction: a report with many samples, a finished action and the placement it changes,
are written whole or not at all. Rows are validated when they are constructed (:mod:`.rows`); what
depends on the data already stored (does the host exist, is the action still RUNNING) is checked inside
the transaction, so the answer cannot change between the check and the write.

Concurrency: several controllers (or a controller and an operator's tool) may share one store. Action
state changes are compare-and-set: the caller names the state it saw, and if someone else changed the
action first the call fails with :class:`~.errors.ConflictError` instead of overwriting their result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType

from edgemigrate.controller.store.backends import Backend, Tx, open_backend
from edgemigrate.controller.store.checks import MAX_DETAIL, check_float, check_int, check_text, check_time
from edgemigrate.controller.store.errors import ConflictError, NotFoundError, SchemaVersionError
from edgemigrate.controller.store.rows import (
    IN_FLIGHT,
    Action,
    ActionKind,
    ActionState,
    BaseStation,
    CheckpointKind,
    CheckpointRecord,
    DelaySample,
    Host,
    HostReport,
    HostRole,
    HostState,
    MuReport,
    Placement,
    RssiSample,
    User,
    check_transition,
)
from edgemigrate.controller.store.schema import SCHEMA_VERSION, ddl, upgrade_ddl
from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id

MAX_QUERY_ROWS = 100_000
MAX_RTT_S = 60.0  # a wired RTT beyond a minute is a unit mistake
log = logging.getLogger(__name__)

_ACTION_COLS = ("id, kind, user_name, service, source_host, dest_host, source_bs, dest_bs, state, "
                "migrate_at_s, handover_at_s, detail, created_at_s, updated_at_s")
_IN_FLIGHT_SQL = "(" + ", ".join(f"'{s.value}'" for s in sorted(IN_FLIGHT, key=lambda s: s.value)) + ")"


def open_store(url: str, *, clock: Callable[[], float] = time.time) -> Store:
    """Open (and on first use create) the store at ``url``; see :func:`.backends.open_backend` for URLs."""
    return Store(open_backend(url), clock=clock)


def _check_limit(limit: object) -> int:
    return check_int(limit, "limit", lo=1, hi=MAX_QUERY_ROWS)


def _action(row: tuple) -> Action:
    (aid, kind, user, service, sh, dh, sb, db, state, mig, ho, detail, created, updated) = row
    return Action(aid, ActionKind(kind), user, service, sh, dh, sb, db, ActionState(state),
                  mig, ho, detail, created, updated)


class Store:
    """Hosts, base stations, users, placements, measurements and actions, on SQLite or PostgreSQL."""

    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time) -> None:
        self._db = backend
        self._clock = clock
        try:
            self._init_schema()
        except BaseException:
            backend.close()
            raise

    @property
    def backend_name(self) -> str:
        return self._db.name

    # -- life cycle ------------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        with self._db.write() as tx:
            self._db.lock_schema(tx)
            tables = self._db.tables(tx)
            if "schema_version" not in tables:
                if tables:
                    raise SchemaVersionError(f"store {self._db.shown_url}: the database holds tables "
                                             f"({', '.join(sorted(tables)[:5])}) but no schema_version; "
                                             "it is not an edgemigrate store")
                for statement in ddl(id_column=self._db.id_column, real=self._db.real):
                    tx.run(statement)
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                return
            rows = tx.run("SELECT version FROM schema_version")
            where = f"store {self._db.shown_url}"
            if len(rows) != 1 or not isinstance(rows[0][0], int):
                raise SchemaVersionError(f"{where}: schema_version must hold one integer row, found {len(rows)} rows")
            found = rows[0][0]
            if found > SCHEMA_VERSION:
                raise SchemaVersionError(f"{where}: schema version {found} is newer than this edgemigrate's "
                                         f"{SCHEMA_VERSION}; upgrade edgemigrate")
            if found < SCHEMA_VERSION:
                statements = upgrade_ddl(found, id_column=self._db.id_column, real=self._db.real)
                if statements is None:
                    raise SchemaVersionError(f"{where}: schema version {found} is older than {SCHEMA_VERSION} and "
                                             "there is no upgrade for it")
                for statement in statements:  # same transaction: an interrupted upgrade leaves the old version
                    tx.run(statement)
                tx.run("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
                log.warning("%s: schema upgraded from version %d to %d", where, found, SCHEMA_VERSION)

    def schema_version(self) -> int:
        with self._db.read() as tx:
            return int(tx.run("SELECT version FROM schema_version")[0][0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- lookups used inside transactions -------------------------------------------------------------

    @staticmethod
    def _require(tx: Tx, table: str, name: str, what: str) -> None:
        if not tx.run(f"SELECT 1 FROM {table} WHERE name = ?", (name,)):
            raise NotFoundError(f"{what}: {name!r} is not in the store")

    # -- hosts, base stations, users ------------------------------------------------------------------

    def put_host(self, host: Host) -> None:
        """Add ``host`` or replace the row of the host with its name."""
        _require_type(host, Host, "host")
        with self._db.write() as tx:
            tx.run("INSERT INTO hosts (name, role, address, cpu_cores, memory_bytes, disk_bytes, state, "
                   "cpu_events_per_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                   "role = excluded.role, address = excluded.address, cpu_cores = excluded.cpu_cores, "
                   "memory_bytes = excluded.memory_bytes, disk_bytes = excluded.disk_bytes, "
                   "state = excluded.state, cpu_events_per_s = excluded.cpu_events_per_s",
                   (host.name, host.role.value, host.address, float(host.cpu_cores), host.memory_bytes,
                    host.disk_bytes, host.state.value, _opt_float(host.cpu_events_per_s)))

    def set_host_state(self, name: str, state: HostState) -> None:
        check_id(name, "host")
        _require_type(state, HostState, "host.state")
        with self._db.write() as tx:
            self._require(tx, "hosts", name, "host")
            tx.run("UPDATE hosts SET state = ? WHERE name = ?", (state.value, name))

    def host(self, name: str) -> Host:
        check_id(name, "host")
        with self._db.read() as tx:
            rows = tx.run("SELECT name, role, address, cpu_cores, memory_bytes, disk_bytes, state, cpu_events_per_s "
                          "FROM hosts WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"host: {name!r} is not in the store")
        return _host(rows[0])

    def hosts(self) -> list[Host]:
        with self._db.read() as tx:
            rows = tx.run("SELECT name, role, address, cpu_cores, memory_bytes, disk_bytes, state, cpu_events_per_s "
                          "FROM hosts ORDER BY name")
        return [_host(r) for r in rows]

    def put_base_station(self, bs: BaseStation) -> None:
        _require_type(bs, BaseStation, "base_station")
        with self._db.write() as tx:
            tx.run("INSERT INTO base_stations (name, x_m, y_m, bandwidth_bps, max_users) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET x_m = excluded.x_m, "
                   "y_m = excluded.y_m, bandwidth_bps = excluded.bandwidth_bps, "
                   "max_users = excluded.max_users",
                   (bs.name, float(bs.x_m), float(bs.y_m), float(bs.bandwidth_bps), bs.max_users))

    def base_stations(self) -> list[BaseStation]:
        with self._db.read() as tx:
            rows = tx.run("SELECT name, x_m, y_m, bandwidth_bps, max_users FROM base_stations ORDER BY name")
        return [BaseStation(*r) for r in rows]

    def put_rtt(self, base_station: str, host: str, rtt_s: float) -> None:
        """Record the wired RTT from ``base_station`` to ``host`` (RTT_bs of Ngo et al. 2020, eq. 4)."""
        check_id(base_station, "rtt.base_station")
        check_id(host, "rtt.host")
        check_float(rtt_s, "rtt.rtt_s", hi=MAX_RTT_S)
        with self._db.write() as tx:
            self._require(tx, "base_stations", base_station, "rtt.base_station")
            self._require(tx, "hosts", host, "rtt.host")
            tx.run("INSERT INTO bs_host_rtts (base_station, host, rtt_s) VALUES (?, ?, ?) "
                   "ON CONFLICT (base_station, host) DO UPDATE SET rtt_s = excluded.rtt_s",
                   (base_station, host, float(rtt_s)))

    def rtts(self) -> dict[tuple[str, str], float]:
        """Every recorded (base station, host) -> RTT in seconds."""
        with self._db.read() as tx:
            rows = tx.run("SELECT base_station, host, rtt_s FROM bs_host_rtts ORDER BY base_station, host")
        return {(b, h): float(r) for b, h, r in rows}

    def put_user(self, user: User) -> None:
        _require_type(user, User, "user")
        sla = None if user.sla_delay_s is None else float(user.sla_delay_s)
        with self._db.write() as tx:
            tx.run("INSERT INTO users (name, sla_delay_s) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET sla_delay_s = excluded.sla_delay_s", (user.name, sla))

    def users(self) -> list[User]:
        with self._db.read() as tx:
            rows = tx.run("SELECT name, sla_delay_s FROM users ORDER BY name")
        return [User(*r) for r in rows]

    # -- placements -------------------------------------------------------------------------------------

    def put_placement(self, p: Placement) -> None:
        """Record where ``p.user``'s ``p.service`` runs; refused while an action for it is in flight
        (the action's outcome decides the placement then, see :meth:`transition`)."""
        _require_type(p, Placement, "placement")
        with self._db.write() as tx:
            self._require(tx, "users", p.user, "placement.user")
            self._require(tx, "hosts", p.host, "placement.host")
            self._require(tx, "base_stations", p.base_station, "placement.base_station")
            self._lock_placement(tx, p.user, p.service)
            self._refuse_in_flight(tx, p.user, p.service)
            tx.run("INSERT INTO placements (user_name, service, host, base_station, updated_at_s) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_name, service) DO UPDATE SET "
                   "host = excluded.host, base_station = excluded.base_station, "
                   "updated_at_s = excluded.updated_at_s",
                   (p.user, p.service, p.host, p.base_station, self._clock()))

    def remove_placement(self, user: str, service: str) -> None:
        """Forget where ``user``'s ``service`` runs (it was stopped); refused while an action for it is in flight."""
        check_id(user, "placement.user")
        check_id(service, "placement.service")
        with self._db.write() as tx:
            found = self._lock_placement(tx, user, service)
            self._refuse_in_flight(tx, user, service)
            if not found:
                raise NotFoundError(f"placement: {user}/{service} is not in the store")
            tx.run("DELETE FROM placements WHERE user_name = ? AND service = ?", (user, service))

    def placement(self, user: str, service: str) -> Placement:
        check_id(user, "placement.user")
        check_id(service, "placement.service")
        with self._db.read() as tx:
            rows = tx.run("SELECT user_name, service, host, base_station FROM placements "
                          "WHERE user_name = ? AND service = ?", (user, service))
        if not rows:
            raise NotFoundError(f"placement: {user}/{service} is not in the store")
        return Placement(*rows[0])

    def placements(self, *, user: str | None = None, host: str | None = None) -> list[Placement]:
        """All placements, or those of one user and/or on one host."""
        sql = "SELECT user_name, service, host, base_station FROM placements WHERE 1 = 1"
        params: list[object] = []
        if user is not None:
            sql += " AND user_name = ?"
            params.append(check_id(user, "placement.user"))
        if host is not None:
            sql += " AND host = ?"
            params.append(check_id(host, "placement.host"))
        with self._db.read() as tx:
            rows = tx.run(sql + " ORDER BY user_name, service", params)
        return [Placement(*r) for r in rows]

    def _lock_placement(self, tx: Tx, user: str, service: str) -> tuple | None:
        """The placement row (host, base_station), locked until the transaction ends (PostgreSQL).

        Every writer that checks both a placement and the actions (put/remove here, planning an action)
        takes it before looking at the actions, so a plan and a placement change for one service cannot
        interleave: the second sees the first's result (the in-flight action, or the moved service).
        """
        rows = tx.run("SELECT host, base_station FROM placements WHERE user_name = ? AND service = ?"
                      + self._db.for_update, (user, service))
        return rows[0] if rows else None

    @staticmethod
    def _refuse_in_flight(tx: Tx, user: str, service: str) -> None:
        rows = tx.run(f"SELECT id, state FROM actions WHERE user_name = ? AND service = ? "
                      f"AND state IN {_IN_FLIGHT_SQL}", (user, service))
        if rows:
            raise ConflictError(f"{user}/{service}: action {rows[0][0]} is {rows[0][1]}; "
                                "wait for it to finish")

    # -- measurements (append-only) -----------------------------------------------------------------------

    def record_mu_report(self, report: MuReport) -> None:
        """Append one MU report: every task delay and RSSI sample in it, or none."""
        _require_type(report, MuReport, "mu_report")
        with self._db.write() as tx:
            self._require(tx, "users", report.user, "mu_report.user")
            for r in {r.base_station for r in report.rssi}:
                self._require(tx, "base_stations", r, "mu_report.rssi.base_station")
            at_s = float(report.at_s)
            tx.run_many("INSERT INTO task_delays (user_name, at_s, service, e2e_delay_s, task_size_bytes) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(report.user, at_s, d.service, float(d.e2e_delay_s), d.task_size_bytes)
                         for d in report.delays])
            tx.run_many("INSERT INTO rssi_samples (user_name, at_s, base_station, rssi_dbm) VALUES (?, ?, ?, ?)",
                        [(report.user, at_s, r.base_station, float(r.rssi_dbm)) for r in report.rssi])

    def record_host_report(self, report: HostReport) -> None:
        """Append one agent resource report with the services it lists (atomically)."""
        _require_type(report, HostReport, "host_report")
        with self._db.write() as tx:
            self._require(tx, "hosts", report.host, "host_report.host")
            rid = tx.run("INSERT INTO host_reports (host, at_s, cpu_used_cores, memory_used_bytes, "
                         "disk_used_bytes) VALUES (?, ?, ?, ?, ?) RETURNING id",
                         (report.host, float(report.at_s), float(report.cpu_used_cores),
                          report.memory_used_bytes, report.disk_used_bytes))[0][0]
            tx.run_many("INSERT INTO host_report_services (report_id, service) VALUES (?, ?)",
                        [(rid, service) for service in report.services])

    def record_checkpoint(self, rec: CheckpointRecord) -> None:
        """Append one checkpoint or restore measurement (bytes and seconds) of a host."""
        _require_type(rec, CheckpointRecord, "checkpoint")
        with self._db.write() as tx:
            self._require(tx, "hosts", rec.host, "checkpoint.host")
            tx.run("INSERT INTO checkpoints (host, service, kind, at_s, size_bytes, duration_s) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (rec.host, rec.service, rec.kind.value, float(rec.at_s), rec.size_bytes,
                    float(rec.duration_s)))

    def task_delays(self, user: str, *, since_s: float = 0.0, limit: int = 1000) -> list[DelaySample]:
        """The newest ``limit`` task delays ``user`` reported at or after ``since_s``, oldest first."""
        check_id(user, "user")
        with self._db.read() as tx:
            rows = tx.run("SELECT user_name, at_s, service, e2e_delay_s, task_size_bytes FROM task_delays "
                          "WHERE user_name = ? AND at_s >= ? ORDER BY at_s DESC, id DESC LIMIT ?",
                          (user, _since(since_s), _check_limit(limit)))
        return [DelaySample(*r) for r in reversed(rows)]

    def rssi_samples(self, user: str, *, since_s: float = 0.0, limit: int = 1000) -> list[RssiSample]:
        """The newest ``limit`` RSSI samples ``user`` reported at or after ``since_s``, oldest first."""
        check_id(user, "user")
        with self._db.read() as tx:
            rows = tx.run("SELECT user_name, at_s, base_station, rssi_dbm FROM rssi_samples "
                          "WHERE user_name = ? AND at_s >= ? ORDER BY at_s DESC, id DESC LIMIT ?",
                          (user, _since(since_s), _check_limit(limit)))
        return [RssiSample(*r) for r in reversed(rows)]

    def host_reports(self, host: str, *, since_s: float = 0.0, limit: int = 1000) -> list[HostReport]:
        """The newest ``limit`` resource reports of ``host`` at or after ``since_s``, oldest first."""
        check_id(host, "host")
        with self._db.read() as tx:
            params = (host, _since(since_s), _check_limit(limit))
            newest = ("SELECT id FROM host_reports WHERE host = ? AND at_s >= ? "
                      "ORDER BY at_s DESC, id DESC LIMIT ?")
            rows = tx.run("SELECT id, host, at_s, cpu_used_cores, memory_used_bytes, disk_used_bytes "
                          f"FROM host_reports WHERE id IN ({newest}) ORDER BY at_s, id", params)
            # same snapshot (a read transaction), so the subquery selects the same reports again
            services: dict[int, list[str]] = {}
            for rid, service in tx.run("SELECT report_id, service FROM host_report_services "
                                       f"WHERE report_id IN ({newest}) ORDER BY service", params):
                services.setdefault(rid, []).append(service)
        return [HostReport(*fields, services=tuple(services.get(rid, ()))) for rid, *fields in rows]

    def checkpoint_history(self, host: str, kind: CheckpointKind | None = None, *,
                           limit: int = 1000) -> list[CheckpointRecord]:
        """The newest ``limit`` checkpoints/restores on ``host`` (one kind, or both), oldest first."""
        check_id(host, "host")
        sql = "SELECT host, service, kind, at_s, size_bytes, duration_s FROM checkpoints WHERE host = ?"
        params: list[object] = [host]
        if kind is not None:
            _require_type(kind, CheckpointKind, "checkpoint.kind")
            sql += " AND kind = ?"
            params.append(kind.value)
        with self._db.read() as tx:
            rows = tx.run(sql + " ORDER BY at_s DESC, id DESC LIMIT ?", [*params, _check_limit(limit)])
        return [CheckpointRecord(h, s, CheckpointKind(k), at, size, dur) for h, s, k, at, size, dur in reversed(rows)]

    # -- actions ----------------------------------------------------------------------------------------

    def plan_action(self, action: Action) -> Action:
        """Record a new PLANNED action and return it with the store's timestamps.

        Refused unless the user, hosts and base stations exist, the user's service has a placement whose
        host/base station are the action's source, and no other action for that service is in flight.
        """
        _require_type(action, Action, "action")
        if action.state is not ActionState.PLANNED:
            raise ValidationError(f"action.state: a new action starts PLANNED, not {action.state.name}")
        now = self._clock()
        with self._db.write() as tx:
            self._require(tx, "users", action.user, "action.user")
            for field, table in _ACTION_REFS:
                value = getattr(action, field)
                if value is not None:
                    self._require(tx, table, value, f"action.{field}")
            self._check_source(tx, action, self._lock_placement(tx, action.user, action.service))
            if tx.run("SELECT 1 FROM actions WHERE id = ?", (action.id,)):
                raise ConflictError(f"action {action.id}: an action with this id already exists")
            self._refuse_in_flight(tx, action.user, action.service)
            # the partial unique index actions_one_in_flight settles a race between two planners that
            # both passed the check above (PostgreSQL, READ COMMITTED): the second insert fails
            tx.run(f"INSERT INTO actions ({_ACTION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (action.id, action.kind.value, action.user, action.service, action.source_host,
                    action.dest_host, action.source_bs, action.dest_bs, ActionState.PLANNED.value,
                    _opt_float(action.migrate_at_s), _opt_float(action.handover_at_s), action.detail, now, now))
        return replace(action, created_at_s=now, updated_at_s=now)

    @staticmethod
    def _check_source(tx: Tx, action: Action, placement: tuple | None) -> None:
        if placement is None:
            raise NotFoundError(f"action {action.id}: {action.user}/{action.service} has no placement to move")
        host, bs = placement
        if action.source_host is not None and action.source_host != host:
            raise ConflictError(f"action {action.id}: source_host is {action.source_host!r} but "
                                f"{action.user}/{action.service} runs on {host!r}")
        if action.source_bs is not None and action.source_bs != bs:
            raise ConflictError(f"action {action.id}: source_bs is {action.source_bs!r} but "
                                f"{action.user}/{action.service} is reached through {bs!r}")

    def transition(self, action_id: str, expected: ActionState, new: ActionState, *,
                   detail: str | None = None) -> Action:
        """Move action ``action_id`` from ``expected`` to ``new`` and return the updated action.

        Illegal edges (:data:`~.rows.TRANSITIONS`) raise :class:`~.errors.IllegalTransitionError`
        before the database is touched. If the action is no longer in ``expected`` - another writer
        got there first - :class:`~.errors.ConflictError` is raised and nothing changes. Reaching DONE
        also moves the placement to the action's destination, in the same transaction, so a crash can
        never leave a finished migration with the old placement. ``detail`` (e.g. why it failed)
        replaces the stored one when given.
        """
        check_id(action_id, "action.id")
        _require_type(expected, ActionState, "expected")
        _require_type(new, ActionState, "new")
        if detail is not None:
            check_text(detail, "action.detail", max_len=MAX_DETAIL, allow_empty=True)
        check_transition(action_id, expected, new)
        now = self._clock()
        with self._db.write() as tx:
            rows = tx.run(f"SELECT {_ACTION_COLS} FROM actions WHERE id = ?{self._db.for_update}", (action_id,))
            if not rows:
                raise NotFoundError(f"action: {action_id!r} is not in the store")
            current = _action(rows[0])
            if current.state is not expected:
                raise ConflictError(f"action {action_id}: expected {expected.name} but it is "
                                    f"{current.state.name} (changed by another writer); reread it")
            text = current.detail if detail is None else detail
            # compare-and-set even though the row is locked: it costs nothing and keeps the rule
            # visible in the one statement that writes the state
            done = tx.run("UPDATE actions SET state = ?, detail = ?, updated_at_s = ? "
                          "WHERE id = ? AND state = ? RETURNING id",
                          (new.value, text, now, action_id, expected.value))
            if not done:
                raise ConflictError(f"action {action_id}: changed by another writer; reread it")
            if new is ActionState.DONE:
                self._apply(tx, current, now)
        return replace(current, state=new, detail=text, updated_at_s=now)

    @staticmethod
    def _apply(tx: Tx, action: Action, now: float) -> None:
        """The placement change a finished action stands for (inside its DONE transaction)."""
        if action.dest_host is not None:
            tx.run("UPDATE placements SET host = ?, updated_at_s = ? WHERE user_name = ? AND service = ?",
                   (action.dest_host, now, action.user, action.service))
        if action.dest_bs is not None:
            # a user has one radio link: a handover changes how every one of its services is reached
            tx.run("UPDATE placements SET base_station = ?, updated_at_s = ? WHERE user_name = ?",
                   (action.dest_bs, now, action.user))

    def action(self, action_id: str) -> Action:
        check_id(action_id, "action.id")
        with self._db.read() as tx:
            rows = tx.run(f"SELECT {_ACTION_COLS} FROM actions WHERE id = ?", (action_id,))
        if not rows:
            raise NotFoundError(f"action: {action_id!r} is not in the store")
        return _action(rows[0])

    def in_flight(self) -> list[Action]:
        """Actions PLANNED or RUNNING, oldest first: what a restarted controller must finish or roll back."""
        with self._db.read() as tx:
            rows = tx.run(f"SELECT {_ACTION_COLS} FROM actions WHERE state IN {_IN_FLIGHT_SQL} "
                          "ORDER BY created_at_s, id")
        return [_action(r) for r in rows]

    def actions(self, *, user: str | None = None, state: ActionState | None = None,
                limit: int = 1000) -> list[Action]:
        """The newest ``limit`` actions (of one user and/or in one state), oldest first."""
        sql = f"SELECT {_ACTION_COLS} FROM actions WHERE 1 = 1"
        params: list[object] = []
        if user is not None:
            sql += " AND user_name = ?"
            params.append(check_id(user, "action.user"))
        if state is not None:
            _require_type(state, ActionState, "action.state")
            sql += " AND state = ?"
            params.append(state.value)
        with self._db.read() as tx:
            rows = tx.run(sql + " ORDER BY created_at_s DESC, id DESC LIMIT ?", [*params, _check_limit(limit)])
        return [_action(r) for r in reversed(rows)]


_ACTION_REFS = (("source_host", "hosts"), ("dest_host", "hosts"),
                ("source_bs", "base_stations"), ("dest_bs", "base_stations"))


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _since(since_s: object) -> float:
    return check_time(since_s, "since_s")


def _require_type(value: object, cls: type, what: str) -> None:
    if not isinstance(value, cls):
        raise ValidationError(f"{what}: expected a {cls.__name__}, got {type(value).__name__}")


def _host(row: tuple) -> Host:
    name, role, address, cpu, mem, disk, state, events_per_s = row
    return Host(name, HostRole(role), address, cpu, mem, disk, HostState(state), events_per_s)

