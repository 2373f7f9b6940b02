"""The virtual mobile user (Ngo et al. 2020, sec. V-A): a back-and-forth path, RSSI per base station, an
uncoordinated hysteresis handover, Local Monitor reports, Discovery and continuous offloading requests with a
per-request log whose counter replies are checked for continuity across migrations.

Run one on a testbed with ``python -m edgemigrate.mobileuser`` inside the client's network namespace.
"""

from __future__ import annotations

from edgemigrate.mobileuser.log import CounterCheck, RequestRecord, check_counter, parse_line, read_log
from edgemigrate.mobileuser.mu import Handover, MobileUser, MuConfig, RadioLink
from edgemigrate.mobileuser.path import SPEED_COMPUTE_M_PER_S, SPEED_SIMPLE_M_PER_S, BackAndForthPath
from edgemigrate.mobileuser.radio import BsSite, RadioModel, default_sites
from edgemigrate.mobileuser.reporter import Reporter, StoreReporter, check_endpoint
from edgemigrate.mobileuser.transport import TcpLineTransport, Transport

__all__ = [
    "SPEED_COMPUTE_M_PER_S", "SPEED_SIMPLE_M_PER_S", "BackAndForthPath", "BsSite", "CounterCheck", "Handover",
    "MobileUser", "MuConfig", "RadioLink", "RadioModel", "Reporter", "RequestRecord", "StoreReporter",
    "TcpLineTransport", "Transport", "check_counter", "check_endpoint", "default_sites", "parse_line", "read_log",
]
