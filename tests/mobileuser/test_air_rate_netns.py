"""B(RSSI) on the emulated air link (Ngo et al. 2020, eq. 4): as the MU moves, the rate ``tc`` has configured on
its radio link to each BS (both ends: the client's uplink, the BS's downlink) is the planner's
``wifi_rate_bps`` of the MU's RSSI of that BS. Real namespaces; the rate is read back from ``tc``, no traffic
is timed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.costs.handover import wifi_rate_bps
from edgemigrate.mobileuser.radio import RadioModel, default_sites
from edgemigrate.mobileuser.testbed import TestbedAirLink
from edgemigrate.testbed import Testbed
from edgemigrate.testbed import bs as bs_ops

from ..testbed.conftest import two_bs_testbed

pytestmark = pytest.mark.netns

SPACING_M = 80.0  # wide enough that the walk crosses several of 802.11n's MCS steps


@pytest.fixture(scope="module")
def air_testbed() -> Iterator[Testbed]:
    with two_bs_testbed("a", 17, edges=1, clouds=0, clients=1) as tb:
        yield tb


def test_a_new_link_starts_at_the_fastest_rate(air_testbed: Testbed) -> None:
    for bs in ("bs1", "bs2"):
        for up in (True, False):
            assert bs_ops.air_rate_bps(air_testbed, "client1", bs, up=up) == bs_ops.AIR_INITIAL_RATE_BPS


def test_the_configured_rate_follows_the_mus_position(air_testbed: Testbed) -> None:
    tb = air_testbed
    now = [0.0]
    air = TestbedAirLink(tb.name, "client1", clock=lambda: now[0])
    radio = RadioModel(default_sites(2, SPACING_M))
    seen: set[float] = set()
    last: dict[str, float] = {}
    expected_changes = 0
    for x_m in (0.0, 20.0, 40.0, 55.0, 70.0, 80.0, 30.0):
        now[0] += 0.5
        rssi = radio.rssi_dbm((x_m, 0.0))
        air.update(rssi)
        for bs, v in rssi.items():
            want = float(wifi_rate_bps(np.array([v]))[0])
            for up in (True, False):
                assert bs_ops.air_rate_bps(tb, "client1", bs, up=up) == pytest.approx(want, rel=1e-3), (x_m, bs, up)
            seen.add(want)
            expected_changes += last.get(bs) != want
            last[bs] = want
    assert len(seen) >= 3  # the walk did cross MCS steps: the check above is not one constant
    # the run log has one entry per change of a BS's step, and only those
    assert len(air.changes) == expected_changes and all(len(c) == 3 for c in air.changes)


def test_updates_are_paced_and_bad_rates_refused(air_testbed: Testbed) -> None:
    tb = air_testbed
    now = [100.0]
    air = TestbedAirLink(tb.name, "client1", clock=lambda: now[0])
    radio = RadioModel(default_sites(2, SPACING_M))
    assert air.update(radio.rssi_dbm((80.0, 0.0)))
    now[0] += 0.1  # within the pacing interval: nothing is applied, even though the RSSI changed
    assert air.update(radio.rssi_dbm((0.0, 0.0))) == {}
    far = float(wifi_rate_bps(np.array([radio.rssi_dbm((80.0, 0.0))["bs1"]]))[0])
    assert bs_ops.air_rate_bps(tb, "client1", "bs1") == pytest.approx(far, rel=1e-3)
    with pytest.raises(ConfigError, match="expected bits/s"):
        bs_ops.set_air_rates(tb, "client1", {"bs1": -1.0})
    with pytest.raises(ConfigError, match="no base station 'bs9'"):
        bs_ops.set_air_rates(tb, "client1", {"bs9": 1e6})
