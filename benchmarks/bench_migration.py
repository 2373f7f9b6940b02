"""Real migration benchmark: edgemigrate (stop-and-copy, pre-copy) vs the podman checkpoint/restore baseline.

Needs root, CRIU >= 4.2, runc and (for the baseline) podman. Brings up its own testbed + agents, shapes the
edge1 -> edge2 link to each profile, deploys the service on edge1, probes it every 10 ms from the client
host and migrates it to edge2. One JSON line per run (stdout and ``--out``)::

    {"bench": "migration", "service": "counter", "strategy": "precopy", "rate_mbit": 100, "rtt_ms": 50,
     "downtime_s": ..., "total_s": ..., "final_round_bytes": ..., "full_checkpoint_bytes": ..., ...}

``downtime_s`` is the client-observed downtime (largest gap between replies of the 10 ms probe).
The podman baseline (``strategy: "podman"``) is ``podman container checkpoint --export`` on the source
(``--podman-compress``, default zstd like podman itself; the engine sends pages uncompressed),
a copy of the archive over the same shaped link, and ``podman container restore --import`` on the
destination (same service IP move and CRIU lock-rule copy as the engine, so TCP clients survive).

Examples::

    python benchmarks/bench_migration.py --service counter --strategy precopy --rate-mbit 100 --rtt-ms 50
    python benchmarks/bench_migration.py                      # the grid: 10/100/1000 Mbit/s x 5/50/150 ms
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.workloads.probe import Probe

RATES_MBIT = [10, 100, 1000]
RTTS_MS = [5, 50, 150]
PORT = 7000
PODMAN_PORT = 7002
COPY_PORT = 7990
PODMAN_FLAGS = ["--runtime=runc", "--cgroup-manager=cgroupfs", "--events-backend=file"]
PODMAN_RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
PODMAN_IMAGE = "localhost/edgemigrate-skel:1"


def _git_sha() -> str:
    """The commit of the ``edgemigrate`` package measured (it may come from another checkout than this
    file: a before/after comparison runs the same benchmark over both)."""
    import edgemigrate

    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                          cwd=Path(edgemigrate.__file__).resolve().parent)
    return proc.stdout.strip() or "unknown"


_RESTORE_LOG = re.compile(r"restore of (?P<service>\S+): ip\+lock (?P<ip_lock_s>[\d.]+) s, runc restore\+unlock "
                          r"(?P<restore_unlock_s>[\d.]+) s \(criu (?P<runc_restore_s>[\d.]+) s(?:, lazy (?P<lazy>\w+))?\)"
                          r"(?:, pages (?P<pages_s>[\d.]+) s more)?, health (?P<health_s>[\d.]+) s")


def destination_breakdown(log_path: Path, service: str) -> dict[str, Any]:
    """The destination agent's own timing of its last restore of ``service`` (its log line): check + lock +
    address, runc restore (+ unlock), the lazy page copy still running after it, the health check."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        m = _RESTORE_LOG.search(line)
        if m and m["service"] == service:
            out: dict[str, Any] = {k: float(v) for k, v in m.groupdict().items()
                                   if v is not None and k not in ("service", "lazy")}
            out["lazy"] = m["lazy"] == "True"
            return out
    return {}


def _probe(c: LocalCluster, ip: str, port: int) -> Probe:
    with in_netns(c.tb.netns_path("client1")):
        p = Probe(ip, port)
        p.start()
    time.sleep(0.5)
    return p


def run_engine(c: LocalCluster, service: str, strategy: str, resident_mb: float,
               compression: str = "model", precopy_read: str = "live") -> dict[str, Any]:
    tb = c.tb
    kind = ServiceKind.COUNTER if service == "counter" else ServiceKind.REDIS
    spec = ServiceSpec(service, kind, tb.service_ip(0), PORT if service == "counter" else 6379, resident_mb)
    c.deploy("edge1", spec)
    try:
        probe = _probe(c, spec.ip, spec.port) if service == "counter" else None
        stats = c.migrate(service, "edge2", strategy, src="edge1", compression=compression, precopy_read=precopy_read)
        time.sleep(0.5)
        res = probe.stop() if probe else None
    finally:
        c.stop_all(service)
    return {
        "downtime_s": round(res.max_gap_s, 4) if res else None,
        "total_s": stats["total_s"], "final_round_bytes": stats["final_round_bytes"],
        "full_checkpoint_bytes": stats["full_checkpoint_bytes"], "frozen_window_s": stats["frozen_window_s"],
        "bytes_per_round": [r["payload_bytes"] for r in stats["rounds"]],
        "frozen_s_per_round": [r["criu_frozen_s"] for r in stats["rounds"]],
        "n_rounds": stats["n_rounds"], "bytes_sent": stats["bytes_sent"], "cpu_s": stats["source_cpu_s"],
        "bytes_on_wire": stats["bytes_on_wire"], "compression": stats["compression"],
        "precopy_read": stats.get("precopy_read", precopy_read),
        "state_intact": bool(res.monotonic and not res.jumps and res.error is None) if res else None,
    }


def run_engine_loaded(c: LocalCluster, service: str, strategy: str, resident_mb: float, compression: str,
                      plot_dir: Path | None, tag: str, precopy_read: str = "live") -> dict[str, Any]:
    """``run_engine`` with real clients on client1 (``--client-load``): see ``benchmarks/client_load.py``."""
    import client_load as cl

    from edgemigrate.control import client

    tb = c.tb
    kind = ServiceKind.COUNTER if service == "counter" else ServiceKind.REDIS
    spec = ServiceSpec(service, kind, tb.service_ip(0), PORT if service == "counter" else 6379, resident_mb)
    ns = tb.netns_path("client1")
    c.deploy("edge1", spec)
    progress: list[tuple[float, dict[str, Any]]] = []

    def on_progress(event: dict[str, Any]) -> None:
        r = event.get("round")
        if isinstance(r, dict):
            progress.append((time.time(), r))

    work = Path(tempfile.mkdtemp(prefix="em-load-"))
    load: Any = None
    probe: Any = None
    try:
        if service == "counter":
            probe = cl.TimedProbe(ns, spec.ip, spec.port)
        else:
            load = cl.RedisLoad(ns, spec.ip, spec.port, work)
        t_start = time.time()
        stats = c.run(client.migrate(c.directory, service, "edge2", strategy, src_host="edge1",
                                     on_progress=on_progress, compression=compression,
                                     precopy_read=precopy_read))
        t_end = time.time()
        time.sleep(1.0)
        extra: dict[str, Any] = {}
        if probe is not None:
            res, sent, recv = probe.stop()
            extra["state_intact"] = bool(res.monotonic and not res.jumps and res.error is None)
            extra["client"] = "probe"
            extra["downtime_s"] = round(res.max_gap_s, 4)
        else:
            w = load.stop()
            sent, recv = np.array(w["sent"]), np.array(w["recv"])
            acked = w["acked"]
            extra["client"] = "ack-writer+redis-benchmark-c10"
            extra["acked_writes"] = len(acked)
            extra["acked_writes_lost"] = cl.verify_acked(ns, spec.ip, spec.port, acked)
            extra["writer_reconnects"] = w["reconnects"]
            extra.update(load.bench_metrics(t_start, t_end))
            gm_all = cl.gap_metrics(sent, recv, sent.min(), recv.max()) if len(sent) else {}
            extra["downtime_s"] = gm_all.get("max_gap_s")
    finally:
        if load is not None and load.writer.poll() is None:
            load.stop()
        c.stop_all(service)
    rounds = []
    for t_report, r in progress:
        rounds.append({"round": r["round"], "final": r["final"], "start_t": t_report - r["round_s"],
                       "dump_s": r["dump_s"], "criu_frozen_s": r["criu_frozen_s"]})
    gm = cl.gap_metrics(sent, recv, t_start, t_end)
    if plot_dir is not None and len(sent):
        cl.plot_latency(plot_dir / f"latency_{tag}.png", sent, recv, t_start, rounds,
                        f"{service} {strategy}: request latency during the move ({tag})", t_end)
    return {
        **extra, "destination_s": destination_breakdown(c.agents["edge2"].log_path, service),
        "total_s": stats["total_s"], "final_round_bytes": stats["final_round_bytes"],
        "full_checkpoint_bytes": stats["full_checkpoint_bytes"], "frozen_window_s": stats["frozen_window_s"],
        "restore_s": stats.get("restore_s"),
        "bytes_per_round": [r["payload_bytes"] for r in stats["rounds"]],
        "frozen_s_per_round": [r["criu_frozen_s"] for r in stats["rounds"]],
        "dump_s_per_round": [r["dump_s"] for r in stats["rounds"]],
        "freezing_s_per_round": [r.get("freezing_s") for r in stats["rounds"]],
        # where the final (frozen) round's time goes at the source; transfer_s waits for the verified round
        "final_round_s": {k: stats["rounds"][-1].get(k) for k in (
            "pause_s", "lock_s", "dump_s", "memdump_s", "memwrite_s", "pages_written", "pages_skipped_parent",
            "plan_s", "transfer_s", "rebuild_s")},
        "n_rounds": stats["n_rounds"], "bytes_sent": stats["bytes_sent"], "cpu_s": stats["source_cpu_s"],
        "bytes_on_wire": stats["bytes_on_wire"], "compression": stats["compression"],
        "precopy_read": stats.get("precopy_read", precopy_read),
        # the longest gap is the final round's (it spans the restore); pre-copy aims at a stall <= 1.5x that
        # gap (docs/results/precopy-stall)
        "stall_over_final_gap": round(gm["stall_s"] / gm["max_gap_s"], 3) if gm["max_gap_s"] else None,
        "move_max_gap_s": gm["max_gap_s"], "move_gaps_over_100ms": gm["gaps_over_100ms"],
        "move_p99_latency_s": gm["p99_latency_s"], "move_stall_s": gm["stall_s"],
        "move_requests": gm["requests_in_move"], "stall_def": "sum of reply gaps > 50 ms, request->result",
    }


# ------------------------------------------------------------------------------------------- podman
def _podman(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["podman", *PODMAN_FLAGS, *args]
    if netns:
        argv = ["nsenter", f"--net={netns}", "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])}: {proc.stderr.strip()[-400:]}")
    return proc


def _copy_over_link(c: LocalCluster, src_path: Path, dst_path: Path) -> None:
    """Send a file from edge1 to edge2 over the shaped link (plain TCP, like scp without the crypto)."""
    tb = c.tb
    with in_netns(tb.netns_path("edge2")):
        srv = socket.create_server((tb.host_ip("edge2"), COPY_PORT))
    done = threading.Event()

    def receive() -> None:
        conn, _ = srv.accept()
        with conn, dst_path.open("wb") as out:
            while chunk := conn.recv(1 << 20):
                out.write(chunk)
        done.set()

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    with in_netns(tb.netns_path("edge1")):
        s = socket.create_connection((tb.host_ip("edge2"), COPY_PORT))
    with s, src_path.open("rb") as fh:
        s.sendfile(fh)
        s.shutdown(socket.SHUT_WR)
        done.wait(3600)
    srv.close()


def run_podman(c: LocalCluster, resident_mb: float, compress: str = "zstd") -> dict[str, Any]:
    tb = c.tb
    work = Path(tempfile.mkdtemp(prefix="em-podman-", dir="/dev/shm"))
    conf = work / "containers.conf"
    conf.write_text("[containers]\ndefault_sysctls = []\n")  # runc refuses net sysctls in a path netns
    os.environ["CONTAINERS_CONF"] = str(conf)
    alias = Path(f"/run/netns/{c.name}-psvc")  # the netns path podman records; re-pointed to the destination
    ip = tb.service_ip(1)
    name = "em-bench-podman"
    src_ns, dst_ns = tb.netns_path("edge1"), tb.netns_path("edge2")
    if _podman("image", "exists", PODMAN_IMAGE, check=False).returncode != 0:
        skel = work / "skel"
        for d in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "root", "work"):
            (skel / d).mkdir(parents=True)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
            (skel / link).symlink_to(target)
        tar = subprocess.run(["tar", "-C", str(skel), "-c", "."], capture_output=True, check=True).stdout
        subprocess.run(["podman", "import", "-", PODMAN_IMAGE], input=tar, capture_output=True, check=True)
    alias.touch()
    subprocess.run(["mount", "--bind", src_ns, str(alias)], check=True)
    tb.add_service_ip(ip, "edge1")
    src_pkg = Path(__file__).resolve().parents[1] / "src"
    vols = []
    for v in sorted({"/usr", "/etc", sys.base_prefix, sys.prefix, str(src_pkg)}):
        vols += ["-v", f"{v}:{v}:ro"]
    try:
        _podman("run", "-d", "--name", name, "--network", f"ns:{alias}", *PODMAN_RUN_FLAGS, *vols, "-e",
                f"PYTHONPATH={src_pkg}", PODMAN_IMAGE, sys.executable, "-m", "edgemigrate.workloads.counter",
                "--host", ip, "--port", str(PODMAN_PORT), "--resident-mb", str(resident_mb))
        deadline = time.monotonic() + 60
        while True:
            try:
                with in_netns(tb.netns_path("client1")), socket.create_connection((ip, PODMAN_PORT), 1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        probe = _probe(c, ip, PODMAN_PORT)
        archive, received = work / "checkpoint.tar", work / "received.tar"
        t0 = time.perf_counter()
        _podman("container", "checkpoint", "--export", str(archive), "--compress", compress, "--tcp-established",
                name, netns=src_ns)
        t1 = time.perf_counter()
        _copy_over_link(c, archive, received)
        t2 = time.perf_counter()
        _podman("rm", "-f", name, check=False)
        rules = netlock.criu_drop_rules(src_ns)
        netlock.apply_rules(dst_ns, rules)
        tb.move_service_ip(ip, "edge1", "edge2")
        subprocess.run(["umount", str(alias)], check=True)
        subprocess.run(["mount", "--bind", dst_ns, str(alias)], check=True)
        _podman("container", "restore", "--import", str(received), "--tcp-established", netns=dst_ns)
        t3 = time.perf_counter()
        netlock.remove_rules(src_ns, rules)
        time.sleep(1.0)
        res = probe.stop()
        size = archive.stat().st_size
        return {"downtime_s": round(res.max_gap_s, 4), "total_s": round(t3 - t0, 4), "final_round_bytes": size,
                "full_checkpoint_bytes": size, "frozen_window_s": round(t3 - t0, 4),
                "checkpoint_s": round(t1 - t0, 4), "copy_s": round(t2 - t1, 4), "restore_s": round(t3 - t2, 4),
                "bytes_per_round": [size], "n_rounds": 1, "podman_compress": compress,
                "state_intact": bool(res.monotonic and not res.jumps and res.error is None)}
    finally:
        _podman("rm", "-f", name, check=False)
        subprocess.run(["umount", str(alias)], capture_output=True, check=False)
        alias.unlink(missing_ok=True)
        if ip in c.tb.services():
            c.tb.remove_service_ip(ip)
        subprocess.run(["rm", "-rf", str(work)], check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--service", choices=["counter", "redis"], default="counter")
    ap.add_argument("--strategy", choices=["stop-and-copy", "precopy", "podman"], action="append",
                    help="repeatable; default: all three")
    ap.add_argument("--rate-mbit", type=float, action="append", help=f"repeatable; default {RATES_MBIT}")
    ap.add_argument("--rtt-ms", type=float, action="append", help=f"repeatable; default {RTTS_MS}")
    ap.add_argument("--resident-mb", type=float, default=200.0, help="static resident memory of the counter")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--podman-compress", choices=["zstd", "gzip", "none"], default="zstd",
                    help="archive compression of the podman baseline (podman's default: zstd)")
    ap.add_argument("--compression", default="model",
                    help="engine data-path selector: none, fixed:CODEC:LEVEL, rule or model (default model)")
    ap.add_argument("--precopy-read", choices=["dump", "live"], action="append",
                    help="how pre-copy rounds read memory, repeatable (runs alternate per repeat); default live")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/migration.jsonl"))
    ap.add_argument("--name", default="bench", help="testbed name")
    ap.add_argument("--subnet", default="10.199.0.0/16")
    ap.add_argument("--git-sha", default=None,
                    help="record this commit instead of asking git (a before/after copy made by git archive)")
    ap.add_argument("--client-load", action="store_true",
                    help="real clients on client1 during the move (redis: redis-benchmark -c 10 + an acknowledged-"
                         "write checker; counter: the probe) and client-side gap/latency/stall metrics")
    ap.add_argument("--plot-dir", type=Path, default=None,
                    help="with --client-load: write a latency-over-time plot per run here")
    args = ap.parse_args(argv)
    reason = real_engine_skip_reason()
    if reason:
        print(f"bench_migration: cannot run: {reason}", file=sys.stderr)
        return 2
    strategies = args.strategy or ["stop-and-copy", "precopy", "podman"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    c = LocalCluster.up(args.name, args.subnet, Path(tempfile.mkdtemp(prefix="em-bench-")), io_timeout_s=60.0)
    sha = args.git_sha or _git_sha()
    try:
        for rate in args.rate_mbit or RATES_MBIT:
            for rtt in args.rtt_ms or RTTS_MS:
                c.tb.set_link("edge1", "edge2", rate_mbit=rate, rtt_ms=rtt)
                for strategy in strategies:
                    if strategy == "podman" and args.service != "counter":
                        continue
                    reads = (args.precopy_read or ["live"]) if strategy == "precopy" else ["live"]
                    for rep, read in ((r, x) for r in range(args.repeats) for x in reads):
                        if strategy == "podman":
                            m = run_podman(c, args.resident_mb, args.podman_compress)
                        elif args.client_load:
                            tag = f"{args.service}_{strategy}-{read}_{rate:g}mbit_{rtt:g}ms_r{rep}"
                            m = run_engine_loaded(c, args.service, strategy, args.resident_mb, args.compression,
                                                  args.plot_dir, tag, read)
                        else:
                            m = run_engine(c, args.service, strategy, args.resident_mb, args.compression, read)
                        line = {"bench": "migration", "service": args.service, "strategy": strategy,
                                "rate_mbit": rate, "rtt_ms": rtt, **m, "resident_mb": args.resident_mb,
                                "repeat": rep, "git_sha": sha, "unix_time": round(time.time(), 1)}
                        if args.client_load:
                            line["client_load"] = True
                        text = json.dumps(line)
                        print(text, flush=True)
                        with args.out.open("a") as fh:
                            fh.write(text + "\n")
    finally:
        c.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
