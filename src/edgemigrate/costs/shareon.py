"""The ShareOn decision model of Maheshwari et al. 2018 (sec. III-C, Algorithms 1-2) as pure vectorised functions.

Every function broadcasts like NumPy and keeps no state; the per-node agent (``policies/shareon/``) and the
simulator (``sim/shareon.py``) call the same code, and so does the real two-node emulation with measured inputs.

Symbols (Maheshwari et al. 2018, sec. III-C):
    s_p, k      processing speed of a node, containers on it       -> ``cpu_hz``, ``n_containers``
    s_p,avg     s_p / k, processing per container                   -> ``sp_avg_hz``
    m_avg       m / k, RAM per container                            -> ``m_avg_bytes``
    s_p,th1/2   processing thresholds of Algorithm 1                -> ``RegionThresholds.sp_th1_hz`` / ``sp_th2_hz``
    m_th1/2     RAM thresholds of Algorithm 1                       -> ``RegionThresholds.m_th1_bytes`` / ``m_th2_bytes``
    d_u,e       distance between the user and an edge node          -> ``distance_m``
    l_d         network latency per unit distance                   -> ``l_d_s_per_m``
    var(l)      moving latency variance, user's area <-> node       -> ``var_l_s2``
    t_p,avg     a node's unloaded processing latency                -> ``t_p_avg_s``
    utilFac     a node's utilisation factor                         -> ``util_fac``
    alpha_e     latency factor of the current utilisation           -> ``alpha_e_s``
    C_m, C_m,th migration cost of container m and its threshold     -> :func:`migration_cost_s`, ``cost_th_s``

Two readings of the paper's text, both stated in ``docs/shareon.md``:

* The network estimate is written ``d_u,e * l_d + var(l)``: a latency plus a variance only adds up in one fixed
  unit. We add the moving *standard deviation* ``sqrt(var(l))`` (a one-sigma margin, in seconds), which keeps
  the paper's intent - a node with jittery paths to the user's area looks slower - in any unit.
* The migration cost C_m is "the number of migrations from the source to the destination considering the
  available inter-edge bandwidth": we take it as the time the container's state needs on the link when it
  shares it with the migrations already heading to that destination, ``size * 8 * (1 + n_inflight) / b_ij``
  seconds, so ``C_m,th`` is a time budget.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.units import BITS_PER_BYTE

F64 = NDArray[np.float64]


class UtilRegion(enum.IntEnum):
    """Utilisation region of Algorithm 1; the integer values are what :func:`util_region` returns."""

    LOW = 0
    MED = 1
    HIGH = 2


class Reason(enum.Enum):
    """Why a shortlisted container is slow (sec. III-C: "high processing latency, networking latency or both")."""

    PROCESSING = "processing"
    NETWORK = "network"
    BOTH = "both"


def _finite_positive(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{key}: expected a finite number > 0, got {value!r:.80}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RegionThresholds:
    """The two thresholds per resource of Algorithm 1 (th1 < th2: below th1 a node is High, above th2 Low)."""

    sp_th1_hz: float
    sp_th2_hz: float
    m_th1_bytes: float
    m_th2_bytes: float

    def __post_init__(self) -> None:
        for key in ("sp_th1_hz", "sp_th2_hz", "m_th1_bytes", "m_th2_bytes"):
            _finite_positive(getattr(self, key), key)
        if self.sp_th1_hz >= self.sp_th2_hz:
            raise ValidationError(f"sp_th1_hz ({self.sp_th1_hz:g}) must be below sp_th2_hz ({self.sp_th2_hz:g})")
        if self.m_th1_bytes >= self.m_th2_bytes:
            raise ValidationError(
                f"m_th1_bytes ({self.m_th1_bytes:g}) must be below m_th2_bytes ({self.m_th2_bytes:g})")


def per_container(total: ArrayLike, n_containers: ArrayLike) -> F64:
    """``s_p,avg = s_p / k`` (or ``m_avg = m / k``); a node with no container has all of it (``inf``)."""
    t, k = np.broadcast_arrays(np.asarray(total, dtype=np.float64), np.asarray(n_containers, dtype=np.float64))
    # np.divide with ``where`` instead of np.errstate: the context manager costs more than the division on
    # the few-element arrays one node's agent works with
    return np.divide(t, k, out=np.full(t.shape, np.inf), where=k > 0)


def util_region(sp_avg_hz: ArrayLike, m_avg_bytes: ArrayLike, th: RegionThresholds) -> NDArray[np.int8]:
    """Algorithm 1 (findUtil), vectorised: :class:`UtilRegion` values as ``int8``.

    High when processing or RAM per container is at or below its first threshold (line 2); Med when not High
    and processing or RAM is at or below its second threshold (line 5 - its first clause always holds once a
    node is not High); Low otherwise. NaN inputs (a neighbour that reported garbage) count as High, so such a
    node is never a favourable destination.
    """
    sp = np.asarray(sp_avg_hz, dtype=np.float64)
    m = np.asarray(m_avg_bytes, dtype=np.float64)
    high = (sp <= th.sp_th1_hz) | (m <= th.m_th1_bytes) | np.isnan(sp) | np.isnan(m)
    med = ~high & ((sp > th.sp_th1_hz) | (m > th.m_th1_bytes)) & ((sp <= th.sp_th2_hz) | (m <= th.m_th2_bytes))
    out = np.full(np.broadcast(sp, m).shape, UtilRegion.LOW, dtype=np.int8)
    out[med] = UtilRegion.MED
    out[high] = UtilRegion.HIGH
    return out


def network_latency_s(distance_m: ArrayLike, l_d_s_per_m: float, var_l_s2: ArrayLike,
                      base_s: ArrayLike = 0.0) -> F64:
    """Network latency estimate ``base + d_u,e * l_d + sqrt(var(l))`` (sec. III-C; module docstring on sqrt).

    ``base_s`` is the part every node shares (the user's access link), so estimates compare with a measured
    total latency. Negative variances (rounding in a moving estimate) count as zero.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    v = np.maximum(np.asarray(var_l_s2, dtype=np.float64), 0.0)
    return np.asarray(base_s, dtype=np.float64) + d * float(l_d_s_per_m) + np.sqrt(v)


def processing_latency_s(t_p_avg_s: ArrayLike, util_fac: ArrayLike, alpha_e_s: ArrayLike) -> F64:
    """Processing latency estimate ``t_p,avg + utilFac * alpha_e`` (sec. III-C)."""
    return (np.asarray(t_p_avg_s, dtype=np.float64)
            + np.asarray(util_fac, dtype=np.float64) * np.asarray(alpha_e_s, dtype=np.float64))


def alpha_from_measurement(t_p_measured_s: ArrayLike, t_p_avg_s: ArrayLike, util_fac: ArrayLike,
                           floor_util: float = 0.05) -> F64:
    """The latency factor a node reports: ``alpha_e = (t_p - t_p,avg) / utilFac`` from its own measurements.

    The paper ties alpha_e to "the current utilization" without giving values; a node that measures its own
    processing latency can solve the estimate for it. Below ``floor_util`` the ratio is noise over ~0, so the
    division uses ``floor_util``; a measurement below ``t_p,avg`` gives 0.
    """
    t = np.asarray(t_p_measured_s, dtype=np.float64)
    base = np.asarray(t_p_avg_s, dtype=np.float64)
    u = np.maximum(np.asarray(util_fac, dtype=np.float64), floor_util)
    return np.maximum(t - base, 0.0) / u


def migration_cost_s(size_bytes: ArrayLike, bandwidth_bps: ArrayLike, n_inflight: ArrayLike) -> F64:
    """C_m of Algorithm 2: seconds to move ``size_bytes`` over ``b_ij`` shared with ``n_inflight`` migrations.

    A link with no bandwidth (0, negative or NaN - a neighbour that reported garbage) costs ``inf``, so the
    threshold test ``C_m < C_m,th`` rejects it instead of dividing by zero.
    """
    bw = np.asarray(bandwidth_bps, dtype=np.float64)
    n = np.maximum(np.asarray(n_inflight, dtype=np.float64), 0.0)
    bits, bw = np.broadcast_arrays(np.asarray(size_bytes, dtype=np.float64) * BITS_PER_BYTE * (1.0 + n), bw)
    return np.divide(bits, bw, out=np.full(bits.shape, np.inf), where=bw > 0)  # NaN > 0 is False


def ewm_update(mean: ArrayLike, var: ArrayLike, sample: ArrayLike, weight: float) -> tuple[F64, F64]:
    """One step of an exponentially weighted moving mean and variance (the paper's "past moving" var(l)).

    ``weight`` in (0, 1] is the new sample's weight. Incremental form (Finch 2009, eqs. 124 and 143):
    ``delta = x - mean; mean += w delta; var = (1 - w) (var + w delta^2)``.
    """
    w = float(weight)
    if not 0.0 < w <= 1.0:
        raise ValidationError(f"moving-variance weight must be in (0, 1], got {weight!r}")
    m = np.asarray(mean, dtype=np.float64)
    delta = np.asarray(sample, dtype=np.float64) - m
    return m + w * delta, (1.0 - w) * (np.asarray(var, dtype=np.float64) + w * delta * delta)


def slow_reason(t_net_s: float, t_proc_s: float, net_ref_s: float, proc_ref_s: float) -> Reason:
    """The "primary reason" of sec. III-C: which part exceeds its reference (both, or the larger excess)."""
    net_over, proc_over = t_net_s - net_ref_s, t_proc_s - proc_ref_s
    if net_over > 0 and proc_over > 0:
        return Reason.BOTH
    return Reason.PROCESSING if proc_over >= net_over else Reason.NETWORK


def admits(cpu_hz: ArrayLike, ram_bytes: ArrayLike, n_containers: ArrayLike, util_fac: ArrayLike,
           reserved_n: ArrayLike, reserved_hz: ArrayLike, demand_hz: ArrayLike, th: RegionThresholds,
           util_high: float) -> NDArray[np.bool_]:
    """Destination-side admission: does a node stay below High if it takes one more container?

    Ours, not the paper's. Algorithm 2 (lines 13-14) bounds a destination's load only through the source's
    view of it - the in-flight count inside ``C_m`` and the region in the last report - and sources that decide
    in the same query period from the same reports all pick the same cheap node (``docs/shareon.md``, the
    10 Gbit/s point). So the destination, the only party that knows what it has already accepted, checks
    before it accepts: with its *current* containers and utilisation plus the reservations of incoming
    migrations it already admitted (``reserved_n`` containers, ``reserved_hz`` of load) plus this one, it must
    stay out of Algorithm 1's High region (processing and RAM per container above ``th``'s first thresholds)
    and its utilisation must stay below ``util_high`` (the same High boundary stated on the measured load, which
    sees that containers differ in demand). A node with no capacity (``cpu_hz <= 0``, NaN) admits nothing.
    """
    cpu = np.asarray(cpu_hz, dtype=np.float64)
    k = np.asarray(n_containers, dtype=np.float64) + np.asarray(reserved_n, dtype=np.float64) + 1.0
    region = util_region(per_container(cpu, k), per_container(ram_bytes, k), th)
    extra = np.asarray(reserved_hz, dtype=np.float64) + np.asarray(demand_hz, dtype=np.float64)
    util_after = np.asarray(util_fac, dtype=np.float64) + np.divide(
        extra, cpu, out=np.full(np.broadcast(extra, cpu).shape, np.inf), where=cpu > 0)
    return (region != UtilRegion.HIGH) & (util_after < float(util_high))

