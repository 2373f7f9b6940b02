"""Testbed configuration: the ``[testbed]`` section of a scenario file.

Default profile from Ngo et al. 2020 (section V, testbed): adjacent edge servers are connected with
100 Mbit/s and 50 ms latency, each edge server to the cloud with 75 Mbit/s and 150 ms. We read the paper's
"latency" as round-trip time (the figure a ``ping`` between the two hosts shows); each direction of a
link gets half of it as one-way delay. Clients (mobile users behind their base station) reach edges with
1 Gbit/s and 5 ms, the cloud with 1 Gbit/s and 155 ms.

Example::

    [testbed]
    edges = 3
    clients = 1
    [testbed.links.edge_edge]
    rate_mbit = 100
    rtt_ms = 50
    [[testbed.override]]
    hosts = ["edge1", "edge3"]
    rate_mbit = 10
    loss = 0.01

Base stations (optional, ``count = 0`` by default) sit between the client hosts and the servers: a mobile
user's traffic enters through its serving BS, and each BS has its own shaped path to every edge and cloud host
(the BS-server RTT and bandwidth of Ngo et al. 2020, eq. 4). The paper gives no figures for these paths (its
Wi-Fi APs hang off the edge servers); our defaults follow that picture: BS ``k`` is co-located with ``edgek``
(1 Gbit/s, 2 ms RTT, as the synthetic planning snapshot), the other edges are one edge-edge hop further
(100 Mbit/s, 52 ms) and the cloud one edge-cloud hop further (75 Mbit/s, 152 ms)::

    [testbed.base_stations]
    count = 3
    [testbed.base_stations.links.bs_edge]
    rtt_ms = 60
    [[testbed.base_stations.override]]
    bs = "bs1"
    host = "edge3"
    rate_mbit = 10

Unknown keys are rejected with a "did you mean" suggestion.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.registry import suggest

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
HOST_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
MAX_HOSTS = 60  # interface names t{i}x{j} stay within IFNAMSIZ; the router holds n*(n-1) TUN devices
MAX_BASE_STATIONS = 9  # device names b<k>u<j> stay short; the paper's testbed has three
MAX_PREFIXLEN = 22  # hosts live at offset 256.., service IPs at offset 512..


class HostKind(Enum):
    EDGE = "edge"
    CLOUD = "cloud"
    CLIENT = "client"


class Emulator(Enum):
    """How per-link delay and loss are produced."""

    AUTO = "auto"  # netem when the kernel has it, else TUN
    TUN = "tun"  # our user-space forwarder between TUN devices (edgemigrate.testbed.forwarder)
    NETEM = "netem"  # the kernel's sch_netem


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Properties of one link (applied to each direction separately).

    ``rate_mbit`` 0 means unshaped. ``rtt_ms`` is the round-trip latency; each direction gets ``rtt_ms / 2``.
    ``loss`` is the per-packet drop probability in each direction (0..1).
    """

    rate_mbit: float = 0.0
    rtt_ms: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        if not (self.rate_mbit >= 0 and self.rate_mbit <= 100_000):
            raise ConfigError(f"rate_mbit must be in [0, 100000], got {self.rate_mbit}")
        if not (self.rtt_ms >= 0 and self.rtt_ms <= 60_000):
            raise ConfigError(f"rtt_ms must be in [0, 60000], got {self.rtt_ms}")
        if not (0.0 <= self.loss < 1.0):
            raise ConfigError(f"loss must be a probability in [0, 1), got {self.loss}")

    @property
    def rate_bps(self) -> float:
        return self.rate_mbit * 1e6

    @property
    def one_way_delay_s(self) -> float:
        return self.rtt_ms / 2000.0


# link classes, keyed by the sorted pair of host kinds
DEFAULT_LINKS: dict[str, LinkSpec] = {
    "edge_edge": LinkSpec(rate_mbit=100, rtt_ms=50),  # Ngo et al. 2020, section V
    "cloud_edge": LinkSpec(rate_mbit=75, rtt_ms=150),  # Ngo et al. 2020, section V
    "client_edge": LinkSpec(rate_mbit=1000, rtt_ms=5),
    "client_cloud": LinkSpec(rate_mbit=1000, rtt_ms=155),
    "client_client": LinkSpec(rate_mbit=1000, rtt_ms=10),
    "cloud_cloud": LinkSpec(rate_mbit=1000, rtt_ms=5),
}
_LINK_ALIASES = {"edge_cloud": "cloud_edge", "edge_client": "client_edge", "cloud_client": "client_cloud"}


def link_class(a: HostKind, b: HostKind) -> str:
    x, y = sorted((a.value, b.value))
    return f"{x}_{y}"


@dataclass(frozen=True, slots=True)
class HostSpec:
    name: str
    kind: HostKind


@dataclass(frozen=True, slots=True)
class LinkOverride:
    a: str
    b: str
    spec: LinkSpec


# BS -> server path classes (see the module docstring for why these values)
DEFAULT_BS_LINKS: dict[str, LinkSpec] = {
    "bs_local": LinkSpec(rate_mbit=1000, rtt_ms=2),  # BS k and its co-located edge k
    "bs_edge": LinkSpec(rate_mbit=100, rtt_ms=52),  # + one edge-edge hop (Ngo et al. 2020, sec. V-A)
    "bs_cloud": LinkSpec(rate_mbit=75, rtt_ms=152),  # + one edge-cloud hop (Ngo et al. 2020, sec. V-A)
}


@dataclass(frozen=True, slots=True)
class BsOverride:
    bs: str
    host: str
    spec: LinkSpec


@dataclass(frozen=True, slots=True)
class BaseStationsConfig:
    """``count`` base stations ``bs1..bsN``; path classes ``links`` and per (BS, host) ``overrides``."""

    count: int = 0
    links: Mapping[str, LinkSpec] = field(default_factory=lambda: dict(DEFAULT_BS_LINKS))
    overrides: tuple[BsOverride, ...] = ()

    def __post_init__(self) -> None:
        c = self.count
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= MAX_BASE_STATIONS:
            raise ConfigError(f"count must be an integer in [0, {MAX_BASE_STATIONS}], got {c!r}")

    def names(self) -> list[str]:
        return [f"bs{k + 1}" for k in range(self.count)]


@dataclass(frozen=True, slots=True)
class TestbedConfig:
    """A resolved testbed description (hosts, link classes, overrides, addressing)."""

    __test__ = False  # not a pytest test class

    edges: int = 3
    clouds: int = 1
    clients: int = 1
    subnet: str = "10.77.0.0/16"
    mtu_bytes: int = 9000
    congestion_control: str = "bbr"
    emulator: Emulator = Emulator.AUTO
    mgmt_link: bool = True
    seed: int = 0
    links: Mapping[str, LinkSpec] = field(default_factory=lambda: dict(DEFAULT_LINKS))
    overrides: tuple[LinkOverride, ...] = ()
    base_stations: BaseStationsConfig = field(default_factory=BaseStationsConfig)

    def __post_init__(self) -> None:
        for key, lo, hi in (("edges", 0, MAX_HOSTS), ("clouds", 0, 9), ("clients", 0, MAX_HOSTS)):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(f"testbed.{key} must be an integer in [{lo}, {hi}], got {v!r}")
        n = self.edges + self.clouds + self.clients
        if not 2 <= n <= MAX_HOSTS:
            raise ConfigError(f"testbed needs between 2 and {MAX_HOSTS} hosts, got {n}")
        try:
            net = ipaddress.IPv4Network(self.subnet)
        except ValueError as exc:
            raise ConfigError(f"testbed.subnet: {exc}") from None
        if net.prefixlen > MAX_PREFIXLEN or not net.is_private:
            raise ConfigError(f"testbed.subnet must be a private IPv4 network of /{MAX_PREFIXLEN} or larger, "
                              f"got {self.subnet}")
        if not (576 <= self.mtu_bytes <= 65000):
            raise ConfigError(f"testbed.mtu_bytes must be in [576, 65000], got {self.mtu_bytes}")
        if not re.fullmatch(r"[a-z0-9_]{1,16}", self.congestion_control):
            raise ConfigError(f"testbed.congestion_control: bad name {self.congestion_control!r}")
        names = {h.name for h in self.hosts()}
        for o in self.overrides:
            for h in (o.a, o.b):
                if h not in names:
                    raise ConfigError(f"testbed.override: unknown host '{h}'{suggest(h, names)}")
            if o.a == o.b:
                raise ConfigError(f"testbed.override: a link needs two different hosts, got {o.a!r} twice")
        servers = {h.name for h in self.hosts() if h.kind is not HostKind.CLIENT}
        bss = self.base_stations.names()
        for bo in self.base_stations.overrides:
            if bo.bs not in bss:
                raise ConfigError(f"testbed.base_stations.override: unknown base station '{bo.bs}'{suggest(bo.bs, bss)}")
            if bo.host not in servers:
                raise ConfigError(f"testbed.base_stations.override: '{bo.host}' is not an edge or cloud host"
                                  f"{suggest(bo.host, servers)}")
        if self.base_stations.count and not self.clients:
            raise ConfigError("testbed.base_stations needs at least one client host (the mobile users live there)")

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def hosts(self) -> list[HostSpec]:
        out = [HostSpec(f"edge{i + 1}", HostKind.EDGE) for i in range(self.edges)]
        if self.clouds == 1:
            out.append(HostSpec("cloud", HostKind.CLOUD))
        else:
            out += [HostSpec(f"cloud{i + 1}", HostKind.CLOUD) for i in range(self.clouds)]
        out += [HostSpec(f"client{i + 1}", HostKind.CLIENT) for i in range(self.clients)]
        return out

    def link_between(self, a: HostSpec, b: HostSpec) -> LinkSpec:
        for o in self.overrides:
            if {o.a, o.b} == {a.name, b.name}:
                return o.spec
        return self.links[link_class(a.kind, b.kind)]

    def bs_link(self, bs: str, host: HostSpec) -> LinkSpec:
        """The path between base station ``bs`` (``bsK``) and the edge or cloud ``host``."""
        for o in self.base_stations.overrides:
            if (o.bs, o.host) == (bs, host.name):
                return o.spec
        links = self.base_stations.links
        if host.kind is HostKind.CLOUD:
            return links["bs_cloud"]
        return links["bs_local"] if host.name == f"edge{bs[2:]}" else links["bs_edge"]


_LINK_KEYS = ("rate_mbit", "rtt_ms", "loss")
_TOP_KEYS = ("edges", "clouds", "clients", "subnet", "mtu_bytes", "congestion_control", "emulator",
             "mgmt_link", "seed", "links", "override", "base_stations")
_BS_KEYS = ("count", "links", "override")


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _link_spec(where: str, raw: Any, base: LinkSpec, extra_keys: tuple[str, ...] = ()) -> LinkSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    allowed = _LINK_KEYS + extra_keys
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, allowed)}")
    values = {k: _number(where, k, raw[k]) for k in _LINK_KEYS if k in raw}
    try:
        return replace(base, **values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_mapping(raw: Mapping[str, Any], where: str = "testbed") -> TestbedConfig:
    """Build a :class:`TestbedConfig` from the ``[testbed]`` table; ``where`` prefixes error messages."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, _TOP_KEYS)}")
    kwargs: dict[str, Any] = {}
    for key in ("edges", "clouds", "clients", "mtu_bytes", "seed"):
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{where}.{key}: expected an integer, got {v!r}")
            kwargs[key] = v
    for key in ("subnet", "congestion_control"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ConfigError(f"{where}.{key}: expected a string, got {raw[key]!r}")
            kwargs[key] = raw[key]
    if "mgmt_link" in raw:
        if not isinstance(raw["mgmt_link"], bool):
            raise ConfigError(f"{where}.mgmt_link: expected true or false, got {raw['mgmt_link']!r}")
        kwargs["mgmt_link"] = raw["mgmt_link"]
    if "emulator" in raw:
        choices = [e.value for e in Emulator]
        if raw["emulator"] not in choices:
            raise ConfigError(f"{where}.emulator: unknown emulator {raw['emulator']!r}"
                              f"{suggest(str(raw['emulator']), choices)}")
        kwargs["emulator"] = Emulator(raw["emulator"])
    links = dict(DEFAULT_LINKS)
    for cls, spec in (raw.get("links") or {}).items():
        canon = _LINK_ALIASES.get(cls, cls)
        valid = list(DEFAULT_LINKS) + list(_LINK_ALIASES)
        if canon not in DEFAULT_LINKS:
            raise ConfigError(f"{where}.links: unknown link class '{cls}'{suggest(cls, valid)}")
        links[canon] = _link_spec(f"{where}.links.{cls}", spec, DEFAULT_LINKS[canon])
    kwargs["links"] = links
    overrides = []
    raw_over = raw.get("override", [])
    if not isinstance(raw_over, list):
        raise ConfigError(f"{where}.override: expected an array of tables ([[{where}.override]])")
    for i, item in enumerate(raw_over):
        w = f"{where}.override[{i}]"
        if not isinstance(item, Mapping) or "hosts" not in item:
            raise ConfigError(f"{w}: expected a table with hosts = [\"a\", \"b\"]")
        hosts = item["hosts"]
        if not (isinstance(hosts, list) and len(hosts) == 2 and all(isinstance(h, str) for h in hosts)):
            raise ConfigError(f"{w}.hosts: expected two host names, got {hosts!r}")
        spec = _link_spec(w, item, LinkSpec(), extra_keys=("hosts",))
        overrides.append(LinkOverride(hosts[0], hosts[1], spec))
    kwargs["overrides"] = tuple(overrides)
    if "base_stations" in raw:
        kwargs["base_stations"] = _base_stations(f"{where}.base_stations", raw["base_stations"])
    try:
        return TestbedConfig(**kwargs)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _base_stations(where: str, raw: Any) -> BaseStationsConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    for key in raw:
        if key not in _BS_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, _BS_KEYS)}")
    count = raw.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ConfigError(f"{where}.count: expected an integer, got {count!r}")
    links = dict(DEFAULT_BS_LINKS)
    raw_links = raw.get("links", {})
    if not isinstance(raw_links, Mapping):
        raise ConfigError(f"{where}.links: expected a table, got {raw_links!r}")
    for cls, spec in raw_links.items():
        if cls not in DEFAULT_BS_LINKS:
            raise ConfigError(f"{where}.links: unknown path class '{cls}'{suggest(cls, DEFAULT_BS_LINKS)}")
        links[cls] = _link_spec(f"{where}.links.{cls}", spec, DEFAULT_BS_LINKS[cls])
    raw_over = raw.get("override", [])
    if not isinstance(raw_over, list):
        raise ConfigError(f"{where}.override: expected an array of tables ([[{where}.override]])")
    overrides = []
    for i, item in enumerate(raw_over):
        w = f"{where}.override[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("bs"), str) or not isinstance(
                item.get("host"), str):
            raise ConfigError(f"{w}: expected a table with bs = \"bsK\" and host = \"<edge or cloud>\"")
        overrides.append(BsOverride(item["bs"], item["host"], _link_spec(w, item, LinkSpec(), ("bs", "host"))))
    try:
        return BaseStationsConfig(count=count, links=links, overrides=tuple(overrides))
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def load_config(path: str | Path | None) -> TestbedConfig:
    """Read the ``[testbed]`` section of a TOML scenario file (defaults if ``path`` is None or has none)."""
    if path is None:
        return TestbedConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return config_from_mapping(data.get("testbed", {}), where=f"{p}: testbed")


def config_to_mapping(cfg: TestbedConfig) -> dict[str, Any]:
    """The inverse of :func:`config_from_mapping` (what ``state.json`` stores)."""
    return {
        "edges": cfg.edges, "clouds": cfg.clouds, "clients": cfg.clients, "subnet": cfg.subnet,
        "mtu_bytes": cfg.mtu_bytes, "congestion_control": cfg.congestion_control,
        "emulator": cfg.emulator.value, "mgmt_link": cfg.mgmt_link, "seed": cfg.seed,
        "links": {k: {"rate_mbit": v.rate_mbit, "rtt_ms": v.rtt_ms, "loss": v.loss} for k, v in cfg.links.items()},
        "override": [{"hosts": [o.a, o.b], "rate_mbit": o.spec.rate_mbit, "rtt_ms": o.spec.rtt_ms,
                      "loss": o.spec.loss} for o in cfg.overrides],
        "base_stations": {
            "count": cfg.base_stations.count,
            "links": {k: _spec_map(v) for k, v in cfg.base_stations.links.items()},
            "override": [{"bs": o.bs, "host": o.host, **_spec_map(o.spec)} for o in cfg.base_stations.overrides],
        },
    }


def _spec_map(spec: LinkSpec) -> dict[str, float]:
    return {"rate_mbit": spec.rate_mbit, "rtt_ms": spec.rtt_ms, "loss": spec.loss}
