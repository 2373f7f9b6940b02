"""A real testbed in network namespaces: measured RTT, throughput under tbf, loss, service-IP moves.

Assertions are on measured network properties (what ping and a TCP transfer see), never on how long our own
code takes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from edgemigrate.testbed import Testbed

pytestmark = pytest.mark.netns

PY = sys.executable
PORT = 5301


def ping(tb: Testbed, src: str, dst_ip: str, count: int, interval_s: float) -> tuple[float, float]:
    """(loss fraction, minimum RTT in ms) as measured by ping."""
    proc = tb.exec_in(src, ["ping", "-n", "-q", "-c", str(count), "-i", str(interval_s), "-W", "2", dst_ip],
                      timeout_s=120)
    out = proc.stdout.decode()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, got = int(m.group(1)), int(m.group(2))
    r = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", out)
    return 1 - got / sent, float(r.group(1)) if r else float("nan")


def transfer(tb: Testbed, src: str, dst: str, seconds: float, during=None) -> dict:
    sink = tb.popen_in(dst, [PY, "-m", "edgemigrate.testbed.netperf", "sink", "--port", str(PORT)],
                       stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
        src_proc = tb.popen_in(src, [PY, "-m", "edgemigrate.testbed.netperf", "source", "--host",
                                     tb.host_ip(dst), "--port", str(PORT), "--seconds", str(seconds)],
                               stdout=subprocess.DEVNULL)
        if during is not None:
            during()
        assert src_proc.wait(timeout=seconds + 60) == 0
        out, _ = sink.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def test_hosts_visible_as_netns_and_reach_each_other(small_testbed: Testbed) -> None:
    tb = small_testbed
    for h in tb.hosts():
        assert tb.netns_path(h.name) == f"/run/netns/{tb.name}-{h.name}"
    loss, _ = ping(tb, "edge1", tb.host_ip("cloud"), 3, 0.05)
    assert loss == 0


def test_measured_rtt_is_at_least_the_configured_latency(small_testbed: Testbed) -> None:
    tb = small_testbed
    assert tb.link("edge1", "edge2").rtt_ms == 50  # Ngo et al. 2020 default
    _, rtt_ms = ping(tb, "edge1", tb.host_ip("edge2"), 5, 0.05)
    assert 50.0 <= rtt_ms < 50.0 + 15.0
    _, rtt_ms = ping(tb, "cloud", tb.host_ip("edge2"), 3, 0.05)
    assert 150.0 <= rtt_ms < 150.0 + 15.0
    tb.set_link("edge1", "edge2", delay_ms=10)  # one-way
    _, rtt_ms = ping(tb, "edge2", tb.host_ip("edge1"), 5, 0.05)
    assert 20.0 <= rtt_ms < 20.0 + 10.0


def test_throughput_follows_tbf_rate_and_changes_mid_transfer(small_testbed: Testbed) -> None:
    tb = small_testbed
    tb.set_link("edge1", "edge2", rate_mbit=20, rtt_ms=10, loss=0)
    res = transfer(tb, "edge1", "edge2", 3.0)
    assert 0.8 * 20e6 <= res["rate_bps"] <= 1.05 * 20e6, res

    def slow_down() -> None:
        time.sleep(3.0)  # after the source started; its first byte comes after interpreter start-up
        tb.set_link("edge1", "edge2", rate_mbit=5)

    res = transfer(tb, "edge1", "edge2", 6.0, during=slow_down)
    bins = res["intervals_bps"]  # 0.5 s bins from the first byte
    early, late = bins[:2], bins[-4:-1]  # the final bin is partial
    assert max(early) > 0.8 * 20e6, bins
    # averaged over 1.5 s: a single 0.5 s bin can carry a token-bucket burst or scheduling jitter on a busy box
    late_bps = sum(late) / len(late)
    assert 0.6 * 5e6 < late_bps < 1.2 * 5e6, bins


def test_loss_is_applied_per_direction(small_testbed: Testbed) -> None:
    tb = small_testbed
    tb.set_link("edge1", "cloud", rate_mbit=0, rtt_ms=0, loss=0.1)
    loss, _ = ping(tb, "edge1", tb.host_ip("cloud"), 300, 0.005)
    # echo and reply each cross a lossy direction: 1 - 0.9**2 = 0.19 expected
    assert 0.10 <= loss <= 0.30
    tb.set_link("edge1", "cloud", loss=0)
    loss, _ = ping(tb, "edge1", tb.host_ip("cloud"), 50, 0.005)
    assert loss == 0


def test_service_ip_moves_with_the_route(small_testbed: Testbed) -> None:
    tb = small_testbed
    tb.set_link("edge1", "edge2", rate_mbit=100, rtt_ms=50, loss=0)
    ip = tb.service_ip(5)
    tb.add_service_ip(ip, "edge1")
    try:
        _, local_ms = ping(tb, "edge1", ip, 3, 0.05)
        assert local_ms < 5.0
        tb.move_service_ip(ip, "edge1", "edge2")
        assert tb.services()[ip] == "edge2"
        assert Testbed.load(tb.name).services()[ip] == "edge2"  # persisted for other processes
        _, moved_ms = ping(tb, "edge1", ip, 3, 0.05)
        assert moved_ms >= 50.0  # now across the edge1-edge2 link
        srv = tb.popen_in("edge2", [PY, "-m", "edgemigrate.workloads.counter", "--host", ip, "--port",
                                    "7100"], stdout=subprocess.PIPE, text=True)
        try:
            assert srv.stdout is not None and "listening" in srv.stdout.readline()
            reply = tb.exec_in("client1", [PY, "-c", f"import socket; s=socket.create_connection(('{ip}',7100));"
                                                     "s.sendall(b'INC\\n'); print(s.makefile().readline().strip())"],
                               check=True, timeout_s=30)
            assert reply.stdout.decode().strip() == "1"
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    finally:
        tb.remove_service_ip(ip)
    assert ip not in tb.services()


def test_status_from_another_process(small_testbed: Testbed) -> None:
    code = ("import sys; from edgemigrate.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([PY, "-c", code, "testbed", "status", "--name", small_testbed.name, "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["forwarder"]["alive"] is True
    assert {h["name"] for h in st["hosts"]} == {"edge1", "edge2", "cloud", "client1"}
    assert all(h["exists"] for h in st["hosts"])
