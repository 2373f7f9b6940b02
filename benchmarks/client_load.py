"""Client load for ``bench_migration.py --client-load``: real clients on the client host during a move.

* Redis: ``redis-benchmark`` (10 connections, SET/GET, ``-l``) as background load, plus an
  acknowledged-write checker (:func:`writer_main`, run as ``python benchmarks/client_load.py writer``
  under ``nsenter --net=<client1>``): one connection, one ``SET ack:<i> <value>`` in flight at a time,
  every request's send/reply wall time recorded; afterwards every acknowledged key is read back from the
  destination (:func:`verify_acked`).
* Counter: the project's probe (``workloads/probe.py``, ``INC`` every 10 ms), with every reply's
  send/reply time recorded (:class:`TimedProbe`).

Metrics over the move window (migration request sent -> result received), :func:`gap_metrics`:
``max_gap_s`` (longest time between two consecutive replies of the timed client), ``gaps_over_100ms``,
``p99_latency_s`` (request send -> reply, requests sent during the window), and ``stall_s``: the
*client-visible stall*, the sum of all reply-to-reply gaps longer than 50 ms (``STALL_GAP_S``) in the window
(the timed client keeps one request in flight back to back, ~5 ms per request on the 5 ms client link, so
a gap over 50 ms is time the service did not answer).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

STALL_GAP_S = 0.050
GAP_COUNT_S = 0.100
ACK_PREFIX = "ack:"


# ----------------------------------------------------------------------------------------- metrics
def gap_metrics(sent: np.ndarray, recv: np.ndarray, t_from: float, t_to: float) -> dict[str, Any]:
    """Gap/latency metrics of one back-to-back client between ``t_from`` and ``t_to`` (wall seconds).

    The window's gaps run from the last reply before it to the first reply after it: a stall that began
    before the window or ended after it (a client waiting for its next retransmission after the move
    finished) is seen whole."""
    order = np.argsort(recv)
    sent, recv = sent[order], recv[order]
    idx = np.flatnonzero((recv >= t_from) & (recv <= t_to))
    before, after = np.flatnonzero(recv < t_from), np.flatnonzero(recv > t_to)
    lo = int(before[-1]) if before.size else (int(idx[0]) if idx.size else None)
    hi = int(after[0]) if after.size else (int(idx[-1]) if idx.size else None)
    if lo is None or hi is None or hi <= lo:
        return {"max_gap_s": None, "gaps_over_100ms": None, "p99_latency_s": None, "stall_s": None,
                "requests_in_move": int(idx.size)}
    r = recv[lo:hi + 1]
    gaps = np.diff(r) if r.size > 1 else np.zeros(0)
    lat = (recv - sent)[(sent >= t_from) & (sent <= t_to)]
    return {
        "max_gap_s": round(float(gaps.max()), 4) if gaps.size else 0.0,
        "gaps_over_100ms": int((gaps > GAP_COUNT_S).sum()),
        "p99_latency_s": round(float(np.percentile(lat, 99)), 4) if lat.size else None,
        "stall_s": round(float(gaps[gaps > STALL_GAP_S].sum()), 4),
        "requests_in_move": int(idx.size),
    }


# ----------------------------------------------------------------------------------- counter probe
class TimedProbe:
    """The project's :class:`Probe`, with every reply's (send, reply) wall time kept."""

    def __init__(self, netns_path: str, host: str, port: int) -> None:
        from edgemigrate.control.netns import in_netns
        from edgemigrate.workloads import probe as probe_mod

        self.times: list[tuple[float, float]] = []
        offset = time.time() - time.monotonic()
        times = self.times
        orig = probe_mod._Recorder.reply

        def reply(rec: Any, sent_t: float, now: float, value: int) -> None:
            times.append((sent_t + offset, now + offset))
            orig(rec, sent_t, now, value)

        class _Rec(probe_mod._Recorder):  # type: ignore[misc]
            __slots__ = ()

        _Rec.reply = reply  # type: ignore[method-assign]
        self._mod, self._orig_cls = probe_mod, probe_mod._Recorder
        probe_mod._Recorder = _Rec  # Probe.run builds its recorder from the module global
        with in_netns(netns_path):
            self.probe = probe_mod.Probe(host, port)
            self.probe.start()
        time.sleep(0.5)

    def stop(self) -> tuple[Any, np.ndarray, np.ndarray]:
        res = self.probe.stop()
        self._mod._Recorder = self._orig_cls
        arr = np.array(self.times, dtype=np.float64).reshape(-1, 2)
        return res, arr[:, 0].copy(), arr[:, 1].copy()


# ------------------------------------------------------------------------------------- redis load
class RedisLoad:
    """``redis-benchmark -c 10 -t set,get -l`` plus the acknowledged-write checker, both in the client netns."""

    def __init__(self, netns_path: str, host: str, port: int, work: Path, connections: int = 10) -> None:
        self.netns_path, self.host, self.port, self.work = netns_path, host, port, work
        work.mkdir(parents=True, exist_ok=True)
        ns = ["nsenter", f"--net={netns_path}", "--"]
        self.rps: list[tuple[float, str, float]] = []  # (wall time, test, rps of the last interval)
        self.bench = subprocess.Popen(
            [*ns, "redis-benchmark", "-h", host, "-p", str(port), "-c", str(connections), "-t", "set,get", "-l",
             "-d", "64", "-r", "100000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read_bench, daemon=True)
        self._reader.start()
        self.writer_out = work / "writer.json"
        self.writer = subprocess.Popen(
            [*ns, sys.executable, str(Path(__file__).resolve()), "writer", "--host", host, "--port", str(port),
             "--out", str(self.writer_out)], stdin=subprocess.DEVNULL)
        time.sleep(1.0)

    def _read_bench(self) -> None:
        assert self.bench.stdout is not None
        buf = b""
        with (self.work / "redis-benchmark.log").open("wb") as log:
            while chunk := self.bench.stdout.read1(4096):
                log.write(chunk)
                buf += chunk
                *lines, buf = buf.replace(b"\r", b"\n").split(b"\n")
                now = time.time()
                for ln in lines:  # "SET: rps=51234.0 (overall: 50000.0) avg_msec=0.2 (overall: 0.2)"
                    text = ln.decode(errors="replace").strip()
                    if ": rps=" in text:
                        test, rest = text.split(": rps=", 1)
                        try:
                            self.rps.append((now, test, float(rest.split()[0])))
                        except ValueError:
                            pass

    def stop(self) -> dict[str, Any]:
        for p in (self.writer, self.bench):
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p is self.bench else signal.SIGTERM)
        self.writer.wait(30)
        try:
            self.bench.wait(10)
        except subprocess.TimeoutExpired:
            self.bench.kill()
            self.bench.wait(5)
        self._reader.join(5)
        return json.loads(self.writer_out.read_text())

    def bench_metrics(self, t_from: float, t_to: float) -> dict[str, Any]:
        """redis-benchmark prints its rate every 250 ms: intervals in the window with no request done."""
        rows = [(t, r) for t, _, r in self.rps if t_from <= t <= t_to]
        return {"bench_intervals": len(rows), "bench_zero_rps_intervals": sum(1 for _, r in rows if r == 0.0)}


def verify_acked(netns_path: str, host: str, port: int, acked: list[list[Any]]) -> int:
    """How many acknowledged writes are missing or wrong on the server now (read back with MGET)."""
    from edgemigrate.control.netns import in_netns
    from edgemigrate.workloads.redis import RespClient

    with in_netns(netns_path):
        c = RespClient(host, port)
    lost = 0
    with c:
        for start in range(0, len(acked), 500):
            part = acked[start:start + 500]
            values = c.call("MGET", *[k for k, _ in part])
            if not isinstance(values, list):
                return len(acked)
            lost += sum(1 for (_, v), got in zip(part, values, strict=True) if got != v.encode())
    return lost


# ------------------------------------------------------------------------------ writer (subprocess)
def writer_main(host: str, port: int, out: Path) -> int:
    """SET ack:<i> <i>-<nonce> one at a time until SIGTERM; write every acked (key, value) and all timings."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    nonce = os.urandom(4).hex()
    acked: list[tuple[str, str]] = []
    sent_t: list[float] = []
    recv_t: list[float] = []
    errors: list[str] = []
    reconnects = 0
    i = 0
    sock: socket.socket | None = None
    rfile: Any = None
    while not stop.is_set():
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rfile = sock.makefile("rb")
            key, val = f"{ACK_PREFIX}{i:08d}", f"{i}-{nonce}"
            msg = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key.encode(), len(val), val.encode())
            t0 = time.time()
            sock.sendall(msg)
            line = rfile.readline()
            t1 = time.time()
            i += 1
            if line == b"+OK\r\n":
                acked.append((key, val))
                sent_t.append(t0)
                recv_t.append(t1)
            else:
                raise ConnectionError(f"reply {line[:40]!r}")
        except (OSError, ConnectionError) as exc:
            errors.append(f"{time.time():.3f} {type(exc).__name__}: {exc}")
            reconnects += 1
            if sock is not None:
                sock.close()
            sock = None
            stop.wait(0.05)
    if sock is not None:
        sock.close()
    out.write_text(json.dumps({"acked": acked, "sent": sent_t, "recv": recv_t, "attempted": i,
                               "errors": errors[:50], "reconnects": reconnects}))
    return 0


# ----------------------------------------------------------------------------------------- plot
def plot_latency(path: Path, sent: np.ndarray, recv: np.ndarray, t0: float, rounds: list[dict[str, Any]],
                 title: str, t_end: float | None = None) -> None:
    """Request latency over time (log scale) with each round's CRIU dump window shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.scatter(recv - t0, (recv - sent) * 1000, s=3, color="tab:blue", label="request latency (reply time)")
    for r in rounds:
        a = r["start_t"] - t0
        ax.axvspan(a, a + r["dump_s"], color="tab:red" if r["final"] else "tab:orange", alpha=0.3)
        ax.text(a, 0.98, f"r{r['round']} frozen {r['criu_frozen_s'] * 1000:.0f} ms", rotation=90, va="top",
                fontsize=7, transform=ax.get_xaxis_transform())
    ax.axvline(0, color="k", lw=0.8, ls="--")
    if t_end is not None:
        ax.axvline(t_end - t0, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("s since migration request (dashed: request, result; shaded: CRIU dump of each round, "
                  "red = final)", fontsize=8)
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="client-load helpers (the writer subprocess)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("--host", required=True)
    w.add_argument("--port", type=int, default=6379)
    w.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    return writer_main(args.host, args.port, args.out)


if __name__ == "__main__":
    sys.exit(main())
