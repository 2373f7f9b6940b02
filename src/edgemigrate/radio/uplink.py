"""Uplink rates by area.

Liu et al. 2024 (sec. VI-A) set the upload rate per grid cell "progressively as 60, 48, 36, 24 and 12 Mbps"
(typical commercial 5G uplinks stay under 60 Mbit/s). We read "progressively" as decreasing with the
distance from the serving station: rings of equal width out to the coverage radius.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

PAPER_UPLINK_MBIT: tuple[float, ...] = (60.0, 48.0, 36.0, 24.0, 12.0)


def ring_uplink_bps(distance_m: ArrayLike, coverage_m: ArrayLike,
                    rates_mbit: tuple[float, ...] = PAPER_UPLINK_MBIT) -> NDArray[np.float64]:
    """Uplink rate for a user at ``distance_m`` from its station of radius ``coverage_m``.

    Ring k (0-based) spans [k, k+1) * coverage / len(rates); beyond coverage the last (lowest) rate applies.
    """
    rates = np.asarray(rates_mbit, dtype=np.float64) * 1e6
    frac = np.asarray(distance_m, dtype=np.float64) / np.asarray(coverage_m, dtype=np.float64)
    scaled = frac * len(rates)
    ring = np.where(scaled < len(rates), scaled, len(rates) - 1).clip(0).astype(np.int64)  # inf/nan -> last
    return rates[ring]
