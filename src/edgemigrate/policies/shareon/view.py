"""What one ShareOn node knows: itself, its containers and - possibly stale - reports of its neighbours.

Maheshwari et al. 2018, sec. III-C: "Each node tracks its own compute and networking resources, and is aware
of the application latency of each request. These nodes have control plane connectivity to each other and
hence can query the neighboring nodes periodically". A :class:`NodeReport` is one node's answer to such a
query; :class:`NodeView` is everything a node's agent decides from. Nothing here does I/O: the simulator
builds views from its arrays, the real emulation from measurements and answers over the control plane.

A report from a peer is hostile input: :func:`report_from_wire` checks the identifier against the project's
strict pattern and every number for type, finiteness and range before anything uses it, and
:func:`parse_reports` drops (and logs) the answers that fail, so a neighbour that answers garbage is simply
unavailable for this round.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.costs.shareon import Reason

log = logging.getLogger(__name__)

MAX_CONTAINERS = 1_000_000
"""Bound on a reported container count (and on ``incoming_migrations``): larger is garbage, not a node."""
MAX_FLOAT = 1e18
"""Bound on any reported quantity (Hz, bytes, seconds): a finite number beyond it is garbage."""


@dataclass(frozen=True, slots=True)
class NodeReport:
    """One node's state as it answers a neighbour's query (all measured by the node itself).

    ``util_fac`` is the fraction of its processing capacity in use (the paper's utilFac; above 1 while a
    backlog grows); ``alpha_e_s`` its latency factor (``costs.shareon.alpha_from_measurement``);
    ``latency_var_s2`` the moving variance of the latency between its users and it; ``incoming_migrations``
    the migrations heading to it that it knows of (the count Algorithm 2's cost threshold needs);
    ``outgoing_migrations`` the ones it is sending (they share its link, so a node's own count matters when
    it is the source).
    """

    node_id: str
    x_m: float
    y_m: float
    cpu_hz: float
    ram_bytes: float
    n_containers: int
    util_fac: float
    t_p_avg_s: float
    alpha_e_s: float
    latency_var_s2: float = 0.0
    incoming_migrations: int = 0
    outgoing_migrations: int = 0

    def to_wire(self) -> dict[str, object]:
        """A JSON-ready mapping; :func:`report_from_wire` reads it back."""
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = ("node_id", "x_m", "y_m", "cpu_hz", "ram_bytes", "n_containers", "util_fac", "t_p_avg_s",
           "alpha_e_s", "latency_var_s2", "incoming_migrations", "outgoing_migrations")
_COORDS = ("x_m", "y_m")
_NON_NEGATIVE = ("cpu_hz", "ram_bytes", "util_fac", "t_p_avg_s", "alpha_e_s", "latency_var_s2")
_COUNTS = ("n_containers", "incoming_migrations", "outgoing_migrations")
_OPTIONAL = {"outgoing_migrations": 0}
"""Keys added after the first version: a peer that predates them may leave them out."""


def _number(obj: Mapping[str, object], key: str, lo: float) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= MAX_FLOAT:
        raise ValidationError(f"report key '{key}': expected a finite number in [{lo:g}, {MAX_FLOAT:g}], "
                              f"got {v!r:.80}")
    return float(v)


def _count(obj: Mapping[str, object], key: str) -> int:
    v = obj.get(key, _OPTIONAL.get(key))
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_CONTAINERS:
        raise ValidationError(f"report key '{key}': expected an integer in [0, {MAX_CONTAINERS}], got {v!r:.80}")
    return v


def report_from_wire(obj: object) -> NodeReport:
    """A :class:`NodeReport` from a decoded peer message, or a one-line :class:`ValidationError`.

    Every key must be present (but those of ``_OPTIONAL``), no other key is allowed, the id must match ``core.ids.ID_PATTERN`` and every
    number must be finite and in range (coordinates may be negative, nothing else).
    """
    if not isinstance(obj, Mapping):
        raise ValidationError(f"report: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(str(k)[:40] for k in obj if k not in _FIELDS)
    if unknown:
        raise ValidationError(f"report: unknown keys {unknown[:5]}")
    node_id = check_id(obj.get("node_id"), "report key 'node_id'")
    values: dict[str, float | int] = {k: _number(obj, k, -MAX_FLOAT) for k in _COORDS}
    values.update({k: _number(obj, k, 0.0) for k in _NON_NEGATIVE})
    values.update({k: _count(obj, k) for k in _COUNTS})
    return NodeReport(node_id=node_id, **values)  # type: ignore[arg-type]


def parse_reports(answers: Iterable[tuple[str, object]]) -> dict[str, NodeReport]:
    """Validated reports by the id that was queried; a garbage answer, or one claiming another node's id, is
    logged and left out (the neighbour counts as unavailable this round). ``None`` means no answer."""
    out: dict[str, NodeReport] = {}
    for queried, answer in answers:
        if answer is None:
            log.warning("shareon: neighbour %.64s did not answer; unavailable this round", queried)
            continue
        try:
            report = report_from_wire(answer)
        except ValidationError as exc:
            log.warning("shareon: neighbour %.64s answered garbage (%s); unavailable this round", queried, exc)
            continue
        if report.node_id != queried:
            log.warning("shareon: neighbour %.64s answered as %.64s; unavailable this round", queried,
                        report.node_id)
            continue
        out[queried] = report
    return out


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A neighbour as the querying node sees it: its last report, how old that report is, and the inter-edge
    bandwidth from the querying node to it (b_ij, known to the querying node, not reported by the peer)."""

    report: NodeReport
    bandwidth_bps: float
    age_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container on the deciding node, with what the node measured for its user's requests.

    ``x_m``/``y_m`` is the user's last known position; ``demand_hz`` the processing its requests need per
    second (request rate x cycles per request), i.e. what it would add to a destination's load; ``t_net_s`` and
    ``t_proc_s`` the measured network and processing parts of the user's latency; ``migrating`` marks a
    container already on its way (never decided twice).
    """

    container_id: str
    x_m: float
    y_m: float
    size_bytes: float
    demand_hz: float
    t_net_s: float
    t_proc_s: float
    migrating: bool = False

    @property
    def t_total_s(self) -> float:
        return self.t_net_s + self.t_proc_s


@dataclass(frozen=True, slots=True)
class NodeView:
    """Everything one node's agent decides from: its own report, its containers, its neighbours (stale)."""

    now_s: float
    me: NodeReport
    containers: tuple[ContainerState, ...]
    neighbours: tuple[Neighbour, ...]


@dataclass(frozen=True, slots=True)
class MigrationDecision:
    """Move ``container_id`` from ``source_id`` to ``destination_id`` (the output of Algorithm 2)."""

    container_id: str
    source_id: str
    destination_id: str
    reason: Reason
    est_total_s: float
    cost_s: float
    alternatives: tuple[str, ...] = ()
    """The other qualifying neighbours, best first: where the source asks next if ``destination_id`` refuses
    admission (``costs.shareon.admits``)."""
