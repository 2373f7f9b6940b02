"""The mobile user's radio link and service locator on an emulated testbed (:mod:`edgemigrate.testbed`).

The testbed's state file is re-read on every call: the controller (another process) may hand the MU over or
move its service at any time, and the state file is where those changes are recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edgemigrate.testbed import Testbed


class TestbedRadio:
    """:class:`~edgemigrate.mobileuser.mu.RadioLink` of the MU on ``client`` of testbed ``testbed``."""

    __test__ = False

    def __init__(self, testbed: str, client: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.testbed = testbed
        self.client = client
        self.sleep = sleep
        Testbed.load(testbed).mu_ip(client)  # fail early: no such testbed, host or mobile user

    def serving(self) -> str:
        return Testbed.load(self.testbed).serving_bs(self.client)

    def handover(self, to_bs: str) -> None:
        Testbed.load(self.testbed).handover(self.client, to_bs, sleep=self.sleep)


def service_locator(testbed: str, service_ip: str) -> Callable[[], str | None]:
    """Which host holds ``service_ip`` now (None if no host does)."""
    def locate() -> str | None:
        return Testbed.load(testbed).services().get(service_ip)
    return locate
