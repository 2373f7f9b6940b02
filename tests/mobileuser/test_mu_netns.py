"""A virtual mobile user on a real testbed: its requests reach a real counter service on an edge host through
the serving base station, it hands itself over by RSSI hysteresis, and the counter stays continuous.

Which BS carried the requests is read from the BS paths' packet counters and from the delays the MU logged
(bs2's path to edge1 carries the emulated 52 ms RTT, a lower bound that holds on any load).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemigrate.controller.store import BaseStation, Host, HostRole, Placement, User, open_store
from edgemigrate.mobileuser import check_counter, default_sites, read_log
from edgemigrate.testbed import Testbed

from ..testbed.conftest import two_bs_testbed

pytestmark = pytest.mark.netns
PORT = 7000


@pytest.fixture(scope="module")
def testbed() -> Iterator[Testbed]:
    with two_bs_testbed("u", 11, edges=2, clouds=1, clients=1) as tb:
        yield tb


def test_mu_offloads_through_its_serving_bs_and_hands_over(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    ip = tb.service_ip(0)
    tb.add_service_ip(ip, "edge1")
    server = tb.popen_in("edge1", [sys.executable, "-m", "edgemigrate.workloads.counter", "--host", ip,
                                   "--port", str(PORT)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        db = tmp_path / "store.db"
        with open_store(f"sqlite:///{db}") as store:
            for h in ("edge1", "edge2"):
                store.put_host(Host(h, HostRole.EDGE, f"{tb.host_ip(h)}:7443", 4.0, 2**33, 2**36))
            for s in default_sites(2, 60.0):
                store.put_base_station(BaseStation(s.name, s.x_m, s.y_m, 1e9, 8))
            store.put_user(User("mu1"))
            store.put_placement(Placement("mu1", "simple", "edge1", "bs1"))
        before = {b: tb.bs_link_tx_packets(b, "edge1") for b in ("bs1", "bs2")}
        log = tmp_path / "mu.jsonl"
        # 120 m round trip at 30 m/s: out past bs2 and back within the run (the MU's own clock decides)
        mu = tb.exec_in("client1", [
            sys.executable, "-m", "edgemigrate.mobileuser", "--testbed", tb.name, "--host", "client1",
            "--user", "mu1", "--service", "simple", "--store", f"sqlite:///{db}", "--endpoint", f"{ip}:{PORT}",
            "--log", str(log), "--duration-s", "4", "--speed-m-per-s", "30", "--bs-spacing-m", "60",
            "--report-every-s", "0.5"], timeout_s=120)
        assert mu.returncode == 0, mu.stderr.decode()
        summary = json.loads(mu.stdout.decode().strip().splitlines()[-1])
        assert summary["counter_ok"] and summary["handovers"][0][1:] == ["bs1", "bs2"]
        records = list(read_log(log))
        check = check_counter(records)
        assert check.ok and check.first == 1 and check.answered >= 2
        answered = [r for r in records if r.answered]
        assert {r.server for r in answered} == {"edge1"}
        via = {b: [r for r in answered if r.bs == b] for b in ("bs1", "bs2")}
        assert via["bs1"] and via["bs2"]
        assert min(r.delay_s for r in via["bs2"]) >= 0.9 * tb.bs_link("bs2", "edge1").rtt_ms / 1000
        moved = {b: tb.bs_link_tx_packets(b, "edge1") - before[b] for b in before}
        assert moved["bs1"] >= len(via["bs1"]) and moved["bs2"] >= len(via["bs2"])
        with open_store(f"sqlite:///{db}") as store:
            assert {s.base_station for s in store.rssi_samples("mu1")} == {"bs1", "bs2"}
            assert store.task_delays("mu1")
    finally:
        server.terminate()
        server.wait(timeout=10)
        tb.remove_service_ip(ip)
