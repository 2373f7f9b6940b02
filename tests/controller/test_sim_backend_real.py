"""Calibration from the real engine: two real CRIU migrations on the testbed become the calibration file, and
the simulator's eq. 5 downtime (Ngo et al. 2020) for the same move is compared with the measured one.

The bound is loose on purpose, and it is a ratio of two things measured on the same machine in the same run
(not a time): eq. 5 charges a full checkpoint and a full restore to the outage, while pre-copy freezes only
for the last delta's dump, its transfer and the restore, so the model may overestimate a small service by a
few times but must land within the same order of magnitude.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path

import pytest

from edgemigrate.cluster import LocalCluster
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.sim import SimBackend, SimController, load_calibration, load_scenario
from edgemigrate.controller.sim.calibration import calibration_from_migrations
from edgemigrate.controller.testbed_backend import TestbedBackend
from edgemigrate.planning import make_planner

pytestmark = [pytest.mark.criu, pytest.mark.netns]

RENAME = {"edge1": "edge-0", "edge2": "edge-1", "edge3": "edge-2"}


@pytest.fixture(scope="module")
def bed(realbed: LocalCluster) -> LocalCluster:
    return realbed


def test_simulated_downtime_matches_the_measured_one_in_order_of_magnitude(bed: LocalCluster, tmp_path: Path) -> None:
    spec = ServiceSpec("counter", ServiceKind.COUNTER, bed.tb.service_ip(0), 7100, 32.0)
    bed.deploy("edge1", spec)
    backend = TestbedBackend(bed.directory, status_timeout_s=10.0)
    try:
        moves = []
        for i, (src, dst) in enumerate((("edge1", "edge2"), ("edge2", "edge1"))):
            res = asyncio.run(backend.migrate("counter", src, dst, f"cal-{i}"))
            moves.append((src, dst, res.stats))
    finally:
        bed.stop_all("counter")
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration_from_migrations(moves, 1000.0, RENAME)))
    cal = load_calibration(path)
    assert set(cal.hosts) == {"edge-0", "edge-1"}
    measured = statistics.median(cal.measured_downtime_s)
    sim = SimBackend(load_scenario("handover-testbed"), cal)
    simulated = sim.migration_times_s(0, 1)["downtime_s"]
    assert measured > 0 and simulated > 0
    assert 0.2 <= simulated / measured <= 5.0, (simulated, measured, moves[0][2])
    # and the calibrated testbed mirror runs with the measured sizes
    ctl = SimController(sim, make_planner("orchestrated"))
    metrics = ctl.run(120)
    ctl.close()
    assert sum(m.failed for m in metrics) == 0
    assert sim.image_bytes == cal.image_bytes
