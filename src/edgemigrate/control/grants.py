"""Standing, scoped migration grants: what a node may migrate by itself, and what a neighbour accepts.

ShareOn (Maheshwari et al. 2018, sec. III-C) has no central controller at decision time: each node queries its
neighbours and migrates its own containers. A host here still does only what the controller authorised, so
the operator (the holder of the ``client`` certificate) gives the nodes a *standing* grant ahead of time,
through the same mechanism as the one-time tokens of :mod:`.tokens`: a random 64-hex token bound to a policy
(``shareon``), a source node, the neighbours it may move services to, the services it may move, and an
expiry. ``GRANT`` goes to the source and to every listed neighbour; each keeps only the token's hash.

* The source's agent starts a migration its own node loop asks for (``MIGRATE`` from the host's own
  certificate, carrying the token) only if a live grant lists that service and that destination.
* A neighbour's agent admits a ``HELLO`` carrying the token only from the grant's source, for a listed
  service, before expiry - the same place and moment as a one-time token (before anything is written).
* A neighbour's agent answers the source's resource queries (``REPORT``), and the source its neighbours', only
  while a grant links them: a certificate of the CA alone does not make a host a neighbour.

**Admission** (ours, against herding - ``docs/shareon.md``): a grant may carry ``admit_below``, the utilisation
a neighbour must stay below after taking a service (Algorithm 1's High boundary as a load). Then the source
first asks the neighbour to admit the move (``REPORT`` with ``admit``: token, service, the service's measured
demand in cores); the neighbour checks its measured CPU use plus the reservations it already gave plus this
demand against the bound (the load half of ``costs.shareon.admits``), and if it admits, keeps a reservation.
Its ``HELLO`` for that service from that source is accepted only while that reservation stands; several
sources that chose the same idle neighbour from the same stale report are thus admitted only as far as it has
room, and the others go on to their next candidate.

The reservation is **released when the migration is over**: by the neighbour itself when its incoming
session for that service from that source ends, and by the source's report of the outcome (``REPORT`` with
``release``: token, service, ``completed``/``failed``), which also covers a migration that failed before it
reached the neighbour (a source-side dump error, a refused or lost HELLO). A failed move's reservation goes at
once (nothing came); an arrived service's stays until the host's load readings hold it: the meter reports the
use between two readings, so the first reading after the arrival sees it only in part and the second in full
(``MEASURED_AFTER``); releasing at arrival would let the next source be admitted against a load that does not
yet show the service. Only the grant's source may release
its own reservations. ``RESERVATION_TTL_S`` stays as the safety net for a report that is lost: a reservation
nobody released lapses then, so a dead source cannot hold a neighbour's room for ever.

Unlike a one-time token a grant is not burned by use (the node may migrate several times while it lasts);
it is bounded by its expiry (at most :data:`MAX_GRANT_TTL_S`) and by its scope. Hashes are in memory only: a
restarted agent forgets its grants and the operator grants again.
"""

from __future__ import annotations

import enum
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.control import client
from edgemigrate.control.client import AgentDirectory
from edgemigrate.control.reports import report_exchange
from edgemigrate.control.tokens import new_token
from edgemigrate.core.ids import check_id
from edgemigrate.engine.protocol.codec import MsgType, ProtocolError
from edgemigrate.engine.transport import tls
from edgemigrate.engine.transport.streams import connect

_TOKEN_RE = re.compile(r"[0-9a-f]{64}")
MAX_GRANT_TTL_S = 24 * 3600.0  # an experiment or a shift; the operator renews it
MAX_NEIGHBOURS = 64
MAX_SERVICES = 256
MAX_GRANTS = 16  # grants one host holds at once (expired ones are purged first)
RESERVATION_TTL_S = 30.0  # safety net only: a transfer plus a few report periods, if no release ever comes
MAX_RESERVATIONS = 64
MAX_DEMAND_CORES = 1024.0
RELEASE_OUTCOMES = ("completed", "failed")
MEASURED_AFTER = 2  # load readings after an arrival until the meter's window holds it in full


class GrantPolicy(enum.Enum):
    SHAREON = "shareon"  # Maheshwari et al. 2018, Algorithms 1-2 decide on the node


class GrantRole(enum.Enum):
    SOURCE = "source"  # this host may migrate the listed services to the neighbours
    NEIGHBOUR = "neighbour"  # this host accepts them from the source


@dataclass(frozen=True, slots=True)
class StandingGrant:
    policy: GrantPolicy
    source: str
    neighbours: tuple[str, ...]
    services: tuple[str, ...]
    expires_at_s: float  # on the holder's monotonic clock
    admit_below: float | None = None  # utilisation a neighbour stays below when it admits (module docstring)

    def peers_of(self, host: str) -> tuple[str, ...]:
        """The hosts ``host`` is linked to by this grant (the source sees its neighbours, a neighbour the source)."""
        return self.neighbours if host == self.source else (self.source,)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ids(value: Any, key: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ProtocolError(f"GRANT.{key}: expected a non-empty list")
    if len(value) > limit:
        raise ProtocolError(f"GRANT.{key}: {len(value)} entries, at most {limit}")
    out = []
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise ProtocolError(f"GRANT.{key}[{i}]: expected a string")
        try:
            out.append(check_id(v, f"GRANT.{key}[{i}]"))
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
    if len(set(out)) != len(out):
        raise ProtocolError(f"GRANT.{key}: duplicate entries")
    return tuple(out)


class GrantBook:
    """The standing grants one agent holds. ``clock`` is injectable so expiry is tested without sleeping."""

    def __init__(self, host: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.clock = clock
        self._grants: dict[str, tuple[GrantRole, StandingGrant]] = {}
        # (source, service) -> (demand as a fraction of this host's capacity, expiry): admitted, not yet measured
        self._reserved: dict[tuple[str, str], tuple[float, float]] = {}
        # (source, service) -> the report count when it arrived: the meter's use is between two readings, so
        # the reading after the arrival covers it only in part; the one after that in full (MEASURED_AFTER)
        self._arrived: dict[tuple[str, str], int] = {}
        self._readings = 0

    def __len__(self) -> int:
        return len(self._live())

    def _live(self) -> dict[str, tuple[GrantRole, StandingGrant]]:
        now = self.clock()
        self._grants = {d: g for d, g in self._grants.items() if g[1].expires_at_s > now}
        return self._grants

    def add(self, body: dict[str, Any]) -> tuple[GrantRole, StandingGrant]:
        """Record a ``GRANT`` (only ever called for the ``client`` certificate); every field checked here."""
        token = body["token"]
        if not _TOKEN_RE.fullmatch(token):
            raise ProtocolError("GRANT.token: expected 64 lowercase hex digits")
        try:
            policy = GrantPolicy(body["policy"])
        except ValueError:
            raise ProtocolError(f"GRANT.policy: {str(body['policy'])[:40]!r} is not one of "
                                f"{'/'.join(p.value for p in GrantPolicy)}") from None
        try:
            source = check_id(body["source"], "GRANT.source")
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        neighbours = _ids(body["neighbours"], "neighbours", MAX_NEIGHBOURS)
        services = _ids(body["services"], "services", MAX_SERVICES)
        if source in neighbours:
            raise ProtocolError(f"GRANT: the source {source} is listed as its own neighbour")
        ttl_s = float(body["ttl_s"])
        if not 0 < ttl_s <= MAX_GRANT_TTL_S:
            raise ProtocolError(f"GRANT.ttl_s: {ttl_s} outside (0, {MAX_GRANT_TTL_S:.0f}]")
        if self.host == source:
            role = GrantRole.SOURCE
        elif self.host in neighbours:
            role = GrantRole.NEIGHBOUR
        else:
            raise ProtocolError(f"GRANT for source {source} and neighbours {', '.join(neighbours)} sent to {self.host}")
        live = self._live()
        if len(live) >= MAX_GRANTS and _digest(token) not in live:
            raise ProtocolError(f"{self.host} already holds {MAX_GRANTS} grants")
        admit_below = body.get("admit_below")
        if admit_below is not None and not (isinstance(admit_below, (int, float))
                                            and not isinstance(admit_below, bool) and 0 < admit_below <= 1):
            raise ProtocolError(f"GRANT.admit_below: {str(admit_below)[:40]} outside (0, 1]")
        grant = StandingGrant(policy, source, neighbours, services, self.clock() + ttl_s,
                              None if admit_below is None else float(admit_below))
        live[_digest(token)] = (role, grant)
        return role, grant

    def _find(self, token: str, role: GrantRole, what: str) -> StandingGrant:
        entry = self._grants.get(_digest(token)) if _TOKEN_RE.fullmatch(token) else None
        if entry is None or entry[0] is not role:
            raise ProtocolError(f"{what} was not authorised (no standing grant for this token on {self.host})")
        if self.clock() >= entry[1].expires_at_s:
            raise ProtocolError(f"{what}: its standing grant expired")
        return entry[1]

    def outgoing(self, token: str, service: str, to_host: str) -> StandingGrant:
        """The grant under which this (source) host may migrate ``service`` to ``to_host``, or raise."""
        what = f"migration of {service} from {self.host} to {to_host}"
        grant = self._find(token, GrantRole.SOURCE, what)
        if service not in grant.services:
            raise ProtocolError(f"{what}: the grant does not list {service} (it lists {', '.join(grant.services)})")
        if to_host not in grant.neighbours:
            raise ProtocolError(f"{what}: {to_host} is not a neighbour of the grant "
                                f"(it lists {', '.join(grant.neighbours)})")
        return grant

    def incoming(self, token: str, service: str, src_host: str) -> StandingGrant:
        """The grant under which this (neighbour) host accepts ``service`` from ``src_host`` (the verified
        peer), or raise."""
        what = f"migration of {service} from {src_host} to {self.host}"
        grant = self._find(token, GrantRole.NEIGHBOUR, what)
        if grant.source != src_host:
            raise ProtocolError(f"{what}: the grant is for source {grant.source}")
        if service not in grant.services:
            raise ProtocolError(f"{what}: the grant does not list {service}")
        if grant.admit_below is not None and (src_host, service) not in self._live_reservations():
            raise ProtocolError(f"{what}: not admitted (no live reservation: the source must ask REPORT admit first)")
        return grant

    def _live_reservations(self) -> dict[tuple[str, str], tuple[float, float]]:
        now = self.clock()
        measured = {k for k, at in self._arrived.items() if self._readings - at >= MEASURED_AFTER}
        self._reserved = {k: v for k, v in self._reserved.items() if v[1] > now and k not in measured}
        self._arrived = {k: at for k, at in self._arrived.items() if k in self._reserved}
        return self._reserved

    def measured(self) -> None:
        """The host took a load reading (a report): reservations of services that arrived before the previous
        reading are now in the measured use and go."""
        self._readings += 1

    def reserved_fraction(self) -> float:
        """The load this host has promised to migrations it admitted and does not yet measure."""
        return sum(f for f, _ in self._live_reservations().values())

    def admit(self, body: Any, src_host: str | None, used_fraction: float, cpu_cores: float) -> dict[str, Any]:
        """A source's request (``REPORT.admit``) to move a service here: admitted (and reserved) only under a
        live grant for that source and service and, if the grant sets ``admit_below``, only if this host's
        measured use plus its reservations plus the service's demand stays below it. Every field is the
        peer's: checked here. Returns the reply's ``admission`` body; raises for an unauthorised request."""
        token, service, src_host, demand = self._source_request(body, "admit", "demand_cores", src_host)
        if isinstance(demand, bool) or not isinstance(demand, (int, float)) or not 0 <= demand <= MAX_DEMAND_CORES:
            raise ProtocolError(f"REPORT.admit.demand_cores: {str(demand)[:40]} outside [0, {MAX_DEMAND_CORES:g}]")
        grant = self._source_grant(token, src_host, service, f"admission of {service} from {src_host} to {self.host}")
        live = self._live_reservations()
        live.pop((src_host, service), None)  # asking again replaces this service's own reservation
        frac = float(demand) / max(cpu_cores, 1e-9)
        reserved = sum(f for f, _ in live.values())
        # the load half of costs.shareon.admits (a host measures only its utilisation); NaN refuses. Written
        # out here: control sits below the decision code and imports nothing of it
        ok = grant.admit_below is None or bool(used_fraction + reserved + frac < grant.admit_below)
        if ok and len(live) >= MAX_RESERVATIONS:
            ok = False
        if ok:
            live[(src_host, service)] = (frac, self.clock() + RESERVATION_TTL_S)
        return {"admitted": ok, "used_fraction": float(used_fraction), "reserved_fraction": float(reserved),
                "demand_fraction": frac, "admit_below": grant.admit_below}

    @staticmethod
    def _source_request(body: Any, kind: str, extra: str, src_host: str | None) -> tuple[str, str, str, Any]:
        """The fields of a granted source's ``REPORT.<kind>`` (token, service, ``extra``), checked: exactly
        those keys, strings, the service an identifier, a verified peer. Returns them with the peer."""
        if not isinstance(body, dict) or set(body) != {"token", "service", extra}:
            raise ProtocolError(f"REPORT.{kind}: expected exactly token, service, {extra}")
        token, service = body["token"], body["service"]
        if not isinstance(token, str) or not isinstance(service, str):
            raise ProtocolError(f"REPORT.{kind}: token and service must be strings")
        try:
            service = check_id(service, f"REPORT.{kind}.service")
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if src_host is None:
            raise ProtocolError(f"REPORT.{kind} without a peer certificate")
        return token, service, src_host, body[extra]

    def _source_grant(self, token: str, src_host: str, service: str, what: str) -> StandingGrant:
        """The live neighbour grant ``token`` names, refused unless its source is ``src_host`` and it lists
        ``service``."""
        grant = self._find(token, GrantRole.NEIGHBOUR, what)
        if grant.source != src_host or service not in grant.services:
            raise ProtocolError(f"{what}: the grant is for source {grant.source} and {', '.join(grant.services)}")
        return grant

    def settle(self, src_host: str, service: str, *, arrived: bool) -> bool:
        """This host's own incoming session of ``service`` from ``src_host`` ended. Failed: its reservation goes.
        Arrived: it stays until the load readings include the service (:meth:`measured`). Returns whether
        there was one."""
        return self._end((src_host, service), arrived)

    def _end(self, key: tuple[str, str], arrived: bool) -> bool:
        if key not in self._live_reservations():
            return False
        if not arrived:
            del self._reserved[key]
            self._arrived.pop(key, None)
            return True
        if key in self._arrived:  # the other of the two reports of one arrival (session end, source's REPORT)
            return False
        self._arrived[key] = self._readings
        return True

    def release(self, body: Any, src_host: str | None) -> bool:
        """The source's report (``REPORT.release``) that a migration it was admitted for is over: its
        reservation goes. Only under a live grant whose source is the verified peer, for a listed service;
        every field is the peer's, checked here. Returns whether a reservation was released (False: none was
        left - the session's own end or the expiry came first)."""
        token, service, src_host, outcome = self._source_request(body, "release", "outcome", src_host)
        if outcome not in RELEASE_OUTCOMES:
            raise ProtocolError(f"REPORT.release.outcome: {str(outcome)[:40]!r} is not one of "
                                f"{'/'.join(RELEASE_OUTCOMES)}")
        self._source_grant(token, src_host, service, f"release of {service} from {src_host} on {self.host}")
        return self._end((src_host, service), outcome == "completed")

    def linked(self, peer: str | None) -> bool:
        """Whether a live grant links this host and ``peer`` (so ``peer`` may ask for this host's report)."""
        return peer is not None and any(peer in g.peers_of(self.host) for _, g in self._live().values())


def grant_body(token: str, source: str, neighbours: Sequence[str], services: Sequence[str], ttl_s: float,
               policy: GrantPolicy = GrantPolicy.SHAREON, admit_below: float | None = None) -> dict[str, Any]:
    """The ``GRANT`` message body the operator sends to the source and to each neighbour."""
    body = {"token": token, "policy": policy.value, "source": source, "neighbours": list(neighbours),
            "services": list(services), "ttl_s": float(ttl_s)}
    return body if admit_below is None else body | {"admit_below": float(admit_below)}


# ------------------------------------------------------------------------------------------ client side
async def report_outcome(pki_dir: Path, host: str, to_host: str, to_addr: tuple[str, int], token: str,
                         service: str, completed: bool, timeout_s: float = 10.0) -> bool:
    """A node's loop tells neighbour ``to_host`` (with ``host``'s own certificate) that the migration of
    ``service`` it admitted is over, so its reservation goes now rather than at its expiry; returns whether
    the neighbour still held one. Raises a ProtocolError / EngineError when refused, unreachable or garbage
    (the caller logs it: the expiry is the safety net)."""
    reply = await report_exchange(tls.client_context(pki_dir, host), to_host, to_addr, timeout_s,
                                  "answer to the release", release={"token": token, "service": service,
                                                                    "outcome": "completed" if completed else "failed"})
    released = reply.body.get("released")
    if not isinstance(released, bool):
        raise ProtocolError(f"REPORT_REPLY from {to_host}: no release answer")
    return released


async def grant(d: AgentDirectory, source: str, neighbours: Sequence[str], services: Sequence[str], ttl_s: float,
                policy: GrantPolicy = GrantPolicy.SHAREON, admit_below: float | None = None) -> str:
    """The operator grants ``source`` a standing authorisation (sent to it and to every neighbour); returns
    the token, which only the source's node loop is given."""
    token = new_token()
    body = grant_body(token, source, neighbours, services, ttl_s, policy, admit_below)
    for host in (source, *neighbours):
        await client._request(d, host, MsgType.GRANT, **body)  # noqa: SLF001 (the package's own helper)
    return token


async def node_migrate(pki_dir: Path, host: str, addr: tuple[str, int], service: str, to_host: str,
                       to_addr: tuple[str, int], token: str, strategy: str = "precopy",
                       on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """A node's own loop asks its agent (``host`` at ``addr``, with the host's own certificate from
    ``pki_dir``) to migrate ``service`` to ``to_host`` under the standing grant ``token``."""
    conn = await connect(addr[0], addr[1], tls.client_context(pki_dir, host), host)
    body = {"service": service, "to_host": to_host, "to_addr": f"{to_addr[0]}:{to_addr[1]}", "strategy": strategy,
            "token": token}
    return await client.run_migrate(conn, host, body, on_progress)


async def ask_admission(pki_dir: Path, host: str, to_host: str, to_addr: tuple[str, int], token: str, service: str,
                        demand_cores: float, timeout_s: float = 10.0) -> dict[str, Any]:
    """A node's loop asks neighbour ``to_host`` (with ``host``'s own certificate) to admit ``service`` with
    its measured ``demand_cores``; returns the neighbour's ``admission`` body (``admitted`` checked to be a
    bool). Raises a ProtocolError / EngineError when refused outright, unreachable or answering garbage."""
    demand = float(min(max(demand_cores, 0.0), MAX_DEMAND_CORES))
    reply = await report_exchange(tls.client_context(pki_dir, host), to_host, to_addr, timeout_s,
                                  "admission answer", admit={"token": token, "service": service,
                                                             "demand_cores": demand})
    adm = reply.body.get("admission")
    if not isinstance(adm, dict) or not isinstance(adm.get("admitted"), bool):
        raise ProtocolError(f"REPORT_REPLY from {to_host}: no admission answer")
    return adm
