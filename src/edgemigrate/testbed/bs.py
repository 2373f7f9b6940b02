"""Base stations on the testbed: a mobile user's traffic enters through its serving BS, and a handover
switches that ingress to another BS after a radio outage.

Why namespaces and not only routes in the router: a BS is a separate hop with its own links, so the
per-BS byte counters (the radio side ``a<c>`` in the BS, the shaped paths ``b<k>u<j>``/``b<k>d<j>`` in the
router) show which BS carried a packet, and a handover is observable as a change of those counters. Each BS
has its own shaped path to every edge and cloud host (``tbf`` rate + delay/loss by the testbed's emulator,
exactly like a host-to-host link), so the BS-server RTT and bandwidth of Ngo et al. 2020, eq. 4, are real.

A mobile user (MU) is identified by its client host and sends from the client's MU address (on the client's
``lo``). Only traffic from that address uses the BS: a policy rule in the client (``from <mu ip> lookup
3000``) sends it via the serving BS; the servers' replies to the MU address go through the router's shaped
path server -> serving BS. Everything else of the client (its agent, ssh-like tooling) keeps the direct link.

The outage is lossless, as a cellular handover is: 3GPP TS 36.300, sec. 10.1.2.3 (X2 data forwarding) has the
source BS buffer the user's downlink packets during the handover and forward them to the target, and the user
keeps its uplink packets until it is attached again. Here, while the MU of the old BS is in its outage, the
user-space link emulator (``testbed/forwarder.py``) holds every packet on the old BS's shaped paths (both
directions, bounded per path) and releases them when the handover completes, after the routes point at the new
BS: the held downlink then reaches the MU through the new BS, the held uplink continues on the old BS's path
(the one difference from X2: those few packets pay the old path's delay, not the new one's). A packet capture
of the facedetect run showed why it matters: with the outage dropping packets, a reply the restored service
sent into the outage came 1 s later, when the restored socket's first retransmission timer expired (a socket
restored by CRIU starts from the initial 1 s RTO), and a request sent into the outage waited for the MU's
backed-off retransmission; both planners lost 0.5-1 s per move to TCP, not to the radio.

Holding needs the user-space emulator (``emulator = "tun"``) and an old BS that serves no other MU (the hold is
per path, not per user); otherwise the outage blackholes the MU at its old BS in both directions (an
``ip rule ... blackhole`` for what the MU sends, a blackhole route for what reaches the BS for it), as Ngo et
al. 2020 emulate theirs with ``iptables`` path rules and a 500 ms handover time (their sec. V-A).
:func:`outage_mode` says which one a handover uses.

Imports only :mod:`edgemigrate.core` and the testbed's own modules; :class:`~edgemigrate.testbed.Testbed` is
only an annotation here (it calls these functions, never the other way round).
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import edgemigrate.testbed.netops as netops
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.core.registry import suggest
from edgemigrate.testbed.config import Emulator, HostKind, LinkSpec
from edgemigrate.testbed.plan import MU_TABLE, BsInfo, HostInfo, Plan

if TYPE_CHECKING:
    from edgemigrate.testbed.testbed import Testbed

HANDOVER_OUTAGE_S = 0.5  # Ngo et al. 2020, sec. V-A: "the handover time of the virtual MU is set to 500ms"
MAX_OUTAGE_S = 60.0
OUTAGE_RULE_PREF = 100  # before the main table in the BS
# the air link's rate before the MU first sets it from its RSSI (``set_air_rates``): 802.11n's fastest MCS of
# the planner's B(RSSI) table (costs/handover.py, 20 MHz, one stream), so an unset link is never the bottleneck
AIR_INITIAL_RATE_BPS = 65e6
AIR_MIN_RATE_BPS = 1e5  # tbf needs a rate > 0; the planner's B(RSSI) is 0 only beyond every cell here
AIR_BURST_S = 0.004  # as the testbed's wired paths (testbed.TBF_BURST_S): 4 ms of the rate, >= 2 MTUs
AIR_QUEUE_S = 0.05  # queue limit: 50 ms of the rate (a Wi-Fi AP's queue), at least 4 MTUs
HOLD = "hold"  # the outage modes (module docstring)
BLACKHOLE = "blackhole"


def link_key(bs: str, host: str) -> str:
    return f"{bs}|{host}"


def _servers(plan: Plan) -> list[HostInfo]:
    return [h for h in plan.hosts() if h.kind is not HostKind.CLIENT]


def _clients(plan: Plan) -> list[HostInfo]:
    return [h for h in plan.hosts() if h.kind is HostKind.CLIENT]


def initial_state(plan: Plan) -> dict[str, Any]:
    """State entries of a new testbed: the BS paths and each MU's serving BS (the first BS)."""
    cfg = plan.config
    specs = {h.name: h for h in cfg.hosts()}
    links = {}
    for b in plan.base_stations():
        for h in _servers(plan):
            s = cfg.bs_link(b.name, specs[h.name])
            links[link_key(b.name, h.name)] = {"rate_mbit": s.rate_mbit, "rtt_ms": s.rtt_ms, "loss": s.loss}
    first = plan.base_stations()[0].name if plan.base_stations() else None
    mus = {c.name: {"bs": first, "outage": False} for c in _clients(plan)} if first else {}
    return {"bs_links": links, "mu": mus}


def _mu(tb: Testbed, client: str) -> dict[str, Any]:
    mus = tb._state.get("mu", {})
    if client not in mus:
        hint = suggest(client, mus) if mus else " (the testbed has no base stations)"
        raise ConfigError(f"testbed '{tb.name}' has no mobile user on host '{client}'{hint}")
    return mus[client]


def mu_ip(tb: Testbed, client: str) -> str:
    _mu(tb, client)
    return tb.plan.mu_ip(tb.host(client))


def serving(tb: Testbed, client: str) -> str:
    return str(_mu(tb, client)["bs"])


def _spec(tb: Testbed, b: BsInfo, h: HostInfo) -> LinkSpec:
    return LinkSpec(**tb._state["bs_links"][link_key(b.name, h.name)])


def _mac(direction: int, b: BsInfo, j: int) -> str:
    return f"02:ed:01:{direction:02x}:{b.index:02x}:{j:02x}"


def forwarder_devices(tb: Testbed) -> dict[str, dict[str, float]]:
    """The user-space emulator's parameters of every BS path device (one-way delay, loss, and the hold of a BS
whose MU is in a lossless handover outage)."""
    held = {m["bs"] for m in tb._state.get("mu", {}).values() if m.get("outage") == HOLD}
    out = {}
    for b in tb.base_stations():
        for h in _servers(tb.plan):
            spec = _spec(tb, b, h)
            for dev in (b.uplink(h.index), b.downlink(h.index)):
                out[dev] = {"delay_s": spec.one_way_delay_s, "loss": spec.loss} | ({"hold": True}
                                                                                   if b.name in held else {})
    return out


def build(tb: Testbed) -> None:
    """Create the BS namespaces' links, the shaped BS paths and each MU's routes (after the host links)."""
    p, mtu = tb.plan, str(tb.config.mtu_bytes)
    bss = tb.base_stations()
    if not bss:
        return
    r, gw = p.router_ns, p.gw_ip
    rlines: list[str] = []
    devs: list[str] = []
    for b in bss:
        netops.sysctl(b.netns, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0",
                                "net.ipv4.conf.default.rp_filter": "0",
                                "net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
        netops.ip(r, "link", "add", b.router_if, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu,
                  "netns", b.netns)
        rlines += [f"addr add {gw}/32 dev {b.router_if}", f"link set {b.router_if} up",
                   f"route add {b.ip}/32 dev {b.router_if} src {gw}",
                   f"rule add iif {b.router_if} lookup {b.table} pref {b.table}"]
        devs.append(b.router_if)
        for h in _servers(p):
            up, down = b.uplink(h.index), b.downlink(h.index)
            rlines += tb.device_lines(up, f"c{b.index}u{h.index}", _mac(1, b, h.index))
            rlines += tb.device_lines(down, f"c{b.index}d{h.index}", _mac(2, b, h.index))
            rlines.append(f"route add {h.ip}/32 {tb.via_device(up)} table {b.table}")
            devs += [up, down]
            if tb.emulator is Emulator.NETEM:
                devs += [f"c{b.index}u{h.index}", f"c{b.index}d{h.index}"]
        blines = ["link set lo up", "link set eth0 up", f"addr add {b.ip}/32 dev eth0",
                  f"route add {gw}/32 dev eth0 scope link", f"route add default via {gw} dev eth0 src {b.ip}"]
        for c in _clients(p):
            w, a = p.air_if(b, c)
            netops.ip(c.netns, "link", "add", w, "mtu", mtu, "type", "veth", "peer", "name", a, "mtu", mtu,
                      "netns", b.netns)
            netops.ip(c.netns, "link", "set", w, "up")
            blines += [f"link set {a} up", f"route add {p.mu_ip(c)}/32 dev {a} src {b.ip}"]
        netops.ip_batch(b.netns, blines)
        for c in _clients(p):
            _air_qdisc(tb, b, c, "add", AIR_INITIAL_RATE_BPS)
    netops.ip_batch(r, rlines)
    netops.sysctl(r, {f"net.ipv4.conf.{d}.rp_filter": "0" for d in devs})
    for b in bss:
        for h in _servers(p):
            spec = _spec(tb, b, h)
            tb.apply_rate(b.uplink(h.index), spec)
            tb.apply_rate(b.downlink(h.index), spec)
    for c in _clients(p):
        ip = p.mu_ip(c)
        netops.ip_batch(c.netns, [f"addr add {ip}/32 dev lo", f"rule add from {ip} lookup {MU_TABLE} pref {MU_TABLE}"])
        _route_mu(tb, c, tb.bs(serving(tb, c.name)))


def air_tbf_args(rate_bps: float, mtu_bytes: int) -> list[str]:
    """``tc`` arguments of the air link's ``tbf`` at ``rate_bps`` (B(RSSI) of Ngo et al. 2020, eq. 4)."""
    rate = max(float(rate_bps), AIR_MIN_RATE_BPS)
    burst = max(int(rate / 8.0 * AIR_BURST_S), 2 * mtu_bytes + 128)
    limit = max(int(rate / 8.0 * AIR_QUEUE_S), 4 * mtu_bytes)
    return ["tbf", "rate", f"{int(rate)}bit", "burst", str(burst), "limit", str(limit)]


def _air_qdisc(tb: Testbed, b: BsInfo, c: HostInfo, verb: str, rate_bps: float) -> None:
    """``verb`` (add/change) the tbf of both directions of ``c``'s radio link to ``b``: the client's end
    ``w<k>`` (uplink) and the BS's end ``a<c>`` (downlink)."""
    w, a = tb.plan.air_if(b, c)
    args = air_tbf_args(rate_bps, tb.config.mtu_bytes)
    netops.tc(c.netns, "qdisc", verb, "dev", w, "root", "handle", "1:", *args)
    netops.tc(b.netns, "qdisc", verb, "dev", a, "root", "handle", "1:", *args)


def set_air_rates(tb: Testbed, client: str, rates_bps: dict[str, float]) -> None:
    """Set the rate of ``client``'s radio link to each named BS (B(RSSI) of eq. 4 for the MU's RSSI of that
    BS). ``tc qdisc change`` keeps the queue: packets on the link are not dropped by a rate change. Touches no
    state file (the MU calls it as it moves; its run log records the rates)."""
    c = tb.host(client)
    _mu(tb, client)
    for name, rate in rates_bps.items():
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= rate <= 1e12:
            raise ConfigError(f"air link rate of {client} to {name}: expected bits/s in [0, 1e12], got {rate!r}")
        _air_qdisc(tb, tb.bs(name), c, "change", rate)


def air_rate_bps(tb: Testbed, client: str, bs_name: str, *, up: bool = True) -> float:
    """The rate ``tc`` has configured on ``client``'s radio link to ``bs_name`` (uplink: the client's end)."""
    c, b = tb.host(client), tb.bs(bs_name)
    w, a = tb.plan.air_if(b, c)
    out = netops.tc(c.netns if up else b.netns, "-j", "qdisc", "show", "dev", w if up else a)
    try:
        qd = next(q for q in json.loads(out.stdout) if q.get("kind") == "tbf")
        return float(qd["options"]["rate"]) * 8.0
    except (ValueError, KeyError, StopIteration, TypeError) as exc:
        raise EngineError(f"cannot read the air link rate of {client} -> {bs_name}: {exc}") from None


def _route_mu(tb: Testbed, c: HostInfo, b: BsInfo) -> None:
    """Point ``c``'s MU uplink (in the client) and every server's route back (in the router) at ``b``."""
    p, ip = tb.plan, tb.plan.mu_ip(c)
    w, _ = p.air_if(b, c)
    netops.ip(c.netns, "route", "replace", "default", "via", b.ip, "dev", w, "onlink", "src", ip,
              "table", str(MU_TABLE))
    lines = [f"route replace {ip}/32 via {b.ip} dev {b.router_if} onlink src {p.gw_ip}"]
    lines += [f"route replace {ip}/32 {tb.via_device(b.downlink(h.index))} table {p.table(h.index)}"
              for h in _servers(p)]
    netops.ip_batch(p.router_ns, lines)


def service_route_lines(tb: Testbed, ip: str, h: HostInfo) -> list[str]:
    """Router lines sending a service IP that now lives on ``h`` from every BS over its path to ``h``."""
    if h.kind is HostKind.CLIENT:  # a BS has no shaped path to a client; drop any stale route
        return [f"route del {ip}/32 table {b.table}" for b in tb.base_stations()]
    return [f"route replace {ip}/32 {tb.via_device(b.uplink(h.index))} table {b.table}"
            for b in tb.base_stations()]


def set_link(tb: Testbed, bs_name: str, host: str, *, rate_mbit: float | None, rtt_ms: float | None,
             loss: float | None) -> LinkSpec:
    """Change one BS path (caller holds the testbed lock and saves)."""
    b, h = tb.bs(bs_name), tb.host(host)
    if h.kind is HostKind.CLIENT:
        raise ConfigError(f"set_bs_link: '{host}' is a client; base stations have paths to edge and cloud hosts")
    old = _spec(tb, b, h)
    changes = {k: float(v) for k, v in (("rate_mbit", rate_mbit), ("rtt_ms", rtt_ms), ("loss", loss))
               if v is not None}
    new = LinkSpec(**{"rate_mbit": old.rate_mbit, "rtt_ms": old.rtt_ms, "loss": old.loss, **changes})
    if (new.rtt_ms > 0 or new.loss > 0) and tb.emulator is Emulator.NETEM and not tb._state.get("netem_available"):
        raise EngineError("this kernel has no sch_netem: cannot delay/drop packets with emulator 'netem' "
                          "(use emulator = \"tun\")")
    tb.apply_rate(b.uplink(h.index), new)
    tb.apply_rate(b.downlink(h.index), new)
    tb._state["bs_links"][link_key(b.name, h.name)] = {"rate_mbit": new.rate_mbit, "rtt_ms": new.rtt_ms,
                                                        "loss": new.loss}
    return new


def tx_packets(tb: Testbed, bs_name: str, host: str, *, up: bool) -> int:
    b, h = tb.bs(bs_name), tb.host(host)
    if h.kind is HostKind.CLIENT:
        raise ConfigError(f"'{host}' is a client; base stations have paths to edge and cloud hosts")
    dev = b.uplink(h.index) if up else b.downlink(h.index)
    out = netops.ip(tb.plan.router_ns, "-j", "-s", "link", "show", "dev", dev)
    try:
        return int(json.loads(out.stdout)[0]["stats64"]["tx"]["packets"])
    except (ValueError, KeyError, IndexError) as exc:
        raise EngineError(f"cannot read the packet counter of {bs_name} -> {host}: {exc}") from None


def outage_mode(tb: Testbed, client: str) -> str:
    """How a handover of ``client``'s MU would cut its radio now: ``hold`` (lossless) or ``blackhole``."""
    mu = _mu(tb, client)
    others = [m for c, m in tb._state.get("mu", {}).items() if c != client and m.get("bs") == mu["bs"]]
    return HOLD if tb.emulator is Emulator.TUN and not others else BLACKHOLE


def _update_forwarder(tb: Testbed) -> None:
    tb._write_forwarder_params()
    tb._signal_forwarder(signal.SIGHUP)


def begin_outage(tb: Testbed, client: str) -> None:
    """Cut the MU's radio at its serving BS, both directions: hold its packets (lossless) or blackhole them
    (module docstring; caller holds the lock and saves)."""
    mu = _mu(tb, client)
    if mu.get("outage"):
        raise ConfigError(f"mobile user on '{client}' is already in a handover")
    mode = outage_mode(tb, client)
    if mode == HOLD:
        mu["outage"] = HOLD
        _update_forwarder(tb)
        return
    c, b = tb.host(client), tb.bs(mu["bs"])
    ip, (_, a) = tb.plan.mu_ip(c), tb.plan.air_if(b, c)
    netops.ip_batch(b.netns, [f"rule add from {ip} iif {a} blackhole pref {OUTAGE_RULE_PREF}",
                              f"route replace blackhole {ip}/32"])
    mu["outage"] = BLACKHOLE


def switch(tb: Testbed, client: str, to_bs: str) -> None:
    """Route the MU via ``to_bs``, then release what the old BS held or lift its blackhole (caller holds the
    lock and saves). The routes change first, so that held downlink packets leave towards the new BS."""
    mu = _mu(tb, client)
    c, new = tb.host(client), tb.bs(to_bs)
    old = tb.bs(mu["bs"])
    _route_mu(tb, c, new)
    ip, (_, a) = tb.plan.mu_ip(c), tb.plan.air_if(old, c)
    outage = mu.get("outage")
    mu["bs"], mu["outage"] = new.name, False
    if outage == HOLD:
        _update_forwarder(tb)
    elif outage:  # BLACKHOLE, or True in a state file written before the modes existed
        netops.ip_batch(old.netns, [f"rule del pref {OUTAGE_RULE_PREF}", f"route replace {ip}/32 dev {a} src {old.ip}"],
                        force=True)
