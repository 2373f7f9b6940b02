"""A probe client: one request every 10 ms to a counter service, recording reply times and gaps.

The client-observed downtime of a migration is the largest gap between two consecutive replies (Ngo et al. 2020
measure service downtime as the interruption seen by the mobile user). The probe keeps one request in flight: it
sends ``INC``, waits for the reply, then sleeps until the next 10 ms tick, so a stalled service shows up as one
long wait, not as a burst of queued requests. Counter replies must rise by exactly one each time (single client):
``monotonic`` is false if any reply is not the previous + 1 (lost or duplicated state), and every such jump is
listed.

Run ``python -m edgemigrate.workloads.probe --host IP --port P --duration-s 20 --out probe.json`` (SIGINT
or SIGTERM end it early and still write the result), or in-process::

    with Probe("10.77.2.0", 7000) as p:
        ...migrate...
    r = p.result()  # ProbeResult: replies, max_gap_s, monotonic, ...
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

DEFAULT_INTERVAL_S = 0.010
REPLY_TIMEOUT_S = 30.0
MAX_JUMPS_KEPT = 100


@dataclass(frozen=True, slots=True)
class ProbeResult:
    requests: int
    replies: int
    first_value: int | None
    last_value: int | None
    max_gap_s: float
    max_gap_at_s: float  # when (seconds after start) the longest gap ended
    mean_reply_s: float
    monotonic: bool
    jumps: tuple[tuple[int, int], ...]  # (previous, next) pairs where next != previous + 1
    reconnects: int
    error: str | None
    duration_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass(slots=True)
class _Recorder:
    t0: float
    requests: int = 0
    replies: int = 0
    first: int | None = None
    last: int | None = None
    last_reply_t: float | None = None
    max_gap_s: float = 0.0
    max_gap_at_s: float = 0.0
    reply_time_sum_s: float = 0.0
    jumps: list[tuple[int, int]] = field(default_factory=list)
    monotonic: bool = True
    reconnects: int = 0
    error: str | None = None

    def reply(self, sent_t: float, now: float, value: int) -> None:
        self.replies += 1
        self.reply_time_sum_s += now - sent_t
        if self.last_reply_t is not None:
            gap = now - self.last_reply_t
            if gap > self.max_gap_s:
                self.max_gap_s, self.max_gap_at_s = gap, now - self.t0
        self.last_reply_t = now
        if self.first is None:
            self.first = value
        elif self.last is not None and value != self.last + 1:
            self.monotonic = False
            if len(self.jumps) < MAX_JUMPS_KEPT:
                self.jumps.append((self.last, value))
        self.last = value

    def result(self, now: float) -> ProbeResult:
        return ProbeResult(
            requests=self.requests, replies=self.replies, first_value=self.first, last_value=self.last,
            max_gap_s=self.max_gap_s, max_gap_at_s=self.max_gap_at_s,
            mean_reply_s=self.reply_time_sum_s / self.replies if self.replies else 0.0,
            monotonic=self.monotonic and self.replies > 0, jumps=tuple(self.jumps), reconnects=self.reconnects,
            error=self.error, duration_s=now - self.t0)


class Probe:
    """Probe a counter service from a background thread (or :meth:`run` in the foreground)."""

    def __init__(self, host: str, port: int, *, interval_s: float = DEFAULT_INTERVAL_S,
                 reply_timeout_s: float = REPLY_TIMEOUT_S, reconnect: bool = False) -> None:
        self.addr = (host, port)
        self.interval_s = interval_s
        self.reply_timeout_s = reply_timeout_s
        self.reconnect = reconnect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rec = _Recorder(time.monotonic())

    def _connect(self) -> tuple[socket.socket, socket.SocketIO]:
        s = socket.create_connection(self.addr, timeout=self.reply_timeout_s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s, s.makefile("rb")  # type: ignore[return-value]

    def run(self, duration_s: float | None = None) -> ProbeResult:
        rec = self._rec = _Recorder(time.monotonic())
        try:
            sock, rfile = self._connect()
        except OSError as exc:
            rec.error = f"connect {self.addr[0]}:{self.addr[1]}: {exc}"
            return rec.result(time.monotonic())
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - rec.t0 >= duration_s:
                    break
                try:
                    sent = time.monotonic()
                    sock.sendall(b"INC\n")
                    rec.requests += 1
                    line = rfile.readline()
                    if not line:
                        raise ConnectionResetError("server closed the connection")
                    rec.reply(sent, time.monotonic(), int(line))
                except (OSError, ValueError) as exc:
                    if not self.reconnect or self._stop.is_set():
                        rec.error = f"{type(exc).__name__}: {exc}"
                        break
                    rec.reconnects += 1
                    sock.close()
                    try:
                        sock, rfile = self._connect()
                    except OSError:
                        time.sleep(self.interval_s)
                    continue
                next_t += self.interval_s
                delay = next_t - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_t = time.monotonic()
        finally:
            sock.close()
        return rec.result(time.monotonic())

    # background use
    def start(self) -> Probe:
        self._result: ProbeResult | None = None

        def body() -> None:
            self._result = self.run()

        self._thread = threading.Thread(target=body, name="probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> ProbeResult:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.reply_timeout_s + 5)
        return self.result()

    def result(self) -> ProbeResult:
        res = getattr(self, "_result", None)
        return res if res is not None else self._rec.result(time.monotonic())

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgemigrate.workloads.probe")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--interval-ms", type=float, default=DEFAULT_INTERVAL_S * 1000)
    ap.add_argument("--duration-s", type=float, default=None, help="default: until SIGINT/SIGTERM")
    ap.add_argument("--reconnect", action="store_true", help="reconnect after an error instead of stopping")
    ap.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = ap.parse_args(argv)
    probe = Probe(args.host, args.port, interval_s=args.interval_ms / 1000, reconnect=args.reconnect)
    signal.signal(signal.SIGTERM, lambda *_: probe._stop.set())
    signal.signal(signal.SIGINT, lambda *_: probe._stop.set())
    print("probing", flush=True)
    res = probe.run(args.duration_s)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(res.to_json() + "\n")
    else:
        print(res.to_json(), flush=True)
    return 0 if res.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
