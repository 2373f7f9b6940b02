"""What one handover experiment runs: services, planners, repeats, the MU's path and the testbed.

The testbed is the one of Ngo et al. 2020, sec. V-A (``scenarios/testbed-handover.toml``): three edge hosts, a
cloud host, three base stations; edge-edge 100 Mbit/s at 50 ms RTT, edge-cloud 75 Mbit/s at 150 ms. BS k is
co-located with edge k (1 Gbit/s, 2 ms); the other servers are one wired hop further (100 Mbit/s, 52 ms to
an edge, 75 Mbit/s, 152 ms to the cloud).

Path and timing (ours, for runs that fit a CI budget; the paper runs 1,600 s): base stations 20 m apart, the
MU walks bs1 -> bs3 and back at the paper's speeds (1 m/s for Simple, 0.5 m/s for the compute service), so it
crosses a cell border every ~20 s (Simple) or ~40 s (facedetect): the 3 dB hysteresis points are 11.3 m and
31.3 m out, so a 42 s (Simple) or 85 s (facedetect) run sees two moves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgemigrate.core.errors import ConfigError
from edgemigrate.radio import WIFI_PATHLOSS

SERVICES = ("counter", "facedetect")
PLANNERS = ("orchestrated", "nearest", "random")
COMPRESSIONS = ("none", "rule", "model")
PRECOPY_READS = ("dump", "live")

TESTBED: Mapping[str, Any] = {
    "edges": 3, "clouds": 1, "clients": 1, "subnet": "10.77.0.0/16", "emulator": "auto", "mgmt_link": True,
    "links": {"edge_edge": {"rate_mbit": 100, "rtt_ms": 50}, "edge_cloud": {"rate_mbit": 75, "rtt_ms": 150}},
    "base_stations": {"count": 3, "links": {"bs_local": {"rate_mbit": 1000, "rtt_ms": 2},
                                            "bs_edge": {"rate_mbit": 100, "rtt_ms": 52},
                                            "bs_cloud": {"rate_mbit": 75, "rtt_ms": 152}}},
}


@dataclass(frozen=True, slots=True)
class ServiceSetup:
    """How one service is run: its container's extra resident memory and the MU's speed (Ngo et al. 2020,
    sec. V-A: 1 m/s for Simple, 0.5 m/s for the image services)."""

    kind: str
    resident_mb: float
    speed_m_per_s: float
    duration_s: float
    request_timeout_s: float  # the MU's: after it, reconnect and rediscover


DEFAULT_SETUPS: Mapping[str, ServiceSetup] = {
    # Simple: a counter; 16 MB of resident memory makes a checkpoint of the paper's Simple order (table I).
    # The MU waits 10 s for a reply: a shorter timeout than a migration's frozen window (1-3 s on a busy
    # machine) abandons the very connection CRIU restores and the destination's packet hold would answer
    # 42 s: both moves (cell borders at ~11 s and ~31 s) end inside the run, and no third starts (the
    # orchestrated planner's would at ~44 s, when bs2 is usable again on the way back)
    "counter": ServiceSetup("counter", 16.0, 1.0, 42.0, 10.0),
    # facedetect: OpenCV (~90 MB, most of it file-backed libraries CRIU does not copy) + 160 MB standing in
    # for a model's weights and buffers, so the pre-migration checkpoint is ~200 MB, OpenFace's 196.8 MB
    # (Ngo et al. 2020, table I); 0.5 m/s. 85 s: every planner's second move (from ~63 s) ends inside the run,
    # and no third one starts (the orchestrated one would at ~88 s, when bs2 is usable on the way back). A
    # request takes 0.15 s alone and several times that on a busy 2-core machine: 10 s before giving up
    "facedetect": ServiceSetup("facedetect", 160.0, 0.5, 85.0, 10.0),
}


@dataclass(frozen=True, slots=True)
class HandoverConfig:
    """One experiment: every service x planner x repeat, on one testbed."""

    services: tuple[str, ...] = SERVICES
    planners: tuple[str, ...] = PLANNERS
    repeats: int = 5
    duration_s: float | None = None  # None: each service's default (DEFAULT_SETUPS)
    seed: int = 0
    bs_spacing_m: float = 20.0
    request_gap_s: float = 0.02  # ~50 requests/s: 20 ms resolution on every gap, little CPU on 2 cores
    report_every_s: float = 0.5
    controller_interval_s: float = 0.5
    handover_outage_s: float = 0.5  # Ngo et al. 2020, sec. V-A
    # the planner's receiver minimum (SnapshotDefaults.min_rssi_dbm) is where a cell of this testbed ends:
    # the old BS's RSSI at this fraction of the BS spacing. At 0.8 the next BS is usable 4 m out of the old
    # one (20 m spacing) and the old one is lost 4.7 m past the 3 dB hysteresis point (at 0.565 of the
    # spacing): room for a pre-migration of ~20 s at 0.5 m/s to end before the old cell does (fig. 2). Without
    # an edge the MILP keeps the user on its first BS forever: B(RSSI) is 65 Mbit/s up to 41 m, so nothing in
    # eq. 4 prices a weak but working link, and a cell that never ends needs no handover.
    cell_edge_fraction: float = 0.8
    # the orchestrated planner's t' = now + horizon, at least: the experiment lengthens it to (1 + 10 %) x the
    # fitted pre-migration time plus a report period (``bed.planner_horizon_s``), so the crossing is in sight
    # early enough for the pre-copy to end at it; the baselines look one report period ahead
    horizon_s: float = 8.0
    # how the agents compress the checkpoint on the wire (``edgemigrate migrate --compression``). ``none`` by
    # default: Ngo et al. 2020 migrate their delta checkpoints uncompressed, so a migration takes as long as
    # theirs and the time a planner leaves the MU behind a remote server is theirs too. ``model`` (Zhang et
    # al. 2019's per-chunk selector) shortens every planner's migration ~3x.
    compression: str = "none"
    # how the agents read memory in pre-copy rounds (``edgemigrate migrate --precopy-read``): ``live`` reads
    # it while the service runs (engine/checkpoint/livecopy.py); ``dump``, CRIU's leave-running dump, freezes
    # the service for a dump of its whole memory on a kernel without dirty tracking
    precopy_read: str = "live"
    setups: Mapping[str, ServiceSetup] = field(default_factory=lambda: dict(DEFAULT_SETUPS))
    testbed_name: str = "ho"
    subnet: str | None = None  # None: TESTBED's

    def __post_init__(self) -> None:
        for what, vals, known in (("services", self.services, SERVICES), ("planners", self.planners, PLANNERS)):
            if not vals:
                raise ConfigError(f"handover.{what}: empty")
            for v in vals:
                if v not in known:
                    raise ConfigError(f"handover.{what}: unknown {v!r} (choose from {', '.join(known)})")
        if isinstance(self.repeats, bool) or not isinstance(self.repeats, int) or not 1 <= self.repeats <= 100:
            raise ConfigError(f"handover.repeats: expected an integer in [1, 100], got {self.repeats!r}")
        for key, lo, hi in (("bs_spacing_m", 5.0, 200.0), ("request_gap_s", 0.0, 1.0),
                            ("report_every_s", 0.05, 10.0), ("controller_interval_s", 0.05, 10.0),
                            ("handover_outage_s", 0.0, 10.0), ("cell_edge_fraction", 0.5, 1.0),
                            ("horizon_s", 0.5, 60.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(f"handover.{key}: expected a number in [{lo:g}, {hi:g}], got {v!r}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"handover.compression: unknown {self.compression!r} (choose from {', '.join(COMPRESSIONS)})")
        if self.precopy_read not in PRECOPY_READS:
            raise ConfigError(f"handover.precopy_read: unknown {self.precopy_read!r} (choose from "
                              f"{', '.join(PRECOPY_READS)})")
        if self.duration_s is not None and not 5.0 <= self.duration_s <= 7200.0:
            raise ConfigError(f"handover.duration_s: expected a number in [5, 7200], got {self.duration_s!r}")

    def cell_edge_rssi_dbm(self) -> float:
        """The old BS's RSSI at ``cell_edge_fraction`` of the spacing (the MU's path-loss model)."""
        d = np.array([self.cell_edge_fraction * self.bs_spacing_m])
        return float(WIFI_PATHLOSS.rssi_dbm(d)[0])

    def setup(self, service: str) -> ServiceSetup:
        s = self.setups[service]
        if self.duration_s is None:
            return s
        return ServiceSetup(s.kind, s.resident_mb, s.speed_m_per_s, self.duration_s, s.request_timeout_s)

    def to_dict(self) -> dict[str, Any]:
        return {"services": list(self.services), "planners": list(self.planners), "repeats": self.repeats,
                "duration_s": self.duration_s, "seed": self.seed, "bs_spacing_m": self.bs_spacing_m,
                "request_gap_s": self.request_gap_s, "report_every_s": self.report_every_s,
                "controller_interval_s": self.controller_interval_s, "handover_outage_s": self.handover_outage_s,
                "cell_edge_fraction": self.cell_edge_fraction, "cell_edge_rssi_dbm": self.cell_edge_rssi_dbm(),
                "horizon_s": self.horizon_s, "compression": self.compression, "precopy_read": self.precopy_read,
                "setups": {k: {"kind": v.kind, "resident_mb": v.resident_mb, "speed_m_per_s": v.speed_m_per_s,
                               "duration_s": self.setup(k).duration_s, "request_timeout_s": v.request_timeout_s}
                           for k, v in self.setups.items()},
                "testbed_name": self.testbed_name, "testbed": dict(TESTBED) | ({"subnet": self.subnet}
                                                                               if self.subnet else {})}
