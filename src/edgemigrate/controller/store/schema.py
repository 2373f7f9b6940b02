"""The store's tables, one text for both back ends.

The two dialects differ only in the auto-numbered key and the float type, filled in by
:func:`ddl`. Enum columns carry CHECK constraints and references carry foreign keys so that the database
itself refuses what the Python checks should already have refused (a second line of defence for rows
written by another tool). ``user`` is a reserved word in PostgreSQL, hence ``user_name``.

Bump :data:`SCHEMA_VERSION` with every change to these statements, and add the statements that upgrade
the previous version to ``_UPGRADES`` (``Store`` runs them, in one transaction, when it opens an older
store); a store written by a newer version is refused, never guessed at.
"""

from __future__ import annotations

SCHEMA_VERSION = 2

# version 2: the wired RTT from each base station to each host (RTT_bs of Ngo et al. 2020, eq. 4)
_RTT_TABLE = """
CREATE TABLE IF NOT EXISTS bs_host_rtts (
    base_station TEXT NOT NULL REFERENCES base_stations (name),
    host TEXT NOT NULL REFERENCES hosts (name),
    rtt_s {real} NOT NULL,
    PRIMARY KEY (base_station, host)
)
"""

# the statements that take a store from version k to k + 1 (only additions: old rows stay valid)
_UPGRADES: dict[int, str] = {1: _RTT_TABLE}

_TABLES = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('edge', 'cloud')),
    address TEXT NOT NULL,
    cpu_cores {real} NOT NULL,
    memory_bytes BIGINT NOT NULL,
    disk_bytes BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('up', 'down')),
    cpu_events_per_s {real}
);
CREATE TABLE IF NOT EXISTS base_stations (
    name TEXT PRIMARY KEY,
    x_m {real} NOT NULL,
    y_m {real} NOT NULL,
    bandwidth_bps {real} NOT NULL,
    max_users INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    sla_delay_s {real}
);
CREATE TABLE IF NOT EXISTS placements (
    user_name TEXT NOT NULL REFERENCES users (name),
    service TEXT NOT NULL,
    host TEXT NOT NULL REFERENCES hosts (name),
    base_station TEXT NOT NULL REFERENCES base_stations (name),
    updated_at_s {real} NOT NULL,
    PRIMARY KEY (user_name, service)
);
CREATE TABLE IF NOT EXISTS task_delays (
    id {id},
    user_name TEXT NOT NULL REFERENCES users (name),
    at_s {real} NOT NULL,
    service TEXT NOT NULL,
    e2e_delay_s {real} NOT NULL,
    task_size_bytes BIGINT
);
CREATE INDEX IF NOT EXISTS task_delays_user_at ON task_delays (user_name, at_s);
CREATE TABLE IF NOT EXISTS rssi_samples (
    id {id},
    user_name TEXT NOT NULL REFERENCES users (name),
    at_s {real} NOT NULL,
    base_station TEXT NOT NULL REFERENCES base_stations (name),
    rssi_dbm {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS rssi_samples_user_at ON rssi_samples (user_name, at_s);
CREATE TABLE IF NOT EXISTS host_reports (
    id {id},
    host TEXT NOT NULL REFERENCES hosts (name),
    at_s {real} NOT NULL,
    cpu_used_cores {real} NOT NULL,
    memory_used_bytes BIGINT NOT NULL,
    disk_used_bytes BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS host_reports_host_at ON host_reports (host, at_s);
CREATE TABLE IF NOT EXISTS host_report_services (
    report_id BIGINT NOT NULL REFERENCES host_reports (id),
    service TEXT NOT NULL,
    PRIMARY KEY (report_id, service)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id {id},
    host TEXT NOT NULL REFERENCES hosts (name),
    service TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('checkpoint', 'restore')),
    at_s {real} NOT NULL,
    size_bytes BIGINT NOT NULL,
    duration_s {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_host_kind ON checkpoints (host, kind, at_s);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('migration', 'handover', 'migration_handover')),
    user_name TEXT NOT NULL REFERENCES users (name),
    service TEXT NOT NULL,
    source_host TEXT REFERENCES hosts (name),
    dest_host TEXT REFERENCES hosts (name),
    source_bs TEXT REFERENCES base_stations (name),
    dest_bs TEXT REFERENCES base_stations (name),
    state TEXT NOT NULL CHECK (state IN ('planned', 'running', 'done', 'failed', 'rolled_back')),
    migrate_at_s {real},
    handover_at_s {real},
    detail TEXT NOT NULL,
    created_at_s {real} NOT NULL,
    updated_at_s {real} NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS actions_one_in_flight ON actions (user_name, service)
    WHERE state IN ('planned', 'running');
CREATE INDEX IF NOT EXISTS actions_state ON actions (state);
""" + _RTT_TABLE + ";"

ONE_IN_FLIGHT_INDEX = "actions_one_in_flight"


def upgrade_ddl(found: int, *, id_column: str, real: str) -> list[str] | None:
    """The statements that take a store at version ``found`` to :data:`SCHEMA_VERSION`; None if there is
    no upgrade path from it."""
    if not 1 <= found <= SCHEMA_VERSION:
        return None
    text = ";".join(_UPGRADES[v] for v in range(found, SCHEMA_VERSION)).format(id=id_column, real=real)
    return [s.strip() for s in text.split(";") if s.strip()]


def ddl(*, id_column: str, real: str) -> list[str]:
    """The CREATE statements, one per list entry, for a dialect's key column and float type."""
    text = _TABLES.format(id=id_column, real=real)
    return [s.strip() for s in text.split(";") if s.strip()]
