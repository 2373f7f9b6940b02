"""Store back ends for the controller tests: a SQLite file, and a PostgreSQL server of our own.

The PostgreSQL server is started once per test session with ``initdb`` + ``pg_ctl`` in a temporary
directory, listening on 127.0.0.1 at a free port (and a Unix socket in that directory, never the system's
``/var/run/postgresql``), and is stopped and removed at the end. initdb refuses to run as root, so as
root the server runs as the ``postgres`` user Debian's package creates (or one we create). Each test gets
a database of its own on that server.

Binaries are looked up under ``/usr/lib/postgresql/*/bin`` (Debian) and then on PATH. When they are
missing, the PostgreSQL half of the tests is skipped for a developer (not root) and FAILS as root: CI runs
as root after ``scripts/install-system-deps``, and a store test silently skipped there would hide a
broken back end.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_SUPERUSER = "edgemigrate"
FALLBACK_OS_USER = "edgemigrate-pg"
_db_counter = itertools.count()


def _pg_bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    return None


def _missing(reason: str) -> None:
    """Skip for a developer; fail as root, where CI runs and the server must be there."""
    if os.geteuid() == 0:
        pytest.fail(f"{reason}; as root this is an error (run scripts/install-system-deps)", pytrace=False)
    pytest.skip(reason)


def _os_user() -> str | None:
    """The unprivileged user to run the server as (None: ourselves, we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    FALLBACK_OS_USER], check=True, capture_output=True)
    return FALLBACK_OS_USER


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    root: Path
    os_user: str | None
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.os_user is not None:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.root)

    def init(self) -> None:
        # --no-sync and fsync=off: a throw-away test server; durability across a server crash is
        # PostgreSQL's business, not what these tests check (they reopen connections, not servers)
        out = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_SUPERUSER,
                        "--encoding=UTF8", "--locale=C", "--no-sync")
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr.strip()[-2000:]}")

    def start(self) -> None:
        errors = []
        for _ in range(3):  # a free port can be taken between probing and binding it
            self.port = _free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c max_connections=50")
            out = self._run(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w", "-t", "120",
                            "-l", str(self.root / "server.log"), "-o", opts)
            if out.returncode == 0:
                return
            errors.append(out.stderr.strip() + " " + (self.root / "server.log").read_text()[-500:])
        raise RuntimeError(f"pg_ctl start failed: {errors[-1]}")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")

    def url(self, db: str) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(_db_counter)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bindir()
    if bindir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin "
                 "or on PATH")
    assert bindir is not None
    os_user = _os_user()
    root = Path(tempfile.mkdtemp(prefix="edgemigrate-pg-"))
    if os_user is not None:
        pw = pwd.getpwnam(os_user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(bindir, root, os_user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store, once per back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url(server.create_database())
