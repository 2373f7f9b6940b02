"""Compressed, adaptive, pipelined migration on the real engine (Zhang et al. 2019, sec. V).

Every run is one real migration between two namespace hosts of a testbed
(:class:`~edgemigrate.cluster.LocalCluster`: real agents, runc + CRIU, tbf-shaped link) of one
workload (the engine's counter, KV store or Redis) with one compression configuration. A sweep writes a
results folder ``results/compression__<experiment>__<seed>__<time>/`` with ``runs.csv``, ``summary.md``
(:mod:`.summary`), ``runs.jsonl``
(the full statistics of every migration), ``manifest.json`` (resolved configuration, versions, git SHA)
and PNG plots (:mod:`.plots`), and prints one JSON line per run::

    {"bench": "compression", "workload": ..., "selector": ..., "rate_mbit": ..., "total_s": ..., "bytes_on_wire": ...}

Experiments: ``rates`` (a) compressed vs uncompressed across link rates,
``levels`` (b) fixed zstd/lz4 levels with both adaptive selectors overlaid, ``pipeline`` (c) pipelined vs
serial, ``ratechange`` (e) the shaper's rate changed while the image is in flight, ``web`` (d) lighttpd serving a
512 KB page under ``ab -c 100`` while it migrates: per-second throughput and QPS (:mod:`edgemigrate.workloads.loadgen`,
``timeline.csv``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.engine.adaptive.config import CompressionConfig
from edgemigrate.experiments.results import json_line as _strict_line
from edgemigrate.experiments.results import manifest, new_run_dir, run_name, write_json, write_table

WORKLOADS = ("counter", "kvstore", "redis", "web")
DEFAULT_RATES_MBIT = (5.0, 10.0, 20.0, 50.0, 100.0, 1000.0)
SERVICE_PORT = {"counter": 7000, "kvstore": 7001, "redis": 6379, "web": 8080}
HOSTS = ("edge1", "edge2")
CHANGE_TRIGGER_BYTES = 256 << 10  # experiment (e): the transfer has started once the link carried this much


LINK_EDGE_BYTES = 64 << 10  # link_busy_utilisation: bytes trimmed at each end (control messages, the last ack)
LINK_SAMPLE_S = 0.02


def _read_tx_bytes(dev: str) -> int | None:
    """tx bytes of ``dev`` from the calling thread's namespace (``/proc/thread-self/net/dev``), None if absent."""
    with open("/proc/thread-self/net/dev") as f:
        for line in f.readlines()[2:]:
            name, _, rest = line.partition(":")
            if name.strip() == dev:
                return int(rest.split()[8])  # 8 receive fields, then transmit bytes
    return None


class LinkMeter:
    """Samples the byte counter of one shaped link every ``period_s`` while a migration runs.

    A thread enters the router namespace once and reads ``/proc/thread-self/net/dev`` (a file read per
    sample, no process), so sampling every 20 ms costs almost nothing next to the migration it measures.
    ``samples()`` -> (seconds since start, cumulative bytes) arrays.
    """

    def __init__(self, netns_path: str, dev: str, period_s: float = LINK_SAMPLE_S) -> None:
        self.netns_path, self.dev, self.period_s = netns_path, dev, period_s
        self._t: list[float] = []
        self._b: list[int] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"link-meter-{dev}", daemon=True)

    def __enter__(self) -> LinkMeter:
        # The first sample is the baseline: it must be read before the caller moves any bytes, so entering
        # waits for it (on a busy machine the thread can start late).
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        from edgemigrate.control.netns import in_netns

        try:
            with in_netns(self.netns_path):
                t0 = time.perf_counter()
                while True:
                    stopping = self._stop.is_set()
                    b = _read_tx_bytes(self.dev)
                    if b is None:
                        return
                    self._t.append(time.perf_counter() - t0)
                    self._b.append(b)
                    self._started.set()
                    if stopping:  # the last sample is read after the caller's bytes have crossed
                        return
                    self._stop.wait(self.period_s)
        finally:
            self._started.set()

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self._t, dtype=float), np.asarray(self._b, dtype=np.int64)


def link_busy_utilisation(t_s: np.ndarray, tx_bytes: np.ndarray, rate_bps: float,
                          edge_bytes: int = LINK_EDGE_BYTES) -> float | None:
    """Utilisation of the shaped link while it carried the migration: the bytes that crossed it between the
    sample where ``edge_bytes`` had crossed and the one where all but ``edge_bytes`` had, over that time and
    the shaped rate. Measured on the link itself (packet bytes, as the shaper counts them), it excludes the
    time before the first image byte (dump, planning, the first chunk's compression) and after the last one
    (decompression, restore), which the end-to-end ``utilisation`` of :func:`row_of` includes. Stalls in the
    middle - a compressor that cannot keep up, a pause between rounds - do count against it. None when fewer
    than 4 x ``edge_bytes`` crossed or the samples do not resolve the interval.
    """
    if len(t_s) < 3 or rate_bps <= 0:
        return None
    b = tx_bytes - tx_bytes[0]
    total = int(b[-1])
    if total < 4 * edge_bytes:
        return None
    i0 = int(np.argmax(b >= edge_bytes))
    i1 = int(np.argmax(b >= total - edge_bytes))
    if t_s[i1] <= t_s[i0]:
        return None
    return float((b[i1] - b[i0]) * 8 / (t_s[i1] - t_s[i0]) / rate_bps)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One migration: workload, its resident memory, the compression, and the link."""

    workload: str = "kvstore"
    resident_mb: float = 64.0
    selector: str = "model"
    page_codec: str = "none"
    pipeline: str = "pipelined"
    rate_mbit: float = 100.0
    rtt_ms: float = 20.0
    strategy: str = "stop-and-copy"
    change_after_s: float | None = None  # experiment (e): change_to_mbit this long after the transfer starts
    change_to_mbit: float | None = None
    # experiment (d), workload "web": page size, ab's concurrency, the client<->edge link rate
    page_kib: int = 512
    load_concurrency: int = 100
    client_mbit: float = 100.0

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ConfigError(f"workload {self.workload!r}: expected one of {', '.join(WORKLOADS)}")
        CompressionConfig.parse(self.selector, self.page_codec, self.pipeline)
        if self.rate_mbit <= 0 or self.rtt_ms < 0 or self.resident_mb < 0:
            raise ConfigError("rate_mbit must be > 0, rtt_ms and resident_mb >= 0")
        if self.page_kib < 1 or self.load_concurrency < 1 or self.client_mbit <= 0:
            raise ConfigError("page_kib and load_concurrency must be >= 1, client_mbit > 0")
        if (self.change_after_s is None) != (self.change_to_mbit is None):
            raise ConfigError("a rate change needs both change_after_s and change_to_mbit")


def _kv_fill(ip: str, port: int, n_keys: int) -> None:
    with socket.create_connection((ip, port), timeout=20) as s:
        s.sendall("".join(f"SET key{i} value-{i}\n" for i in range(n_keys)).encode())
        got = b""
        while got.count(b"\n") < n_keys:
            part = s.recv(1 << 16)
            if not part:
                raise EngineError("kvstore closed the connection while being filled")
            got += part


class Bench:
    """A cluster with one deployed workload that migrates back and forth between edge1 and edge2."""

    def __init__(self, root: Path, name: str | None = None, subnet: str | None = None) -> None:
        reason = real_engine_skip_reason()
        if reason:
            raise EngineError(f"compression experiments need the real engine: {reason}")
        pid = os.getpid()
        self.bed = LocalCluster.up(name or f"cx{pid % 100000}", subnet or f"10.{150 + pid % 40}.0.0/16", root,
                                   edges=2, io_timeout_s=20.0)
        self.current: tuple[str, float, int] | None = None  # deployed (workload, resident_mb, page_kib)
        self.loads = 0  # web runs so far (each gets a load directory)
        self.host = HOSTS[0]
        self.load_lead_s, self.load_tail_s = 3.0, 4.0  # web: ab runs this long before / after the migration

    def close(self) -> None:
        self.bed.down()

    def _deploy(self, workload: str, resident_mb: float, page_kib: int = 512) -> None:
        if self.current == (workload, resident_mb, page_kib):
            return
        if self.current is not None:
            self.bed.stop_all(self.current[0])
        tb = self.bed.tb
        kind = ServiceKind(workload)
        spec = ServiceSpec(workload, kind, tb.service_ip(0), SERVICE_PORT[workload],
                           0.0 if workload == "web" else resident_mb, page_bytes=page_kib * 1024)
        self.host = HOSTS[0]
        self.bed.deploy(self.host, spec)
        time.sleep(0.3)
        from edgemigrate.control.netns import in_netns

        with in_netns(tb.netns_path("client1")):
            if workload == "redis":
                from edgemigrate.workloads import redis as r

                r.fill(spec.ip, spec.port, total_mb=resident_mb, values="text")
            elif workload == "kvstore":
                _kv_fill(spec.ip, spec.port, 5000)
        self.current = (workload, resident_mb, page_kib)

    def run(self, cfg: RunConfig) -> dict[str, Any]:
        """One migration; returns its row (flat numbers) with the agent's full statistics under ``stats``."""
        self._deploy(cfg.workload, cfg.resident_mb, cfg.page_kib)
        src = self.host
        dst = HOSTS[1] if src == HOSTS[0] else HOSTS[0]
        self.bed.tb.set_link(HOSTS[0], HOSTS[1], rate_mbit=cfg.rate_mbit, rtt_ms=cfg.rtt_ms)
        changer = None
        stop = threading.Event()
        changed: dict[str, float] = {}
        if cfg.change_after_s is not None and cfg.change_to_mbit is not None:
            changer = threading.Thread(target=self._change_rate, args=(cfg, src, dst, stop, changed), daemon=True)
            changer.start()
        load: dict[str, Any] | None = None
        meter = LinkMeter(*self.bed.tb.link_device(src, dst))
        try:
            with meter:
                if cfg.workload == "web":  # experiment (d): the migration runs under ab's load
                    stats, load = self._migrate_under_load(cfg, src, dst)
                else:
                    stats = self.bed.migrate(cfg.workload, dst, cfg.strategy, src=src, compression=cfg.selector,
                                             page_codec=cfg.page_codec, pipeline=cfg.pipeline)
        finally:
            stop.set()
            if changer is not None:
                changer.join()
        self.host = dst
        row = row_of(cfg, stats)
        row.update({k: round(v, 3) for k, v in changed.items()})
        if cfg.change_to_mbit is None:  # one rate to compare with (the link carries only the image)
            row["link_util"] = link_busy_utilisation(*meter.samples(), cfg.rate_mbit * 1e6)
        else:  # (e): what crossed the link when - the fast phase and the slope after the change, for the plot
            t_s, tx = meter.samples()
            if len(t_s):
                row["link_timeline"] = {"t_s": np.round(t_s, 3).tolist(),
                                        "mb": np.round((tx - tx[0]) / 1e6, 3).tolist()}
        if load is not None:
            row["load"] = load
        return row

    def _migrate_under_load(self, cfg: RunConfig, src: str, dst: str) -> tuple[dict[str, Any], dict[str, Any]]:
        from edgemigrate.experiments.under_load import migrate_under_load
        from edgemigrate.workloads.loadgen import LoadConfig, load_row

        tb = self.bed.tb
        for h in HOSTS:
            tb.set_link("client1", h, rate_mbit=cfg.client_mbit)
        self.loads += 1
        # every connection's worth of one page (+ headers) before, two after: see migrate_under_load
        response = cfg.load_concurrency * (cfg.page_kib * 1024 + 1024)
        stats, result, marks = migrate_under_load(
            self.bed, cfg.workload, src, dst, f"http://{tb.service_ip(0)}:{SERVICE_PORT['web']}/",
            self.bed.root / "load" / f"run{self.loads:03d}", load=LoadConfig(concurrency=cfg.load_concurrency),
            netns_path=tb.netns_path("client1"), lead_s=self.load_lead_s, tail_s=self.load_tail_s,
            strategy=cfg.strategy, compression=cfg.selector, page_codec=cfg.page_codec, pipeline=cfg.pipeline,
            lead_read_bytes=response, tail_read_bytes=2 * response)
        return stats, load_row(result, marks)


    def _change_rate(self, cfg: RunConfig, src: str, dst: str, stop: threading.Event, out: dict[str, float]
                     ) -> None:
        """Experiment (e): once the image is on the wire - the shaped link ``src -> dst`` has carried
        ``CHANGE_TRIGGER_BYTES`` more than before the migration - wait ``change_after_s`` and change the
        shaper's rate. Timing it from the first data bytes, not from the migration's start, gives every
        selector the same fast phase: the dump, planning and profiling take different times per run.
        ``out`` receives when that happened (``rate_changed_at_s`` since the migration started)."""
        assert cfg.change_after_s is not None and cfg.change_to_mbit is not None
        tb = self.bed.tb
        t0 = time.perf_counter()
        base = tb.link_tx_bytes(src, dst)
        while not stop.is_set():
            if tb.link_tx_bytes(src, dst) - base >= CHANGE_TRIGGER_BYTES:
                break
            time.sleep(0.01)
        else:
            return
        out["transfer_seen_at_s"] = time.perf_counter() - t0
        if stop.wait(cfg.change_after_s):
            return
        fast_bytes = tb.link_tx_bytes(src, dst) - base
        tb.set_link(HOSTS[0], HOSTS[1], rate_mbit=cfg.change_to_mbit, rtt_ms=cfg.rtt_ms)
        out["rate_changed_at_s"] = time.perf_counter() - t0
        # how much of the image crossed at the first rate: TCP may still be in slow start when the rate changes
        out["fast_phase_mb"] = fast_bytes / 1e6


def row_of(cfg: RunConfig, stats: dict[str, Any]) -> dict[str, Any]:
    """Flatten a migration's statistics.

    ``utilisation`` = wire bits / (delivery time x shaped rate), the delivery time of a round being from its
    first chunk until the destination confirmed it, minus the destination's rebuild (the source's own send
    time would count bytes still queued in socket buffers as delivered).
    """
    rounds = stats["rounds"]
    wire_s = sum(max(0.0, r["transfer_s"] - r["rebuild_s"]) for r in rounds)
    wire_bytes = int(stats["bytes_on_wire"])
    rate_bps = cfg.rate_mbit * 1e6
    choices: dict[str, int] = {}
    for r in rounds:
        for k, v in r["wire"]["choices"].items():
            choices[k] = choices.get(k, 0) + v
    if cfg.change_to_mbit is None:  # eqs. 3-8 need one link rate
        from edgemigrate.experiments.compression.model import predict_s

        pred = predict_s(stats, cfg.rate_mbit, CompressionConfig().n_workers)
    else:
        pred = {}
    return {
        **asdict(cfg),
        **pred,
        "ok": bool(stats.get("ok")),
        "total_s": float(stats["total_s"]),
        "frozen_window_s": float(stats["frozen_window_s"]),
        "transfer_s": float(sum(r["transfer_s"] for r in rounds)),
        "dump_s": float(sum(r["dump_s"] for r in rounds)),
        "restore_s": float(stats["restore_s"]),
        "raw_bytes": int(stats["bytes_sent"]),
        "bytes_on_wire": wire_bytes,
        "ratio": wire_bytes / max(1, int(stats["bytes_sent"])),
        "utilisation": (wire_bytes * 8 / wire_s / rate_bps) if wire_s > 0 else 0.0,
        "source_cpu_s": float(stats["source_cpu_s"]),
        "n_rounds": int(stats["n_rounds"]),
        "choices": ";".join(f"{k}:{v}" for k, v in sorted(choices.items())),
        "stats": stats,
    }


def json_line(row: dict[str, Any]) -> str:
    """The run's progress line: strict JSON (a quantity with no value is null, never NaN)."""
    return _strict_line({"bench": "compression", "workload": row["workload"], "selector": row["selector"],
                         "page_codec": row["page_codec"], "pipeline": row["pipeline"], "rate_mbit": row["rate_mbit"],
                         "change_to_mbit": row["change_to_mbit"], "total_s": row["total_s"],
                         "bytes_on_wire": row["bytes_on_wire"], "raw_bytes": row["raw_bytes"],
                         "utilisation": round(row["utilisation"], 3),
                         **({"link_util": round(row["link_util"], 3)} if row.get("link_util") is not None else {}),
                         "choices": row["choices"],
                         **{k: round(row[k], 3) for k in ("pred_serial_s", "pred_pipelined_s", "fast_phase_mb")
                            if k in row},
                         **_load_summary(row.get("load"))})


def _load_summary(load: dict[str, Any] | None) -> dict[str, float]:
    """Web runs: mean requests/s and Mbit/s at the client before, during and after the migration; failures."""
    if not load:
        return {}
    tl, mk = load["timeline"], load["marks"]
    t, qps, mbit = (np.asarray(tl[k], dtype=float) for k in ("t_s", "qps", "mbit_s"))
    out: dict[str, float] = {"failed_requests": int(np.sum(tl["failed"]))}
    for name, m in (("before", t < mk["start_s"]), ("during", (t >= mk["start_s"]) & (t < mk["end_s"])),
                    ("after", t >= mk["end_s"])):
        out[f"qps_{name}"] = round(float(qps[m].mean()), 2) if m.any() else 0.0
        out[f"mbit_{name}"] = round(float(mbit[m].mean()), 1) if m.any() else 0.0
    return out


# ------------------------------------------------------------------------------------------ plans


def plan_rates(base: RunConfig, workloads: Sequence[str], rates: Sequence[float],
               selectors: Sequence[str] = ("none", "model", "rule")) -> list[RunConfig]:
    """(a) compressed vs uncompressed at every rate."""
    return [replace(base, workload=w, rate_mbit=r, selector=s) for w in workloads for r in rates for s in selectors]


def plan_levels(base: RunConfig, workloads: Sequence[str], rates: Sequence[float], codec: str = "zstd",
                levels: Sequence[int] = tuple(range(1, 10))) -> list[RunConfig]:
    """(b) every fixed level, plus both adaptive selectors at the same points."""
    sels = [f"fixed:{codec}:{lv}" for lv in levels] + ["model", "rule"]
    return [replace(base, workload=w, rate_mbit=r, selector=s) for w in workloads for r in rates for s in sels]


def plan_pipeline(base: RunConfig, workloads: Sequence[str], rates: Sequence[float],
                  selectors: Sequence[str] = ("model", "fixed:zstd:3")) -> list[RunConfig]:
    """(c) pipelined vs serial, same selector and link."""
    return [replace(base, workload=w, rate_mbit=r, selector=s, pipeline=p)
            for w in workloads for r in rates for s in selectors for p in ("pipelined", "serial")]


def plan_ratechange(base: RunConfig, workloads: Sequence[str], from_mbit: float, to_mbit: float, after_s: float,
                    codec: str = "zstd", levels: Sequence[int] = (1, 3, 6, 9), also: Sequence[str] = (),
                    without: Sequence[str] = ()) -> list[RunConfig]:
    """(e) the link changes from ``from_mbit`` to ``to_mbit`` ``after_s`` into the transfer; ``also``: more
    selectors to compare (e.g. ``fixed:lz4:1``, the fastest codec, which a fast first phase favours);
    ``without``: any of the always-run ``none``, ``model`` and ``rule`` to leave out."""
    always = ("none", "model", "rule")
    bad = [s for s in without if s not in always]
    if bad:
        raise ConfigError(f"--without {','.join(bad)}: only {', '.join(always)} can be left out")
    sels = [s for s in ("none", *(f"fixed:{codec}:{lv}" for lv in levels), *also, "model", "rule")
            if s not in without]
    return [replace(base, workload=w, selector=s, rate_mbit=from_mbit, change_after_s=after_s,
                    change_to_mbit=to_mbit) for w in workloads for s in sels]


def plan_web(base: RunConfig, rates: Sequence[float] = (100.0,),
             selectors: Sequence[str] = ("none", "model", "rule")) -> list[RunConfig]:
    """(d) lighttpd under ``ab -c 100`` migrated with each selector: throughput / QPS timelines (Zhang et al. 2019, VI-C)."""
    return [replace(base, workload="web", rate_mbit=r, selector=s) for r in rates for s in selectors]


# ------------------------------------------------------------------------------------------ sweep


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def sweep(experiment: str, plan: Sequence[RunConfig], out_root: Path, repeats: int = 1,
          echo: Callable[[str], None] = print, plot: bool = True, command: list[str] | None = None) -> Path:
    """Run every configuration of ``plan`` ``repeats`` times; write the results folder; return its path."""
    if not plan:
        raise ConfigError("nothing to run: the plan is empty")
    out = new_run_dir(out_root, run_name("compression", experiment, 0))
    write_json(out / "manifest.json", manifest(0, command, {"experiment": experiment, "repeats": repeats,
                                                             "runs": [asdict(c) for c in plan]}))
    bench = Bench(out / "cluster")
    rows: list[dict[str, Any]] = []
    # `kill` (SIGTERM) must clean up like Ctrl-C: without this the testbed, agents and containers stay behind
    old_term = (signal.signal(signal.SIGTERM, _exit_on_sigterm)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        # order by workload so each is deployed (and filled) once; repeats interleave configurations
        for rep in range(repeats):
            for cfg in sorted(plan, key=lambda c: (WORKLOADS.index(c.workload), c.resident_mb)):
                row = bench.run(cfg)
                row["repeat"] = rep
                rows.append(row)
                echo(json_line(row))
                with (out / "runs.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    finally:
        bench.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if rows:
            write_rows(out / "runs.csv", rows)
        if any("load" in r for r in rows):  # experiment (d): per-second throughput / QPS of every run
            from edgemigrate.experiments.under_load import write_timeline

            write_timeline(out / "timeline.csv", rows)
    if rows:
        from edgemigrate.experiments.compression.summary import summarise

        summarise(experiment, out)
    if plot and rows:
        from edgemigrate.experiments.compression.plots import plot_experiment

        plot_experiment(experiment, out)
    return out


CSV_COLUMNS = ("workload", "resident_mb", "selector", "page_codec", "pipeline", "rate_mbit", "rtt_ms", "strategy",
               "change_after_s", "change_to_mbit", "repeat", "ok", "total_s", "frozen_window_s", "transfer_s",
               "dump_s", "restore_s", "raw_bytes", "bytes_on_wire", "ratio", "utilisation", "link_util", "source_cpu_s",
               "n_rounds", "choices", "pred_serial_s", "pred_pipelined_s", "stage_checkpoint_s", "stage_compress_s",
               "stage_transfer_s", "stage_rebuild_restore_s", "transfer_seen_at_s", "rate_changed_at_s",
               "fast_phase_mb")


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    cols = {}
    for c in CSV_COLUMNS:
        vals = [r.get(c) for r in rows]
        cols[c] = np.array(["" if v is None else v for v in vals], dtype=object)
    write_table(path, cols)
