"""ShareOn's real two-node emulation (Maheshwari et al. 2018, sec. IV-D, fig. 6).

Two edge hosts of the testbed (:class:`edgemigrate.cluster.LocalCluster`), the plate-recognition service
(:mod:`edgemigrate.workloads.platedetect`) on node 1 (``edge1``) serving one client on the testbed's client
host, real CPU load on both nodes: node 1's ramps 0 -> 1 while node 2's ramps 1 -> 0, in steps. Each host's
cgroup (``edgemigrate/<netns>``, the parent of its containers' cgroups) is pinned to its own CPU, and a load of
L is stress-ng in that cgroup and the host's network namespace, capped by a CFS quota at L of the host's CPU
(:class:`HostLoad`), so the service keeps about 1 - L of its CPU and its processing time grows with L - real
CPU contention, nothing simulated.

Two runs per repeat: ``shareon`` - node 1's own decision loop (:class:`edgemigrate.edgenode.loop.NodeLoop`:
its reports and node 2's over the agents' control plane, ``ShareOnAgent.decide``) migrates the container to
node 2 by itself when the measured total delay crosses ``threshold_s`` (100 ms, as in the paper), under a
standing grant; ``nomig`` - the same ramp with no decision loop. The client's measured total delay per
request (its round trip: network + queueing + processing) is the curve of fig. 6.

Results folder: ``delay.csv`` (every request of every run), ``decisions.jsonl`` (node 1's record),
``summary.csv`` + ``summary.md`` (per repeat: the load and delay at the migration, mean delay over the
rest of the run after it, the same span without migration, state checks), ``delay.png``,
``manifest.json`` (resolved config, versions, git SHA, seed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.control.grants import grant
from edgemigrate.control.netns import in_netns
from edgemigrate.control.reports import CGROUP_ROOT, count_cpus, host_cgroup, query_report
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.core.runs import new_run_dir, run_name
from edgemigrate.costs.shareon import RegionThresholds
from edgemigrate.edgenode.loop import NodeLoop, NodeLoopConfig, jsonl_recorder
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.tls import host_dir
from edgemigrate.experiments.results import json_line, manifest, write_json, write_table
from edgemigrate.policies.shareon import ShareOnAgent, ShareOnParams

log = logging.getLogger(__name__)

SERVICE = "plates"
PORT = 7003
USER = "u1"
NODE1, NODE2 = "edge1", "edge2"
CGROUP_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class EmulationConfig:
    """The emulation's parameters (reasons in ``docs/shareon-emulation.md``)."""

    repeats: int = 3
    seed: int = 0
    step_s: float = 8.0  # time at each load level
    levels: int = 6  # load levels 0, 0.2, ..., 1 (node 2: 1, 0.8, ..., 0)
    threshold_s: float = 0.1  # t_app,th: 100 ms (sec. IV-D)
    # > 0: the threshold is at least this many times the service's idle processing time (a machine shared with
    # other work may not serve the request in 100 ms even idle; the CI test uses it, the experiment does not)
    threshold_idle_factor: float = 0.0
    request_interval_s: float = 0.25
    # 0: no CPU quota; the two hosts' cgroups share the machine by equal weight. A quota throttles the
    # service with its host, and runc's pause (the freeze of pre-copy's final round) of a throttled container
    # fails ("unable to freeze", measured here with 0.5 cores and 6 workers): the migration would be refused
    host_cores: float = 0.0
    # each host's cgroup pinned to its own CPU (node 1: CPU 0, node 2: CPU 1) when the machine has two: two
    # one-CPU edge machines, whose load is a fraction of their own CPU (HostLoad)
    pin_cpus: bool = True
    stress_workers: int = 2
    load_weight: int = 8  # the load cgroup's weight in processes: the service keeps >= 1 / (1 + weight) of its CPU
    admit_below: float | None = 0.85  # node 2 admits the move only below this utilisation (control/grants.py)
    image: str = "street-small"
    calibrate_s: float = 3.0
    period_s: float = 1.0  # node 1's query/decision period
    confirm_rounds: int = 2  # consecutive rounds over the threshold before node 1 moves (edgenode.loop)
    tail_s: float = 4.0  # the client goes on this long at the last loads after the ramp (and any migration)

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.levels < 2 or self.stress_workers < 1 or not 1 <= self.load_weight <= 100:
            raise ConfigError("emulation: repeats >= 1, levels >= 2, stress_workers >= 1 and load_weight in 1..100 "
                              "are required")
        if self.threshold_idle_factor < 0:
            raise ConfigError("emulation.threshold_idle_factor: must be >= 0")
        if self.host_cores < 0 or self.tail_s < 0:
            raise ConfigError("emulation.host_cores and emulation.tail_s: must be >= 0")
        for key in ("step_s", "threshold_s", "request_interval_s", "calibrate_s", "period_s"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"emulation.{key}: must be > 0, got {getattr(self, key)!r}")

    def threshold(self, t_p_avg_s: float) -> float:
        return max(self.threshold_s, self.threshold_idle_factor * t_p_avg_s)

    def loads(self) -> list[float]:
        return [i / (self.levels - 1) for i in range(self.levels)]


# ------------------------------------------------------------------------------------------ host load
def _write(path: Path, text: str) -> None:
    path.write_text(text)


class HostLoad:
    """Real CPU load on one host: a fraction of the host's own CPU, taken by stress-ng in its cgroup and
    network namespace (cgroup v1 or v2).

    The host's cgroup is pinned to ``cpus`` (cpuset) when given - each edge host then is a one-CPU machine, as
    fig. 6's two nodes are two machines - and optionally capped by a CFS quota of ``cores``. The workers run in
    a child cgroup ``load`` beside the containers' cgroups, with a CFS quota of ``level`` x the host's capacity
    and the weight of ``weight`` ordinary processes: the service keeps about ``1 - level`` of the host while
    that is more than its weighted share ``1 / (1 + weight)``, so its processing time grows like
    ``1 / (1 - level)`` up to ``1 + weight`` times its idle time - gradually, as in fig. 6 - instead of jumping
    as soon as any worker is busy (the weighted, unquota'd load of the first version). A heavy weight starves
    the service: runc then cannot freeze it for pre-copy's final round, and other work on the machine is pushed
    off the loaded CPU onto the other host's (both measured: ``docs/shareon-emulation.md``). The service's own
    cgroup has no quota.
    """

    def __init__(self, netns_path: str, cores: float, workers: int, cpus: str | None = None, weight: int = 8,
                 root: Path = CGROUP_ROOT) -> None:
        self.netns_path, self.workers = netns_path, workers
        self.rel = host_cgroup(netns_path)
        self.v2 = (root / "cgroup.controllers").exists()
        quota = str(max(1000, round(cores * CGROUP_PERIOD_US))) if cores > 0 else None
        self.capacity = float(os.cpu_count() or 1)
        if cpus:
            self.capacity = min(self.capacity, float(count_cpus(cpus) or self.capacity))
        if cores > 0:
            self.capacity = min(self.capacity, cores)
        self.join: list[Path] = []
        if self.v2:
            host = root / self.rel
            host.mkdir(parents=True, exist_ok=True)
            for parent in (root, root / "edgemigrate", host):
                with contextlib.suppress(OSError):
                    _write(parent / "cgroup.subtree_control", "+cpu +cpuset" if parent != host else "+cpu")
            _write(host / "cpu.max", f"{quota or 'max'} {CGROUP_PERIOD_US}")
            if cpus:
                _write(host / "cpuset.cpus", cpus)
            self.load_dirs = [host / "load"]
            (host / "load").mkdir(exist_ok=True)
            _write(host / "load" / "cpu.weight", str(min(10000, 100 * weight)))
            self.quota_file = host / "load" / "cpu.max"
        else:
            cpu = root / "cpu" / self.rel
            cpu.mkdir(parents=True, exist_ok=True)
            _write(cpu / "cpu.cfs_period_us", str(CGROUP_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", quota or "-1")
            self.load_dirs = [root / "cpu" / self.rel / "load", root / "cpuacct" / self.rel / "load"]
            for d in self.load_dirs:
                d.mkdir(parents=True, exist_ok=True)
            _write(self.load_dirs[0] / "cpu.shares", str(1024 * weight))
            _write(self.load_dirs[0] / "cpu.cfs_period_us", str(CGROUP_PERIOD_US))
            self.quota_file = self.load_dirs[0] / "cpu.cfs_quota_us"
            if cpus:
                self.join.append(self._pin_v1(root / "cpuset", cpus))
        for d in self.load_dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.level = 0.0

    def _pin_v1(self, cs_root: Path, cpus: str) -> Path:
        """Pin the host's cpuset cgroup (and whatever runc already made below it) to ``cpus``; returns it.

        A new v1 cpuset cgroup has no CPUs until given some (each level copies its parent's), and a parent may
        not drop CPUs a child still uses, so children are narrowed first."""
        host = cs_root / self.rel
        d = cs_root
        for part in Path(self.rel).parts:
            parent, d = d, d / part
            d.mkdir(exist_ok=True)
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not (d / key).read_text().strip():
                    _write(d / key, (parent / key).read_text().strip())
        for dirpath, _, _ in sorted(os.walk(host), key=lambda w: -w[0].count(os.sep)):
            _write(Path(dirpath) / "cpuset.cpus", cpus)
        return host

    def set(self, level: float) -> None:
        """Load ``level`` in [0, 1] of the host's CPU (0 stops stress-ng)."""
        self.stop()
        self.level = level
        if level <= 0:
            return
        quota = max(1000, round(level * self.capacity * CGROUP_PERIOD_US))
        _write(self.quota_file, f"{quota} {CGROUP_PERIOD_US}" if self.v2 else str(quota))
        join = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in (*self.load_dirs, *self.join))
        # the shell joins the load cgroups first, so stress-ng and every worker it forks start inside them
        self.proc = subprocess.Popen(
            ["sh", "-c", f"{join}; exec nsenter --net={self.netns_path} -- stress-ng --cpu {self.workers} --quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        for d in self.load_dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


# ---------------------------------------------------------------------------------------------- client
class Client(threading.Thread):
    """The user: a DETECT request every ``interval_s`` from the client host's namespace, one connection
    (it survives the migration: the service's TCP state moves with it); rows (t, delay, counter) or errors."""

    def __init__(self, netns_path: str, ip: str, image: str, interval_s: float, t0: float) -> None:
        super().__init__(daemon=True)
        self.netns_path, self.ip, self.image, self.interval_s, self.t0 = netns_path, ip, image, interval_s, t0
        self.rows: list[tuple[float, float, int]] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        sock: socket.socket | None = None
        while not self.stopping.is_set():
            t_next = time.monotonic() + self.interval_s
            try:
                if sock is None:
                    with in_netns(self.netns_path):
                        sock = socket.create_connection((self.ip, PORT), 10)
                    sock.settimeout(30)
                    reader = sock.makefile("rb")
                t = time.monotonic()
                sock.sendall(f"DETECT {USER} {self.image}\n".encode())
                line = reader.readline().decode()
                delay = time.monotonic() - t
                self.rows.append((t - self.t0, delay, int(line.split()[0])))
            except (OSError, ValueError, IndexError, EngineError) as exc:
                self.errors.append(f"{time.monotonic() - self.t0:.2f}: {exc!r}")
                if sock is not None:
                    sock.close()
                sock = None
            self.stopping.wait(max(0.0, t_next - time.monotonic()))
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


def _counter(netns_path: str, ip: str) -> int:
    with in_netns(netns_path):
        s = socket.create_connection((ip, PORT), 10)
    with s, s.makefile("rb") as r:
        s.sendall(f"GET {USER}\n".encode())
        return int(r.readline())


# ------------------------------------------------------------------------------------------------ runs
@dataclass(frozen=True, slots=True)
class RunResult:
    mode: str
    repeat: int
    rows: list[tuple[float, float, int]]
    loads: list[tuple[float, float, float]]  # (t_s, node 1 load, node 2 load) at each step's start
    migration: dict[str, Any] | None  # node 1's migration (start/end seconds into the run, downtime)
    decided_at_s: float | None  # the round whose decision triggered it
    t_p_avg_s: float
    threshold_s: float  # the one node 1 used
    counter_final: int
    served_by: list[str]
    client_errors: list[str]
    attempts: int = 0  # migrations node 1 started (the refused ones included)


@contextlib.contextmanager
def _loads(c: LocalCluster, cfg: EmulationConfig) -> Iterator[dict[str, HostLoad]]:
    tb = c.tb
    pin = cfg.pin_cpus and (os.cpu_count() or 1) >= 2
    loads = {h: HostLoad(tb.netns_path(h), cfg.host_cores, cfg.stress_workers, str(i) if pin else None,
                         cfg.load_weight)
             for i, h in enumerate((NODE1, NODE2))}
    try:
        yield loads
    finally:
        for ld in loads.values():
            ld.close()


async def _calibrate(c: LocalCluster, cfg: EmulationConfig) -> float:
    """The service's processing time on idle node 1 (the t_p,avg of the estimates), from its own reports: the
    lowest of one a second over ``calibrate_s`` (after the first second), since other work on a shared
    machine only ever adds to it."""
    ctx = tls.client_context(c.pki, tls.CLIENT_NAME)
    seen: list[float] = []
    for _ in range(max(1, round(cfg.calibrate_s))):
        await asyncio.sleep(1.0)
        svc = (await query_report(ctx, NODE1, c.directory.addr(NODE1))).service(SERVICE)
        if svc is not None and svc.processing_s is not None:
            seen.append(svc.processing_s)
    if not seen:
        raise EngineError(f"calibration: {NODE1} reports no processing time for {SERVICE}")
    return min(seen)


def _node_loop(c: LocalCluster, cfg: EmulationConfig, token: str, t_p_avg_s: float,
               record: Callable[[dict[str, Any]], None], clock: Callable[[], float]) -> NodeLoop:
    d = c.directory
    # the user sits between the two nodes (equal distance): only the load decides, as in sec. IV-D
    params = ShareOnParams(RegionThresholds(1e8, 2e8, 64e6, 128e6), t_app_th_s=cfg.threshold(t_p_avg_s),
                           l_d_s_per_m=0.0,
                           user_latency_s=0.0, cost_th_s=120.0)
    net_s = 0.005  # the testbed's client-edge round trip (testbed/config.py)
    lcfg = NodeLoopConfig(NODE1, host_dir(c.pki, NODE1), {h: d.addr(h) for h in (NODE1, NODE2)}, token,
                          {NODE1: (0.0, 0.0), NODE2: (0.0, 0.0)}, {SERVICE: (0.0, 0.0, net_s, 1 / cfg.request_interval_s)},
                          {NODE2: 100e6}, t_p_avg_s, alpha_prior_s=2 * t_p_avg_s, period_s=cfg.period_s,
                          confirm_rounds=cfg.confirm_rounds, admission=cfg.admit_below is not None)
    return NodeLoop(lcfg, ShareOnAgent(params), record, clock)


async def _ramp(loads: dict[str, HostLoad], cfg: EmulationConfig, t0: float,
                marks: list[tuple[float, float, float]]) -> None:
    for lv in cfg.loads():
        await asyncio.to_thread(loads[NODE1].set, lv)
        await asyncio.to_thread(loads[NODE2].set, 1.0 - lv)
        marks.append((time.monotonic() - t0, lv, 1.0 - lv))
        await asyncio.sleep(cfg.step_s)


def run_once(c: LocalCluster, cfg: EmulationConfig, mode: str, repeat: int,
             record: Callable[[dict[str, Any]], None]) -> RunResult:
    """One run (``shareon`` or ``nomig``) on a fresh deployment of the service on node 1."""
    tb = c.tb
    c.stop_all(SERVICE)
    spec = ServiceSpec(SERVICE, ServiceKind.PLATEDETECT, tb.service_ip(0), PORT, seed=cfg.seed + repeat)
    client_ns = tb.netns_path(next(h.name for h in tb.hosts() if h.kind.value == "client"))
    with _loads(c, cfg) as loads:  # first: the service's cgroup is made inside the pinned host cgroup
        c.deploy(NODE1, spec)
        loads[NODE2].set(1.0)
        t0 = time.monotonic()
        cl = Client(client_ns, spec.ip, cfg.image, cfg.request_interval_s, t0)
        cl.start()
        marks: list[tuple[float, float, float]] = []
        loop_box: list[NodeLoop] = []
        decided: list[float] = []

        def rec(entry: dict[str, Any]) -> None:
            if entry.get("event") == "round" and any(d["confirmed"] for d in entry.get("decisions", [])):
                decided.append(entry["t_s"])
            record({"mode": mode, "repeat": repeat, **entry})

        async def main() -> float:
            t_p = await _calibrate(c, cfg)
            stop = asyncio.Event()
            tasks = []
            if mode == "shareon":
                token = await grant(c.directory, NODE1, [NODE2], [SERVICE], ttl_s=3600, admit_below=cfg.admit_below)
                nl = _node_loop(c, cfg, token, t_p, rec, lambda: time.monotonic() - t0)
                loop_box.append(nl)
                tasks.append(asyncio.create_task(nl.run(stop)))
            await _ramp(loads, cfg, t0, marks)
            stop.set()
            await asyncio.gather(*tasks)
            await asyncio.sleep(cfg.tail_s)
            return t_p

        try:
            t_p = asyncio.run(main())
        finally:
            cl.stop()
    served = c.where_running(SERVICE)
    counter = _counter(client_ns, spec.ip) if served else -1
    attempts = loop_box[0].migrations if loop_box else []
    # the move that happened (a refused attempt - e.g. runc could not freeze a starved container - leaves the
    # service running on node 1 and the node decides again next round), else the last attempt
    mig = next((m for m in attempts if m["ok"]), attempts[-1] if attempts else None)
    t_dec = max((t for t in decided if mig is not None and t <= mig["t_start_s"]), default=None)
    return RunResult(mode, repeat, cl.rows, marks, mig, t_dec, t_p, cfg.threshold(t_p), counter, served, cl.errors,
                     len(attempts))



# ------------------------------------------------------------------------------------------- summaries
def _mean(rows: list[tuple[float, float, int]], lo: float, hi: float) -> float:
    vals = [d for t, d, _ in rows if lo <= t < hi]
    return float(np.mean(vals)) if vals else float("nan")


def summarise(shareon: RunResult, nomig: RunResult, cfg: EmulationConfig) -> dict[str, Any]:
    """One repeat's measured properties: where the node decided, delay before / after its move, the same
    span without migration, and whether the service's state went with it."""
    end = max((t for t, _, _ in shareon.rows), default=0.0) + 1.0  # the run's end: the ramp, its tail
    out: dict[str, Any] = {"repeat": shareon.repeat, "t_p_avg_s": shareon.t_p_avg_s, "threshold_s": shareon.threshold_s,
                           "migrated": shareon.migration is not None and bool(shareon.migration.get("ok")),
                           "attempts": shareon.attempts, "client_errors": len(shareon.client_errors)}
    counters = [k for _, _, k in shareon.rows]
    out["requests"] = len(counters)
    out["state_intact"] = (counters == list(range(1, len(counters) + 1)) and shareon.counter_final == len(counters)
                           and shareon.served_by == [NODE2 if out["migrated"] else NODE1])
    if out["migrated"] and shareon.migration is not None and shareon.decided_at_s is not None:
        t_dec, t_start, t_end = shareon.decided_at_s, shareon.migration["t_start_s"], shareon.migration["t_s"]
        lv = max((m[1] for m in shareon.loads if m[0] <= t_dec), default=0.0)
        out |= {"decided_at_s": t_dec, "load1_at_decision": lv, "migration_start_s": t_start,
                "migration_end_s": t_end,
                "frozen_window_s": shareon.migration.get("frozen_window_s"),
                "delay_before_s": _mean(shareon.rows, t_start - 2 * cfg.period_s - 1.0, t_start),
                "delay_after_s": _mean(shareon.rows, t_end + 1.0, end),
                "nomig_delay_same_span_s": _mean(nomig.rows, t_end + 1.0, end)}
        out["delay_dropped"] = bool(out["delay_after_s"] < out["delay_before_s"])
    return out


def _plot(results: list[tuple[RunResult, RunResult]], cfg: EmulationConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(8, 3 * len(results)), squeeze=False, sharex=True)
    for ax, (sh, nm) in zip(axes[:, 0], results, strict=True):
        for run, style in ((nm, "tab:gray"), (sh, "tab:blue")):
            t = [r[0] for r in run.rows]
            ax.plot(t, [1000 * r[1] for r in run.rows], color=style, lw=1, label=run.mode)
        ax.axhline(1000 * sh.threshold_s, color="tab:red", ls="--", lw=0.8, label="threshold")
        if sh.migration is not None:
            ax.axvspan(sh.migration["t_start_s"], sh.migration["t_s"], color="tab:green", alpha=0.25,
                       label="migration (node 1 -> node 2)")
        top = 1000 * float(np.percentile([r[1] for r in (*sh.rows, *nm.rows)] or [cfg.threshold_s], 97))
        ax.set_ylim(0, max(3 * top / 2, 2000 * sh.threshold_s))  # the few requests caught by a pre-copy dump
        ax.set_ylabel("total delay (ms, top 3 % clipped)")
        ax.set_title(f"repeat {sh.repeat}: node 1 load 0 -> 1, node 2 load 1 -> 0", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(summaries: list[dict[str, Any]], cfg: EmulationConfig) -> str:
    cols = ["repeat", "t_p_avg_s", "threshold_s", "attempts", "migrated", "state_intact", "load1_at_decision", "delay_before_s", "delay_after_s",
            "nomig_delay_same_span_s", "frozen_window_s", "delay_dropped"]
    lines = ["# ShareOn emulation (Maheshwari et al. 2018, sec. IV-D, fig. 6)", "",
             f"Threshold {cfg.threshold_s * 1000:.0f} ms; load steps of {cfg.step_s:g} s; host quota "
             f"{cfg.host_cores:g} cores (0: none); {cfg.stress_workers} stress-ng workers. Measured on a shared "
             "machine (2 cores, other work running).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summaries:
        cells = []
        for k in cols:
            v = s.get(k, "")
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, cfg: EmulationConfig, results: list[tuple[RunResult, RunResult]]) -> list[dict[str, Any]]:
    rows = [(r.mode, r.repeat, *row) for pair in results for r in pair for row in r.rows]
    write_table(out / "delay.csv", {"mode": np.array([r[0] for r in rows]), "repeat": np.array([r[1] for r in rows]),
                                    "t_s": np.array([r[2] for r in rows]), "delay_s": np.array([r[3] for r in rows]),
                                    "counter": np.array([r[4] for r in rows])})
    summaries = [summarise(sh, nm, cfg) for sh, nm in results]
    keys = sorted({k for s in summaries for k in s})
    write_table(out / "summary.csv", {k: np.array([s.get(k, float("nan")) for s in summaries]) for k in keys})
    (out / "summary.md").write_text(_markdown(summaries, cfg))
    _plot(results, cfg, out / "delay.png")
    write_json(out / "runs.json", [{"mode": r.mode, "repeat": r.repeat, "loads": r.loads, "migration": r.migration,
                                    "decided_at_s": r.decided_at_s, "served_by": r.served_by, "attempts": r.attempts,
                                    "counter_final": r.counter_final, "requests": len(r.rows),
                                    "client_errors": r.client_errors} for pair in results for r in pair])
    return summaries


def run_emulation(cfg: EmulationConfig, out_root: Path, progress: Callable[[str], None] = log.info,
                  name: str | None = None, subnet: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The whole experiment: a two-edge testbed, ``repeats`` x (shareon, nomig), the results folder."""
    reason = real_engine_skip_reason()
    if reason:
        raise ConfigError(f"the emulation needs the real engine: {reason}")
    if shutil.which("stress-ng") is None:
        raise ConfigError("stress-ng is not installed (scripts/install-system-deps)")
    out = new_run_dir(out_root, run_name("shareon-emulation", "shareon", cfg.seed))
    write_json(out / "manifest.json", manifest(cfg.seed, extra={"config": dataclasses.asdict(cfg)}))
    pid = os.getpid()
    cluster = LocalCluster.up(name or f"so{pid % 10000}", subnet or f"10.{160 + pid % 30}.0.0/16",
                              out / "cluster", edges=2)
    record = jsonl_recorder(out / "decisions.jsonl")
    results = []
    try:
        for rep in range(cfg.repeats):
            pair = []
            for mode in ("shareon", "nomig"):
                progress(f"repeat {rep + 1}/{cfg.repeats}: {mode} ({cfg.levels * cfg.step_s:.0f} s)")
                pair.append(run_once(cluster, cfg, mode, rep, record))
            results.append((pair[0], pair[1]))
            s = summarise(pair[0], pair[1], cfg)
            progress(json_line(s))
    finally:
        cluster.stop_all(SERVICE)
        cluster.down()
        shutil.rmtree(out / "cluster", ignore_errors=True)
    return out, write_results(out, cfg, results)
