"""User-space link emulator: constant delay and random loss between TUN devices.

The kernel on our machines has no ``sch_netem``, so per-link delay and loss are produced here. In the testbed's
router namespace every ordered host pair ``i -> j`` has a TUN device ``t{i}x{j}``; policy routing sends packets
that arrive from host ``i`` for host ``j`` into that device (its ``tbf`` qdisc limits the rate first). This
process reads each packet from the device, drops it with probability ``loss``, holds it for the one-way
``delay_s`` and writes it back into the same device, where it appears as received and is routed to host ``j``.

Delay is constant per device, so each device's queue is a FIFO (``deque``) and the next deadline is the minimum
of the queue heads. Loss draws come from a generator seeded per device (``SeedTree(seed).rng("loss/<dev>")``),
so a run is reproducible given the packet sequence.

Run as ``python -m edgemigrate.testbed.forwarder PARAMS.json`` inside the router namespace. ``PARAMS.json`` is
``{"seed": 0, "devices": {"t0x1": {"delay_s": 0.025, "loss": 0.0}, ...}}``; on SIGHUP the file is re-read and
the new delay/loss apply to packets read from then on. SIGTERM/SIGINT stop it. It prints ``ready`` on stdout
once every device is attached.

A device with ``"hold": true`` keeps every packet it reads (at most ``MAX_HELD_BYTES``; beyond that it drops,
as a full buffer does) and writes none until a reload clears the flag; then the held packets leave at once, in
order, each no earlier than its own delay. This is the lossless handover of a base station (``testbed/bs.py``):
3GPP TS 36.300, sec. 10.1.2.3 (X2 data forwarding) buffers a user's packets during the radio outage instead of
dropping them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemigrate.core.seeding import SeedTree

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
READ_SIZE = 65536 + 64
MAX_READS_PER_EVENT = 64  # bound the work per wake-up so that due packets are not held back
MAX_QUEUED_BYTES = 256 * 1024 * 1024  # per device; beyond this the "wire" drops (never reached at sane rates)
# per held device: a handover buffer is bounded (an eNB's per-bearer buffer is a few MB). 4 MiB is ~8 TCP
# windows of the testbed's MU and 0.34 s of a 100 Mbit/s path: the 500 ms outage of one MU never fills it
MAX_HELD_BYTES = 4 * 1024 * 1024
LOSS_BATCH = 4096


@dataclass(slots=True)
class _Device:
    name: str
    fd: int
    delay_s: float = 0.0
    loss: float = 0.0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    queued_bytes: int = 0
    uniforms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    u_idx: int = LOSS_BATCH
    rx_packets: int = 0
    dropped_packets: int = 0
    hold: bool = False

    def lose(self) -> bool:
        if self.loss <= 0.0:
            return False
        if self.u_idx >= LOSS_BATCH:
            self.uniforms = self.rng.random(LOSS_BATCH)
            self.u_idx = 0
        u = self.uniforms[self.u_idx]
        self.u_idx += 1
        return bool(u < self.loss)


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device ``name``; returns a non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


class Forwarder:
    def __init__(self, params_path: Path) -> None:
        self.params_path = params_path
        self.devices: dict[int, _Device] = {}
        self.by_name: dict[str, _Device] = {}
        self.reload_requested = False
        self.stop_requested = False
        self.poll = select.epoll()
        # signals interrupt the wait through this pipe (epoll.poll is retried after a handler, PEP 475)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.poll.register(self.wake_r, select.EPOLLIN)
        self.reload()

    def reload(self) -> None:
        params = json.loads(self.params_path.read_text())
        tree = SeedTree(int(params.get("seed", 0)))
        for name, p in params["devices"].items():
            dev = self.by_name.get(name)
            if dev is None:
                fd = open_tun(name)
                dev = _Device(name=name, fd=fd, rng=tree.rng(f"loss/{name}"))
                self.devices[fd] = dev
                self.by_name[name] = dev
                self.poll.register(fd, select.EPOLLIN)
            dev.delay_s = max(0.0, float(p.get("delay_s", 0.0)))
            dev.loss = min(max(float(p.get("loss", 0.0)), 0.0), 1.0)
            dev.hold = p.get("hold") is True
        self.reload_requested = False

    def _read(self, dev: _Device, now: float) -> None:
        fd = dev.fd
        for _ in range(MAX_READS_PER_EVENT):
            try:
                pkt = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return
                raise
            dev.rx_packets += 1
            if dev.lose():
                dev.dropped_packets += 1
                continue
            if dev.delay_s <= 0.0 and not dev.queue and not dev.hold:
                self._write(dev, pkt)
                continue
            if dev.queued_bytes + len(pkt) > (MAX_HELD_BYTES if dev.hold else MAX_QUEUED_BYTES):
                dev.dropped_packets += 1
                continue
            dev.queue.append((now + dev.delay_s, pkt))
            dev.queued_bytes += len(pkt)

    @staticmethod
    def _write(dev: _Device, pkt: bytes) -> None:
        try:
            os.write(dev.fd, pkt)
        except OSError as exc:  # the stack refused the packet (e.g. no route yet): it is lost, as on a wire
            if exc.errno not in (errno.EAGAIN, errno.EINVAL, errno.EIO, errno.ENOBUFS, errno.EINTR):
                raise

    def _release(self, now: float) -> float | None:
        """Write every due packet; return the earliest remaining deadline (or None)."""
        nearest: float | None = None
        for dev in self.devices.values():
            if dev.hold:  # its packets wait for the reload that lifts the hold (no deadline to wake up for)
                continue
            q = dev.queue
            while q and q[0][0] <= now:
                _, pkt = q.popleft()
                dev.queued_bytes -= len(pkt)
                self._write(dev, pkt)
            if q and (nearest is None or q[0][0] < nearest):
                nearest = q[0][0]
        return nearest

    def run(self) -> None:
        clock = time.monotonic
        while not self.stop_requested:
            if self.reload_requested:
                self.reload()
            now = clock()
            nearest = self._release(now)
            timeout = -1.0 if nearest is None else max(0.0, nearest - clock())
            try:
                events = self.poll.poll(timeout)
            except InterruptedError:
                continue
            now = clock()
            for fd, _ in events:
                if fd == self.wake_r:
                    while True:
                        try:
                            if not os.read(fd, 512):
                                break
                        except BlockingIOError:
                            break
                    continue
                self._read(self.devices[fd], now)

    def close(self) -> None:
        for fd in self.devices:
            os.close(fd)
        self.poll.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m edgemigrate.testbed.forwarder PARAMS.json", file=sys.stderr)
        return 2
    fwd = Forwarder(Path(args[0]))

    def on_hup(signum: int, frame: object) -> None:
        fwd.reload_requested = True

    def on_term(signum: int, frame: object) -> None:
        fwd.stop_requested = True

    signal.set_wakeup_fd(fwd.wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("ready", flush=True)
    try:
        fwd.run()
    finally:
        fwd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
