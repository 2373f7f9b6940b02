"""Where a leave-running round's freeze goes: CRIU's own statistics and log timestamps, Redis under load.

Brings up a testbed + agents (``LocalCluster``), deploys Redis on edge1 exactly as the engine does, starts
``redis-benchmark -c 10 -t set,get -l`` and the acknowledged-write checker from client1
(``client_load.RedisLoad``), then checkpoints the running container by hand, ``--repeats`` times per mode,
keeping CRIU's ``dump.log``/``stats-dump`` (the engine deletes its work folder on success):

* ``leave-running``: the engine's command line (``RuncCriuRuntime.checkpoint``):
  ``nsenter --net=<edge1> runc --root R checkpoint --tcp-established --image-path I --work-path W
  --leave-running redis``;
* ``pre-dump``: the same with ``--pre-dump`` instead of ``--leave-running`` (runc's memory-only round;
  runc has no ``--pre-dump-mode`` flag, so CRIU's default, ``splice``);
* ``final``: the engine's final round as it runs now (``control/source.py`` ``_round(final=True)``): ``runc
  pause``, then the leave-running checkpoint of the paused container with ``--network-lock skip`` (the
  engine's ``CRIU_CONFIG_FILE``), then ``runc resume``; the row adds the pause and the time runc spends
  around CRIU (the call's wall time minus CRIU's own log span);
* ``pre-dump-read`` / ``pre-dump-splice``: ``criu pre-dump [--pre-dump-mode=read]`` on the container's pid
  directly (``criu`` under ``nsenter --net``, ``--tcp-established``, ``--freeze-cgroup`` of the container,
  ``-v4``).

The engine itself no longer dumps this way (it runs CRIU with ``--network-lock skip`` and freezes pre-copy
rounds itself: ``engine/checkpoint/runc.py``); this script keeps CRIU's defaults to show why.

Each log line of CRIU carries its time since start; the script attributes the time between consecutive
lines inside the frozen window (from the freeze to the unfreeze) to phases by the line that starts the
interval (:data:`PHASES`) and prints one JSON line per checkpoint plus a median table.

Run: ``.venv/bin/python benchmarks/criu_freeze_breakdown.py --repeats 5 --log-dir /tmp/criu-logs``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import client_load as cl
import numpy as np

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.engine.checkpoint.kdat import KDAT_CACHE, STAMP_SUFFIX, ensure_kdat_cache
from edgemigrate.engine.checkpoint.runc import CRIU_CONFIG, read_dump_stats

CRIU = "/usr/local/sbin/criu"
_LINE = re.compile(r"^\((\d+\.\d+)\)\s?(.*)$")

# (phase, regex on the log line that STARTS an interval); first match wins; unmatched -> "other"
PHASES: list[tuple[str, re.Pattern[str]]] = [(n, re.compile(p)) for n, p in [
    ("freeze", r"freez|Freez|seiz|Seiz|cgroup\.freeze|freezer"),
    ("network_lock", r"iptables|nft|[Nn]etwork.*[Ll]ock|[Ll]ock.*net|Locking|lock_connection"),
    ("tcp_repair_sockets", r"[Tt]cp|TCP|repair|inet|sk-queue|socket|Dumping sock|Dump queue|unix"),
    ("memory_pages", r"page|Page|pagemap|iov|pipe|xfer|vma|VMA|mem|Dumping pages|parasite.*pages"),
    ("parasite", r"[Pp]arasite|infect|Infect|daemon|cure|Cure|blob|sigframe|compel"),
    ("files_fds", r"fd|Fd|file|File|reg|Reg|ghost|dump_one_reg"),
    ("cgroups_mounts_ns", r"cg:|cgroup|mnt|Mnt|mount|Mount|ns|namespace|uts|ipc"),
    ("images_misc", r"img|image|Writing|Dumping|core|Core|creds|mm|seccomp|task"),
]]


def classify(text: str) -> str:
    for name, rx in PHASES:
        if rx.search(text):
            return name
    return "other"


def parse_log(path: Path) -> dict[str, Any]:
    """Timeline of a CRIU log: total time, frozen-window bounds and per-phase seconds inside it."""
    rows: list[tuple[float, str]] = []
    for ln in path.read_text(errors="replace").splitlines():
        m = _LINE.match(ln)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
    if not rows:
        return {}
    t_freeze = next((t for t, s in rows if re.search(r"Freezing|freezing processes|Seizing|freeze", s)), rows[0][0])
    t_unfreeze = next((t for t, s in reversed(rows) if re.search(r"Unfreez|unfreez|Unseiz|THAWED|thaw", s)),
                      rows[-1][0])
    phases: dict[str, float] = {}
    top: list[tuple[float, str]] = []
    for (t, s), (t_next, _) in zip(rows, rows[1:], strict=False):
        if t < t_freeze or t >= t_unfreeze:
            continue
        dt = t_next - t
        ph = classify(s)
        phases[ph] = phases.get(ph, 0.0) + dt
        top.append((dt, s[:110]))
    top.sort(reverse=True)
    return {"log_total_s": round(rows[-1][0] - rows[0][0], 4), "log_freeze_at_s": round(t_freeze - rows[0][0], 4),
            "log_frozen_s": round(t_unfreeze - t_freeze, 4),
            "phases_s": {k: round(v, 4) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
            "top_intervals": [[round(d, 4), s] for d, s in top[:12]]}


def checkpoint(mode: str, ns: str, runc_root: Path, cid: str, pid: int, cgroup: str | None, out: Path
               ) -> dict[str, Any]:
    img, work = out / "img", out / "work"
    for d in (img, work):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    env = None
    pause_s = 0.0
    if mode == "final":
        conf = out / "criu.conf"
        conf.write_text(CRIU_CONFIG)
        env = {**os.environ, "CRIU_CONFIG_FILE": str(conf)}
        runc = ["nsenter", f"--net={ns}", "--", "runc", "--root", str(runc_root)]
        t0 = time.perf_counter()
        subprocess.run([*runc, "pause", cid], check=True, timeout=60)
        pause_s = time.perf_counter() - t0
        argv = [*runc, "checkpoint", "--tcp-established", "--image-path", str(img), "--work-path", str(work),
                "--leave-running", cid]
        log = work / "dump.log"
    elif mode in ("leave-running", "pre-dump"):
        argv = ["nsenter", f"--net={ns}", "--", "runc", "--root", str(runc_root), "checkpoint", "--tcp-established",
                "--image-path", str(img), "--work-path", str(work),
                "--leave-running" if mode == "leave-running" else "--pre-dump", cid]
        log = work / ("pre-dump.log" if mode == "pre-dump" else "dump.log")
    else:
        argv = ["nsenter", f"--net={ns}", "--", CRIU, "pre-dump", "-t", str(pid), "--images-dir", str(img),
                "--work-dir", str(work), "--tcp-established", "-v4", "--log-file", "pre-dump.log"]
        if mode == "pre-dump-read":
            argv.append("--pre-dump-mode=read")
        if cgroup:
            argv += ["--freeze-cgroup", cgroup]
        log = work / "pre-dump.log"
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120, env=env)
    wall = time.perf_counter() - t0
    if mode == "final":
        subprocess.run([*runc, "resume", cid], check=True, timeout=60)
    stats_file = next((p for p in (work / "stats-dump", img / "stats-dump") if p.exists()), work / "stats-dump")
    stats = read_dump_stats(stats_file)
    row: dict[str, Any] = {"mode": mode, "rc": proc.returncode, "wall_s": round(wall, 4),
                           "image_bytes": sum(p.stat().st_size for p in img.iterdir() if p.is_file()),
                           **{k: v for k, v in stats.items()}}
    if proc.returncode != 0:
        row["stderr"] = proc.stderr.strip()[-300:]
    if not log.exists():
        cands = sorted(work.glob("*.log"))
        log = cands[0] if cands else log
    if log.exists():
        row.update(parse_log(log))
        row["log"] = str(log)
        if mode == "final" and "log_total_s" in row:
            # CRIU's log stamps time since its own start: the rest of the call is runc (and nsenter) around it
            row["pause_s"] = round(pause_s, 4)
            row["runc_around_criu_s"] = round(wall - row["log_total_s"], 4)
    return row


def _cgroup_of(pid: int) -> str | None:
    for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        parts = ln.split(":", 2)
        if parts[0] == "0" or "freezer" in parts[1]:
            return "/sys/fs/cgroup" + ("/freezer" if "freezer" in parts[1] else "") + parts[2]
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modes", default="leave-running,pre-dump,pre-dump-read,pre-dump-splice")
    ap.add_argument("--log-dir", type=Path, default=Path(tempfile.mkdtemp(prefix="em-criu-logs-")))
    ap.add_argument("--out", type=Path, default=None, help="append the JSON lines here")
    ap.add_argument("--name", default="pcf")
    ap.add_argument("--subnet", default="10.197.0.0/16")
    ap.add_argument("--no-load", action="store_true", help="no clients (idle Redis, for comparison)")
    ap.add_argument("--service", choices=["redis", "counter"], default="redis",
                    help="counter: the line counter with --resident-mb of static memory (no client load)")
    ap.add_argument("--resident-mb", type=float, default=200.0)
    ap.add_argument("--kdat-ab", action="store_true",
                    help="alternate repeats without and with CRIU's kernel-feature cache (engine/checkpoint/kdat.py)")
    args = ap.parse_args(argv)
    reason = real_engine_skip_reason()
    if reason:
        print(f"criu_freeze_breakdown: cannot run: {reason}", file=sys.stderr)
        return 2
    c = LocalCluster.up(args.name, args.subnet, Path(tempfile.mkdtemp(prefix="em-pcf-")), io_timeout_s=60.0)
    rows: list[dict[str, Any]] = []
    try:
        tb = c.tb
        if args.service == "redis":
            spec = ServiceSpec("redis", ServiceKind.REDIS, tb.service_ip(0), 6379, 200.0)
        else:
            spec = ServiceSpec("counter", ServiceKind.COUNTER, tb.service_ip(0), 7000, args.resident_mb)
        c.deploy("edge1", spec)
        runc_root = c.agents["edge1"].state_dir / "runc"
        st = json.loads(subprocess.run(["runc", "--root", str(runc_root), "state", spec.name], capture_output=True,
                                       text=True, check=True).stdout)
        pid = int(st["pid"])
        cgroup = _cgroup_of(pid)
        load = None if args.no_load or args.service != "redis" else cl.RedisLoad(tb.netns_path("client1"), spec.ip, spec.port,
                                                      args.log_dir / "load")
        time.sleep(2.0)
        try:
            for mode in args.modes.split(","):
                for rep in range(args.repeats):
                    cache = None
                    if args.kdat_ab:
                        cache = rep % 2 == 1
                        if cache:
                            ensure_kdat_cache()
                        else:
                            for f in (KDAT_CACHE, KDAT_CACHE.with_name(KDAT_CACHE.name + STAMP_SUFFIX)):
                                f.unlink(missing_ok=True)
                    row = checkpoint(mode, tb.netns_path("edge1"), runc_root, spec.name, pid, cgroup,
                                     args.log_dir / f"{mode}-{rep}")
                    if cache is not None:
                        row["kdat_cache"] = cache
                    row.update(repeat=rep, load=load is not None, cgroup=cgroup, service=spec.name,
                               resident_mb=spec.resident_mb)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    time.sleep(1.0)
        finally:
            if load is not None:
                w = load.stop()
                lost = cl.verify_acked(tb.netns_path("client1"), spec.ip, spec.port, w["acked"])
                sent, recv = np.array(w["sent"]), np.array(w["recv"])
                gm = cl.gap_metrics(sent, recv, float(sent.min()), float(recv.max()))
                print(json.dumps({"writer": {"acked": len(w["acked"]), "lost": lost, **gm}}), flush=True)
    finally:
        c.stop_all(spec.name)
        c.down()
    if args.out:
        with args.out.open("a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
