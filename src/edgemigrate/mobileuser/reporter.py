"""How the mobile user talks to the controller: the Local Monitor's reports and service Discovery.

Ngo et al. 2020, sec. III: the MU's *Local Monitor* "regularly sends E2E delay and RSSI with respect to nearby
BSs to the central controller", and its *Discovery* module asks the system where to offload. Both go through
:class:`Reporter`; the controller's API client (``controller/client.py``) has exactly these two methods and
plugs in as is. :class:`StoreReporter` writes straight into the central store instead (tests, and a
controller that runs in the same process).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Protocol

from edgemigrate.controller.store import MuReport, Store
from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id


class Reporter(Protocol):
    def report(self, report: MuReport) -> None:
        """Deliver one Local Monitor report."""

    def discover(self, user: str, service: str) -> tuple[str, int]:
        """The (IPv4 address, TCP port) where ``user`` reaches its ``service``."""


def check_endpoint(value: object, what: str = "discover") -> tuple[str, int]:
    """A discovered endpoint, validated: whatever a controller answers is checked before we connect."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValidationError(f"{what}: expected (ip, port), got {value!r:.80}")
    ip, port = value
    try:
        addr = ipaddress.IPv4Address(ip)
    except (ValueError, TypeError):
        raise ValidationError(f"{what}: ip: not an IPv4 address: {ip!r:.80}") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValidationError(f"{what}: ip: {addr} cannot be a service address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError(f"{what}: port: expected 1..65535, got {port!r:.80}")
    return str(addr), port


class StoreReporter:
    """Writes reports into the central store; discovery resolves the user's placement to its endpoint.

    ``endpoint`` maps a placement's (service, host) to the address the MU connects to; on the testbed the
    service IP follows the service, so it is the same for every host.
    """

    def __init__(self, store: Store, endpoint: Callable[[str, str], tuple[str, int]]) -> None:
        self.store = store
        self.endpoint = endpoint

    @classmethod
    def fixed(cls, store: Store, endpoints: Mapping[str, tuple[str, int]]) -> StoreReporter:
        """Endpoint per service name, wherever the service runs (the testbed's moving service IPs)."""
        table = {check_id(k, "endpoints"): check_endpoint(v, f"endpoints[{k}]") for k, v in endpoints.items()}

        def lookup(service: str, host: str) -> tuple[str, int]:
            try:
                return table[service]
            except KeyError:
                raise ValidationError(f"discover: no endpoint known for service '{service}'") from None
        return cls(store, lookup)

    def report(self, report: MuReport) -> None:
        self.store.record_mu_report(report)

    def discover(self, user: str, service: str) -> tuple[str, int]:
        placement = self.store.placement(user, service)  # NotFoundError if the controller never placed it
        return check_endpoint(self.endpoint(placement.service, placement.host))
