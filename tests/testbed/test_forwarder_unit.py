"""The link emulator's per-device loss process, FIFO delay line and handover hold, without TUN devices."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from edgemigrate.core.seeding import SeedTree
from edgemigrate.testbed import forwarder as fw
from edgemigrate.testbed.forwarder import _Device


def _losses(loss: float, n: int, seed: int) -> np.ndarray:
    dev = _Device(name="t0x1", fd=-1, loss=loss, rng=SeedTree(seed).rng("loss/t0x1"))
    return np.array([dev.lose() for _ in range(n)])


def test_loss_rate_matches_probability_and_is_reproducible() -> None:
    lost = _losses(0.05, 20_000, seed=3)
    assert abs(lost.mean() - 0.05) < 0.01
    assert np.array_equal(lost, _losses(0.05, 20_000, seed=3))
    assert not np.array_equal(lost, _losses(0.05, 20_000, seed=4))
    assert not _losses(0.0, 1000, seed=3).any()


def _held_forwarder(monkeypatch: pytest.MonkeyPatch,
                    held_bytes: int) -> tuple[fw.Forwarder, _Device, socket.socket, socket.socket]:
    """A Forwarder with one device whose "TUN" is one end of a datagram socket pair (packet boundaries kept)."""
    monkeypatch.setattr(fw, "MAX_HELD_BYTES", held_bytes)
    ours, wire = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    wire.setblocking(False)
    f = fw.Forwarder.__new__(fw.Forwarder)
    dev = _Device(name="b1u1", fd=ours.fileno(), delay_s=0.0, hold=True)
    f.devices, f.by_name = {dev.fd: dev}, {dev.name: dev}
    return f, dev, ours, wire


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


def test_a_held_device_keeps_its_packets_in_order_until_released(monkeypatch: pytest.MonkeyPatch) -> None:
    f, dev, ours, wire = _held_forwarder(monkeypatch, held_bytes=1 << 20)
    try:
        pkts = [bytes([i]) * 100 for i in range(5)]
        for p in pkts:
            wire.send(p)
        f._read(dev, now=0.0)
        assert f._release(now=1e9) is None  # held: nothing written, and no deadline to wake up for
        assert _drain(wire) == [] and dev.queued_bytes == 500
        dev.hold = False  # what a reload with the hold lifted does
        f._release(now=0.0)
        assert _drain(wire) == pkts and dev.queued_bytes == 0 and dev.dropped_packets == 0
    finally:
        ours.close()
        wire.close()


def test_the_hold_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    f, dev, ours, wire = _held_forwarder(monkeypatch, held_bytes=2500)
    try:
        for i in range(3):
            wire.send(bytes([i]) * 1000)
        f._read(dev, now=0.0)
        # the third did not fit: dropped, as by a full buffer
        assert dev.queued_bytes == 2000 and dev.dropped_packets == 1
        dev.hold = False
        f._release(now=0.0)
        assert [p[0] for p in _drain(wire)] == [0, 1]
    finally:
        ours.close()
        wire.close()
