"""Radio access: path loss -> RSSI, association with hysteresis, uplink rates."""

from __future__ import annotations

from edgemigrate.radio.association import Associator, HandoverConfig
from edgemigrate.radio.pathloss import WIFI_PATHLOSS, LogDistancePathLoss
from edgemigrate.radio.uplink import ring_uplink_bps

__all__ = ["WIFI_PATHLOSS", "Associator", "HandoverConfig", "LogDistancePathLoss", "ring_uplink_bps"]
