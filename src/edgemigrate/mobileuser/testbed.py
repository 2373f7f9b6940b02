"""The mobile user's radio link and service locator on an emulated testbed (:mod:`edgemigrate.testbed`).

The testbed's state file is re-read on every call: the controller (another process) may hand the MU over or
move its service at any time, and the state file is where those changes are recorded.

A handover the MU decides itself (the uncoordinated RSSI hysteresis of the baseline planners) runs in a
background thread: the radio is gone for the outage while the MU keeps sending, exactly as when the
controller hands it over (the coordinated case). A blocking handover would let the baseline MU wait out the
outage silently and skip the wait its requests suffer otherwise (held by the lossless outage, or lost and
retransmitted by TCP with the blackhole fallback, ``testbed/bs.py``), which would favour it.

:class:`TestbedAirLink` gives the radio link to each BS the rate the planner's eq. 4 assumes for the MU's RSSI
of that BS, B(RSSI) (``costs.handover.wifi_rate_bps``, Ngo et al. 2020, eq. 4 and their ref. [15]), as the MU
moves: the same function, so planner and testbed agree on what the air carries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.costs.handover import wifi_rate_bps
from edgemigrate.testbed import Testbed
from edgemigrate.testbed.bs import HANDOVER_OUTAGE_S, set_air_rates

log = logging.getLogger(__name__)


class TestbedRadio:
    """:class:`~edgemigrate.mobileuser.mu.RadioLink` of the MU on ``client`` of testbed ``testbed``."""

    __test__ = False

    def __init__(self, testbed: str, client: str, *, sleep: Callable[[float], None] = time.sleep,
                 outage_s: float = HANDOVER_OUTAGE_S) -> None:
        self.testbed = testbed
        self.client = client
        self.sleep = sleep
        self.outage_s = outage_s
        self._target: str | None = None  # the BS of a handover in flight
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        Testbed.load(testbed).mu_ip(client)  # fail early: no such testbed, host or mobile user

    def serving(self) -> str:
        if self._thread is not None and self._thread.is_alive() and self._target is not None:
            return self._target  # committed to it: the outage is under way
        return Testbed.load(self.testbed).serving_bs(self.client)

    def handover(self, to_bs: str) -> None:
        """Black the radio out now (so that no request sent from here on can still pass the old BS), and
        switch to ``to_bs`` after the outage on a background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        try:
            Testbed.load(self.testbed).begin_handover(self.client)
        except EdgeMigrateError as exc:  # e.g. the controller hands it over at the same moment
            log.warning("handover to %s not started: %s", to_bs, exc)
            self.errors.append(str(exc)[:200])
            return
        self._target = to_bs
        self._thread = threading.Thread(target=self._finish, args=(to_bs,), name="mu-handover", daemon=True)
        self._thread.start()

    def _finish(self, to_bs: str) -> None:
        try:
            self.sleep(self.outage_s)
        finally:
            try:
                Testbed.load(self.testbed).complete_handover(self.client, to_bs)
            except EdgeMigrateError as exc:
                log.warning("handover to %s failed: %s", to_bs, exc)
                self.errors.append(str(exc)[:200])

    def wait(self) -> None:
        """Wait for a handover in flight (before the testbed goes away)."""
        if self._thread is not None:
            self._thread.join()


AIR_UPDATE_MIN_S = 0.5  # at most one round of tc changes per half second (the MU reports at that pace)


class TestbedAirLink:
    """Sets the rate of the MU's radio link to every BS from its RSSI of that BS (module docstring).

    B(RSSI) is a step function (802.11n's MCS table), so the rate is quantised by itself: ``tc`` runs only when
    a BS's step changes, and at most every ``min_interval_s``. ``changes`` is the run log's record:
    ``[t_s, bs, rate_bps]`` per change, on the MU's clock.
    """

    __test__ = False

    def __init__(self, testbed: str, client: str, *, min_interval_s: float = AIR_UPDATE_MIN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.testbed = testbed
        self.client = client
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.rates_bps: dict[str, float] = {}
        self.changes: list[list[object]] = []
        self.errors: list[str] = []
        self._last_s: float | None = None

    def update(self, rssi_dbm: dict[str, float]) -> dict[str, float]:
        """Apply B(RSSI) for ``rssi_dbm`` (BS -> dBm) where it changed; returns what was changed."""
        now = self.clock()
        if self._last_s is not None and now - self._last_s < self.min_interval_s:
            return {}
        names = sorted(rssi_dbm)
        rates = wifi_rate_bps(np.array([rssi_dbm[n] for n in names], dtype=np.float64))
        changed = {n: float(r) for n, r in zip(names, rates, strict=True) if self.rates_bps.get(n) != float(r)}
        if not changed:
            return {}
        self._last_s = now
        try:
            set_air_rates(Testbed.load(self.testbed), self.client, changed)
        except EdgeMigrateError as exc:  # the MU keeps offloading over the last rates; the log says so
            log.warning("air link rates %s not set: %s", changed, exc)
            self.errors.append(str(exc)[:200])
            return {}
        self.rates_bps.update(changed)
        self.changes += [[now, n, r] for n, r in sorted(changed.items())]
        return changed


def service_locator(testbed: str, service_ip: str) -> Callable[[], str | None]:
    """Which host holds ``service_ip`` now (None if no host does)."""
    def locate() -> str | None:
        return Testbed.load(testbed).services().get(service_ip)
    return locate
