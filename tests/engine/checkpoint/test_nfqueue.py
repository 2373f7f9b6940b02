"""On a real network namespace: the destination's packet hold (a netfilter queue: held packets are not
delivered, and are delivered - the originals, no retransmission needed - once released) and the lock rules'
bookkeeping. Root + a network namespace."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from tests.waiting import wait_until

from edgemigrate.control.netns import in_netns
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.nfqueue import FIRST_QUEUE, PacketHold

pytestmark = [pytest.mark.netns]

SERVICE_IP, CLIENT_IP = "10.254.1.1", "10.254.1.2"


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, netfilter)")
    name = f"emnfq{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for ip in (SERVICE_IP, CLIENT_IP):
            subprocess.run(["ip", "-n", name, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _wait_held(hold: PacketHold, n: int) -> None:
    wait_until(lambda: hold.held >= n, f"the queue to see {n} packet(s)")


def test_held_packets_arrive_when_released_and_not_before(netns: str) -> None:
    with in_netns(netns):
        srv = socket.create_server((SERVICE_IP, 7000))
        cli = socket.create_connection((SERVICE_IP, 7000), timeout=10, source_address=(CLIENT_IP, 0))
        conn, _ = srv.accept()
        hold = PacketHold()
        other = PacketHold()  # a second migration on the same host gets its own queue
    try:
        assert hold.queue >= FIRST_QUEUE and other.queue != hold.queue
        rule = netlock.hold_rule(SERVICE_IP, hold.queue)
        netlock.apply_rules(netns, [rule])
        hold.start()
        cli.sendall(b"held")
        _wait_held(hold, 1)
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):  # the segment sits in the queue, not in the socket
            conn.recv(16)
        netlock.remove_rules(netns, [rule])
        assert netlock.criu_drop_rules(netns) == []
        assert hold.release() >= 1
        conn.settimeout(10)
        assert conn.recv(16) == b"held"
        cli.sendall(b"after")  # and the connection goes on past the hold
        assert conn.recv(16) == b"after"
    finally:
        hold.close()
        other.close()
        for s in (cli, conn, srv):
            s.close()


def test_released_packets_skip_the_lock_behind_the_hold_and_a_second_release_takes_the_rest(netns: str) -> None:
    """The destination's order: release while the hold and the lock are still in place (a held packet skips
    the DROP behind it), packets that queue until the rules are gone are let in by a second release."""
    with in_netns(netns):
        srv = socket.create_server((SERVICE_IP, 7002))
        cli = socket.create_connection((SERVICE_IP, 7002), timeout=10, source_address=(CLIENT_IP, 0))
        conn, _ = srv.accept()
        hold = PacketHold()
    lock = netlock.inbound(netlock.service_lock_rules(SERVICE_IP))
    rule = netlock.hold_rule(SERVICE_IP, hold.queue)
    try:
        netlock.apply_rules(netns, [*lock, rule])  # the hold in front of the lock
        hold.start()
        cli.sendall(b"first")
        _wait_held(hold, 1)
        assert hold.release(last=False) == 1
        conn.settimeout(10)
        assert conn.recv(16) == b"first"  # through, with the DROP rule still in the chain
        cli.sendall(b"second")  # the rules are still there: it queues again, and the hold still sees it
        _wait_held(hold, 2)
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn.recv(16)
        netlock.remove_rules(netns, [*lock, rule])
        assert hold.release() == 2
        conn.settimeout(10)
        assert conn.recv(16) == b"second"
        assert hold.release() == 2  # nothing more: no verdict sent
    finally:
        hold.close()
        netlock.remove_rules(netns, [*lock, rule])
        for s in (cli, conn, srv):
            s.close()


def test_a_closed_hold_drops_what_it_held(netns: str) -> None:
    with in_netns(netns):
        srv = socket.create_server((SERVICE_IP, 7001))
        cli = socket.create_connection((SERVICE_IP, 7001), timeout=10, source_address=(CLIENT_IP, 0))
        conn, _ = srv.accept()
        hold = PacketHold().start()
    rule = netlock.hold_rule(SERVICE_IP, hold.queue)
    try:
        netlock.apply_rules(netns, [rule])
        cli.sendall(b"lost")
        _wait_held(hold, 1)
        hold.close()  # the undo path: nothing held is let in
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn.recv(16)
    finally:
        netlock.remove_rules(netns, [rule])
        for s in (cli, conn, srv):
            s.close()


def test_locking_twice_adds_copies_and_unlocking_removes_every_copy(netns: str) -> None:
    rules = netlock.lock_service(netns, SERVICE_IP)
    netlock.lock_service(netns, SERVICE_IP)  # no look first: a second lock only adds copies
    assert sorted(netlock.criu_drop_rules(netns, SERVICE_IP)) == sorted(rules * 2)
    netlock.remove_rules(netns, [rules[0], rules[0], rules[0]])  # one copy too many: as many as are there go
    assert netlock.criu_drop_rules(netns, SERVICE_IP) == [rules[1], rules[1]]
    netlock.unlock_service(netns, SERVICE_IP)
    assert netlock.criu_drop_rules(netns) == []
    netlock.remove_rules(netns, rules)  # idempotent
