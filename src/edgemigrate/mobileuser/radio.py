"""RSSI the mobile user sees from each base station, and its own (uncoordinated) handover decision.

RSSI comes from the project's log-distance model (:class:`edgemigrate.radio.LogDistancePathLoss`; Ngo et al.
2020 use "the path loss model" of their ref. [7], the same form). With Wi-Fi-like parameters by default, the
ones the synthetic planning snapshot uses for the paper's access points. The uncoordinated handover is the
relative-RSSI hysteresis the paper's baseline planners are triggered by: switch when another BS beats the
serving one by ``hysteresis_db``, or when the serving one falls below ``min_rssi_dbm``. It reuses
:class:`edgemigrate.radio.Associator` (one user), whose coverage radius is where the RSSI meets
``min_rssi_dbm``, so the same rule decides here and in the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.radio import WIFI_PATHLOSS, Associator, HandoverConfig, LogDistancePathLoss

DEFAULT_HYSTERESIS_DB = 3.0  # our choice: the paper cites a relative-hysteresis scheme without a margin
DEFAULT_MIN_RSSI_DBM = -82.0  # 802.11n MCS 0 sensitivity (costs/handover.py): below it nothing decodes
HANDOVER_TIME_S = 0.5  # Ngo et al. 2020, sec. V-A


@dataclass(frozen=True, slots=True)
class BsSite:
    """Where base station ``name`` stands (metres, the same plane as the path)."""

    name: str
    x_m: float
    y_m: float

    def __post_init__(self) -> None:
        check_id(self.name, "bs.name")
        for key in ("x_m", "y_m"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValidationError(f"bs.{key}: expected a finite number, got {v!r:.80}")


def default_sites(count: int = 3, spacing_m: float = 60.0) -> tuple[BsSite, ...]:
    """``count`` BSs ``bs1..`` on a line, ``spacing_m`` apart (Ngo et al. 2020, Fig. 3 has three; the spacing
    is ours: about the reach of a Wi-Fi AP, so that the path walks through every BS's cell). The names are
    the testbed's base stations."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise ValidationError(f"sites.count: expected an integer in [1, 100], got {count!r:.80}")
    if not 1.0 <= spacing_m <= 1e5:
        raise ValidationError(f"sites.spacing_m: expected a number in [1, 100000], got {spacing_m!r:.80}")
    return tuple(BsSite(f"bs{k + 1}", k * spacing_m, 0.0) for k in range(count))


@dataclass(frozen=True, slots=True)
class RadioModel:
    """RSSI per BS and the hysteresis handover decision for one mobile user."""

    sites: tuple[BsSite, ...]
    pathloss: LogDistancePathLoss = WIFI_PATHLOSS
    hysteresis_db: float = DEFAULT_HYSTERESIS_DB
    min_rssi_dbm: float = DEFAULT_MIN_RSSI_DBM
    _assoc: Associator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.sites, tuple) or not self.sites or not all(isinstance(s, BsSite) for s in self.sites):
            raise ValidationError("radio.sites: expected a non-empty tuple of BsSite")
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValidationError(f"radio.sites: duplicate base station names in {names}")
        pl = self.pathloss
        reach_db = pl.tx_power_dbm - pl.ref_loss_db - self.min_rssi_dbm
        coverage_m = pl.ref_distance_m * 10.0 ** (reach_db / (10.0 * pl.exponent))
        xy = np.array([[s.x_m, s.y_m] for s in self.sites], dtype=np.float64)
        assoc = Associator(xy, np.full(len(xy), coverage_m), pl, HandoverConfig(self.hysteresis_db, HANDOVER_TIME_S))
        object.__setattr__(self, "_assoc", assoc)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sites]

    def rssi_dbm(self, xy_m: tuple[float, float]) -> dict[str, float]:
        d = [math.hypot(xy_m[0] - s.x_m, xy_m[1] - s.y_m) for s in self.sites]
        return dict(zip(self.names, (float(v) for v in self.pathloss.rssi_dbm(np.asarray(d))), strict=True))

    def choose(self, xy_m: tuple[float, float], serving: str | None) -> str | None:
        """The BS to be associated with at ``xy_m`` given the ``serving`` one (None: no usable BS)."""
        cur = -1 if serving is None else self._index(serving)
        station, _, _ = self._assoc.step(np.array([xy_m], dtype=np.float64), np.array([cur], dtype=np.int64))
        k = int(station[0])
        return None if k < 0 else self.sites[k].name

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValidationError(f"radio: unknown base station {name!r} (have {', '.join(self.names)})") from None


def strongest(rssi: dict[str, float], names: Sequence[str]) -> str:
    """The BS with the highest RSSI (ties: the first in ``names``)."""
    return max(names, key=lambda n: rssi[n])
