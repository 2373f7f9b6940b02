"""The mobile user's radio link and service locator on an emulated testbed (:mod:`edgemigrate.testbed`).

The testbed's state file is re-read on every call: the controller (another process) may hand the MU over or
move its service at any time, and the state file is where those changes are recorded.

A handover the MU decides itself (the uncoordinated RSSI hysteresis of the baseline planners) runs in a
background thread: the radio is gone for the outage while the MU keeps sending, exactly as when the
controller hands it over (the coordinated case). A blocking handover would let the baseline MU wait out the
outage silently and skip the TCP retransmissions its requests suffer otherwise, which would favour it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.testbed import Testbed
from edgemigrate.testbed.bs import HANDOVER_OUTAGE_S

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


def service_locator(testbed: str, service_ip: str) -> Callable[[], str | None]:
    """Which host holds ``service_ip`` now (None if no host does)."""
    def locate() -> str | None:
        return Testbed.load(testbed).services().get(service_ip)
    return locate
