"""Emulated edge hosts as network namespaces with shaped links (``edgemigrate testbed up|down|status``).

Topology: a routed star. Every host namespace (``<name>-<host>``, visible as ``/run/netns/<name>-<host>``) has one
veth ``eth0`` to a per-testbed router namespace. In the router, packets that arrive from host ``i`` are looked up in
routing table ``1000 + i`` (an ``ip rule iif h<i>``), which sends traffic for host ``j`` - or for a service IP that
currently lives on host ``j`` - into the TUN device ``t<i>x<j>``: the directed link ``i -> j``. Its ``tbf`` qdisc
limits the rate (``tc qdisc replace``, so it can change mid-transfer); the user-space emulator
(:mod:`edgemigrate.testbed.forwarder`) adds the one-way delay and loss and writes the packet back, and the main
table delivers it to host ``j``. A per-pair link is thus a real queue, not an aggregate per host; a bridge
could not shape host pairs separately without classifiers. Where the kernel has ``sch_netem`` (``emulator =
"auto"`` picks it then), ``t<i>x<j>`` is instead one end of a veth pair looped inside the router (the other end
``u<i>x<j>`` receives the packets), with ``tbf`` at the root and ``netem`` delay/loss as its child; no
user-space process is involved. Our CI kernels have no netem, so there only the rate part of that variant is
exercised.

A service IP is a /32 on the ``eth0`` of the host that runs the service. :meth:`Testbed.move_service_ip` removes it
at the source, adds it at the destination and updates the router's routes in one step; established TCP connections
survive because the client's packets simply follow the new route (the peer socket is restored by CRIU on the
destination). ``down`` removes the namespaces (with every veth, TUN, qdisc, rule and iptables rule in them), the
management veth in the root namespace, processes left in the namespaces and the forwarder.

API (all methods need root)::

    tb = Testbed.up(load_config("scenarios/testbed-default.toml"), name="em")
    tb = Testbed.load("em")                      # from another process
    tb.host_ip("edge2"); tb.netns_path("edge2")  # -> /run/netns/em-edge2
    tb.exec_in("edge1", ["redis-cli", "ping"])
    tb.add_service_ip(tb.service_ip(0), "edge1"); tb.move_service_ip(ip, "edge1", "edge2")
    tb.set_link("edge1", "edge2", rate_mbit=10, rtt_ms=50, loss=0.01)
    # with [testbed.base_stations] (see edgemigrate.testbed.bs):
    tb.mu_ip("client1"); tb.serving_bs("client1")  # the mobile user's address and its BS
    tb.handover("client1", "bs2")                # 500 ms outage at the old BS, then via bs2
    tb.set_bs_link("bs1", "edge2", rtt_ms=60); tb.bs_link_tx_packets("bs2", "edge1")
    tb.down()
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import edgemigrate.testbed.bs as bs_ops
import edgemigrate.testbed.netops as netops
from edgemigrate.core.cgroups import remove_host_cgroups
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.core.registry import suggest
from edgemigrate.testbed.capabilities import detect
from edgemigrate.testbed.config import (
    Emulator,
    HostKind,
    LinkSpec,
    TestbedConfig,
    config_from_mapping,
    config_to_mapping,
)
from edgemigrate.testbed.paths import AGENTS_ROOT, IMAGES_ROOT
from edgemigrate.testbed.plan import BsInfo, HostInfo, Plan

STATE_ROOT = Path(os.environ.get("EDGEMIGRATE_TESTBED_DIR", "/run/edgemigrate/testbed"))
STATE_VERSION = 1
FORWARDER_READY_TIMEOUT_S = 20.0
TBF_BURST_S = 0.004  # bucket depth: 4 ms of the rate (>= one timer tick at HZ=250), at least two MTUs
# TCP autotuning ceiling in every host: the default 6 MiB caps a flow at 6 MiB / RTT (320 Mbit/s at 150 ms);
# measured here, 1000 Mbit/s x 50 ms went from 410 to 893 Mbit/s with 64 MiB (scripts/bench_testbed.py).
TCP_BUFFER_MAX_BYTES = 64 * 1024 * 1024
TBF_QUEUE_MIN_S = 0.02  # queue limit: one bandwidth-delay product of the link, at least 20 ms of the rate


def tbf_args(spec: LinkSpec, mtu_bytes: int) -> list[str]:
    rate_bytes_per_s = spec.rate_bps / 8.0
    burst = max(int(rate_bytes_per_s * TBF_BURST_S), 2 * mtu_bytes + 128)
    limit = max(int(rate_bytes_per_s * max(spec.rtt_ms / 1000.0, TBF_QUEUE_MIN_S)), 4 * mtu_bytes)
    return ["tbf", "rate", f"{int(spec.rate_bps)}bit", "burst", str(burst), "limit", str(limit)]


NETEM_NEXTHOP = "169.254.77.1"  # on-link next hop of the looped veth links (static neighbour entry)
NETEM_LIMIT_PACKETS = 100_000


def netem_args(spec: LinkSpec) -> list[str]:
    """Kernel netem for one direction: half the RTT as delay, the link's loss."""
    return ["netem", "delay", f"{spec.one_way_delay_s * 1e6:.0f}us", "loss", f"{spec.loss * 100:.6f}%",
            "limit", str(NETEM_LIMIT_PACKETS)]


def _pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


class Testbed:
    """A running testbed (create with :meth:`up`, reattach with :meth:`load`)."""

    __test__ = False

    def __init__(self, name: str, config: TestbedConfig, state: dict[str, Any]) -> None:
        self.plan = Plan(name, config)
        self.name = name
        self.config = config
        self._state = state
        self._hosts = {h.name: h for h in self.plan.hosts()}
        self._bss = {b.name: b for b in self.plan.base_stations()}

    # ------------------------------------------------------------------ locating
    @staticmethod
    def state_dir(name: str) -> Path:
        return STATE_ROOT / name

    @classmethod
    def names(cls) -> list[str]:
        if not STATE_ROOT.is_dir():
            return []
        return sorted(p.parent.name for p in STATE_ROOT.glob("*/state.json"))

    @classmethod
    def load(cls, name_or_state: str | Path) -> Testbed:
        """Reattach to a testbed by name or by the path of its ``state.json``."""
        p = Path(name_or_state)
        path = p if p.suffix == ".json" else cls.state_dir(str(name_or_state)) / "state.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            known = cls.names()
            hint = suggest(str(name_or_state), known) if known else " (no testbed is up)"
            raise ConfigError(f"no testbed '{name_or_state}'{hint}") from None
        if state.get("version") != STATE_VERSION:
            raise EngineError(f"{path}: unsupported state version {state.get('version')!r}")
        return cls(state["name"], config_from_mapping(state["config"], where=f"{path}: config"), state)

    # ------------------------------------------------------------------ queries
    def hosts(self) -> list[HostInfo]:
        return list(self._hosts.values())

    def host(self, name: str) -> HostInfo:
        try:
            return self._hosts[name]
        except KeyError:
            raise ConfigError(f"testbed '{self.name}' has no host '{name}'{suggest(name, self._hosts)}") from None

    def host_ip(self, name: str) -> str:
        return self.host(name).ip

    def netns(self, host: str) -> str:
        return self.host(host).netns

    def netns_path(self, host: str) -> str:
        return str(netns_path_of(self.netns(host)))

    def service_ip(self, k: int = 0) -> str:
        return self.plan.service_ip(k)

    def services(self) -> dict[str, str]:
        """Service IP -> host currently holding it."""
        return dict(self._state["services"])

    def link(self, a: str, b: str) -> LinkSpec:
        raw = self._state["links"][_pair_key(self.host(a).name, self.host(b).name)]
        return LinkSpec(**raw)

    @property
    def emulator(self) -> Emulator:
        return Emulator(self._state["emulator"])

    @property
    def mgmt_ip(self) -> str | None:
        return self.plan.mgmt_ip if self.config.mgmt_link else None

    def status(self) -> dict[str, Any]:
        pid = self._state.get("forwarder_pid")
        return {
            "name": self.name,
            "emulator": self._state["emulator"],
            "congestion_control": self._state.get("congestion_control"),
            "forwarder": {"pid": pid, "alive": _forwarder_alive(pid, self.state_dir(self.name))},
            "mgmt_ip": self.mgmt_ip,
            "hosts": [{"name": h.name, "kind": h.kind.value, "ip": h.ip, "netns": h.netns,
                       "exists": netops.netns_exists(h.netns)} for h in self.hosts()],
            "links": dict(self._state["links"]),
            "services": self.services(),
            "base_stations": [{"name": b.name, "ip": b.ip, "netns": b.netns,
                               "exists": netops.netns_exists(b.netns)} for b in self.base_stations()],
            "bs_links": dict(self._state.get("bs_links", {})),
            "mobile_users": {c: {"ip": self.mu_ip(c), "serving_bs": self.serving_bs(c)}
                             for c in self._state.get("mu", {})},
        }

    # ------------------------------------------------------------------ base stations and mobile users
    def base_stations(self) -> list[BsInfo]:
        return list(self._bss.values())

    def bs(self, name: str) -> BsInfo:
        try:
            return self._bss[name]
        except KeyError:
            known = self._bss or {}
            hint = suggest(name, known) if known else " (it has none: set testbed.base_stations.count)"
            raise ConfigError(f"testbed '{self.name}' has no base station '{name}'{hint}") from None

    def mu_ip(self, client: str) -> str:
        """The address a mobile user on ``client`` sends from: its traffic goes through the serving BS."""
        return bs_ops.mu_ip(self, client)

    def serving_bs(self, client: str) -> str:
        return bs_ops.serving(self, client)

    def bs_link(self, bs_name: str, host: str) -> LinkSpec:
        return LinkSpec(**self._state["bs_links"][bs_ops.link_key(self.bs(bs_name).name, self.host(host).name)])

    def set_bs_link(self, bs_name: str, host: str, *, rate_mbit: float | None = None,
                    rtt_ms: float | None = None, loss: float | None = None) -> LinkSpec:
        """Change the path between base station ``bs_name`` and ``host`` (both directions); returns it."""
        with self._locked():
            new = bs_ops.set_link(self, bs_name, host, rate_mbit=rate_mbit, rtt_ms=rtt_ms, loss=loss)
            self._save()
            if self.emulator is Emulator.TUN:
                self._write_forwarder_params()
                self._signal_forwarder(signal.SIGHUP)
        return new

    def bs_link_tx_packets(self, bs_name: str, host: str, *, up: bool = True) -> int:
        """Packets the router has sent into the shaped path BS -> ``host`` (``up``) or ``host`` -> BS."""
        return bs_ops.tx_packets(self, bs_name, host, up=up)

    def begin_handover(self, client: str) -> None:
        """Start the radio outage of ``client``'s mobile user: its serving BS holds (or drops) its packets both
        ways (``testbed/bs.py``)."""
        with self._locked():
            bs_ops.begin_outage(self, client)
            self._save()

    def complete_handover(self, client: str, to_bs: str) -> None:
        """End the outage: the mobile user's uplink and every server's route back now use ``to_bs``."""
        with self._locked():
            bs_ops.switch(self, client, to_bs)
            self._save()

    def handover(self, client: str, to_bs: str, outage_s: float = bs_ops.HANDOVER_OUTAGE_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Hand ``client``'s mobile user over to ``to_bs``: ``outage_s`` without radio, then the new route.

        The 500 ms default is the handover time of Ngo et al. 2020, sec. V-A. ``sleep`` is injectable so
        that a caller running on virtual time does not block.
        """
        self.bs(to_bs)
        if not 0.0 <= outage_s <= bs_ops.MAX_OUTAGE_S:
            raise ConfigError(f"handover outage_s must be in [0, {bs_ops.MAX_OUTAGE_S}], got {outage_s!r}")
        self.begin_handover(client)
        try:
            sleep(outage_s)
        finally:
            self.complete_handover(client, to_bs)

    # ------------------------------------------------------------------ processes in hosts
    def exec_in(self, host: str, argv: Sequence[str], *, check: bool = False, timeout_s: float | None = None,
                input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` inside ``host``'s network namespace and wait (captured stdout/stderr)."""
        cmd = netops.in_ns(self.netns(host), argv)
        proc = subprocess.run(cmd, input=input_bytes, capture_output=True, timeout=timeout_s, check=False)
        if check and proc.returncode != 0:
            raise EngineError(f"in {host}: '{' '.join(argv)}' failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace').strip()[:300]}")
        return proc

    def popen_in(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``'s network namespace (``kwargs`` go to :class:`subprocess.Popen`)."""
        return subprocess.Popen(netops.in_ns(self.netns(host), argv), **kwargs)

    # ------------------------------------------------------------------ service IPs
    def add_service_ip(self, ip: str, host: str) -> None:
        ip = self.plan.check_service_ip(ip)
        with self._locked():
            if ip in self._state["services"]:
                raise ConfigError(f"service IP {ip} is already on host '{self._state['services'][ip]}'")
            h = self.host(host)
            netops.ip(h.netns, "addr", "add", f"{ip}/32", "dev", "eth0")
            self._route_service(ip, h)
            self._state["services"][ip] = h.name
            self._save()

    def move_service_ip(self, ip: str, src: str, dst: str) -> None:
        """Move ``ip`` from ``src`` to ``dst``: address and router routes change together."""
        ip = self.plan.check_service_ip(ip)
        s, d = self.host(src), self.host(dst)
        with self._locked():
            where = self._state["services"].get(ip)
            if where != s.name:
                raise ConfigError(f"service IP {ip} is on {where or 'no host'}, not on '{src}'")
            if s.name == d.name:
                return
            netops.ip(s.netns, "addr", "del", f"{ip}/32", "dev", "eth0", check=False)
            netops.ip(d.netns, "addr", "add", f"{ip}/32", "dev", "eth0")
            self._route_service(ip, d)
            netops.ip(self.plan.router_ns, "neigh", "del", ip, "dev", s.router_if, check=False)
            self._state["services"][ip] = d.name
            self._save()

    def remove_service_ip(self, ip: str) -> None:
        ip = self.plan.check_service_ip(ip)
        with self._locked():
            where = self._state["services"].pop(ip, None)
            if where is None:
                return
            netops.ip(self.netns(where), "addr", "del", f"{ip}/32", "dev", "eth0", check=False)
            lines = [f"route del {ip}/32"] + [f"route del {ip}/32 table {self.plan.table(h.index)}"
                                               for h in self.hosts()]
            lines += [f"route del {ip}/32 table {b.table}" for b in self.base_stations()]
            netops.ip_batch(self.plan.router_ns, lines, force=True)
            self._save()

    def _route_service(self, ip: str, h: HostInfo) -> None:
        lines = [f"route replace {ip}/32 dev {h.router_if} src {self.plan.gw_ip}"]
        for o in self.hosts():
            if o.index == h.index:
                lines.append(f"route del {ip}/32 table {self.plan.table(o.index)}")
            else:
                lines.append(f"route replace {ip}/32 {self._via(o.index, h.index)} "
                             f"table {self.plan.table(o.index)}")
        lines += bs_ops.service_route_lines(self, ip, h)
        netops.ip_batch(self.plan.router_ns, lines, force=True)

    # ------------------------------------------------------------------ links
    def set_link(self, a: str, b: str, *, rate_mbit: float | None = None, rtt_ms: float | None = None,
                 delay_ms: float | None = None, loss: float | None = None) -> LinkSpec:
        """Change the link between ``a`` and ``b`` (both directions) while traffic flows.

        ``rtt_ms`` is the round-trip latency; ``delay_ms`` is the one-way delay (``rtt_ms = 2 * delay_ms``);
        give at most one of them. ``rate_mbit=0`` removes the rate limit. Returns the new link.
        """
        ha, hb = self.host(a), self.host(b)
        if ha.name == hb.name:
            raise ConfigError(f"set_link needs two different hosts, got '{a}' twice")
        if rtt_ms is not None and delay_ms is not None:
            raise ConfigError("give rtt_ms or delay_ms, not both")
        if delay_ms is not None:
            rtt_ms = 2.0 * delay_ms
        with self._locked():
            old = self.link(a, b)
            changes = {k: float(v) for k, v in (("rate_mbit", rate_mbit), ("rtt_ms", rtt_ms), ("loss", loss))
                       if v is not None}
            new = replace(old, **changes)
            if (new.rtt_ms > 0 or new.loss > 0) and self.emulator is Emulator.NETEM and not self._state.get(
                    "netem_available", False):
                raise EngineError("this kernel has no sch_netem: cannot delay/drop packets with emulator 'netem' "
                                  "(use emulator = \"tun\")")
            for i, j in ((ha.index, hb.index), (hb.index, ha.index)):
                self.apply_rate(self.plan.tun(i, j), new)
            self._state["links"][_pair_key(ha.name, hb.name)] = {
                "rate_mbit": new.rate_mbit, "rtt_ms": new.rtt_ms, "loss": new.loss}
            self._save()
            if self.emulator is Emulator.TUN:
                self._write_forwarder_params()
                self._signal_forwarder(signal.SIGHUP)
        return new

    def link_device(self, a: str, b: str) -> tuple[str, str]:
        """(router namespace path, device) of the directed link ``a -> b``: its counters in that namespace's
        ``/proc/net/dev`` are the bytes the shaped link carried (see ``experiments.compression.LinkMeter``)."""
        ha, hb = self.host(a), self.host(b)
        return str(netns_path_of(self.plan.router_ns)), self.plan.tun(ha.index, hb.index)

    def link_tx_bytes(self, a: str, b: str) -> int:
        """Bytes the router has sent on the directed link ``a -> b`` so far (the shaped device's counter)."""
        ha, hb = self.host(a), self.host(b)
        out = netops.ip(self.plan.router_ns, "-j", "-s", "link", "show", "dev", self.plan.tun(ha.index, hb.index))
        try:
            return int(json.loads(out.stdout)[0]["stats64"]["tx"]["bytes"])
        except (ValueError, KeyError, IndexError) as exc:
            raise EngineError(f"cannot read the byte counter of link {a} -> {b}: {exc}") from None

    def _via(self, i: int, j: int) -> str:
        """Route target for the directed link i -> j (TUN: the device; netem: an on-link next hop)."""
        return self.via_device(self.plan.tun(i, j))

    def _link_device_lines(self, i: int, j: int) -> list[str]:
        return self.device_lines(self.plan.tun(i, j), f"u{i}x{j}", f"02:ed:00:00:{i:02x}:{j:02x}")

    def device_lines(self, t: str, u: str, mac: str) -> list[str]:
        """``ip -batch`` lines creating the shaped device ``t`` (``u``/``mac``: the netem loop's far end)."""
        mtu = self.config.mtu_bytes
        if self.emulator is Emulator.TUN:
            return [f"tuntap add dev {t} mode tun", f"link set {t} mtu {mtu} up"]
        # netem: a veth pair looped inside the router; packets sent into t come back in on u
        return [f"link add {t} mtu {mtu} type veth peer name {u} mtu {mtu}", f"link set {u} address {mac}",
                f"link set {t} up", f"link set {u} up",
                f"neigh replace {NETEM_NEXTHOP} lladdr {mac} dev {t} nud permanent"]

    def via_device(self, dev: str) -> str:
        """Route target sending packets into the shaped device ``dev``."""
        if self.emulator is Emulator.NETEM:
            return f"via {NETEM_NEXTHOP} dev {dev} onlink"
        return f"dev {dev}"

    def apply_rate(self, dev: str, spec: LinkSpec) -> None:
        """(Re)install ``spec``'s rate (and with netem its delay/loss) on the router device ``dev``."""
        ns = self.plan.router_ns
        netem = self.emulator is Emulator.NETEM and (spec.rtt_ms > 0 or spec.loss > 0)
        netops.tc(ns, "qdisc", "del", "dev", dev, "root", check=False)
        if spec.rate_mbit > 0:
            netops.tc(ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", *tbf_args(spec, self.config.mtu_bytes))
        if netem:
            parent = ["parent", "1:1"] if spec.rate_mbit > 0 else ["root"]
            netops.tc(ns, "qdisc", "add", "dev", dev, *parent, "handle", "10:", *netem_args(spec))

    def _forwarder_params(self) -> dict[str, Any]:
        devices = {}
        for a in self.hosts():
            for b in self.hosts():
                if a.index != b.index:
                    spec = self.link(a.name, b.name)
                    devices[self.plan.tun(a.index, b.index)] = {"delay_s": spec.one_way_delay_s,
                                                                "loss": spec.loss}
        devices.update(bs_ops.forwarder_devices(self))
        return {"seed": self.config.seed, "devices": devices}

    def _write_forwarder_params(self) -> None:
        path = self.state_dir(self.name) / "forwarder.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._forwarder_params(), indent=1))
        tmp.replace(path)

    def _signal_forwarder(self, sig: int) -> None:
        pid = self._state.get("forwarder_pid")
        if _forwarder_alive(pid, self.state_dir(self.name)):
            os.kill(int(pid), sig)

    # ------------------------------------------------------------------ persistence
    def _save(self) -> None:
        d = self.state_dir(self.name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "state.json.tmp"
        tmp.write_text(json.dumps(self._state, indent=1, sort_keys=True))
        tmp.replace(d / "state.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes across processes and re-read the state written by others."""
        d = self.state_dir(self.name)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                sp = d / "state.json"
                if sp.exists():
                    self._state = json.loads(sp.read_text())
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def up(cls, config: TestbedConfig, name: str = "em") -> Testbed:
        """Create the namespaces, links, shaping and forwarder. Cleans up after itself on failure."""
        if not netops.is_root():
            raise EngineError("testbed up needs root (network namespaces, TUN devices, tc)")
        plan = Plan(name, config)
        if (cls.state_dir(name) / "state.json").exists():
            raise ConfigError(f"testbed '{name}' is already up (run: edgemigrate testbed down --name {name})")
        clash = [ns for ns in plan.namespaces() if netops.netns_exists(ns)]
        if clash:
            raise ConfigError(f"network namespace {clash[0]} already exists; choose another --name")
        caps = detect()
        emulator = config.emulator
        if emulator is Emulator.AUTO:
            emulator = Emulator.NETEM if caps.netem else Emulator.TUN
        if emulator is Emulator.NETEM and not caps.netem:
            specs = [config.link_between(a, b) for a in config.hosts() for b in config.hosts() if a != b]
            specs += [config.bs_link(b, h) for b in config.base_stations.names() for h in config.hosts()
                      if h.kind is not HostKind.CLIENT]
            if any(x.rtt_ms > 0 or x.loss > 0 for x in specs):
                raise ConfigError("emulator = \"netem\" but this kernel has no sch_netem; use \"tun\" or \"auto\"")
        if emulator is Emulator.TUN and not caps.tun:
            raise EngineError("/dev/net/tun is missing: the link emulator needs TUN devices")
        cc = config.congestion_control
        if cc not in caps.congestion_controls:
            raise ConfigError(f"congestion control '{cc}' is not available in this kernel"
                              f"{suggest(cc, caps.congestion_controls)}")
        hosts = plan.hosts()
        links = {}
        for a in hosts:
            for b in hosts:
                if a.index < b.index:
                    spec = config.link_between(config.hosts()[a.index], config.hosts()[b.index])
                    links[_pair_key(a.name, b.name)] = {"rate_mbit": spec.rate_mbit, "rtt_ms": spec.rtt_ms,
                                                        "loss": spec.loss}
        state: dict[str, Any] = {
            "version": STATE_VERSION, "name": name, "config": config_to_mapping(config),
            "emulator": emulator.value, "netem_available": caps.netem, "congestion_control": cc, "links": links, "services": {},
            "forwarder_pid": None, "namespaces": plan.namespaces(), **bs_ops.initial_state(plan),
            "mgmt_if": plan.mgmt_if if config.mgmt_link else None, "created_unix_s": time.time(),
        }
        tb = cls(name, config, state)
        tb._save()  # first, so that `down` can clean up a half-built testbed
        try:
            tb._build()
        except BaseException:
            with contextlib.suppress(Exception):
                tb.down()
            raise
        return tb

    def _build(self) -> None:
        p, cfg, mtu = self.plan, self.config, str(self.config.mtu_bytes)
        r = p.router_ns
        for ns in p.namespaces():
            netops.run(["ip", "netns", "add", ns])
        off_v6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
        netops.sysctl(r, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0",
                         "net.ipv4.conf.default.rp_filter": "0", **off_v6})
        rlines = ["link set lo up"]
        for h in self.hosts():
            netops.ip(r, "link", "add", h.router_if, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
                     "mtu", mtu, "netns", h.netns)
            rlines += [f"addr add {p.gw_ip}/32 dev {h.router_if}", f"link set {h.router_if} up",
                       f"route add {h.ip}/32 dev {h.router_if} src {p.gw_ip}",
                       f"rule add iif {h.router_if} lookup {p.table(h.index)} pref {p.table(h.index)}"]
            for o in self.hosts():
                if o.index != h.index:
                    rlines += self._link_device_lines(h.index, o.index)
                    rlines.append(f"route add {o.ip}/32 {self._via(h.index, o.index)} table {p.table(h.index)}")
            netops.sysctl(h.netns, {
                "net.ipv4.tcp_congestion_control": cfg.congestion_control, "net.ipv4.tcp_no_metrics_save": "1",
                # a migration's data connection idles while the source dumps; restarting from slow start
                # after every idle period would make each round's first seconds measure TCP, not the link
                "net.ipv4.tcp_slow_start_after_idle": "0",
                "net.ipv4.tcp_rmem": f"4096 131072 {TCP_BUFFER_MAX_BYTES}",
                "net.ipv4.tcp_wmem": f"4096 16384 {TCP_BUFFER_MAX_BYTES}",
                "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0", **off_v6})
            netops.ip_batch(h.netns, [
                "link set lo up", "link set eth0 up", f"addr add {h.ip}/32 dev eth0",
                f"route add {p.gw_ip}/32 dev eth0 scope link",
                f"route add default via {p.gw_ip} dev eth0 src {h.ip}"])
        if cfg.mgmt_link:
            mif = p.mgmt_if
            _check_root_routes(cfg.network)
            if Path(f"/sys/class/net/{mif}").exists():
                raise ConfigError(f"interface {mif} already exists in the root namespace; choose another --name")
            netops.ip(None, "link", "add", mif, "type", "veth", "peer", "name", "m0", "netns", r)
            rlines += [f"addr add {p.gw_ip}/32 dev m0", "link set m0 up",
                       f"route add {p.mgmt_ip}/32 dev m0 src {p.gw_ip}"]
            netops.ip_batch(None, [f"addr add {p.mgmt_ip}/32 dev {mif}", f"link set {mif} up",
                                  f"route add {p.gw_ip}/32 dev {mif} scope link"])
            try:
                netops.ip(None, "route", "add", cfg.subnet, "via", p.gw_ip, "dev", mif, "src", p.mgmt_ip)
            except EngineError:
                raise ConfigError(f"subnet {cfg.subnet} is already routed in the root namespace (another "
                                  f"testbed?); set testbed.subnet or mgmt_link = false") from None
        netops.ip_batch(r, rlines)
        pairs = [(a.index, b.index) for a in self.hosts() for b in self.hosts() if a.index != b.index]
        devs = [p.tun(i, j) for i, j in pairs]
        if self.emulator is Emulator.NETEM:
            devs += [f"u{i}x{j}" for i, j in pairs]
        netops.sysctl(r, {f"net.ipv4.conf.{d}.rp_filter": "0" for d in devs})
        for a in self.hosts():
            for b in self.hosts():
                if a.index != b.index:
                    self.apply_rate(p.tun(a.index, b.index), self.link(a.name, b.name))
        bs_ops.build(self)
        if self.emulator is Emulator.TUN:
            self._start_forwarder()
        self._state["status"] = "up"
        self._save()

    def _start_forwarder(self) -> None:
        d = self.state_dir(self.name)
        self._write_forwarder_params()
        log = open(d / "forwarder.log", "ab")
        proc = subprocess.Popen(
            netops.in_ns(self.plan.router_ns, [sys.executable, "-m", "edgemigrate.testbed.forwarder",
                                              str(d / "forwarder.json")]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        log.close()
        self._state["forwarder_pid"] = proc.pid  # nsenter execs the program: same pid
        self._save()
        assert proc.stdout is not None
        deadline = time.monotonic() + FORWARDER_READY_TIMEOUT_S
        line = b""
        while time.monotonic() < deadline and not line:
            line = proc.stdout.readline()
            if proc.poll() is not None and not line:
                break
        proc.stdout.close()
        if line.strip() != b"ready":
            err = (d / "forwarder.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise EngineError(f"link emulator did not start: {err[0] if err else 'no output'}")

    def down(self) -> list[str]:
        """Remove everything this testbed created; returns what was removed (for `status`/logs)."""
        removed: list[str] = []
        d = self.state_dir(self.name)
        pid = self._state.get("forwarder_pid")
        if _forwarder_alive(pid, d):
            _terminate([int(pid)])
            removed.append(f"forwarder pid {pid}")
        for ns in self._state.get("namespaces", self.plan.namespaces()):
            if netops.netns_exists(ns):
                pids = netops.netns_pids(ns)
                if pids:
                    _terminate(pids)
                    removed.append(f"{len(pids)} process(es) in {ns}")
                netops.run(["ip", "netns", "del", ns], check=False)
                removed.append(f"netns {ns}")
        removed += _remove_agent_dirs(self.name)
        for ns in self._state.get("namespaces", self.plan.namespaces()):  # once runc deleted the leaves
            removed += [f"cgroup {p}" for p in remove_host_cgroups(ns)]
        mif = self._state.get("mgmt_if")
        if mif and Path(f"/sys/class/net/{mif}").exists():
            netops.ip(None, "link", "del", mif, check=False)
            removed.append(f"link {mif}")
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            STATE_ROOT.rmdir()
            STATE_ROOT.parent.rmdir()
        return removed


def _remove_agent_dirs(testbed: str) -> list[str]:
    """The default state and image folders of this testbed's agents: containers their runc root still lists
    are deleted first (their processes died with the namespaces), then the folders - else a later testbed of
    the same name would start agents whose journal lists services that no longer exist."""
    removed: list[str] = []
    for kind, root in (("agent state", AGENTS_ROOT / testbed), ("agent images", IMAGES_ROOT / testbed)):
        if not root.is_dir() or root.is_symlink():
            continue
        for runc_root in sorted(root.glob("*/runc")):
            for cid in sorted(p.name for p in runc_root.iterdir() if p.is_dir()):
                netops.run(["runc", "--root", str(runc_root), "delete", "--force", cid], check=False)
                removed.append(f"container {cid} of {runc_root.parent.name}")
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"{kind} {root}")
    return removed


def _root_routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The root namespace's routes (other testbeds, bridges, the LAN) as (network, ``dst dev``) pairs."""
    proc = netops.ip(None, "-j", "route", "show", "table", "all", check=False)
    try:
        routes = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        routes = []
    out = []
    for r in routes:
        dst = r.get("dst", "") if isinstance(r, dict) else ""
        if r.get("type") in ("local", "broadcast") or dst in ("default", ""):
            continue
        try:
            out.append((ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False),
                        f"{dst} dev {r.get('dev', '?')}"))
        except ValueError:
            continue
    return out


def _check_root_routes(net: ipaddress.IPv4Network) -> None:
    """Refuse a subnet that overlaps a route of the root namespace (another testbed, a bridge, the LAN)."""
    for other, where in _root_routes():
        if other.overlaps(net):
            raise ConfigError(f"testbed.subnet {net} overlaps route {where} in the root "
                              f"namespace; choose another testbed.subnet (or mgmt_link = false)")


def free_subnet(first: int = 150, last: int = 249) -> str:
    """The first 10.x.0.0/16 (``first <= x <= last``) that no route of the root namespace overlaps: for test and
    experiment testbeds that must not collide with the ones other processes have up."""
    used = [n for n, _ in _root_routes()]
    for x in range(first, last + 1):
        net = ipaddress.IPv4Network(f"10.{x}.0.0/16")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise ConfigError(f"no free subnet in 10.{first}-{last}.0.0/16: take testbeds down (edgemigrate testbed down)")


def netns_path_of(ns: str) -> Path:
    return netops.netns_path(ns)


def _forwarder_alive(pid: object, state_dir: Path) -> bool:
    """True if ``pid`` is our forwarder (checked by its command line, never just by the number)."""
    if not isinstance(pid, int):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"edgemigrate.testbed.forwarder" in cmd and str(state_dir / "forwarder.json").encode() in cmd


def _terminate(pids: list[int], grace_s: float = 3.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        if alive:
            time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
