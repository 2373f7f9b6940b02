"""Log-distance path loss: PL(d) = PL(d0) + 10 n log10(d / d0); RSSI = P_tx - PL(d).

:data:`WIFI_PATHLOSS` is the Wi-Fi access point of Ngo et al. 2020's testbed (sec. V-A; their ref. [7] is the
same log-distance model): 20 dBm, 40 dB at 1 m, exponent 2.7 (indoor/short-range). The planners' synthetic
snapshots and the virtual mobile user hear their base stations through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class LogDistancePathLoss:
    """Defaults are urban macro-cell values: PL(1 m) = 40 dB at ~2 GHz, exponent 3.5, 43 dBm transmit power."""

    tx_power_dbm: float = 43.0
    ref_loss_db: float = 40.0
    ref_distance_m: float = 1.0
    exponent: float = 3.5

    def __post_init__(self) -> None:
        if self.ref_distance_m <= 0:
            raise ValidationError("radio.ref_distance_m must be > 0")
        if not 1.0 <= self.exponent <= 6.0:
            raise ValidationError(f"radio.exponent must be in [1, 6], got {self.exponent}")

    def loss_db(self, distance_m: ArrayLike) -> NDArray[np.float64]:
        d = np.maximum(np.asarray(distance_m, dtype=np.float64), self.ref_distance_m)
        return self.ref_loss_db + 10.0 * self.exponent * np.log10(d / self.ref_distance_m)

    def rssi_dbm(self, distance_m: ArrayLike) -> NDArray[np.float64]:
        return self.tx_power_dbm - self.loss_db(distance_m)


WIFI_PATHLOSS = LogDistancePathLoss(tx_power_dbm=20.0, ref_loss_db=40.0, ref_distance_m=1.0, exponent=2.7)
