"""Mobile-Kube's cost model (Ghafouri et al. 2022, sec. IV-V) as pure vectorised functions.

Notation follows the paper: ``m`` edge nodes co-located with ``m`` base stations, ``n`` containers
(services), ``o`` mobile users. A *placement* is an int array (n,) of node indices (the paper's C_j^l); each
user ``k`` is attached to station ``user_station[k]`` and uses service ``user_service[k]``.

- Power, eqs. 7-8: a node with utilisation ``u > 0`` draws ``idle + (max - idle) * u`` watts, an empty node is
  switched off and draws 0. The paper prints eq. 7 as ``(idle + (max - idle)) * u``; that would make an
  almost idle node draw almost nothing, contradicting the sentence after it (only an EMPTY node is off), so
  we read it as the usual linear server model of the best-fit baseline it cites (Farahnakian et al. 2016,
  the seed's [18]). Utilisation is the CPU *request* share (``u_i(t)``: "based upon the resource request").
- Latency, eqs. 5-6: ``d_total = d_net + d_q`` with ``d_q = 0`` (capacity constraints 3-4 forbid overload)
  and ``d_net`` the mean over users of the delay from the user's station to the node hosting its service
  along the backhaul tree: :func:`station_node_delay_s`.
- Reward, eq. 13: ``R = w1 R_b + w2 R_l``. The paper sets ``R_l = 1 / d_total`` and ``R_b`` from the total
  power, "both normalised according to the network size" so that they share one scale (its fig. 3). We use
  ``R_b = 1 - p_total / (m * p_max)`` (1 = all nodes off, falls by one idle server's share per extra node)
  and ``R_l = d_floor / d_total`` where ``d_floor`` is the access delay alone (every service on its users'
  own station): both lie in [0, 1] whatever ``m``, ``n`` and ``o`` are.
- Cost, eq. 2: ``C = w1 * P + w2 * D`` on the same normalised scale, ``P = p_total / (m * p_max) = 1 - R_b``
  and ``D = d_total / d_floor = 1 / R_l``; this is what the exact per-step optimum minimises. The paper pairs
  w1 with latency in eq. 2 and with energy in eq. 13; we keep one meaning: w1 weighs energy, w2 latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

SPECPOWER_ML110_G5_IDLE_W = 93.7
"""HP ProLiant ML110 G5 at 0 % load (SPECpower_ssj2008), the server of Farahnakian et al. 2016's consolidation
experiments - the best-fit energy baseline Mobile-Kube compares against."""
SPECPOWER_ML110_G5_MAX_W = 135.0
"""The same server at 100 % load."""


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Eq. 7's idle and maximum watts per node (see the module docstring for why these numbers)."""

    idle_w: float = SPECPOWER_ML110_G5_IDLE_W
    max_w: float = SPECPOWER_ML110_G5_MAX_W

    def __post_init__(self) -> None:
        if not (np.isfinite(self.idle_w) and np.isfinite(self.max_w) and 0 <= self.idle_w <= self.max_w
                and self.max_w > 0):
            raise ValidationError(f"power model needs 0 <= idle_w <= max_w, max_w > 0; got {self.idle_w}, {self.max_w}")


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Delay of one user -> service path: radio access + per backhaul hop + propagation along the tree.

    The access delay does not depend on the placement; it keeps ``R_l = d_floor / d_total`` finite when every
    service sits on its users' station. The per-hop figure stands for switching and queueing at each
    aggregation hop; propagation uses the speed of light in fibre.
    """

    access_s: float = 0.005
    per_hop_s: float = 0.002
    fibre_m_per_s: float = 2.0e8

    def __post_init__(self) -> None:
        if not (self.access_s > 0 and self.per_hop_s >= 0 and self.fibre_m_per_s > 0):
            raise ValidationError("latency model needs access_s > 0, per_hop_s >= 0 and fibre_m_per_s > 0")


def station_node_delay_s(hops: NDArray[np.integer], path_m: F64, model: LatencyModel) -> F64:
    """(m, m) delay from station ``s`` to node ``j`` (co-located sites): access + hops + propagation."""
    return model.access_s + model.per_hop_s * np.asarray(hops, np.float64) + np.asarray(path_m) / model.fibre_m_per_s


def node_load(placement: I64, demand: F64, n_nodes: int) -> F64:
    """Sum of the containers' requests per node (eqs. 3-4's left-hand sides), shape (m,)."""
    return np.bincount(placement, weights=demand, minlength=n_nodes)[:n_nodes]


def fits(placement: I64, cpu: F64, mem_bytes: F64, node_cpu: F64, node_mem_bytes: F64) -> bool:
    """Constraints 3 and 4: no node over its CPU or memory capacity."""
    m = node_cpu.shape[0]
    eps = 1e-9
    return bool((node_load(placement, cpu, m) <= node_cpu + eps).all()
                and (node_load(placement, mem_bytes, m) <= node_mem_bytes * (1 + eps)).all())


def node_power_w(utilisation: F64, power: PowerModel) -> F64:
    """Eq. 7 per node: ``idle + (max - idle) * u`` when ``u > 0``, else 0 (the node is switched off)."""
    u = np.asarray(utilisation, dtype=np.float64)
    return np.where(u > 0, power.idle_w + (power.max_w - power.idle_w) * u, 0.0)


def total_power_w(placement: I64, cpu: F64, node_cpu: F64, power: PowerModel) -> float:
    """Eq. 8: the sum of eq. 7 over nodes, utilisation = requested CPU / capacity."""
    u = node_load(placement, cpu, node_cpu.shape[0]) / node_cpu
    return float(node_power_w(u, power).sum())


def empty_servers(placement: I64, n_nodes: int) -> int:
    """Nodes hosting no container (the paper's energy metric, figs. 4, 8, 9)."""
    return int(n_nodes - np.unique(placement).size)


def user_delay_s(placement: I64, user_station: I64, user_service: I64, delay_sn: F64) -> F64:
    """``d_{M_k}`` per user: station -> node of its service, (o,)."""
    return delay_sn[user_station, placement[user_service]]


def mean_latency_s(placement: I64, user_station: I64, user_service: I64, delay_sn: F64) -> float:
    """Eqs. 5-6: ``d_total = d_net + d_q`` with ``d_q = 0``; ``d_net`` the mean over users."""
    return float(user_delay_s(placement, user_station, user_service, delay_sn).mean())


@dataclass(frozen=True, slots=True)
class Terms:
    """The normalised objective terms of one step (module docstring)."""

    reward_energy: float
    """R_b = 1 - p_total / (m * p_max)."""
    reward_latency: float
    """R_l = d_floor / d_total."""
    reward: float
    """Eq. 13: w1 R_b + w2 R_l."""
    cost: float
    """Eq. 2 normalised: w1 (1 - R_b) + w2 / R_l."""


def terms(power_w: float, latency_s: float, n_nodes: int, power: PowerModel, latency_floor_s: float,
          w1: float, w2: float) -> Terms:
    """Eq. 13's reward and eq. 2's cost from one step's total power and mean latency."""
    r_b = 1.0 - power_w / (n_nodes * power.max_w)
    r_l = latency_floor_s / latency_s
    return Terms(r_b, r_l, w1 * r_b + w2 * r_l, w1 * (1.0 - r_b) + w2 / r_l)


@dataclass(frozen=True, slots=True)
class Problem:
    """Everything fixed about one Mobile-Kube instance: what a placement agent or the optimum needs besides
    the users' stations and the current placement. Arrays are read-only."""

    delay_sn_s: F64
    """(m, m) station -> node delay (:func:`station_node_delay_s`)."""
    user_service: I64
    """(o,) the service each user uses."""
    cpu: F64
    """(n,) CPU request per container (cores)."""
    mem_bytes: F64
    """(n,) memory request per container."""
    node_cpu: F64
    """(m,) CPU capacity per node (cores)."""
    node_mem_bytes: F64
    """(m,) memory capacity per node."""
    power: PowerModel
    latency_floor_s: float
    """d_floor of R_l: the delay with every service on its users' own station (the access delay)."""
    w1: float
    w2: float

    def __post_init__(self) -> None:
        m = self.node_cpu.shape[0]
        n = self.cpu.shape[0]
        if self.delay_sn_s.shape != (m, m) or self.node_mem_bytes.shape != (m,) or self.mem_bytes.shape != (n,):
            raise ValidationError(f"inconsistent problem sizes: {m} nodes, {n} containers, delay {self.delay_sn_s.shape}")
        if self.user_service.size and (self.user_service.min() < 0 or self.user_service.max() >= n):
            raise ValidationError(f"user_service must index the {n} containers")
        for a in (self.delay_sn_s, self.user_service, self.cpu, self.mem_bytes, self.node_cpu, self.node_mem_bytes):
            a.setflags(write=False)

    @property
    def n_nodes(self) -> int:
        return int(self.node_cpu.shape[0])

    @property
    def n_containers(self) -> int:
        return int(self.cpu.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_service.shape[0])

    def fits(self, placement: I64) -> bool:
        """Constraints 3-4 for ``placement``."""
        return fits(placement, self.cpu, self.mem_bytes, self.node_cpu, self.node_mem_bytes)

    def evaluate(self, placement: I64, user_station: I64) -> tuple[float, float, Terms]:
        """(p_total watts, d_total seconds, the normalised terms) of ``placement`` for these stations."""
        p = total_power_w(placement, self.cpu, self.node_cpu, self.power)
        d = mean_latency_s(placement, user_station, self.user_service, self.delay_sn_s)
        return p, d, terms(p, d, self.n_nodes, self.power, self.latency_floor_s, self.w1, self.w2)
