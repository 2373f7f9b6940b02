"""Maheshwari et al. 2018 (ShareOn), sec. III-C: Algorithm 1 and the latency/cost estimates, against numbers
worked out by hand here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs import shareon as so

TH = so.RegionThresholds(sp_th1_hz=1e9, sp_th2_hz=2e9, m_th1_bytes=256.0, m_th2_bytes=512.0)


def test_algorithm_1_regions_line_by_line() -> None:
    sp = np.array([0.5e9, 3e9, 1.5e9, 3e9, 1.5e9, 3e9, 1e9, np.nan])
    m = np.array([1000, 100, 1000, 400, 300, 1000, 1000, 1000])
    # line 2: either resource at/below th1 -> High; line 5: not High and either at/below th2 -> Med; else Low
    expected = [so.UtilRegion.HIGH, so.UtilRegion.HIGH, so.UtilRegion.MED, so.UtilRegion.MED,
                so.UtilRegion.MED, so.UtilRegion.LOW, so.UtilRegion.HIGH, so.UtilRegion.HIGH]
    assert so.util_region(sp, m, TH).tolist() == [int(e) for e in expected]


def test_thresholds_out_of_order_are_a_one_line_error_naming_the_keys() -> None:
    with pytest.raises(ValidationError, match=r"sp_th1_hz \(3e\+09\) must be below sp_th2_hz"):
        so.RegionThresholds(sp_th1_hz=3e9, sp_th2_hz=2e9, m_th1_bytes=1, m_th2_bytes=2)
    with pytest.raises(ValidationError, match="m_th1_bytes"):
        so.RegionThresholds(sp_th1_hz=1, sp_th2_hz=2, m_th1_bytes=2, m_th2_bytes=2)
    with pytest.raises(ValidationError, match="sp_th2_hz: expected a finite number"):
        so.RegionThresholds(sp_th1_hz=1, sp_th2_hz=float("inf"), m_th1_bytes=1, m_th2_bytes=2)


def test_per_container_share_of_an_empty_node_is_everything() -> None:
    np.testing.assert_array_equal(so.per_container([8e9, 8e9], [4, 0]), [2e9, np.inf])
    assert so.util_region(so.per_container(8e9, 0), so.per_container(1e9, 0), TH) == so.UtilRegion.LOW


def test_network_estimate_adds_the_moving_standard_deviation() -> None:
    # 3 km at 2 us/m = 6 ms, sqrt(1e-4 s^2) = 10 ms, access 10 ms
    np.testing.assert_allclose(so.network_latency_s(3000.0, 2e-6, 1e-4, 0.01), 0.026)
    np.testing.assert_allclose(so.network_latency_s([0.0, 1000.0], 1e-6, [-1e-9, 0.0]), [0.0, 0.001])


def test_processing_estimate_and_the_alpha_a_node_reports() -> None:
    np.testing.assert_allclose(so.processing_latency_s(0.02, [0.0, 0.5], 0.04), [0.02, 0.04])
    # a node measuring 50 ms at utilFac 0.6 with t_p,avg 20 ms reports alpha_e = 50 ms
    np.testing.assert_allclose(so.alpha_from_measurement(0.05, 0.02, 0.6), 0.05)
    np.testing.assert_allclose(so.alpha_from_measurement([0.01, 0.021], 0.02, [0.5, 0.0]), [0.0, 0.02])


def test_migration_cost_counts_migrations_already_heading_there() -> None:
    # 100 MB over 100 Mbit/s = 8 s alone, 24 s when two others already share the link
    np.testing.assert_allclose(so.migration_cost_s(100e6, 100e6, [0, 2]), [8.0, 24.0])


def test_zero_or_garbage_bandwidth_costs_infinity_not_an_exception() -> None:
    cost = so.migration_cost_s(1e6, [0.0, -5.0, np.nan, 1e6], 0)
    assert np.isinf(cost[:3]).all() and cost[3] == 8.0


def test_moving_variance_of_a_constant_decays_to_zero_and_tracks_a_jump() -> None:
    mean, var = np.array(0.0), np.array(0.0)
    for _ in range(400):
        mean, var = so.ewm_update(mean, var, 0.05, 0.1)
    assert mean == pytest.approx(0.05) and var == pytest.approx(0.0, abs=1e-12)
    mean, var = so.ewm_update(mean, var, 0.15, 0.1)
    assert var == pytest.approx(0.9 * 0.1 * 0.1**2)  # (1-w) w delta^2 with delta = 0.1
    with pytest.raises(ValidationError, match="weight"):
        so.ewm_update(0.0, 0.0, 1.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60))
def test_moving_variance_with_weight_1_over_n_is_never_negative(xs: list[float]) -> None:
    mean, var = np.array(xs[0]), np.array(0.0)
    for n, x in enumerate(xs[1:], start=2):
        mean, var = so.ewm_update(mean, var, x, 1.0 / n)
        assert var >= -1e-9
    # with w = 1/n the incremental mean is the plain mean
    assert float(mean) == pytest.approx(float(np.mean(xs)), rel=1e-9, abs=1e-9)


def test_primary_reason() -> None:
    assert so.slow_reason(0.03, 0.2, 0.02, 0.08) is so.Reason.BOTH
    assert so.slow_reason(0.01, 0.2, 0.02, 0.08) is so.Reason.PROCESSING
    assert so.slow_reason(0.2, 0.01, 0.02, 0.08) is so.Reason.NETWORK
