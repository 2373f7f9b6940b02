"""Tests of the migration-time model of Zhang et al. 2019 (eqs. 3-11), with numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.costs import compression as cm

MB = 1_000_000


def test_eq3_to_eq8_hand_computed() -> None:
    # 100 MB through checkpoint (2 ns/B), compress (8 ns/B, R=0.25), send at 12.5 MB/s (100 Mbit/s).
    d = 100 * MB
    p = [2e-9, 8e-9]
    r = [1.0, 0.25]
    bw = 12.5 * MB
    t_proc = cm.processing_time_s(d, p)  # eq. 3: 100e6 * 10e-9 = 1.0 s
    assert t_proc == pytest.approx(1.0)
    size = cm.migration_size_bytes(d, r)  # 25 MB
    assert size == pytest.approx(25 * MB)
    t_tx = cm.transfer_time_s(size, bw)  # eq. 4: 25 / 12.5 = 2.0 s
    assert t_tx == pytest.approx(2.0)
    assert cm.processing_throughput_bytes_per_s(p) == pytest.approx(100 * MB)  # eq. 5: 1 / 10 ns
    assert cm.transfer_throughput_bytes_per_s(bw, r) == pytest.approx(50 * MB)  # eq. 6: 12.5 / 0.25
    assert cm.migration_time_pipelined_s(t_proc, t_tx) == pytest.approx(2.0)  # eq. 7
    assert cm.migration_time_serial_s(t_proc, t_tx) == pytest.approx(3.0)
    assert cm.system_throughput_bytes_per_s(100 * MB, 50 * MB) == pytest.approx(50 * MB)  # eq. 8


def test_vectorised_over_bandwidths_and_configs() -> None:
    bw = np.array([1.0, 10.0, 100.0]) * MB
    p = np.array([[1e-8], [2e-8]])  # two configurations x one stage
    r = np.array([[0.5], [0.25]])
    tps = cm.system_throughput_bytes_per_s(
        cm.processing_throughput_bytes_per_s(p)[:, None], cm.transfer_throughput_bytes_per_s(bw, r[:, None, :])
    )
    expected = np.array([[2.0, 20.0, 100.0], [4.0, 40.0, 50.0]]) * MB
    np.testing.assert_allclose(tps, expected)


def test_eq9_to_eq11_consistent() -> None:
    d = 10 * MB
    vc = np.array([50.0, 50.0, 5.0]) * MB
    ratio = np.array([0.5, 0.9, 0.2])
    vn = 12.5 * MB
    t_comp = cm.compressed_transfer_time_s(d, vc, ratio, vn)
    # 10/50 + 5/12.5 = 0.6; 10/50 + 9/12.5 = 0.92; 10/5 + 2/12.5 = 2.16 ; raw = 0.8
    np.testing.assert_allclose(t_comp, [0.6, 0.92, 2.16])
    pays = cm.compression_pays_off(vc, ratio, vn)
    np.testing.assert_array_equal(pays, t_comp <= d / vn)
    np.testing.assert_array_equal(pays, [True, False, False])


def test_pipelined_rate_per_bandwidth() -> None:
    # lz4-1-like (1000 MB/s, R=1/3) vs zstd-19-like (2.4 MB/s, R=1/6.4) on 2 cores
    vc = np.array([[1000 * MB], [2.4 * MB]])  # codecs along axis 0, bandwidths along axis 1
    ratio = np.array([[1 / 3], [1 / 6.4]])
    rate = cm.pipelined_compression_rate_bytes_per_s(vc, 2, ratio, np.array([12.5 * MB, 1.0 * MB]))
    np.testing.assert_allclose(rate, [[37.5 * MB, 3 * MB], [4.8 * MB, 4.8 * MB]])
