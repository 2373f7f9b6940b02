from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.radio import Associator, HandoverConfig, LogDistancePathLoss, ring_uplink_bps


def test_pathloss_by_hand() -> None:
    pl = LogDistancePathLoss(tx_power_dbm=43, ref_loss_db=40, exponent=3.5)
    # at 100 m: 40 + 35 * log10(100) = 110 dB -> RSSI -67 dBm
    assert pl.rssi_dbm(100.0) == pytest.approx(-67.0)
    assert pl.rssi_dbm(0.0) == pytest.approx(3.0)  # clamped at the reference distance


def test_pathloss_rejects_bad_exponent() -> None:
    with pytest.raises(ValidationError, match="exponent"):
        LogDistancePathLoss(exponent=9)


def test_uplink_rings_of_liu_2024() -> None:
    d = np.array([0, 150, 250, 450, 650, 999, 5000])
    np.testing.assert_allclose(ring_uplink_bps(d, 1000.0) / 1e6, [60, 60, 48, 36, 24, 12, 12])


def _assoc(hyst: float = 7.0) -> Associator:
    xy = np.array([[0.0, 0.0], [1000.0, 0.0]])
    return Associator(xy, np.array([800.0, 800.0]), LogDistancePathLoss(), HandoverConfig(hysteresis_db=hyst))


def test_nearest_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    st = rng.uniform(0, 5000, (60, 2))
    a = Associator(st, np.full(60, 900.0), LogDistancePathLoss(), HandoverConfig())
    users = rng.uniform(-200, 5200, (3000, 2))
    idx, dist = a.nearest(users)
    brute = np.linalg.norm(users[:, None] - st[None], axis=-1)
    np.testing.assert_allclose(dist, brute.min(1))


def test_hysteresis_keeps_current_station_until_gain_exceeds_threshold() -> None:
    a = _assoc(7.0)
    cur = np.array([0])
    # at 550 m from station 0 and 450 from 1: gain = 35 log10(550/450) ~ 3 dB < 7 -> stay
    st, ho, _ = a.step(np.array([[550.0, 0.0]]), cur)
    assert st[0] == 0 and not ho[0]
    # at 700 m vs 300 m: gain = 35 log10(700/300) ~ 12.9 dB -> hand over
    st, ho, _ = a.step(np.array([[700.0, 0.0]]), cur)
    assert st[0] == 1 and ho[0]


def test_out_of_coverage_user_is_detached_then_reattached() -> None:
    a = _assoc()
    st, ho, d = a.step(np.array([[500.0, 900.0]]), np.array([0]))
    assert st[0] == -1 and not ho[0] and np.isinf(d[0])
    st, ho, _ = a.step(np.array([[100.0, 0.0]]), st)
    assert st[0] == 0 and not ho[0]  # attaching from nothing is not a handover


def test_wifi_pathloss_lives_in_radio_and_the_planners_use_the_same_one() -> None:
    from edgemigrate.planning import synthetic
    from edgemigrate.radio import WIFI_PATHLOSS

    assert synthetic.WIFI_PATHLOSS is WIFI_PATHLOSS
    # 20 dBm - (40 dB + 27 dB per decade): -20 dBm at 1 m... -47 dBm at 10 m
    assert float(WIFI_PATHLOSS.rssi_dbm(10.0)) == pytest.approx(-47.0)
