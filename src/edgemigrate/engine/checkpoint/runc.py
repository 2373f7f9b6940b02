"""runc + CRIU driver (measured on this machine kind: runc 1.1.5, CRIU 4.2.1 built from source).

Facts this driver is built on:

* every runc call runs under ``nsenter --net=<host netns>`` so CRIU's TCP repair and its per-connection
  ``DROP`` rules (network lock) act in the host's namespace (``ip netns exec`` would also remount ``/sys``);
* the container's stdio must be pipes (a file on the host cannot be dumped as an external fd); runc restore
  re-attaches the pipes recorded in ``descriptors.json`` to its own stdio, so both ``run`` and ``restore``
  get fresh pipes whose read end a daemon thread drains into ``<log_dir>/<id>.log``;
* ``--tcp-established`` on dump and restore keeps client connections alive across the move;
* CRIU runs with ``--network-lock skip`` (runc 1.1 has no flag for it: a CRIU configuration file named in
  ``CRIU_CONFIG_FILE``, which ``runc`` passes on to ``criu swrk``): the caller locks the service's address
  itself before a final dump (:mod:`~edgemigrate.engine.checkpoint.netlock`), and a leave-running dump
  takes no lock at all; a restore takes the lock method recorded in the image (so images dumped with
  CRIU's iptables lock still unlock their rules);
* a bundle whose ``config.json`` names ``/run/netns/<host>`` restores into that host: mounts, namespaces and
  security settings come from the *destination's* bundle, never from the image;
* a restore with ``lazy_pages`` (``runc restore --lazy-pages``; images with at least ``LAZY_MIN_PAGES_BYTES``
  of pages) returns before the private memory is copied:
  a ``criu lazy-pages`` daemon, started first on the same work folder (CRIU's restore connects to its
  ``lazy-pages.socket`` there), serves the pages from the *local* image folder through userfaultfd - the
  faulting ones first, then all others in the background - and exits 0 when every page is in. Measured
  on a 200 MB counter: CRIU's restore 0.09 s instead of 0.20-0.59 s, the daemon done 0.24-0.29 s after it
  started (``docs/results/precopy-stall``). Until then the image folder must stay and the daemon must not
  fail: a closed userfaultfd would leave the missing pages reading as zeros, so :meth:`wait_pages`
  reports a failed copy and the caller discards the container.
* a page daemon never outlives its purpose: it runs in a process group of its own under coreutils
  ``timeout -s KILL`` (``LAZY_CONNECT_TIMEOUT_S + LAZY_COPY_TIMEOUT_S``, which holds even when the agent that
  started it is gone), a daemon started ahead of its restore (:meth:`prepare_restore`) that no restore takes
  within ``lazy_connect_timeout_s`` is killed, and every stop kills the whole group by its id. Its work folder
  records its group and container (``lazy-pages.owner``) until :meth:`wait_pages` or :meth:`kill` is done
  with it, so a new runtime on the same work root (an agent restarted after a crash) kills what is left
  (:func:`reap_stale_page_daemons`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgemigrate.core.errors import EngineError
from edgemigrate.core.ids import ID_PATTERN
from edgemigrate.engine.checkpoint.kdat import ensure_kdat_cache
from edgemigrate.engine.checkpoint.runtime import CheckpointStats, ContainerState, RestoreStats
from edgemigrate.engine.delta import IMG_SERVICE_MAGIC, decode_varint

log = logging.getLogger(__name__)

RUNC_TIMEOUT_S = 120.0
FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
FREEZE_POLL_S = 0.0005
FREEZE_TIMEOUT_S = 10.0  # CRIU's own limit for the same wait
CRIU_CONFIG = "network-lock skip\n"
LAZY_SOCKET = "lazy-pages.socket"  # criu/uffd.c LAZY_PAGES_SOCK_NAME, relative to the work folder
LAZY_START_TIMEOUT_S = 10.0  # the daemon reads the image's process tree and listens
LAZY_COPY_TIMEOUT_S = 120.0  # every page in (a local copy: seconds for gigabytes)
LAZY_LOG = "lazy-pages.log"
LAZY_OWNER = "lazy-pages.owner"  # {"pgid", "container", "pid"}: what a restarted agent must end
LAZY_OWNER_MAX_BYTES = 4096
# a daemon started ahead of its restore waits this long for the restore to connect (the restore follows
# the address take-over, normally well under a second later) before it is killed
LAZY_CONNECT_TIMEOUT_S = 30.0
RESTORE_WORK = "restore-work"
# Below this much page data a restore stays eager: the daemon's start (~40 ms idle, 0.1-0.2 s at a load of 20
# on 2 cores) then costs more than copying the pages in (eager, measured ~2.5 ms/MB at that load: a 200 MB
# counter's restore 0.93 s eager, 0.43 s lazy; a 3 MB Redis gained nothing and waited for the daemon).
LAZY_MIN_PAGES_BYTES = 64 << 20
STATS_MAGIC = 0x57093306
_US = 1e-6
_CONTAINER_ID = re.compile(ID_PATTERN)  # containers are named after checked service names


class CriuError(EngineError):
    """runc/CRIU failed; the message carries the tail of CRIU's log."""


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def read_dump_stats(path: Path) -> dict[str, int]:
    """Decode CRIU's ``stats-dump`` image (``stats_entry.dump``: field numbers of ``images/stats.proto``).

    Returns e.g. ``{"freezing_time_us": .., "frozen_time_us": .., "pages_written": ..}``; ``{}`` if absent.
    """
    names = {1: "freezing_time_us", 2: "frozen_time_us", 3: "memdump_time_us", 4: "memwrite_time_us",
             5: "pages_scanned", 6: "pages_skipped_parent", 7: "pages_written"}
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    if len(data) < 12 or int.from_bytes(data[0:4], "little") != IMG_SERVICE_MAGIC:
        return {}
    if int.from_bytes(data[4:8], "little") != STATS_MAGIC:
        return {}
    end = 12 + int.from_bytes(data[8:12], "little")
    pos = 12
    out: dict[str, int] = {}
    try:
        while pos < end:
            key, pos = decode_varint(data, pos, end)
            if key >> 3 == 1 and key & 7 == 2:  # nested dump_stats_entry
                length, pos = decode_varint(data, pos, end)
                sub_end = pos + length
                while pos < sub_end:
                    k, pos = decode_varint(data, pos, sub_end)
                    if k & 7 != 0:
                        break
                    v, pos = decode_varint(data, pos, sub_end)
                    if (k >> 3) in names:
                        out[names[k >> 3]] = v
                return out
            return out
    except ValueError:
        return out
    return out


_lazy_support: bool | None = None
_kdat_done: str | None = None


def kdat_cache_once() -> str:
    """:func:`~.kdat.ensure_kdat_cache`, once per process (before the first CRIU call of a runtime)."""
    global _kdat_done
    if _kdat_done is None or _kdat_done.startswith("failed"):
        _kdat_done = ensure_kdat_cache()
    return _kdat_done


def lazy_pages_supported(criu: str = "criu") -> bool:
    """CRIU's own check that this kernel lets it restore lazily (userfaultfd with non-cooperative events:
    the restored task's forks and mremaps must reach the daemon). Asked once per process."""
    global _lazy_support
    if _lazy_support is None:
        try:
            proc = subprocess.run([criu, "check", "--feature", "uffd-noncoop"], capture_output=True, text=True,
                                  timeout=30, check=False)
            _lazy_support = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _lazy_support = False
    return _lazy_support


@dataclass(frozen=True, slots=True)
class _LazyCopy:
    """A running ``criu lazy-pages`` daemon (the leader of its own process group) and its work folder."""

    proc: subprocess.Popen[bytes]
    work: Path


class RuncCriuRuntime:
    """:class:`~edgemigrate.engine.checkpoint.runtime.Runtime` over runc (cgroupfs) and CRIU."""

    def __init__(self, state_root: Path, netns_path: str | None, work_root: Path, log_dir: Path,
                 runc: str = "runc", lazy_min_pages_bytes: int = LAZY_MIN_PAGES_BYTES,
                 lazy_connect_timeout_s: float = LAZY_CONNECT_TIMEOUT_S) -> None:
        self.state_root = state_root
        self.lazy_min_pages_bytes = lazy_min_pages_bytes
        self.lazy_connect_timeout_s = lazy_connect_timeout_s
        # CRIU's kernel probe cached first (~45-60 ms of every dump and restore on a host without a tmpfs
        # /run, see kdat.py); asked now, not on the first restore: ``criu check`` took ~0.1 s inside a frozen
        # window (measured)
        self.kdat_cache = kdat_cache_once()
        self.lazy_supported = lazy_pages_supported()
        self.netns_path = netns_path
        self.work_root = work_root
        self.log_dir = log_dir
        self.runc = runc
        for d in (state_root, work_root, log_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.criu_config = state_root / "criu.conf"
        self.criu_config.write_text(CRIU_CONFIG)
        self._lazy: dict[str, _LazyCopy] = {}  # container -> its page daemon, until wait_pages or kill
        self._prepared: dict[str, _LazyCopy] = {}  # container -> a daemon started ahead of its restore
        self._lazy_lock = threading.Lock()
        # what a previous runtime on this work root (an agent that crashed) left running
        reap_stale_page_daemons(work_root, self)

    # ----------------------------------------------------------------------------------------- helpers
    def _argv(self, *args: str) -> list[str]:
        base = [self.runc, "--root", str(self.state_root), *args]
        if self.netns_path:
            return ["nsenter", f"--net={self.netns_path}", "--", *base]
        return base

    def _call(self, *args: str, what: str, work: Path | None = None, timeout_s: float = RUNC_TIMEOUT_S) -> str:
        env = {**os.environ, "CRIU_CONFIG_FILE": str(self.criu_config)}
        proc = subprocess.run(self._argv(*args), capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False, env=env)
        if proc.returncode != 0:
            raise CriuError(f"{what} failed: {self._why(proc.stderr, work)}")
        return proc.stdout

    @staticmethod
    def _why(stderr: str, work: Path | None) -> str:
        msg = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        if work is not None:
            for name in ("dump.log", "restore.log"):
                logf = work / name
                if logf.exists():
                    errs = [ln for ln in logf.read_text(errors="replace").splitlines()
                            if "Error" in ln and "RLIMIT_NOFILE" not in ln]
                    if errs:
                        msg += f" | {logf}: {errs[-1].strip()}"
        return msg[:600]

    def _spawn_with_pipes(self, argv: list[str], container_id: str, cwd: Path | None = None) -> None:
        """Run a detaching runc command with pipe stdio; drain stdout/stderr into the container log."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe()
        logf = self.log_dir / f"{container_id}.log"
        try:
            proc = subprocess.Popen(argv, stdin=in_r, stdout=out_w, stderr=err_w, cwd=cwd, close_fds=True)
        finally:
            os.close(out_w)
            os.close(err_w)
            os.close(in_r)
        # keep stdin's write end open so the service never reads EOF/SIGPIPE on stdin; close with the thread
        for fd in (out_r, err_r):
            threading.Thread(target=_drain, args=(fd, logf, in_w if fd == out_r else None), daemon=True).start()
        try:
            rc = proc.wait(timeout=RUNC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise CriuError(f"runc for {container_id} timed out") from None
        if rc != 0:
            time.sleep(0.05)
            tail = logf.read_text(errors="replace")[-400:] if logf.exists() else ""
            raise CriuError(f"runc {argv[argv.index('--root') + 2]} {container_id} failed (exit {rc}): {tail.strip()}")

    # --------------------------------------------------------------------------------------- interface
    def run(self, container_id: str, bundle: Path) -> int:
        self._spawn_with_pipes(self._argv("run", "-d", "--bundle", str(bundle), container_id), container_id)
        pid = self.pid(container_id)
        if pid is None:
            raise CriuError(f"container {container_id} exited right after start (see {self.log_dir})")
        return pid

    def work_dir(self, image_dir: Path, kind: str) -> Path:
        """CRIU's work folder for one image folder (``.../<session>/round-N``): named after both, since
        concurrent migrations all have a ``round-1`` and must not delete each other's logs."""
        return self.work_root / f"{image_dir.parent.name}-{image_dir.name}.{kind}"

    def checkpoint(self, container_id: str, image_dir: Path, *, leave_running: bool) -> CheckpointStats:
        """Dump without any network lock: before a final dump the caller has locked the service's address.

        A running container with ``leave_running`` is frozen here first (:meth:`_freeze`) and thawed when
        runc returns: CRIU, finding it frozen, skips its own freezing, which reads the v1 freezer once, sees
        ``FREEZING`` and sleeps 100 ms - measured on every round of an idle counter. Frozen here it is frozen
        for all of ``runc checkpoint`` (its start-up too), ~40 ms less than CRIU's freeze plus that sleep;
        ``frozen_s`` is then this whole freeze, which is what clients feel."""
        image_dir.mkdir(parents=True, exist_ok=False)
        work = self.work_dir(image_dir, "work")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        args = ["checkpoint", "--tcp-established", "--image-path", str(image_dir), "--work-path", str(work)]
        if leave_running:
            args.append("--leave-running")
        freezer = self._freezer(container_id) if leave_running else None
        t0 = time.perf_counter()
        freezing = self._freeze(freezer) if freezer is not None else 0.0
        try:
            self._call(*args, container_id, what=f"checkpoint of {container_id}", work=work)
        finally:
            if freezer is not None:
                freezer.write_text("THAWED")
        duration = time.perf_counter() - t0
        stats = read_dump_stats(work / "stats-dump")
        shutil.rmtree(work, ignore_errors=True)  # logs are kept only when CRIU fails
        criu = {"pages_written": stats.get("pages_written", -1),
                "pages_skipped_parent": stats.get("pages_skipped_parent", -1),
                "memdump_s": stats.get("memdump_time_us", 0) * _US, "memwrite_s": stats.get("memwrite_time_us", 0) * _US}
        if freezer is not None:
            return CheckpointStats(image_dir, _dir_bytes(image_dir), duration, duration - freezing, True, freezing,
                                   **criu)
        frozen = stats.get("frozen_time_us", 0) * _US or duration
        return CheckpointStats(image_dir, _dir_bytes(image_dir), duration, frozen, leave_running,
                               stats.get("freezing_time_us", 0) * _US, **criu)

    def _freezer(self, container_id: str) -> Path | None:
        """The v1 ``freezer.state`` of a *running* container (None: paused, absent, or no v1 freezer)."""
        st = self._state_json(container_id)
        pid = st.get("pid") if st is not None and st.get("status") == "running" else None
        if not isinstance(pid, int) or pid <= 0:
            return None
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for ln in lines:
            _, controllers, path = ln.split(":", 2)
            if "freezer" in controllers.split(","):
                f = FREEZER_ROOT / path.lstrip("/") / "freezer.state"
                return f if f.exists() else None
        return None

    def _freezer_from_state_file(self, container_id: str) -> Path | None:
        """The v1 ``freezer.state`` runc recorded for a container that is running now (THAWED), or None."""
        try:
            st = json.loads((self.state_root / container_id / "state.json").read_text())
            path = Path(st["cgroup_paths"]["freezer"]) / "freezer.state"
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if FREEZER_ROOT not in path.parents:
            return None
        try:
            return path if path.read_text().strip() == "THAWED" else None
        except OSError:
            return None

    @staticmethod
    def _freeze(state_file: Path) -> float:
        """Freeze a v1 freezer cgroup, polling every 0.5 ms until it is FROZEN; returns the seconds it took."""
        t0 = time.perf_counter()
        state_file.write_text("FROZEN")
        deadline = t0 + FREEZE_TIMEOUT_S
        while state_file.read_text().strip() != "FROZEN":
            if time.perf_counter() > deadline:
                state_file.write_text("THAWED")
                raise CriuError(f"{state_file.parent.name} did not freeze in {FREEZE_TIMEOUT_S:.0f} s")
            time.sleep(FREEZE_POLL_S)
        return time.perf_counter() - t0

    def restore(self, container_id: str, bundle: Path, image_dir: Path, *, lazy_pages: bool = False) -> RestoreStats:
        """Restore; with ``lazy_pages`` (and a kernel that allows it) the memory follows in the background
        (see the module docstring) and the caller must :meth:`wait_pages` before it trusts the container."""
        work = self.work_dir(image_dir, RESTORE_WORK)
        lazy = lazy_pages and self._lazy_pays(image_dir)
        with self._lazy_lock:
            prepared = self._prepared.pop(container_id, None)
        if prepared is not None and not (lazy and prepared.work == work and prepared.proc.poll() is None):
            _stop(prepared)
            prepared = None
        if prepared is None:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        argv = self._argv("restore", "-d", "--tcp-established", *(["--lazy-pages"] if lazy else []),
                          "--image-path", str(image_dir), "--work-path", str(work), "--bundle", str(bundle),
                          container_id)
        t0 = time.perf_counter()
        daemon = (prepared or self._start_lazy_pages(image_dir, work, container_id)) if lazy else None
        try:
            self._spawn_with_pipes(argv, container_id)
        except CriuError as exc:
            _stop(daemon)
            raise CriuError(f"{exc} {self._why('', work)}") from None
        duration = time.perf_counter() - t0
        pid = self.pid(container_id)
        if pid is None:
            _stop(daemon)
            raise CriuError(f"restored container {container_id} is not running {self._why('', work)}")
        if daemon is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            _write_owner(daemon, container_id, pid)  # a restarted agent kills this copy only, by its pid
            with self._lazy_lock:
                self._lazy[container_id] = daemon
        return RestoreStats(pid, duration, daemon is not None)

    def prepare_restore(self, container_id: str, image_dir: Path) -> None:
        """Head start of ``restore(container_id, .., image_dir, lazy_pages=True)``: its page daemon starts
        now (it reads the image and listens, ~40 ms), so that overlaps the caller's other work - on the
        destination, taking the service address over. The restore uses it; :meth:`kill` ends it unused."""
        if not self._lazy_pays(image_dir):
            return
        work = self.work_dir(image_dir, RESTORE_WORK)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        daemon = self._start_lazy_pages(image_dir, work, container_id)
        with self._lazy_lock:
            old = self._prepared.pop(container_id, None)
            self._prepared[container_id] = daemon
        _stop(old)
        # no restore may come (the source aborted, the agent's session died): the head start is bounded
        timer = threading.Timer(self.lazy_connect_timeout_s, self._expire_prepared, (container_id, daemon))
        timer.daemon = True
        timer.start()

    def _expire_prepared(self, container_id: str, daemon: _LazyCopy) -> None:
        """Kill a daemon started ahead of a restore that has not taken it (a taken one is left alone)."""
        with self._lazy_lock:
            if self._prepared.get(container_id) is not daemon:
                return
            del self._prepared[container_id]
        log.warning("no restore of %s took its page daemon in %.0f s; killed", container_id,
                    self.lazy_connect_timeout_s)
        _stop(daemon)
        shutil.rmtree(daemon.work, ignore_errors=True)

    def _lazy_pays(self, image_dir: Path) -> bool:
        """A lazy restore is possible here and the image holds enough pages for it to pay."""
        if not self.lazy_supported:
            return False
        try:
            pages = sum(p.stat().st_size for p in image_dir.glob("pages-*.img"))
        except OSError:
            return False
        return pages >= self.lazy_min_pages_bytes

    def _start_lazy_pages(self, image_dir: Path, work: Path, container_id: str) -> _LazyCopy:
        """Start ``criu lazy-pages`` on the image folder and wait until it listens on its socket.

        Under ``timeout -s KILL`` in a new session: its whole life is bounded even if this process dies
        before it can stop it, and :func:`_stop` kills the group (``timeout`` and CRIU) by its id."""
        lifetime_s = self.lazy_connect_timeout_s + LAZY_COPY_TIMEOUT_S
        proc = subprocess.Popen(["timeout", "-s", "KILL", f"{lifetime_s:.0f}",
                                 "criu", "lazy-pages", "--images-dir", str(image_dir), "--work-dir", str(work),
                                 "-v2", "--log-file", LAZY_LOG], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True)
        daemon = _LazyCopy(proc, work)
        _write_owner(daemon, container_id, None)
        deadline = time.perf_counter() + LAZY_START_TIMEOUT_S
        while not (work / LAZY_SOCKET).exists():
            if proc.poll() is not None or time.perf_counter() > deadline:
                _stop(daemon)
                raise CriuError(f"criu lazy-pages did not start (exit {proc.returncode}): {_lazy_log_tail(work)}")
            time.sleep(FREEZE_POLL_S)
        return daemon

    def wait_pages(self, container_id: str) -> float:
        """Wait for the lazy page copy of a restored container (0.0 if there is none); CriuError if it
        failed or took longer than ``LAZY_COPY_TIMEOUT_S`` (its log is kept in the work folder)."""
        with self._lazy_lock:
            daemon = self._lazy.pop(container_id, None)
        if daemon is None:
            return 0.0
        t0 = time.perf_counter()
        try:
            rc: int | None = daemon.proc.wait(timeout=LAZY_COPY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _stop(daemon)
            rc = None
        if rc != 0:
            _stop(daemon)  # the caller discards the container; the log stays
            raise CriuError(f"lazy page copy of {container_id} failed (exit {rc}): {_lazy_log_tail(daemon.work)}")
        shutil.rmtree(daemon.work, ignore_errors=True)
        return time.perf_counter() - t0

    def pause(self, container_id: str) -> None:
        """Freeze the container's cgroup itself: what ``runc pause`` does on cgroup v1 (runc then reports it
        ``paused``, from the freezer), without runc's start-up inside the final round's frozen window (a
        ``runc pause`` took 10-33 ms of it, measured on the 200 MB counter). The freezer is found in runc's
        own ``state.json`` (a file read, not a ``runc state`` process); ``runc pause`` when it is not there
        or the container is not running."""
        freezer = self._freezer_from_state_file(container_id)
        if freezer is None:
            self._call("pause", container_id, what=f"pause of {container_id}")
            return
        self._freeze(freezer)

    def resume(self, container_id: str) -> None:
        self._call("resume", container_id, what=f"resume of {container_id}")

    def kill(self, container_id: str) -> None:
        try:
            self._kill(container_id)
        finally:
            # after the container: a page daemon gone first would let its missing pages read as zeros
            with self._lazy_lock:
                daemons = [self._lazy.pop(container_id, None), self._prepared.pop(container_id, None)]
            for daemon in daemons:
                _stop(daemon)

    def _kill(self, container_id: str) -> None:
        state = self.state(container_id)
        if state is ContainerState.ABSENT:
            return
        subprocess.run(self._argv("kill", container_id, "KILL"), capture_output=True, check=False, timeout=30)
        if state is ContainerState.PAUSED:
            # a frozen task cannot die, and runc's delete then leaves its cgroup behind (busy); thawed with
            # SIGKILL pending it exits before it runs another instruction of its own
            subprocess.run(self._argv("resume", container_id), capture_output=True, check=False, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.state(container_id) is ContainerState.RUNNING:
            time.sleep(0.02)
        subprocess.run(self._argv("delete", "--force", container_id), capture_output=True, check=False,
                       timeout=30)

    def _state_json(self, container_id: str) -> dict[str, object] | None:
        proc = subprocess.run(self._argv("state", container_id), capture_output=True, text=True, check=False,
                              timeout=30)
        if proc.returncode != 0:
            return None
        try:
            obj = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None

    def state(self, container_id: str) -> ContainerState:
        st = self._state_json(container_id)
        if st is None:
            return ContainerState.ABSENT
        try:
            return ContainerState(str(st.get("status")))
        except ValueError:
            return ContainerState.STOPPED

    def pid(self, container_id: str) -> int | None:
        st = self._state_json(container_id)
        if st is None or st.get("status") != "running":
            return None
        pid = st.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def list(self) -> list[str]:
        proc = subprocess.run(self._argv("list", "--format", "json"), capture_output=True, text=True,
                              check=False, timeout=30)
        try:
            items = json.loads(proc.stdout or "null") or []
        except json.JSONDecodeError:
            return []
        return [str(i.get("id")) for i in items if isinstance(i, dict)]


def _stop(daemon: _LazyCopy | None) -> None:
    """Kill a page daemon's process group (``timeout`` and CRIU) by its id and reap the leader; its owner
    record goes with it, so a restarted agent finds nothing of it to end (the log stays)."""
    if daemon is None:
        return
    (daemon.work / LAZY_OWNER).unlink(missing_ok=True)
    if daemon.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.proc.pid, signal.SIGKILL)  # the leader's pid is the group's id (new session)
        daemon.proc.wait(timeout=30)
    # a leader already reaped is not signalled: its group id may belong to someone else by now (timeout
    # exits only after CRIU has)


def _write_owner(daemon: _LazyCopy, container_id: str, pid: int | None) -> None:
    tmp = daemon.work / (LAZY_OWNER + ".tmp")
    tmp.write_text(json.dumps({"pgid": daemon.proc.pid, "container": container_id, "pid": pid}))
    tmp.replace(daemon.work / LAZY_OWNER)


def _read_owner(work: Path) -> tuple[int, str, int | None] | None:
    """A work folder's owner record, or None when it is missing or malformed (never trusted further)."""
    try:
        with (work / LAZY_OWNER).open("rb") as f:
            obj = json.loads(f.read(LAZY_OWNER_MAX_BYTES + 1)[:LAZY_OWNER_MAX_BYTES])
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    pgid, container, pid = obj.get("pgid"), obj.get("container"), obj.get("pid")
    if not (isinstance(pgid, int) and pgid > 1 and isinstance(container, str) and _CONTAINER_ID.fullmatch(container)
            and (pid is None or (isinstance(pid, int) and pid > 1))):
        return None
    return pgid, container, pid


def _group_serves(pgid: int, work: Path) -> bool:
    """Whether process ``pgid`` is still a page daemon of ``work`` (its pid may have been reused since)."""
    try:
        argv = Path(f"/proc/{pgid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    try:
        return b"lazy-pages" in argv and str(work).encode() in argv and os.getpgid(pgid) == pgid
    except ProcessLookupError:
        return False


def reap_stale_page_daemons(work_root: Path, runtime: RuncCriuRuntime) -> list[str]:
    """End what a previous runtime on ``work_root`` left of its lazy restores; returns the containers killed.

    A work folder with an owner record is one whose :meth:`RuncCriuRuntime.wait_pages` never finished, so
    the destination never answered RESTORED for that copy (wait_pages comes first): the copy was never
    committed and its memory may be incomplete. Its daemon's group is killed (only if the pid still runs
    that daemon), the container is killed if it is the one restored there (same pid; or, when the restore
    itself was cut short, whatever runs under that name now - nothing else can, the restore held the name),
    and the folder goes."""
    killed: list[str] = []
    try:
        folders = [d for d in work_root.iterdir() if d.is_dir() and d.name.endswith("." + RESTORE_WORK)]
    except OSError:
        return killed
    for work in folders:
        owner = _read_owner(work)
        if owner is not None:
            pgid, container, pid = owner
            if _group_serves(pgid, work):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                log.warning("killed the stale page daemon of %s (process group %d)", work.name, pgid)
            now = runtime.pid(container)
            if now is not None and (pid is None or now == pid):
                log.warning("killing %s: restored lazily by a previous agent that never saw its pages in",
                            container)
                runtime.kill(container)
                killed.append(container)
        shutil.rmtree(work, ignore_errors=True)
    return killed


def _lazy_log_tail(work: Path) -> str:
    try:
        lines = (work / LAZY_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    errs = [ln.strip() for ln in lines if "Error" in ln]
    return (errs[-1] if errs else (lines[-1].strip() if lines else "empty log"))[:400]


def _drain(fd: int, logf: Path, close_with: int | None) -> None:
    try:
        with logf.open("ab") as out:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out.write(data)
                out.flush()
    finally:
        os.close(fd)
        if close_with is not None:
            os.close(close_with)
