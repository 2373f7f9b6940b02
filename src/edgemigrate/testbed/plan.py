"""Names and addresses of a testbed, derived from its name and config (pure; no system calls).

Layout (a routed star, no bridge; see :mod:`edgemigrate.testbed.testbed`)::

    namespace <name>-<host>        eth0  <host ip>/32, default via <gw>
    namespace <name>-router        h<i>  (veth peer of host i's eth0), address <gw>/32
                                   t<i>x<j> TUN device: the directed link host i -> host j
                                   m0    (veth peer of the management link, optional)
    root namespace                 em-<name>  <mgmt ip>/32, route <subnet> via <gw>

With base stations (``testbed.base_stations.count > 0``), see :mod:`edgemigrate.testbed.bs`::

    namespace <name>-bs<k+1>        eth0  <bs ip>/32 (veth peer of g<k> in the router), default via <gw>
                                    a<c>  (veth peer of w<k> in client c), route <mu ip of c> dev a<c>
    namespace <name>-<client>       w<k>  uplink to BS k; lo holds the client's mobile-user (MU) address
    namespace <name>-router         g<k>  from BS k; rule iif g<k> -> table 2000 + k
                                    b<k>u<j> / b<k>d<j>  shaped paths BS k -> host j / host j -> BS k

Addresses inside ``subnet`` (offsets from the network address): 1 the router (gateway), 32 + k base station
k, 64 + c the MU address of client c, 254 the management end in the root namespace, 256 + 1 + i host i,
512 + k suggested service IPs.
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
BS_OFFSET = 32
MU_OFFSET = 64  # + client ordinal; at most MAX_HOSTS (60) clients, so it stays below MGMT_OFFSET
BS_TABLE_BASE = 2000  # routing table (and rule preference) of packets arriving from base station k
MU_TABLE = 3000  # in a client: the table of packets sent from its MU address (default via the serving BS)
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
class BsInfo:
    """Base station ``name`` (``bs<index+1>``) on the testbed."""

    name: str
    index: int
    ip: str
    netns: str

    @property
    def router_if(self) -> str:
        return f"g{self.index}"

    def uplink(self, j: int) -> str:
        """Router device of the shaped path BS -> host ``j``."""
        return f"b{self.index}u{j}"

    def downlink(self, j: int) -> str:
        """Router device of the shaped path host ``j`` -> BS."""
        return f"b{self.index}d{j}"

    @property
    def table(self) -> int:
        return BS_TABLE_BASE + self.index


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
        return [self.router_ns] + [h.netns for h in self.hosts()] + [b.netns for b in self.base_stations()]

    def base_stations(self) -> list[BsInfo]:
        return [BsInfo(n, k, self._addr(BS_OFFSET + k), f"{self.name}-{n}")
                for k, n in enumerate(self.config.base_stations.names())]

    def mu_ip(self, client: HostInfo) -> str:
        """The mobile-user address of ``client`` (only routed when the testbed has base stations)."""
        ordinal = [h.name for h in self.hosts() if h.kind is HostKind.CLIENT].index(client.name)
        return self._addr(MU_OFFSET + ordinal)

    @staticmethod
    def air_if(bs: BsInfo, client: HostInfo) -> tuple[str, str]:
        """(device in the client, device in the BS) of the radio link between them."""
        return f"w{bs.index}", f"a{client.index}"

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
        taken = {self.gw_ip, self.mgmt_ip} | {h.ip for h in self.hosts()} | {b.ip for b in self.base_stations()}
        if ip in taken or addr in (self.config.network.network_address, self.config.network.broadcast_address):
            raise ConfigError(f"service IP {ip} is reserved (gateway, management or a host address)")
        return str(addr)
