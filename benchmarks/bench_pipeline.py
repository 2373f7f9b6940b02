"""Pipelined vs serial compressed transfer of a real checkpoint directory over loopback TCP.

    .venv/bin/python benchmarks/bench_pipeline.py [--size-mb 48] [--rates 20,100,1000] [--switch 1.0:10]
                                                  [--selectors none,lz4-1,rule,model] [--out results.jsonl]

The checkpoint is a CRIU dump (``criu dump --leave-running``) of a Python process holding ``--size-mb`` of
real heap data, or, without CRIU/root, that process's resident pages as ``pages-1.img``. The receiver
runs in its own process; the link rate is capped in user space by a token bucket on the sender (no
testbed needed). One JSON line per (rate, mode, selector, page codec):

    {"bench": "pipeline", "mode": "pipelined", "selector": "rule", "page_codec": "wkdm", "rate_mbit": 100,
     "raw_bytes": ..., "wire_bytes": ..., "total_s": ... (end to end), "busy_s": {"read": .., "compress": .., "send": ..},
     "receiver_busy_s": {...}, "pred_serial_s": ..., "pred_pipelined_s": ..., "levels": {"lz4-4": 12, ...}}

``pred_*`` are seed 001 eqs. 3-7 evaluated with this run's measured per-byte stage costs and wire bytes
(``costs.compression``). Every run verifies that the received directory is byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgemigrate.costs import compression as cm
from edgemigrate.engine.compression import warm_up
from edgemigrate.engine.compression.directory import (
    Catalog,
    DirectorySink,
    directory_catalog,
    iter_directory_chunks,
)
from edgemigrate.engine.compression.images import ImageCodecPolicy
from edgemigrate.engine.compression.pageimage import criu_dump_pages, proc_mem_pages, spawn_holder
from edgemigrate.engine.compression.pipeline import PipelineConfig, PipelineMode, receive_chunks, send_chunks
from edgemigrate.engine.compression.selectors import (
    FixedSelector,
    ModelSelector,
    RuleSelector,
    measure_profiles,
)
from edgemigrate.engine.compression.transport import SocketLink, TokenBucket

CHUNK_BYTES = 1 << 20
PROFILE_CANDIDATES = [
    ("none", 0),
    ("lz4", 1),
    ("lz4", 3),
    ("lz4", 6),
    ("lz4", 9),
    ("zstd", 1),
    ("zstd", 3),
    ("zstd", 6),
]


def make_checkpoint(dst: Path, size_mb: float) -> str:
    proc = spawn_holder(int(size_mb * 1e6))
    try:
        if shutil.which("criu") and os.geteuid() == 0:
            criu_dump_pages(proc.pid, dst)
            (dst / "dump.log").unlink(missing_ok=True)
            (dst / "stats-dump").unlink(missing_ok=True)
            return "criu"
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "pages-1.img").write_bytes(proc_mem_pages(proc.pid))
        return "proc-mem"
    finally:
        proc.kill()
        proc.wait()


def _receiver(listener: socket.socket, out_dir: str, cfg: PipelineConfig, results: Any) -> None:
    warm_up()  # numba start-up and kernel cache load, as a long-running agent does at start
    results.put({"ready": True})  # imports done: the sender's clock may start
    conn, _ = listener.accept()
    listener.close()
    sinks: list[DirectorySink] = []

    def factory(hello: dict[str, Any]) -> DirectorySink:
        sinks.append(DirectorySink(Path(out_dir), Catalog.from_json(hello["catalog"], CHUNK_BYTES)))
        return sinks[0]

    try:
        rep = receive_chunks(SocketLink(conn), factory, cfg)
        sinks[0].finish()
        results.put(
            {
                "ok": True,
                "busy": {s.name: round(s.busy_s, 4) for s in rep.stages},
                "total_s": rep.total_s,
                "end_monotonic": time.monotonic(),  # CLOCK_MONOTONIC: comparable across processes
            }
        )
    except Exception as exc:  # reported to the parent
        results.put({"ok": False, "error": repr(exc)})
    finally:
        conn.close()


def _digest_tree(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def run_one(
    src: Path,
    out: Path,
    selector: Any,
    mode: PipelineMode,
    rate_mbit: float,
    page_codec: str | None,
    workers: int,
    switch: tuple[float, float] | None = None,
) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cfg = PipelineConfig(
        mode=mode, workers=workers, queue_depth=4, sample_interval_s=0.05, policy=ImageCodecPolicy(page_codec)
    )
    listener = socket.create_server(("127.0.0.1", 0))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_receiver, args=(listener, str(out), cfg, results))
    proc.start()
    if not results.get(timeout=120).get("ready"):
        raise SystemExit("receiver did not start")
    sock = socket.create_connection(listener.getsockname()[:2])
    listener.close()
    cat = directory_catalog(src, CHUNK_BYTES)
    bucket = TokenBucket(rate_mbit * 1e6, burst_bytes=64 * 1024)
    link = SocketLink(sock, bucket)
    timer = None
    if switch is not None:  # the link's rate changes mid-transfer
        timer = threading.Timer(switch[0], bucket.set_rate, args=(switch[1] * 1e6,))
        timer.start()
    t_start = time.monotonic()
    rep = send_chunks(iter_directory_chunks(src, cat), link, selector, cfg, hello={"catalog": cat.to_json()})
    link.close()
    if timer is not None:
        timer.cancel()
    r = results.get(timeout=600)
    proc.join()
    if not r["ok"]:
        raise SystemExit(f"receiver failed: {r['error']}")
    if _digest_tree(out) != _digest_tree(src):
        raise SystemExit("received directory differs from the source")
    busy = {s.name: s.busy_s for s in rep.stages}
    raw = rep.raw_bytes
    # seconds of transfer at each rate, for the predictions when the rate switched mid-way
    if switch is not None and rep.total_s > switch[0]:
        t_tx = switch[0] + (rep.wire_bytes - switch[0] * rate_mbit * 1e6 / 8) / (switch[1] * 1e6 / 8)
    else:
        t_tx = float(cm.transfer_time_s(rep.wire_bytes, rate_mbit * 1e6 / 8))
    # seed eqs. 3-7 with the measured per-byte costs: read, compress (spread over the workers), decompress
    p = [busy["read"] / raw, busy["compress"] / raw / workers, r["busy"]["decompress"] / raw / workers]
    t_proc = float(cm.processing_time_s(raw, p))
    levels = Counter(f"{c.codec}-{c.level}" for c in rep.chunks)
    return {
        "bench": "pipeline",
        "mode": mode.value,
        "selector": selector.name,
        "page_codec": page_codec or "selected",
        "rate_mbit": rate_mbit,
        "switch": None if switch is None else {"at_s": switch[0], "to_mbit": switch[1]},
        "workers": workers,
        "raw_bytes": raw,
        "wire_bytes": rep.wire_bytes,
        "ratio": round(raw / rep.wire_bytes, 3),
        "total_s": round(r["end_monotonic"] - t_start, 3),  # end to end: until the receiver has written all
        "sender_s": round(rep.total_s, 3),
        "busy_s": {k: round(v, 3) for k, v in busy.items()},
        "receiver_busy_s": r["busy"],
        "pred_serial_s": round(float(cm.migration_time_serial_s(t_proc, t_tx)), 3),
        "pred_pipelined_s": round(float(cm.migration_time_pipelined_s(t_proc, t_tx)), 3),
        "levels": dict(levels.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=48.0)
    ap.add_argument("--image-dir", type=Path, default=None, help="an existing checkpoint directory")
    ap.add_argument("--rates", default="20,100,1000", help="Mbit/s, comma-separated")
    ap.add_argument("--selectors", default="none,lz4-1,rule,model")
    ap.add_argument("--modes", default="serial,pipelined")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--switch", default=None, help="AT_S:TO_MBIT - change the link rate AT_S seconds into each transfer"
    )
    ap.add_argument("--out", type=argparse.FileType("a"), default=None)
    args = ap.parse_args(argv)
    switch = None
    if args.switch:
        at, _, to = args.switch.partition(":")
        switch = (float(at), float(to))
    warm_up()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        src = args.image_dir or Path(tmp) / "src"
        method = "dir" if args.image_dir else make_checkpoint(src, args.size_mb)
        pages = max(src.glob("pages-*.img"), key=lambda p: p.stat().st_size)
        sample = pages.read_bytes()[: 8 << 20]
        profiles = measure_profiles(sample, PROFILE_CANDIDATES, min_time_s=0.05)
        for rate in (float(x) for x in args.rates.split(",")):
            for sel_name in args.selectors.split(","):
                for mode in (PipelineMode(m) for m in args.modes.split(",")):
                    for page_codec in (None, "wkdm") if sel_name == "rule" else (None,):
                        if sel_name == "none":
                            sel: Any = FixedSelector("none", 0)
                            page_codec = None
                        elif sel_name.startswith(("lz4-", "zstd-", "zlib-")):
                            codec, _, level = sel_name.partition("-")
                            sel = FixedSelector(codec, int(level))
                        elif sel_name == "rule":
                            sel = RuleSelector()
                        else:
                            # the nominal link rate stands in until goodput is measured (serial mode
                            # compresses everything before the first byte is sent, so never measures)
                            sel = ModelSelector(
                                profiles, compress_cores=args.workers, bandwidth_hint_bytes_per_s=rate * 1e6 / 8
                            )
                        row = run_one(
                            src, Path(tmp) / "dst", sel, mode, rate, page_codec, args.workers, switch
                        )
                        row["image_method"] = method
                        line = json.dumps(row)
                        print(line, flush=True)
                        if args.out:
                            args.out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
