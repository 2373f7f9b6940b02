"""A host agent's resource report: CPU use, memory, running services and their request processing time.

The controller's monitor (Ngo et al. 2020, sec. III: the controller learns each host's state from reports) and
a ShareOn node's decision loop (Maheshwari et al. 2018, sec. III-C: "each node tracks its own compute and
networking resources, and is aware of the application latency of each request", and queries its neighbours
for them) ask an agent for the same report: one ``REPORT`` request on the agent's mutual-TLS control port,
answered by ``REPORT_REPLY {host, report}``.

What is measured, and where:

* CPU: the host's cgroup, ``edgemigrate/<netns name>`` - the parent of every service container the agent
  runs (the cgroup path :func:`edgemigrate.control.spec.build_bundle` gives them) and of any load put on the
  host (the ShareOn emulation's stress-ng). Cumulative use from ``cpuacct.usage`` (cgroup v1) or
  ``cpu.stat`` ``usage_usec`` (v2); the host's capacity is its CFS quota (``cpu.cfs_quota_us`` /
  ``cpu.max``), else the machine's cores. ``cpu_used_fraction`` = use between two readings / (elapsed x
  capacity), the readings at least :data:`MIN_CPU_INTERVAL_S` apart (the agent keeps the previous one).
* Memory: the same cgroup's ``memory.usage_in_bytes`` / ``memory.current``, out of its limit or the
  machine's ``MemTotal``.
* Processing time: for service kinds whose ``STATS`` line carries it (:data:`TIMED_KINDS`, e.g. platedetect),
  the mean of the service's recent requests, asked over the service address inside the host's namespace,
  with a short timeout and a bounded reply - what a container says is as hostile as what a peer says.

A report from a peer is parsed by :meth:`HostReport.from_dict`: known keys only, lists bounded before
anything is built, every number range-checked; anything else is a :class:`ReportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import EngineError, ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.engine.protocol.codec import Message, MsgType, ProtocolError
from edgemigrate.engine.strictjson import loads_untrusted
from edgemigrate.engine.transport.streams import connect

CGROUP_ROOT = Path("/sys/fs/cgroup")
MIN_CPU_INTERVAL_S = 0.2  # shorter spans between two readings are mostly scheduler tick noise
MAX_REPORT_SERVICES = 256
MAX_PROCESSING_S = 3600.0
MAX_CORES = 4096.0
TIMED_KINDS = frozenset({ServiceKind.PLATEDETECT})
SERVICE_STATS_TIMEOUT_S = 3.0  # STATS waits behind the requests queued before it (seconds on a loaded node)
SERVICE_STATS_MAX_BYTES = 4096
REPORT_TIMEOUT_S = 10.0
_SERVICE_STATES = frozenset({"running", "paused", "stopped", "absent", "created", "receiving", "restoring"})


class ReportError(ProtocolError):
    """A report (or a service's STATS line) that does not parse; the message names the key."""


@dataclass(frozen=True, slots=True)
class ServiceReport:
    name: str
    kind: str
    state: str
    resident_mb: float
    processing_s: float | None  # mean of the service's recent requests; None if the kind does not say
    cpu_s: float | None = None  # the CPU time of those requests (their cost on any node)


@dataclass(frozen=True, slots=True)
class HostReport:
    host: str
    at_s: float  # the host's wall clock (seconds since the epoch)
    cpu_cores: float
    cpu_used_fraction: float  # of cpu_cores, 0..1
    cpu_usage_s: float  # cumulative CPU seconds of the host's cgroup
    memory_used_bytes: int
    memory_total_bytes: int
    services: tuple[ServiceReport, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "at_s": self.at_s, "cpu_cores": self.cpu_cores,
                "cpu_used_fraction": self.cpu_used_fraction, "cpu_usage_s": self.cpu_usage_s,
                "memory_used_bytes": self.memory_used_bytes, "memory_total_bytes": self.memory_total_bytes,
                "services": [{"name": s.name, "kind": s.kind, "state": s.state, "resident_mb": s.resident_mb,
                              **({} if s.processing_s is None else {"processing_s": s.processing_s}),
                              **({} if s.cpu_s is None else {"cpu_s": s.cpu_s})}
                             for s in self.services]}

    @classmethod
    def from_dict(cls, obj: Any) -> HostReport:
        """A report from a peer: strict (see the module doc)."""
        d = _fields(obj, "report", {"host", "at_s", "cpu_cores", "cpu_used_fraction", "cpu_usage_s",
                                    "memory_used_bytes", "memory_total_bytes", "services"}, set())
        raw = d["services"]
        if not isinstance(raw, list):
            raise ReportError("report.services: expected a list")
        if len(raw) > MAX_REPORT_SERVICES:
            raise ReportError(f"report.services: {len(raw)} entries, at most {MAX_REPORT_SERVICES}")
        services = tuple(_service(s, f"report.services[{i}]") for i, s in enumerate(raw))
        return cls(_ident(d["host"], "report.host"), _num(d["at_s"], "report.at_s", 0, 1e11),
                   _num(d["cpu_cores"], "report.cpu_cores", 0, MAX_CORES),
                   _num(d["cpu_used_fraction"], "report.cpu_used_fraction", 0, 1),
                   _num(d["cpu_usage_s"], "report.cpu_usage_s", 0, 1e12),
                   int(_num(d["memory_used_bytes"], "report.memory_used_bytes", 0, 2**62, integer=True)),
                   int(_num(d["memory_total_bytes"], "report.memory_total_bytes", 0, 2**62, integer=True)),
                   services)

    def service(self, name: str) -> ServiceReport | None:
        return next((s for s in self.services if s.name == name), None)


def _fields(obj: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ReportError(f"{where}: expected an object")
    extra = set(obj) - required - optional
    if extra:
        raise ReportError(f"{where}: unknown keys {sorted(extra)[:5]}")
    missing = required - set(obj)
    if missing:
        raise ReportError(f"{where}: missing keys {sorted(missing)}")
    return obj


def _num(v: Any, where: str, lo: float, hi: float, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int if integer else int | float):
        raise ReportError(f"{where}: expected {'an integer' if integer else 'a number'}")
    if not (lo <= v <= hi):  # also refuses NaN
        raise ReportError(f"{where}: {v!r:.40} outside [{lo:g}, {hi:g}]")
    return float(v)


def _ident(v: Any, where: str) -> str:
    try:
        return check_id(v, where)
    except ValidationError as exc:
        raise ReportError(str(exc)) from None


def _service(obj: Any, where: str) -> ServiceReport:
    d = _fields(obj, where, {"name", "kind", "state", "resident_mb"}, {"processing_s", "cpu_s"})
    try:
        kind = ServiceKind(d["kind"]).value
    except ValueError:
        raise ReportError(f"{where}.kind: {str(d['kind'])[:40]!r} is not a service kind") from None
    if d["state"] not in _SERVICE_STATES:
        raise ReportError(f"{where}.state: {str(d['state'])[:40]!r} is not one of {sorted(_SERVICE_STATES)}")
    proc, cpu = d.get("processing_s"), d.get("cpu_s")
    return ServiceReport(_ident(d["name"], f"{where}.name"), kind, d["state"],
                         _num(d["resident_mb"], f"{where}.resident_mb", 0, 1e6),
                         None if proc is None else _num(proc, f"{where}.processing_s", 0, MAX_PROCESSING_S),
                         None if cpu is None else _num(cpu, f"{where}.cpu_s", 0, MAX_PROCESSING_S))


# ------------------------------------------------------------------------------------------- measuring
def host_cgroup(netns_path: str | None) -> str:
    """The host's cgroup, relative to a hierarchy's root (the parent of its services' cgroups)."""
    return f"edgemigrate/{Path(netns_path).name if netns_path else 'host'}"


def count_cpus(cpu_list: str) -> int:
    """CPUs in a kernel cpu list (``0-3,6``); 0 for anything else."""
    n = 0
    for part in cpu_list.strip().split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return 0
        n += (int(hi) - int(lo) + 1) if sep else 1
    return max(n, 0)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


class ResourceMeter:
    """Reads one host's cgroup (v1 or v2, whichever this machine mounts). ``clock`` and ``root`` are
    injectable: the tests give it a fake cgroup tree and a stepped clock."""

    def __init__(self, netns_path: str | None, root: Path = CGROUP_ROOT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rel = host_cgroup(netns_path)
        self.root = root
        self.clock = clock
        self.v2 = (root / "cgroup.controllers").exists()
        self._last: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def _file(self, controller: str, name: str) -> Path:
        return self.root / self.rel / name if self.v2 else self.root / controller / self.rel / name

    def cpu_usage_s(self) -> float:
        if self.v2:
            for line in (_read(self._file("cpu", "cpu.stat")) or "").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec" and value.strip().isdigit():
                    return int(value) / 1e6
            return 0.0
        text = (_read(self._file("cpuacct", "cpuacct.usage")) or "0").strip()
        return int(text) / 1e9 if text.isdigit() else 0.0

    def cpu_cores(self) -> float:
        """The host's CPU capacity: the machine's cores, or fewer if its cgroup is pinned to some (cpuset) or
        capped by a CFS quota - whichever is smallest."""
        machine = float(os.cpu_count() or 1)
        pinned = _read(self._file("cpuset", "cpuset.cpus.effective" if self.v2 else "cpuset.effective_cpus"))
        if pinned is not None and pinned.strip():
            n = count_cpus(pinned)
            if n > 0:
                machine = min(machine, float(n))
        if self.v2:
            quota, _, period = (_read(self._file("cpu", "cpu.max")) or "max").strip().partition(" ")
        else:
            quota = (_read(self._file("cpu", "cpu.cfs_quota_us")) or "-1").strip()
            period = (_read(self._file("cpu", "cpu.cfs_period_us")) or "100000").strip()
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            return min(machine, int(quota) / int(period))
        return machine

    def memory_bytes(self) -> tuple[int, int]:
        """(used, total): the host cgroup's use, out of its limit or the machine's memory."""
        used = _read(self._file("memory", "memory.current" if self.v2 else "memory.usage_in_bytes"))
        limit = _read(self._file("memory", "memory.max" if self.v2 else "memory.limit_in_bytes"))
        total = 0
        for line in (_read(Path("/proc/meminfo")) or "").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
        if limit is not None and limit.strip().isdigit():
            total = min(total or int(limit), int(limit))
        return (int(used) if used is not None and used.strip().isdigit() else 0), total

    def cpu_used_fraction(self) -> tuple[float, float]:
        """(fraction of capacity used since the previous reading, cumulative CPU seconds); waits for a
        second reading if the previous one is missing or too recent (blocking: call it in a thread)."""
        with self._lock:
            now, usage = self.clock(), self.cpu_usage_s()
            if self._last is None or now - self._last[0] < MIN_CPU_INTERVAL_S:
                self._last = (now, usage)
                time.sleep(MIN_CPU_INTERVAL_S)
                now, usage = self.clock(), self.cpu_usage_s()
            t0, u0 = self._last
            self._last = (now, usage)
        span = max(now - t0, 1e-9) * self.cpu_cores()
        return min(1.0, max(0.0, (usage - u0) / span)), usage


def service_timing(spec: ServiceSpec, netns_path: str | None) -> tuple[float, float | None] | None:
    """(processing, CPU) seconds of the service's recent requests, from its ``STATS`` line (None if the kind
    does not report them, the service does not answer in time, or says nothing usable). Blocking."""
    if spec.kind not in TIMED_KINDS:
        return None
    try:
        with in_netns(netns_path), socket.create_connection((spec.ip, spec.port), SERVICE_STATS_TIMEOUT_S) as s:
            s.settimeout(SERVICE_STATS_TIMEOUT_S)
            s.sendall(b"STATS\n")
            buf = b""
            while b"\n" not in buf and len(buf) < SERVICE_STATS_MAX_BYTES:
                part = s.recv(SERVICE_STATS_MAX_BYTES - len(buf))
                if not part:
                    break
                buf += part
    except (OSError, EngineError):
        return None
    return parse_service_stats(buf)


def _seconds(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= MAX_PROCESSING_S:
        return None
    return float(v) if math.isfinite(v) else None


def parse_service_stats(line: bytes) -> tuple[float, float | None] | None:
    """(``processing_s_mean``, ``cpu_s_mean`` or None) of a STATS line if sane, after at least one timed
    request; None otherwise (never raises: a container that says garbage is a service without timing)."""
    if b"\n" not in line:
        return None
    try:
        stats = loads_untrusted(line.split(b"\n", 1)[0], ReportError, "STATS", max_depth=2)
    except ReportError:
        return None
    if not isinstance(stats, dict):
        return None
    timed, proc = stats.get("timed"), _seconds(stats.get("processing_s_mean"))
    if proc is None or isinstance(timed, bool) or not isinstance(timed, int) or timed < 1:
        return None
    return proc, _seconds(stats.get("cpu_s_mean"))


def build_report(host: str, meter: ResourceMeter, services: Mapping[str, tuple[ServiceSpec, str]],
                 netns_path: str | None) -> HostReport:
    """The report of ``host`` now; ``services``: name -> (spec, runtime state). Blocking."""
    frac, usage = meter.cpu_used_fraction()
    used, total = meter.memory_bytes()
    out = []
    for name, (spec, state) in sorted(services.items())[:MAX_REPORT_SERVICES]:
        timing = service_timing(spec, netns_path) if state == "running" else None
        out.append(ServiceReport(name, spec.kind.value, state, spec.resident_mb, *(timing or (None, None))))
    return HostReport(host, time.time(), meter.cpu_cores(), frac, usage, used, total, tuple(out))


async def report_exchange(ctx: ssl.SSLContext, host: str, addr: tuple[str, int], timeout_s: float, what: str,
                          **body: Any) -> Message:
    """One ``REPORT`` (with ``body``: an admission request, a release) to the agent of ``host`` and its
    ``REPORT_REPLY``, on a connection of its own. ``what`` names the answer in the timeout's error."""
    conn = await connect(addr[0], addr[1], ctx, host, timeout_s)
    try:
        await conn.send(MsgType.REPORT, **body)
        return await asyncio.wait_for(conn.expect(MsgType.REPORT_REPLY), timeout_s)
    except TimeoutError:
        raise EngineError(f"no {what} from {host} within {timeout_s:.0f} s") from None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def query_report(ctx: ssl.SSLContext, host: str, addr: tuple[str, int],
                       timeout_s: float = REPORT_TIMEOUT_S) -> HostReport:
    """Ask the agent of ``host`` at ``addr`` for its report (with the operator's ``client`` context or a
    host's own). Raises an :class:`~edgemigrate.core.errors.EngineError` (refused, unreachable, garbage)."""
    reply = await report_exchange(ctx, host, addr, timeout_s, "report")
    if reply.body["host"] != host:
        raise ReportError(f"REPORT_REPLY.host: {reply.body['host'][:40]!r} from the agent of {host}")
    report = HostReport.from_dict(reply.body["report"])
    if report.host != host:
        raise ReportError(f"report.host: {report.host!r} from the agent of {host}")
    return report
