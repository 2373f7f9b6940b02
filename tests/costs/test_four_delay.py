"""Liu et al. 2024, eqs. (1)-(10), each against numbers computed by hand here."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.costs import four_delay as fd


def test_eq1_migration_move_zero_when_no_hop() -> None:
    assert fd.migration_move_s(50e6, 500e6, 2.0, 0) == 0.0


def test_eq1_migration_move() -> None:
    # 50 MB over 500 Mbit/s = 400 Mbit / 500 Mbit/s = 0.8 s; plus 2 s/hop * 3 hops = 6 s -> 6.8 s
    assert fd.migration_move_s(50e6, 500e6, 2.0, 3) == pytest.approx(6.8)


def test_eq1_vectorised() -> None:
    out = fd.migration_move_s(np.array([10e6, 10e6]), 100e6, 1.5, np.array([0, 2]))
    # second: 80 Mbit / 100 Mbit/s = 0.8 s + 3.0 s
    np.testing.assert_allclose(out, [0.0, 3.8])


def test_eq2_layer_download() -> None:
    # 100 MB at 800 Mbit/s: 800 Mbit / 800 Mbit/s = 1 s
    assert fd.layer_download_s(100e6, 800e6) == pytest.approx(1.0)


def test_eq2_fifo_queue() -> None:
    # queue busy until t=12, now t=10: layers of 100 MB and 50 MB at 800 Mbit/s take 1 s and 0.5 s
    np.testing.assert_allclose(fd.fifo_completion_s(12.0, 10.0, [100e6, 50e6], 800e6), [13.0, 13.5])
    # idle queue (free since t=3): starts now
    np.testing.assert_allclose(fd.fifo_completion_s(3.0, 10.0, [100e6], 800e6), [11.0])


def test_eq3_download_delay_max_over_needed_layers() -> None:
    completion = np.array([5.0, 13.5, 12.0, np.inf])  # absolute times; layer 0 already present at t=10
    needed = np.array([True, True, False, False])
    assert fd.download_delay_s(completion, needed, 10.0) == pytest.approx(3.5)
    assert fd.download_delay_s(completion, np.array([True, False, False, False]), 10.0) == 0.0


def test_eq5_migration_delay() -> None:
    # max(M=6.8, D=3.5) + sigma_wait 0.5 * w 4 s = 8.8
    assert fd.migration_delay_s(6.8, 3.5, 4.0, 0.5) == pytest.approx(8.8)
    assert fd.migration_delay_s(1.0, 3.5, 0.0, 0.5) == pytest.approx(3.5)


def test_eq6_computation_delay() -> None:
    # task 1 MB = 8e6 bit * 1000 cycles/bit = 8e9 cycles; node already has 120e9 cycles; f = 128 GHz -> 1 s
    assert fd.computation_delay_s(1e6, 1000.0, 120e9, 128e9) == pytest.approx(1.0)


def test_eq7_eq8_access_and_deployment() -> None:
    # 3 MB at 24 Mbit/s uplink: 24 Mbit / 24 Mbit/s = 1 s
    a = fd.access_delay_s(3e6, 24e6)
    assert a == pytest.approx(1.0)
    assert fd.deployment_delay_s(a, 2.5) == pytest.approx(2.5)
    assert fd.deployment_delay_s(a, 0.2) == pytest.approx(1.0)


def test_eq9_backhaul() -> None:
    # 5 MB over 400 Mbit/s = 0.1 s, plus 0.02 s/hop * 4 hops = 0.08 -> 0.18 s
    assert fd.backhaul_delay_s(5e6, 400e6, 0.02, 4) == pytest.approx(0.18)
    # literal eq. 9: the transfer term stays at 0 hops
    assert fd.backhaul_delay_s(5e6, 400e6, 0.02, 0) == pytest.approx(0.1)


def test_eq10_total() -> None:
    assert fd.total_delay_s(8.8, 1.0, 2.5, 0.18) == pytest.approx(12.48)
