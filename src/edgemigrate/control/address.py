"""Moving a service IP between hosts (the network's side of a migration).

On the testbed a service IP is a /32 on the host plus routes in the router namespace, changed in one step
by :meth:`edgemigrate.testbed.Testbed.move_service_ip`; on a real edge network the same role is played by
an announcement (gratuitous ARP, a BGP/SDN route update). Agents only see this :class:`AddressMover`
protocol. The destination claims the IP right before its restore; a source that rolls back claims it back.
"""

from __future__ import annotations

from typing import Protocol

CLAIM_ATTEMPTS = 5


class AddressMover(Protocol):
    def check(self, ip: str) -> None:
        """Raise unless ``ip`` is an address services may hold (never a host's own address)."""
        ...

    def locate(self, ip: str) -> str | None:
        """Host currently holding ``ip`` (None if nobody)."""
        ...

    def claim(self, ip: str, host: str) -> None:
        """Make ``host`` hold ``ip``, moving it from wherever it is."""
        ...

    def release(self, ip: str) -> None:
        """Remove ``ip`` from every host."""
        ...


class TestbedAddressMover:
    """:class:`AddressMover` over a running testbed (state is reloaded on every call: agents are separate
    processes and the testbed serialises changes with its own lock)."""

    __test__ = False  # not a pytest class

    def __init__(self, testbed_name: str) -> None:
        self.testbed_name = testbed_name

    def _tb(self):  # type: ignore[no-untyped-def]
        from edgemigrate.testbed.testbed import Testbed

        return Testbed.load(self.testbed_name)

    def check(self, ip: str) -> None:
        self._tb().plan.check_service_ip(ip)

    def locate(self, ip: str) -> str | None:
        return self._tb().services().get(ip)

    def claim(self, ip: str, host: str) -> None:
        from edgemigrate.core.errors import ConfigError

        last: ConfigError | None = None
        for _ in range(CLAIM_ATTEMPTS):  # another agent may move the IP between our look-up and our move
            tb = self._tb()
            where = tb.services().get(ip)
            if where == host:
                return
            try:
                if where is None:
                    tb.add_service_ip(ip, host)
                else:
                    tb.move_service_ip(ip, where, host)
                return
            except ConfigError as exc:
                last = exc
        assert last is not None
        raise last

    def release(self, ip: str) -> None:
        self._tb().remove_service_ip(ip)
