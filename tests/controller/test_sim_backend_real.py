"""Calibration from the real engine: real CRIU pre-copy migrations of the counter on the handover-testbed
scenario's edge-edge link (100 Mbit/s, 50 ms RTT; Ngo et al. 2020 sec. V-A) become ``migrations.jsonl``;
``edgemigrate controller calibrate`` fits the pre-copy model (Clark et al. 2005) and ``controller simulate``
runs the same scenario on the simulator backend and compares the downtimes.

The band is a ratio of two quantities measured in the same run on the same machine (never a time): the
fit is to the medians of these very migrations, so on an idle machine the ratio is about 1 (the issue's
target is 0.8-1.2); CI's two busy cores make single restores vary by 2x, hence the loose 0.5-2. The same
migrations also feed eq. 5's stop-and-copy calibration, which overestimates a pre-copied service's
downtime (it charges the full checkpoint and restore) but must stay within an order of magnitude.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemigrate.cli import main
from edgemigrate.cluster import LocalCluster
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.sim import SimBackend, load_calibration, load_scenario
from edgemigrate.controller.sim.calibration import calibration_from_migrations
from edgemigrate.controller.sim.measurements import MIGRATIONS_FILE, record_from_stats
from edgemigrate.controller.testbed_backend import TestbedBackend

pytestmark = [pytest.mark.criu, pytest.mark.netns]

RENAME = {"edge1": "edge-0", "edge2": "edge-1", "edge3": "edge-2"}
LINK_MBIT, RTT_MS = 100.0, 50.0  # handover-testbed's edge_edge_bps / edge_edge_rtt_s
MOVES = (("edge1", "edge2"), ("edge2", "edge1"), ("edge1", "edge2"))


@pytest.fixture(scope="module")
def moves(realbed: LocalCluster) -> Iterator[list[tuple[str, str, dict]]]:
    """Three real pre-copy migrations of the counter over the scenario's edge-edge link."""
    before = realbed.tb.link("edge1", "edge2")
    realbed.tb.set_link("edge1", "edge2", rate_mbit=LINK_MBIT, rtt_ms=RTT_MS)
    spec = ServiceSpec("counter", ServiceKind.COUNTER, realbed.tb.service_ip(0), 7100, 32.0)
    realbed.deploy("edge1", spec)
    backend = TestbedBackend(realbed.directory, status_timeout_s=10.0)
    try:
        out = []
        for i, (src, dst) in enumerate(MOVES):
            res = asyncio.run(backend.migrate("counter", src, dst, f"cal-{i}"))
            assert res.stats.get("ok") is True and res.stats.get("strategy") == "precopy", res.stats
            out.append((src, dst, res.stats))
        yield out
    finally:
        realbed.stop_all("counter")
        realbed.tb.set_link("edge1", "edge2", rate_mbit=before.rate_mbit, rtt_ms=before.rtt_ms)


def test_calibrated_precopy_downtime_matches_the_measured_one(moves, tmp_path: Path, capsys) -> None:
    results = tmp_path / "results" / "run-1"
    results.mkdir(parents=True)
    with (results / MIGRATIONS_FILE).open("w") as fh:
        for i, (_, _, st) in enumerate(moves):
            rec = record_from_stats(st, service="counter", planner="direct", repeat=i,
                                    link_bps=LINK_MBIT * 1e6, rtt_s=RTT_MS / 1e3)
            fh.write(json.dumps(rec) + "\n")
    cal_path = tmp_path / "calibration.json"
    assert main(["controller", "calibrate", "--from", str(tmp_path / "results"), "-o", str(cal_path)]) == 0
    fitted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert fitted["service"] == "counter" and fitted["samples"] == 3
    # the counter's resident memory went in the first round; only a small delta was left for the freeze
    assert fitted["resident_bytes"] > 100 * max(st["final_round_bytes"] for _, _, st in moves)
    assert main(["controller", "simulate", "--scenario", "handover-testbed", "--calibration", str(cal_path),
                 "--ticks", "120", "--out", str(tmp_path / "sim")]) == 0
    cmp = json.loads(capsys.readouterr().out.strip())
    measured = statistics.median(st["frozen_window_s"] for _, _, st in moves)
    assert cmp["measured_downtime_s"] == pytest.approx(measured, rel=1e-3)
    assert cmp["migrations"] >= 2 and cmp["strategy"] == "precopy"
    print(json.dumps({"measured_frozen_s": [st["frozen_window_s"] for _, _, st in moves], **cmp}))
    assert 0.5 <= cmp["ratio"] <= 2.0, cmp
    assert (tmp_path / "sim" / "manifest.json").exists()


def test_eq5_stop_and_copy_calibration_stays_within_an_order_of_magnitude(moves, tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration_from_migrations(moves, 1000.0, RENAME)))
    cal = load_calibration(path)
    assert cal.strategy == "stop-and-copy" and set(cal.hosts) == {"edge-0", "edge-1"}
    measured = statistics.median(cal.measured_downtime_s)
    simulated = SimBackend(load_scenario("handover-testbed"), cal).migration_times_s(0, 1)["downtime_s"]
    assert measured > 0 and 0.2 <= simulated / measured <= 10.0, (simulated, measured)
