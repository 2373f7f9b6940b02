"""Base stations on a real testbed: the mobile user's traffic goes through its serving BS, and a handover
holds what is sent during the outage (lossless, 3GPP TS 36.300 X2 data forwarding; the user-space emulator)
or drops it (the blackhole fallback) and then routes via the new BS.

Which BS carried a packet is read from the router's per-BS shaped devices (packet counters) and from the
routes; no assertion depends on how long anything takes.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.testbed import Testbed, netops
from edgemigrate.testbed import bs as bs_ops
from edgemigrate.testbed.config import Emulator
from edgemigrate.testbed.plan import MU_TABLE

from .conftest import two_bs_testbed

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def bs_testbed() -> Iterator[Testbed]:
    with two_bs_testbed("b", 7, edges=2, clouds=1, clients=1) as tb:
        yield tb


def mu_ping(tb: Testbed, dst_ip: str, count: int) -> tuple[int, float]:
    """(replies received, minimum RTT in ms) of ``count`` pings from the mobile user's address."""
    proc = tb.exec_in("client1", ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2",
                                  "-I", tb.mu_ip("client1"), dst_ip], timeout_s=60)
    out = proc.stdout.decode()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out + proc.stderr.decode()
    r = re.search(r"= ([\d.]+)/", out)
    return int(m.group(2)), float(r.group(1)) if r else float("nan")


def counters(tb: Testbed, host: str) -> dict[str, int]:
    return {f"{b.name}{d}": tb.bs_link_tx_packets(b.name, host, up=(d == "up"))
            for b in tb.base_stations() for d in ("up", "down")}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def test_traffic_enters_through_the_serving_bs_and_handover_switches_it(bs_testbed: Testbed) -> None:
    tb = bs_testbed
    edge1 = tb.host_ip("edge1")
    if tb.serving_bs("client1") != "bs1":
        tb.handover("client1", "bs1", outage_s=0.0)
    c0 = counters(tb, "edge1")
    got, rtt_bs1_ms = mu_ping(tb, edge1, 5)
    assert got == 5
    d = moved(c0, counters(tb, "edge1"))
    assert d["bs1up"] >= 5 and d["bs1down"] >= 5
    assert d["bs2up"] == 0 and d["bs2down"] == 0

    assert bs_ops.outage_mode(tb, "client1") == (bs_ops.HOLD if tb.emulator is Emulator.TUN else bs_ops.BLACKHOLE)
    tb.begin_handover("client1")
    with pytest.raises(ConfigError, match="already in a handover"):
        tb.begin_handover("client1")
    c1 = counters(tb, "edge1")
    if tb.emulator is Emulator.TUN:
        # lossless: the echo requests sent in the outage enter bs1's path and wait there; ping never
        # retransmits, so 3 replies after the switch prove that nothing sent into the outage was lost
        ping = tb.popen_in("client1", ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-w", "60", "-I",
                                       tb.mu_ip("client1"), edge1], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        give_up = time.monotonic() + 30.0
        while moved(c1, counters(tb, "edge1"))["bs1up"] < 3:
            if time.monotonic() > give_up:
                ping.kill()
                pytest.fail(f"the outage's echo requests never reached bs1's path: {counters(tb, 'edge1')}")
            time.sleep(0.05)
        assert ping.poll() is None  # held: no reply can come back during the outage
        assert moved(c1, counters(tb, "edge1"))["bs2up"] == 0
    else:
        got, _ = mu_ping(tb, edge1, 3)
        assert got == 0  # sent during the outage: lost
        assert moved(c1, counters(tb, "edge1")) == {k: 0 for k in c1}  # neither BS forwarded them

    tb.complete_handover("client1", "bs2")
    if tb.emulator is Emulator.TUN:
        out, err = ping.communicate(timeout=90)
        assert b"3 packets transmitted, 3 received" in out, out + err
        assert moved(c1, counters(tb, "edge1"))["bs2down"] >= 3  # the held replies left towards the new BS
    assert tb.serving_bs("client1") == "bs2"
    uplink = tb.exec_in("client1", ["ip", "route", "show", "table", str(MU_TABLE)], check=True).stdout.decode()
    assert f"via {tb.bs('bs2').ip} dev w1" in uplink
    back = netops.ip(tb.plan.router_ns, "route", "show", f"{tb.mu_ip('client1')}/32").stdout
    assert f"dev {tb.bs('bs2').router_if}" in back
    c2 = counters(tb, "edge1")
    got, rtt_bs2_ms = mu_ping(tb, edge1, 5)
    assert got == 5
    d = moved(c2, counters(tb, "edge1"))
    assert d["bs2up"] >= 5 and d["bs2down"] >= 5
    assert d["bs1up"] == 0 and d["bs1down"] == 0
    # bs2 is not co-located with edge1: its path carries the emulated 52 ms RTT (a lower bound holds on any load)
    assert rtt_bs2_ms >= 0.9 * tb.bs_link("bs2", "edge1").rtt_ms
    assert tb.bs_link("bs1", "edge1").rtt_ms < tb.bs_link("bs2", "edge1").rtt_ms


def test_handover_cuts_the_radio_for_the_outage_then_routes_to_a_moved_service(bs_testbed: Testbed) -> None:
    tb = bs_testbed
    ip = tb.service_ip(3)
    tb.add_service_ip(ip, "edge2")
    try:
        start = tb.serving_bs("client1")
        target = "bs1" if start == "bs2" else "bs2"
        seen: dict[str, object] = {}

        def sleep(outage_s: float) -> None:  # runs during the outage: nothing sent now is answered in it
            seen["outage_s"] = outage_s
            seen["during"] = mu_ping(tb, ip, 2)[0]
            seen["serving"] = tb.serving_bs("client1")

        tb.handover("client1", target, sleep=sleep)
        assert seen == {"outage_s": 0.5, "during": 0, "serving": start}
        c = counters(tb, "edge2")
        assert mu_ping(tb, ip, 3)[0] == 3
        d = moved(c, counters(tb, "edge2"))
        assert d[f"{target}up"] >= 3 and d[f"{start}up"] == 0
        with pytest.raises(ConfigError, match="no base station 'bs7'"):
            tb.handover("client1", "bs7", outage_s=0.0)
        with pytest.raises(ConfigError, match="no mobile user on host 'edge1'"):
            tb.begin_handover("edge1")
    finally:
        tb.remove_service_ip(ip)


def test_set_bs_link_changes_the_path(bs_testbed: Testbed) -> None:
    tb = bs_testbed
    old = tb.bs_link("bs1", "cloud")
    new = tb.set_bs_link("bs1", "cloud", rtt_ms=40)
    assert new.rtt_ms == 40 and new.rate_mbit == old.rate_mbit
    assert Testbed.load(tb.name).bs_link("bs1", "cloud") == new
    with pytest.raises(ConfigError, match="is a client"):
        tb.set_bs_link("bs1", "client1", rtt_ms=1)


def test_a_bs_shared_by_two_mus_blackholes_instead_of_holding() -> None:
    """The hold is per BS path, not per user: with another MU on the old BS the outage must not stall that MU's
    traffic, so it falls back to the blackhole (and what is sent into it is lost)."""
    with two_bs_testbed("s", 19, edges=1, clouds=0, clients=2) as tb:
        assert tb.serving_bs("client1") == tb.serving_bs("client2") == "bs1"
        assert bs_ops.outage_mode(tb, "client1") == bs_ops.BLACKHOLE
        tb.begin_handover("client1")
        got, _ = mu_ping(tb, tb.host_ip("edge1"), 2)
        assert got == 0  # blackholed: lost, not held
        tb.complete_handover("client1", "bs2")
        assert mu_ping(tb, tb.host_ip("edge1"), 2)[0] == 2
        # alone on bs2 now: a handover from there holds (with the user-space emulator)
        want = bs_ops.HOLD if tb.emulator is Emulator.TUN else bs_ops.BLACKHOLE
        assert bs_ops.outage_mode(tb, "client1") == want
