"""The link emulator's per-device loss process and FIFO delay line, without TUN devices."""

from __future__ import annotations

import numpy as np

from edgemigrate.core.seeding import SeedTree
from edgemigrate.testbed.forwarder import _Device


def _losses(loss: float, n: int, seed: int) -> np.ndarray:
    dev = _Device(name="t0x1", fd=-1, loss=loss, rng=SeedTree(seed).rng("loss/t0x1"))
    return np.array([dev.lose() for _ in range(n)])


def test_loss_rate_matches_probability_and_is_reproducible() -> None:
    lost = _losses(0.05, 20_000, seed=3)
    assert abs(lost.mean() - 0.05) < 0.01
    assert np.array_equal(lost, _losses(0.05, 20_000, seed=3))
    assert not np.array_equal(lost, _losses(0.05, 20_000, seed=4))
    assert not _losses(0.0, 1000, seed=3).any()
