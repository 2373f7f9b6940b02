"""The neighbourhood-saturation measure behind docs/shareon.md's load-0.8 explanation."""

from __future__ import annotations

import pytest

from edgemigrate.experiments.shareon.design import WorldConfig
from edgemigrate.experiments.shareon.hoods import saturation

WORLD = WorldConfig(n_users=300, n_nodes=12, duration_s=60.0, warmup_s=20.0)


def test_fractions_grow_with_load_on_the_same_city() -> None:
    # same seed: same layout, same taxis, rates scaled by the load - so utilisation scales exactly with it
    lo, hi = saturation(0.4, 0, WORLD), saturation(0.8, 0, WORLD)
    assert hi["city_mean"] == pytest.approx(2 * lo["city_mean"], rel=1e-9)
    for key in ("nodes_over_1", "hoods_over_room", "hoods_over_1"):
        assert 0.0 <= lo[key] <= hi[key] <= 1.0
    assert hi["max_hood_mean"] == pytest.approx(2 * lo["max_hood_mean"], rel=1e-9)
    assert hi["hoods_over_room"] > 0  # a 12-node city at 0.8 has crowded neighbourhoods
