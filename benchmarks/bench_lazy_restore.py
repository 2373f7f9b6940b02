"""Restore of one counter, eager vs lazy pages (``criu lazy-pages`` serving the local image), one JSON line each.

Root + CRIU >= 4.2 + runc. A network namespace of its own, no testbed, no link: this isolates the
destination's restore, the part of the frozen window that grows with the memory size. Per run::

    {"bench": "lazy_restore", "mode": "lazy", "resident_mb": 200, "runc_restore_s": .., "criu_restore_s": ..,
     "first_reply_s": .., "pages_done_s": .., "digest_ok": true, ...}

``runc_restore_s``: ``runc restore`` returned (the service runs; with ``lazy`` the daemon's start is included);
``criu_restore_s``: CRIU's own "Restore finished" time in its log; ``first_reply_s``: a request on the
restored TCP connection answered, counted from the restore's start; ``pages_done_s``: every page in
(``wait_pages``), from the restore's start (eager: = ``runc_restore_s``). Modes alternate, so both see the
same machine load.

Run: ``python benchmarks/bench_lazy_restore.py --resident-mb 200 --repeats 5``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec, build_bundle
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.runc import RuncCriuRuntime, lazy_pages_supported

SERVICE_IP, CLIENT_IP = "10.254.9.1", "10.254.9.2"


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\n")
    return sock.recv(256).strip()


def _criu_restore_s(log: Path) -> float | None:
    m = re.search(r"\((\d+\.\d+)\) Restore finished successfully", log.read_text(errors="replace"))
    return float(m.group(1)) if m else None


def one_run(netns: str, root: Path, resident_mb: float, mode: str) -> dict[str, object]:
    images = Path("/dev/shm") / f"em-lazybench-{os.getpid()}"
    shutil.rmtree(images, ignore_errors=True)
    rt = RuncCriuRuntime(root / "runc", netns, images / "work", root / "logs")
    spec = ServiceSpec("counter", ServiceKind.COUNTER, SERVICE_IP, 7000, resident_mb=resident_mb)
    bundle = build_bundle(spec, netns, root / "bundle")
    try:
        rt.run("counter", bundle)
        deadline = time.monotonic() + 120
        while True:
            try:
                with in_netns(netns):
                    client = socket.create_connection((SERVICE_IP, 7000), timeout=30, source_address=(CLIENT_IP, 0))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        digest = _ask(client, b"DIGEST")
        netlock.lock_service(netns, SERVICE_IP)
        dumped = rt.checkpoint("counter", images / "s/round-1", leave_running=False)
        t0 = time.perf_counter()
        stats = rt.restore("counter", bundle, dumped.image_dir, lazy_pages=mode == "lazy")
        t1 = time.perf_counter()
        netlock.unlock_service(netns, SERVICE_IP)
        criu_s = _criu_restore_s(rt.work_dir(dumped.image_dir, "restore-work") / "restore.log") if stats.lazy_pages \
            else None  # an eager restore's work folder (its log) is gone when it returns
        _ask(client, b"GET")
        t2 = time.perf_counter()
        rt.wait_pages("counter")
        t3 = time.perf_counter()
        ok = _ask(client, b"DIGEST") == digest
        client.close()
        return {"bench": "lazy_restore", "mode": mode, "lazy_pages": stats.lazy_pages, "resident_mb": resident_mb,
                "image_bytes": dumped.image_bytes, "runc_restore_s": round(t1 - t0, 4),
                "criu_restore_s": criu_s, "first_reply_s": round(t2 - t0, 4), "pages_done_s": round(t3 - t0, 4),
                "digest_ok": ok, "load1": float(Path("/proc/loadavg").read_text().split()[0])}
    finally:
        rt.kill("counter")
        shutil.rmtree(images, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resident-mb", type=float, default=200.0)
    ap.add_argument("--repeats", type=int, default=5, help="runs per mode (modes alternate)")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines here")
    args = ap.parse_args(argv)
    reason = real_engine_skip_reason() or (None if lazy_pages_supported() else "no userfaultfd for CRIU")
    if reason:
        print(f"bench_lazy_restore: cannot run: {reason}", file=sys.stderr)
        return 2
    name = f"emlazy{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    root = Path(f"/tmp/{name}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for ip in (SERVICE_IP, CLIENT_IP):
            subprocess.run(["ip", "-n", name, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        for rep in range(args.repeats):
            for mode in (("eager", "lazy") if rep % 2 == 0 else ("lazy", "eager")):
                line = json.dumps({**one_run(f"/run/netns/{name}", root, args.resident_mb, mode), "repeat": rep})
                print(line, flush=True)
                if args.out is not None:
                    with args.out.open("a") as fh:
                        fh.write(line + "\n")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
