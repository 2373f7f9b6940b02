"""How the mobile user talks to the controller: the Local Monitor's reports and service Discovery.

Ngo et al. 2020, sec. III: the MU's *Local Monitor* "regularly sends E2E delay and RSSI with respect to nearby
BSs to the central controller", and its *Discovery* module asks the system where to offload. Both go through
:class:`Reporter`. :class:`ControllerReporter` is the real one: the controller's mTLS API
(``controller/client.py``) with the user's own ``mu-<user>`` certificate; the MU's loop is synchronous, so it
drives the asyncio client on a private event loop over one kept connection (reconnecting after a failure).
:class:`StoreReporter` writes straight into the central store instead (tests, and a controller that runs in
the same process).

What the controller answers to ``discover`` is peer data: the address is checked (one ``IP:PORT`` string,
bounded, an IPv4 unicast address and a port) before the MU connects anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edgemigrate.controller.client import ControllerClient, ControllerRefused
from edgemigrate.controller.store import MuReport, Store
from edgemigrate.core.errors import EdgeMigrateError, EngineError, ValidationError
from edgemigrate.core.ids import check_id

T = TypeVar("T")
MAX_ADDRESS_CHARS = 21  # "255.255.255.255:65535"
CONTROLLER_TIMEOUT_S = 5.0


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
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved:  # reserved: 240/4, broadcast included
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


def parse_address(reply: Any) -> tuple[str, int]:
    """The endpoint in a ``discover`` reply (``{"address": "IP:PORT", ...}``), checked as peer data."""
    addr = reply.get("address") if isinstance(reply, dict) else None
    if not isinstance(addr, str) or len(addr) > MAX_ADDRESS_CHARS:
        raise ValidationError(f"discover: address: expected 'IP:PORT' of at most {MAX_ADDRESS_CHARS} characters, "
                              f"got {addr!r:.80}")
    ip, sep, port = addr.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise ValidationError(f"discover: address: expected 'IP:PORT', got {addr!r:.80}")
    return check_endpoint((ip, int(port)))


class ControllerReporter:
    """Reports and discovery over the controller's API as mobile user ``user`` (certificate ``mu-<user>`` in
    ``pki_dir``, as ``controller.api.issue_mu_cert`` writes it). Every failure is an :class:`EdgeMigrateError`
    (the MU counts a failed report and retries a failed discovery on its next request)."""

    def __init__(self, host: str, port: int, pki_dir: Path, user: str, *,
                 timeout_s: float = CONTROLLER_TIMEOUT_S) -> None:
        self.host, self.port = check_endpoint((host, port), "controller")
        self.pki_dir = Path(pki_dir)
        self.user = check_id(user, "user")
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._client: ControllerClient | None = None

    def report(self, report: MuReport) -> None:
        self._call(lambda c: c.report(report))

    def discover(self, user: str, service: str) -> tuple[str, int]:
        return parse_address(self._call(lambda c: c.discover(user, service)))

    def close(self) -> None:
        if self._client is not None:
            self._loop.run_until_complete(self._drop())
        self._loop.close()

    async def _drop(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                await asyncio.wait_for(c.__aexit__(None, None, None), self.timeout_s)
            except (TimeoutError, OSError):
                pass

    def _call(self, op: Callable[[ControllerClient], Awaitable[T]]) -> T:
        async def go() -> T:
            if self._client is None:
                c = ControllerClient(self.host, self.port, pki_dir=self.pki_dir, cert=f"mu-{self.user}",
                                     reply_timeout_s=self.timeout_s)
                await asyncio.wait_for(c.__aenter__(), self.timeout_s)
                self._client = c
            return await op(self._client)

        try:
            return self._loop.run_until_complete(go())
        except ControllerRefused as exc:
            if "closed the connection" in str(exc):
                self._loop.run_until_complete(self._drop())
            raise
        except EdgeMigrateError:
            self._loop.run_until_complete(self._drop())
            raise
        except (TimeoutError, OSError) as exc:
            self._loop.run_until_complete(self._drop())
            raise EngineError(f"controller {self.host}:{self.port}: {type(exc).__name__}: {exc}"[:300]) from None
