"""A tiny TCP bulk-transfer meter to check link shaping for real (no iperf on the machine).

``python -m edgemigrate.testbed.netperf sink --port P`` accepts one connection, reads until EOF and prints
``{"bytes": N, "seconds": T, "rate_bps": R}`` (measured at the receiver, from the first byte to EOF, so the
connection set-up and slow start before the first byte are excluded). ``... source --host H --port P --seconds S``
sends zeros for ``S`` seconds. The sink also reports ``intervals_bps``: the rate in each 0.5 s bin (to see a
rate change in the middle of a transfer). Both accept ``--cc`` to pick the TCP congestion control (default: the namespace's).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

CHUNK = 256 * 1024


def _set_cc(sock: socket.socket, cc: str | None) -> None:
    if cc:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())


def sink(port: int, bind: str = "0.0.0.0", cc: str | None = None,
         interval_s: float = 0.5) -> dict[str, object]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _set_cc(srv, cc)
    srv.bind((bind, port))
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    buf = bytearray(CHUNK)
    total = 0
    first = last = 0.0
    bins: list[int] = []  # bytes received per interval_s, from the first byte
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        now = time.monotonic()
        if total == 0:
            first = now
        last = now
        total += n
        k = int((now - first) / interval_s)
        while len(bins) <= k:
            bins.append(0)
        bins[k] += n
    conn.close()
    srv.close()
    seconds = max(last - first, 1e-9)
    return {"bytes": total, "seconds": seconds, "rate_bps": total * 8 / seconds,
            "interval_s": interval_s, "intervals_bps": [b * 8 / interval_s for b in bins]}


def source(host: str, port: int, seconds: float, cc: str | None = None) -> dict[str, float]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    _set_cc(s, cc)
    s.connect((host, port))
    data = bytes(CHUNK)
    total = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        total += s.send(data)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # wait for the sink to close (all data delivered)
    s.close()
    return {"bytes": total, "seconds": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.testbed.netperf")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("sink")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--bind", default="0.0.0.0")
    a.add_argument("--cc")
    b = sub.add_parser("source")
    b.add_argument("--host", required=True)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--seconds", type=float, default=3.0)
    b.add_argument("--cc")
    args = ap.parse_args(argv)
    if args.cmd == "sink":
        out = sink(args.port, args.bind, args.cc)
    else:
        out = source(args.host, args.port, args.seconds, args.cc)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
