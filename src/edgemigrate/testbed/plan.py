"""Names and addresses of a testbed, derived from its name and config (pure; no system calls).

Layout (a routed star, no bridge; see :mod:`edgemigrate.testbed.testbed`)::

    namespace <name>-<host>        eth0  <host ip>/32, default via <gw>
    namespace <name>-router        h<i>  (veth peer of host i's eth0), address <gw>/32
                                   t<i>x<j> TUN device: the directed link host i -> host j
                                   m0    (veth peer of the management link, optional)
    root namespace                 em-<name>  <mgmt ip>/32, route <subnet> via <gw>

Addresses inside ``subnet`` (offsets from the network address): 1 the router (gateway), 254 the management
end in the root namespace, 256 + 1 + i host i, 512 + k suggested service IPs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from edgemigrate.core.errors import ConfigError
from edgemigrate.testbed.config import NAME_RE, HostKind, TestbedConfig

GW_OFFSET = 1
MGMT_OFFSET = 254
HOST_OFFSET = 257
SERVICE_OFFSET = 512
TABLE_BASE = 1000  # routing table (and rule preference) of packets arriving from host i: TABLE_BASE + i


@dataclass(frozen=True, slots=True)
class HostInfo:
    name: str
    kind: HostKind
    index: int
    ip: str
    netns: str

    @property
    def router_if(self) -> str:
        return f"h{self.index}"


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    config: TestbedConfig

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ConfigError(f"testbed name must match {NAME_RE.pattern} (short: it prefixes interface and "
                              f"namespace names), got {self.name!r}")

    @property
    def router_ns(self) -> str:
        return f"{self.name}-router"

    @property
    def mgmt_if(self) -> str:
        return f"em-{self.name}"

    def _addr(self, offset: int) -> str:
        return str(self.config.network.network_address + offset)

    @property
    def gw_ip(self) -> str:
        return self._addr(GW_OFFSET)

    @property
    def mgmt_ip(self) -> str:
        return self._addr(MGMT_OFFSET)

    def hosts(self) -> list[HostInfo]:
        return [HostInfo(h.name, h.kind, i, self._addr(HOST_OFFSET + i), f"{self.name}-{h.name}")
                for i, h in enumerate(self.config.hosts())]

    def namespaces(self) -> list[str]:
        return [self.router_ns] + [h.netns for h in self.hosts()]

    @staticmethod
    def tun(i: int, j: int) -> str:
        return f"t{i}x{j}"

    @staticmethod
    def table(i: int) -> int:
        return TABLE_BASE + i

    def service_ip(self, k: int) -> str:
        """The ``k``-th suggested service IP (k >= 0)."""
        net = self.config.network
        if not 0 <= k < net.num_addresses - SERVICE_OFFSET - 1:
            raise ConfigError(f"service index {k} out of range for subnet {net}")
        return self._addr(SERVICE_OFFSET + k)

    def check_service_ip(self, ip: str) -> str:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise ConfigError(f"not an IPv4 address: {ip!r}") from None
        if addr not in self.config.network:
            raise ConfigError(f"service IP {ip} is outside the testbed subnet {self.config.network}")
        taken = {self.gw_ip, self.mgmt_ip} | {h.ip for h in self.hosts()}
        if ip in taken or addr in (self.config.network.network_address, self.config.network.broadcast_address):
            raise ConfigError(f"service IP {ip} is reserved (gateway, management or a host address)")
        return str(addr)
