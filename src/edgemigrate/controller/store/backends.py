"""The two databases behind the store, reduced to what :class:`~.store.Store` needs.

A back end opens a connection from a URL and hands out transactions; a transaction runs SQL written with
``?`` placeholders and returns rows as tuples. Everything else (schema, checks, state machine) is shared,
so both back ends hold the same schema and enforce the same rules.

- SQLite (the default: embedded, nothing to set up): WAL journal so readers never block the writer, a busy
  timeout so a second writer waits instead of failing at once, and ``BEGIN IMMEDIATE`` for every write
  transaction so the write lock is taken up front (a deferred transaction that upgrades its lock half-way
  can fail with "database is locked" despite the timeout).
- PostgreSQL (many edge hosts, many writers): psycopg 3. Read-modify-write takes row locks with
  ``SELECT ... FOR UPDATE`` (:attr:`Backend.for_update`), so two controllers changing one action are
  serialised and the later one sees the earlier one's result. Read transactions are REPEATABLE READ so a
  query of several statements sees one snapshot. A connection that broke (server restart, network) fails
  the call that found it broken and is reopened by the next one; a transaction is never retried by the
  store, because whether a broken COMMIT took effect is unknown and the caller must reread.

Driver errors never escape: :meth:`Backend.translate` turns them into one-line
:class:`~.errors.StoreError` messages naming the store (with any password removed from the URL).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from edgemigrate.controller.store.errors import ConflictError, StoreError
from edgemigrate.controller.store.schema import ONE_IN_FLIGHT_INDEX
from edgemigrate.core.errors import EdgeMigrateError, ValidationError

SQLITE_BUSY_TIMEOUT_S = 10.0
SQLITE_WAL_RETRY_S = 0.01
PG_CONNECT_TIMEOUT_S = 10
MAX_URL_LEN = 2048

Row = tuple[Any, ...]


class Tx(Protocol):
    """One open transaction."""

    def run(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Execute ``sql`` (``?`` placeholders) and return its rows (empty for statements without rows)."""
        ...

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute ``sql`` once per parameter row (batched by the driver: one round trip, not one per row)."""
        ...


class Backend(Protocol):
    name: str  # "sqlite" | "postgresql"
    shown_url: str  # the URL without password, for messages
    id_column: str  # DDL of an auto-numbered primary key
    real: str  # DDL type of a float column
    for_update: str  # suffix of a SELECT that locks the rows it reads

    def write(self) -> Any:
        """Context manager: a transaction that may write (committed on success, rolled back on error)."""
        ...

    def read(self) -> Any:
        """Context manager: a transaction that only reads (one consistent snapshot)."""
        ...

    def tables(self, tx: Tx) -> set[str]:
        """Names of the tables in the store's database (schema)."""
        ...

    def lock_schema(self, tx: Tx) -> None:
        """Serialise schema creation between processes opening a new store at once."""
        ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """``url`` without its password (it goes into error messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url[:80]
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_backend(url: object) -> Backend:
    """The back end for ``url``: ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
    ``sqlite://:memory:`` or ``postgresql://user@host:port/db`` (``postgres://`` too)."""
    if not isinstance(url, str):
        raise ValidationError(f"store URL: expected a string, got {type(url).__name__}")
    if len(url) > MAX_URL_LEN or not url.isprintable():
        raise ValidationError(f"store URL {url[:60]!r}...: too long or contains control characters")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return SqliteBackend.open(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresBackend.open(url)
    raise ValidationError(
        f"store URL {redact(url)!r}: unknown scheme {scheme!r} (expected sqlite:// or postgresql://)")


class _SqliteTx:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def run(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._conn.executemany(sql, [tuple(r) for r in rows])


def _enable_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch a SQLite database to WAL, waiting while another connection is switching it.

    Several stores opened at once on a new file race to change its journal mode, and SQLite answers "database
    is locked" at once there instead of calling the busy handler, so the wait is ours (bounded like the busy
    timeout)."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(SQLITE_WAL_RETRY_S)


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite:"):]
    if rest in ("//:memory:", "///:memory:"):
        return ":memory:"
    if not rest.startswith("///") or len(rest) == 3:
        raise ValidationError(
            f"store URL {url!r}: expected sqlite:///relative/path.db, sqlite:////absolute/path.db "
            "or sqlite://:memory:")
    path = rest[3:]
    if "?" in path or "#" in path:
        raise ValidationError(f"store URL {url!r}: query strings and fragments are not supported")
    return path


@dataclass
class SqliteBackend:
    conn: sqlite3.Connection
    shown_url: str
    lock: threading.Lock
    name: str = "sqlite"
    id_column: str = "INTEGER PRIMARY KEY"
    real: str = "REAL"
    for_update: str = ""  # BEGIN IMMEDIATE already holds the database's single write lock

    @classmethod
    def open(cls, url: str) -> SqliteBackend:
        path = _sqlite_path(url)
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise StoreError(f"store {url}: directory {str(Path(path).parent)!r} does not exist")
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False: self.lock
            # serialises the threads that share this connection
            conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if path != ":memory:":
                _enable_wal(conn, time.monotonic() + SQLITE_BUSY_TIMEOUT_S)
                conn.execute("PRAGMA synchronous = FULL")  # a committed action survives a power cut
        except sqlite3.Error as exc:
            raise StoreError(f"store {url}: cannot open: {exc}") from None
        return cls(conn, url, threading.Lock())

    @contextmanager
    def _tx(self, begin: str) -> Iterator[Tx]:
        with self.lock:
            try:
                self.conn.execute(begin)
            except sqlite3.Error as exc:
                raise self.translate(exc) from None
            try:
                yield _SqliteTx(self.conn)
            except BaseException as exc:
                if self.conn.in_transaction:  # some errors (disk full, I/O) already rolled it back
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self.translate(exc) from None
                raise
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise self.translate(exc) from None

    def write(self) -> Any:
        return self._tx("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._tx("BEGIN")

    def translate(self, exc: sqlite3.Error) -> EdgeMigrateError:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, sqlite3.IntegrityError):
            if "actions.user_name, actions.service" in msg:
                return ConflictError(f"store {self.shown_url}: another action for this user and service "
                                     "is already in flight")
            if "UNIQUE" in msg:
                return ConflictError(f"store {self.shown_url}: written by another writer first: {msg}")
            return StoreError(f"store {self.shown_url}: refused by the database: {msg}")
        if "locked" in msg or "busy" in msg:
            return StoreError(f"store {self.shown_url}: {msg} (another writer held it longer than "
                              f"{SQLITE_BUSY_TIMEOUT_S:g} s)")
        return StoreError(f"store {self.shown_url}: {msg}")

    def tables(self, tx: Tx) -> set[str]:
        rows = tx.run("SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_'")
        return {name for (name,) in rows}

    def lock_schema(self, tx: Tx) -> None:
        pass  # BEGIN IMMEDIATE already excludes every other writer

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _PgTx:
    __slots__ = ("_cur",)

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def run(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        # our SQL never contains a literal '?' or '%', so the placeholder swap is exact
        self._cur.execute(sql.replace("?", "%s"), tuple(params))
        return self._cur.fetchall() if self._cur.description is not None else []

    def run_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])


def _pg_connect(url: str, shown: str) -> Any:
    import psycopg  # imported here so that SQLite-only deployments never need the driver

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"store {shown}: cannot connect: {first}") from None


# any constant: the advisory lock that serialises schema creation between controllers
_SCHEMA_LOCK_KEY = 0x65646D67


@dataclass
class PostgresBackend:
    conn: Any  # psycopg.Connection
    shown_url: str
    lock: threading.Lock
    url: str = field(default="", repr=False)  # with the password: only for reconnecting
    name: str = "postgresql"
    id_column: str = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    real: str = "DOUBLE PRECISION"
    for_update: str = " FOR UPDATE"

    @classmethod
    def open(cls, url: str) -> PostgresBackend:
        shown = redact(url)
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ValidationError(f"store URL {shown!r}: {exc}") from None
        if not parts.path.strip("/"):
            raise ValidationError(f"store URL {shown!r}: no database name (postgresql://user@host:port/db)")
        return cls(_pg_connect(url, shown), shown, threading.Lock(), url)

    @contextmanager
    def _tx(self, read_only: bool) -> Iterator[Tx]:
        import psycopg

        with self.lock:
            if self.conn.closed or self.conn.broken:
                self.conn.close()
                self.conn = _pg_connect(self.url, self.shown_url)
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    if read_only:
                        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield _PgTx(cur)
            except psycopg.Error as exc:
                raise self.translate(exc) from None

    def write(self) -> Any:
        return self._tx(read_only=False)

    def read(self) -> Any:
        return self._tx(read_only=True)

    def translate(self, exc: Exception) -> EdgeMigrateError:
        from psycopg import errors as pgerr

        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, pgerr.UniqueViolation) and ONE_IN_FLIGHT_INDEX in msg:
            return ConflictError(f"store {self.shown_url}: another action for this user and service "
                                 "is already in flight")
        if isinstance(exc, pgerr.UniqueViolation):
            return ConflictError(f"store {self.shown_url}: written by another writer first: {msg}")
        # a deadlock needs two writers locking placements and actions in opposite orders (a plan and a
        # finishing action of one user); PostgreSQL aborts one of them, which may simply retry
        if isinstance(exc, pgerr.SerializationFailure | pgerr.DeadlockDetected):
            return ConflictError(f"store {self.shown_url}: concurrent change, retry: {msg}")
        if isinstance(exc, pgerr.IntegrityError):
            return StoreError(f"store {self.shown_url}: refused by the database: {msg}")
        return StoreError(f"store {self.shown_url}: {msg}")

    def tables(self, tx: Tx) -> set[str]:
        return {name for (name,) in tx.run("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}

    def lock_schema(self, tx: Tx) -> None:
        tx.run("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK_KEY,))

    def close(self) -> None:
        with self.lock:
            self.conn.close()
