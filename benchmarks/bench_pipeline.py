"""Pipelined vs serial compressed transfer of a real checkpoint round over loopback TCP, on the agents' path.

    .venv/bin/python benchmarks/bench_pipeline.py [--size-mb 48] [--rates 20,100,1000] [--switch 1.0:10]
                                                  [--selectors none,lz4-1,rule,model] [--out results.jsonl]

The checkpoint is a CRIU dump (``criu dump --leave-running``) of a Python process holding ``--size-mb`` of
real heap data, or, without CRIU/root, that process's resident pages as ``pages-1.img``. What is measured is
the migration engine's own data path, exactly as the host agents run it: the source plans one round
(:func:`~edgemigrate.engine.manifest.plan_round`: read + SHA-256 of every chunk) and sends it with
:func:`~edgemigrate.engine.adaptive.sender.send_round` (per-chunk selector, compression on a thread pool,
``CHUNK`` messages of the agent protocol, the link sampled from ``TCP_INFO``); the destination, in its own
process, decodes every chunk with :func:`~edgemigrate.engine.adaptive.sender.decode_chunk` into a
:class:`~edgemigrate.engine.manifest.RoundReceiver` and rebuilds the round. The link rate is emulated by the
receiver, which reads at that rate through a 64 KiB receive buffer (TCP's flow control then blocks the
sender as a slower link would); the sender uses BBR where the kernel has it, since loss-free loopback keeps
CUBIC in slow start forever and the sender would never take a sample for the link's rate. Selectors are built
by :meth:`~edgemigrate.engine.adaptive.config.CompressionConfig.make_selector` from a sample of the image,
as the agents build them. One JSON line per (rate, mode, selector, page codec):

    {"bench": "pipeline", "mode": "pipelined", "selector": "rule", "page_codec": "wkdm", "rate_mbit": 100,
     "raw_bytes": ..., "wire_bytes": ..., "total_s": ... (end to end), "busy_s": {"read": .., "compress": .., "send": ..},
     "receiver_busy_s": {...}, "pred_serial_s": ..., "pred_pipelined_s": ..., "levels": {"lz4-4": 12, ...}}

``total_s`` is planning the round plus the time from the first byte sent until the destination has rebuilt it;
``sender_s`` planning plus ``send_round``. ``busy_s``: ``read`` is planning the round, ``compress`` the
compression CPU seconds summed over the pool's threads, ``send`` the time blocked writing. ``wire_bytes`` are
the frames (44-byte header + payload) without the agent protocol's 16 bytes per chunk.
``receiver_busy_s``: ``receive`` waiting for and parsing messages, ``decompress`` decoding frames, ``write``
verifying and writing chunks and rebuilding the round. ``pred_*`` are Zhang et al. 2019 eqs. 3-7 evaluated
with this run's measured per-byte stage costs and wire bytes (``costs.compression``). Every run verifies
that the rebuilt round is byte-identical to the source.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgemigrate.costs import compression as cm
from edgemigrate.engine.adaptive.config import CompressionConfig, PipelineMode
from edgemigrate.engine.adaptive.netstate import NetworkMonitor
from edgemigrate.engine.adaptive.sender import decode_chunk, send_round
from edgemigrate.engine.codecs import warm_up
from edgemigrate.engine.codecs.pageimage import criu_dump_pages, proc_mem_pages, spawn_holder
from edgemigrate.engine.manifest import Manifest, RoundReceiver, plan_round
from edgemigrate.engine.protocol.codec import Chunk
from edgemigrate.engine.transport.streams import FramedConnection

CHUNK_BYTES = 1 << 20
RCVBUF_BYTES = 64 << 10  # the receiver's socket buffer: small, so its read rate is what the sender sees
TIMEOUT_S = 600.0


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


class _Pacer:
    """Reads at ``rate_bytes_per_s`` (``switch``: (after S seconds, new rate)), with one buffer of slack."""

    def __init__(self, rate_bytes_per_s: float, switch: tuple[float, float] | None) -> None:
        self.rate, self.switch = rate_bytes_per_s, switch
        self.t_first: float | None = None
        self.t_next = 0.0

    async def pace(self, n_bytes: int) -> None:
        now = time.monotonic()
        if self.t_first is None:
            self.t_first = self.t_next = now
        rate = self.rate
        if self.switch is not None and now - self.t_first >= self.switch[0]:
            rate = self.switch[1]
        self.t_next = max(self.t_next, now - RCVBUF_BYTES / rate) + n_bytes / rate
        if self.t_next > now:
            await asyncio.sleep(self.t_next - now)


async def _receive(listener: socket.socket, manifest: Manifest, out_dir: Path, pacer: _Pacer) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    sock, _ = await loop.sock_accept(listener)
    listener.close()
    reader, writer = await asyncio.open_connection(sock=sock, limit=RCVBUF_BYTES)
    conn = FramedConnection(reader, writer)
    rx = RoundReceiver(manifest, out_dir, None)
    busy = {"receive": 0.0, "decompress": 0.0, "write": 0.0}
    t0 = time.perf_counter()
    try:
        for _ in manifest.chunks:
            t1 = time.perf_counter()
            m = await conn.next_message()
            t2 = time.perf_counter()
            if not isinstance(m, Chunk):
                raise RuntimeError(f"expected a chunk, got {m!r}")
            await pacer.pace(len(m.data))
            t3 = time.perf_counter()
            raw = decode_chunk(m.index, m.data)
            t4 = time.perf_counter()
            rx.accept_chunk(m.index, raw)
            busy["receive"] += t2 - t1
            busy["decompress"] += t4 - t3
            busy["write"] += time.perf_counter() - t4
        t5 = time.perf_counter()
        rx.finish()
        busy["write"] += time.perf_counter() - t5
    finally:
        rx.close()
        await conn.close()
    return {"busy": busy, "total_s": time.perf_counter() - t0}


def _receiver(listener: socket.socket, manifest_obj: dict[str, Any], out_dir: str, rate_bytes_per_s: float,
              switch: tuple[float, float] | None, results: Any) -> None:
    warm_up()  # numba start-up and kernel cache load, as a long-running agent does at start
    results.put({"ready": True})  # imports done: the sender's clock may start
    try:
        manifest = Manifest.from_dict(manifest_obj)
        r = asyncio.run(_receive(listener, manifest, Path(out_dir), _Pacer(rate_bytes_per_s, switch)))
        results.put({
            "ok": True,
            "busy": {k: round(v, 4) for k, v in r["busy"].items()},
            "total_s": r["total_s"],
            "end_monotonic": time.monotonic(),  # CLOCK_MONOTONIC: comparable across processes
        })
    except Exception as exc:  # reported to the parent
        results.put({"ok": False, "error": repr(exc)})


def _digest_tree(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def _listener() -> socket.socket:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)  # inherited by the accepted socket
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    return lsock


async def _send(plan: Any, port: int, cfg: CompressionConfig, selector: Any) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bbr")
    except OSError:
        pass  # no tcp_bbr: CUBIC, whose samples stay lower bounds of the link (see the module doc)
    conn = FramedConnection(reader, writer)
    try:
        with ThreadPoolExecutor(cfg.n_workers, thread_name_prefix="compress") as pool:
            return await send_round(plan, 1, conn, cfg, selector, NetworkMonitor(), pool, TIMEOUT_S)
    finally:
        await conn.close()


def _predictions(raw: int, wire: int, busy: dict[str, float], rx_busy: dict[str, float], workers: int,
                 rate_mbit: float, switch: tuple[float, float] | None, send_s: float) -> tuple[float, float]:
    """Zhang et al. 2019 eqs. 3-7 with this run's measured per-byte costs: read, compress and decompress (the
    latter two spread over the workers); the transfer at the link's rate(s)."""
    if switch is not None and send_s > switch[0]:
        t_tx = switch[0] + (wire - switch[0] * rate_mbit * 1e6 / 8) / (switch[1] * 1e6 / 8)
    else:
        t_tx = float(cm.transfer_time_s(wire, rate_mbit * 1e6 / 8))
    p = [busy["read"] / raw, busy["compress"] / raw / workers, rx_busy["decompress"] / raw / workers]
    t_proc = float(cm.processing_time_s(raw, p))
    return float(cm.migration_time_serial_s(t_proc, t_tx)), float(cm.migration_time_pipelined_s(t_proc, t_tx))


def run_one(src: Path, out: Path, cfg: CompressionConfig, rate_mbit: float,
            switch: tuple[float, float] | None = None) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    t_plan = time.monotonic()
    plan = plan_round("bench", 1, False, src, None, CHUNK_BYTES)
    plan_s = time.monotonic() - t_plan
    selector = cfg.make_selector(bytes(next(plan.iter_chunks())[1]))
    listener = _listener()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    switch_bytes = None if switch is None else (switch[0], switch[1] * 1e6 / 8)
    proc = ctx.Process(target=_receiver, args=(listener, plan.manifest.to_dict(), str(out), rate_mbit * 1e6 / 8,
                                               switch_bytes, results))
    proc.start()
    if not results.get(timeout=120).get("ready"):
        raise SystemExit("receiver did not start")
    port = listener.getsockname()[1]
    listener.close()
    t_start = time.monotonic()
    stats = asyncio.run(_send(plan, port, cfg, selector))
    send_s = time.monotonic() - t_start
    r = results.get(timeout=TIMEOUT_S)
    proc.join()
    if not r["ok"]:
        raise SystemExit(f"receiver failed: {r['error']}")
    if _digest_tree(out) != _digest_tree(src):
        raise SystemExit("received round differs from the source")
    busy = {"read": plan_s, "compress": stats.compress_cpu_s, "send": stats.send_busy_s}
    raw = stats.raw_bytes
    pred_serial, pred_pipelined = _predictions(raw, stats.wire_bytes, busy, r["busy"], cfg.n_workers, rate_mbit,
                                               switch, send_s)
    return {
        "bench": "pipeline",
        "mode": cfg.mode.value,
        "selector": selector.name,
        "page_codec": "selected" if cfg.page_codec == "none" else cfg.page_codec,
        "rate_mbit": rate_mbit,
        "switch": None if switch is None else {"at_s": switch[0], "to_mbit": switch[1]},
        "workers": cfg.n_workers,
        "raw_bytes": raw,
        "wire_bytes": stats.wire_bytes,
        "ratio": round(raw / stats.wire_bytes, 3),
        "total_s": round(plan_s + r["end_monotonic"] - t_start, 3),  # until the receiver has rebuilt the round
        "sender_s": round(plan_s + send_s, 3),
        "busy_s": {k: round(v, 3) for k, v in busy.items()},
        "receiver_busy_s": r["busy"],
        "pred_serial_s": round(pred_serial, 3),
        "pred_pipelined_s": round(pred_pipelined, 3),
        "levels": dict(sorted(stats.choices.items(), key=lambda kv: -kv[1])),
    }


def _configs(sel_name: str, mode: str, workers: int) -> list[CompressionConfig]:
    """The agents' settings for a bench selector name (``none``, ``CODEC-LEVEL``, ``rule``, ``model``); the
    rule selector also runs with WKdm for page images, as Zhang et al. 2019 do."""
    if sel_name.startswith(("lz4-", "zstd-", "zlib-")):
        codec, _, level = sel_name.partition("-")
        return [CompressionConfig.parse(f"fixed:{codec}:{level}", "none", mode, workers)]
    page_codecs = ("none", "wkdm") if sel_name == "rule" else ("none",)
    return [CompressionConfig.parse(sel_name, pc, mode, workers) for pc in page_codecs]


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
        for rate in (float(x) for x in args.rates.split(",")):
            for sel_name in args.selectors.split(","):
                for mode in (PipelineMode(m) for m in args.modes.split(",")):
                    for cfg in _configs(sel_name, mode.value, args.workers):
                        row = run_one(src, Path(tmp) / "dst", cfg, rate, switch)
                        row["image_method"] = method
                        line = json.dumps(row)
                        print(line, flush=True)
                        if args.out:
                            args.out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
