"""The coordinated migration + handover cost model of Ngo et al. 2020, sections IV-A and IV-B (eqs. 1-5).

Every function is pure and vectorised: arguments broadcast like NumPy arrays. Sizes are bytes, rates bits
per second (``_bps``), times seconds, signal levels dBm; the functions convert (x 8) where a size meets a rate.
``cpu_power`` is the paper's C_s, a per-server benchmark score (the paper runs sysbench once per server); only
ratios of scores and the fitted psi/rho (which carry the score's unit) use it, so any fixed benchmark works.

Symbols (Ngo et al. 2020):
    d_proc    processing delay measured on the current server      -> ``proc_s``
    C_s       computational power of server s                       -> ``cpu_power``
    S_u       task size                                             -> ``task_bytes``
    B_ub      MU-to-BS rate from the RSSI (ref. [15] of the paper)  -> ``access_bps`` (:func:`wifi_rate_bps`)
    B_bs      BS-to-server bandwidth                                -> ``backhaul_bps``
    RTT_bs    BS-to-server round-trip time                          -> ``rtt_s``
    n_ubs     tasks offloaded per planning period                   -> ``tasks``
    S_Du      container image size                                  -> ``image_bytes``
    S_lambda  pre-migration checkpoint size                         -> ``checkpoint_bytes``
    S_dlambda delta between two consecutive checkpoints             -> ``delta_bytes``
    psi, rho  per-server checkpoint / restore coefficients (eq. 5)  -> ``psi``, ``rho``
    T_ho      handover interruption                                 -> ``handover_s``

Eq. 5 prices a stop-and-copy outage (the whole checkpoint and restore while the service is frozen). The real
data plane pre-copies (Clark et al. 2005): leave-running rounds send the resident memory and then what was
dirtied meanwhile, and the service is frozen only for the last delta. :func:`precopy_times_s` models that
and :func:`fit_precopy` fits its parameters from measured migrations; the strategy picks the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.units import BITS_PER_BYTE

F64 = NDArray[np.float64]

# IEEE 802.11n, 20 MHz channel, one spatial stream, 800 ns guard interval: MCS 0-7 data rates (Mbit/s) and
# the standard's minimum receiver input sensitivity (dBm) for each. Ngo et al. 2020 estimate B(RSSI) "based
# on the RSSI and the access wireless technology" from an 802.11n/ac rate-vs-SNR table (their ref. [15]); the
# sensitivity column is that table's requirement expressed as a received level, so an RSSI maps to a rate
# without a separate noise-floor model. ``radio/`` models cellular rates by distance ring, which is not the
# paper's access technology, so it is not reused here.
WIFI_80211N_20MHZ_SENSITIVITY_DBM: tuple[float, ...] = (-82.0, -79.0, -77.0, -74.0, -70.0, -66.0, -65.0, -64.0)
WIFI_80211N_20MHZ_RATE_MBIT: tuple[float, ...] = (6.5, 13.0, 19.5, 26.0, 39.0, 52.0, 58.5, 65.0)


def _f(x: ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def wifi_rate_bps(rssi_dbm: ArrayLike,
                  sensitivity_dbm: tuple[float, ...] = WIFI_80211N_20MHZ_SENSITIVITY_DBM,
                  rate_mbit: tuple[float, ...] = WIFI_80211N_20MHZ_RATE_MBIT) -> F64:
    """B_ub (Ngo et al. 2020, eq. 4 and ref. [15]): the fastest rate whose sensitivity the RSSI meets; 0 below all."""
    sens = _f(sensitivity_dbm)
    rates = np.concatenate([[0.0], _f(rate_mbit) * 1e6])
    if sens.shape != rates[1:].shape or np.any(np.diff(sens) < 0):
        raise ValidationError("wifi_rate_bps: sensitivity_dbm must be ascending and as long as rate_mbit")
    idx = np.searchsorted(sens, _f(rssi_dbm), side="right")  # how many thresholds the RSSI meets; nan -> len
    return np.where(np.isnan(_f(rssi_dbm)), 0.0, rates[idx])


def processing_delay_s(proc_s: ArrayLike, cpu_power_src: ArrayLike, cpu_power_dst: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 4 (first term): d_proc,ub's' = d_proc,ubs * C_s / C_s'."""
    return _f(proc_s) * _f(cpu_power_src) / _f(cpu_power_dst)


def transmission_delay_s(task_bytes: ArrayLike, access_bps: ArrayLike, backhaul_bps: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 4 (second term): S_u / min(B_ub, B_bs); inf where either rate is 0 (no link)."""
    rate = np.minimum(_f(access_bps), _f(backhaul_bps))
    with np.errstate(divide="ignore"):
        return np.where(rate > 0, _f(task_bytes) * BITS_PER_BYTE / np.where(rate > 0, rate, 1.0), np.inf)


def e2e_delay_s(proc_s: ArrayLike, cpu_power_src: ArrayLike, cpu_power_dst: ArrayLike, task_bytes: ArrayLike,
                access_bps: ArrayLike, backhaul_bps: ArrayLike, rtt_s: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 4: estimated E2E delay of one task at t' = processing + transmission + RTT_bs.

    Queuing is left out: the paper assumes it is the same before and after the move, so it cancels in eq. 4's
    difference. The MU-BS propagation is neglected as in the paper.
    """
    return (processing_delay_s(proc_s, cpu_power_src, cpu_power_dst)
            + transmission_delay_s(task_bytes, access_bps, backhaul_bps) + _f(rtt_s))


def delay_change_s(delay_current_s: ArrayLike, delay_new_s: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 4: Delta d = d_ubs(t') - d_ub's'(t'); negative when the move makes tasks slower."""
    return _f(delay_current_s) - _f(delay_new_s)


def gain_s(delay_change: ArrayLike, tasks: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 1 (one user's term): Delta d * n_ub's', with n_ub's' ~ n_ubs."""
    return _f(delay_change) * _f(tasks)


def profit_s(gain: ArrayLike, downtime: ArrayLike) -> float:
    """Ngo et al. 2020, eqs. 1-3a: G - C, the sums over users of the gains and of the downtimes (eq. 2)."""
    return float(np.sum(_f(gain)) - np.sum(_f(downtime)))


def checkpoint_s(psi: ArrayLike, image_bytes: ArrayLike, cpu_power_src: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 5: T_chkpt = psi_s * S_Du / C_s."""
    return _f(psi) * _f(image_bytes) / _f(cpu_power_src)


def restore_s(rho: ArrayLike, image_bytes: ArrayLike, checkpoint_bytes: ArrayLike, delta_bytes: ArrayLike,
              cpu_power_dst: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 5: T_restore = rho_s' * (S_Du + S_lambda + S_dlambda) / C_s'."""
    return _f(rho) * (_f(image_bytes) + _f(checkpoint_bytes) + _f(delta_bytes)) / _f(cpu_power_dst)


def transfer_s(size_bytes: ArrayLike, link_bps: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 5: T_pre-trans = S_lambda / B_ss' and T_trans = S_dlambda / B_ss'."""
    return _f(size_bytes) * BITS_PER_BYTE / _f(link_bps)


def premigration_s(psi: ArrayLike, image_bytes: ArrayLike, checkpoint_bytes: ArrayLike,
                   cpu_power_src: ArrayLike, link_bps: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 5: T_pre-mig = T_chkpt + T_pre-trans (the container keeps running meanwhile)."""
    return checkpoint_s(psi, image_bytes, cpu_power_src) + transfer_s(checkpoint_bytes, link_bps)


def migration_s(psi: ArrayLike, rho: ArrayLike, image_bytes: ArrayLike, checkpoint_bytes: ArrayLike,
                delta_bytes: ArrayLike, cpu_power_src: ArrayLike, cpu_power_dst: ArrayLike,
                link_bps: ArrayLike) -> F64:
    """Ngo et al. 2020, eq. 5: T_mig = T_chkpt + T_trans + T_restore (the service is down for all of it)."""
    return (checkpoint_s(psi, image_bytes, cpu_power_src) + transfer_s(delta_bytes, link_bps)
            + restore_s(rho, image_bytes, checkpoint_bytes, delta_bytes, cpu_power_dst))


def coordinated_downtime_s(migration: ArrayLike, handover: ArrayLike) -> F64:
    """Ngo et al. 2020, sec. IV-B (the DT equation): max(T_mig, T_ho) when the two outages are coordinated.

    Pass 0 for the part that does not happen (no migration when s' = s, no handover when b' = b).
    """
    return np.maximum(_f(migration), _f(handover))


def fit_size_coefficient(size_bytes: ArrayLike, seconds: ArrayLike, cpu_power: float, name: str = "psi") -> float:
    """psi or rho of eq. 5 (Ngo et al. 2020) from one server's measured (size, duration) history.

    Eq. 5 says seconds = coef * size / C_s, a line through the origin; the least-squares coefficient is
    C_s * sum(size * seconds) / sum(size^2). ``name`` only labels error messages (history is peer data).
    """
    size = _f(size_bytes).ravel()
    secs = _f(seconds).ravel()
    if size.shape != secs.shape:
        raise ValidationError(f"{name} history: {size.size} sizes but {secs.size} durations")
    if size.size == 0:
        raise ValidationError(f"{name} history is empty: at least one measured (size, seconds) pair is needed")
    for label, arr in (("size_bytes", size), ("seconds", secs)):
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(f"{name} history {label}[{i}] = {arr[i]} must be finite and >= 0")
    if not (np.isfinite(cpu_power) and cpu_power > 0):
        raise ValidationError(f"{name} fit: cpu_power = {cpu_power} must be finite and > 0")
    denom = float(np.dot(size, size))
    if denom == 0.0:
        raise ValidationError(f"{name} history has only zero sizes: the coefficient is undetermined")
    return float(cpu_power) * float(np.dot(size, secs)) / denom


def _crossing_s(level: ArrayLike, start: ArrayLike, end: ArrayLike, now_s: ArrayLike, horizon_s: ArrayLike) -> F64:
    """First time a linear ramp from ``start`` (now) to ``end`` (now + horizon) reaches ``level``; inf if never."""
    x0, x1, lv = _f(start), _f(end), _f(level)
    rising = x1 > x0
    frac = np.where(rising, (lv - x0) / np.where(rising, x1 - x0, 1.0), np.inf)
    t = _f(now_s) + frac * _f(horizon_s)
    return np.where(x0 >= lv, _f(now_s), np.where(rising & (x1 >= lv), t, np.inf))


def handover_instant_s(now_s: ArrayLike, horizon_s: ArrayLike, rssi_old_now_dbm: ArrayLike,
                       rssi_old_next_dbm: ArrayLike, rssi_new_now_dbm: ArrayLike, rssi_new_next_dbm: ArrayLike,
                       hysteresis_db: ArrayLike, min_rssi_dbm: ArrayLike) -> F64:
    """When the MU hands over from b to b' (Ngo et al. 2020, sec. IV-B, relative RSSI hysteresis, ref. [16]).

    RSSIs are the measured ones at t (now) and the estimates at t' = now + horizon, linearly interpolated in
    between. The handover happens at the first of: b' beating b by the hysteresis, b falling below the
    minimum RSSI, or t' itself (the plan moves the MU to b' by t' at the latest). Never before now.
    """
    diff_now = _f(rssi_new_now_dbm) - _f(rssi_old_now_dbm)
    diff_next = _f(rssi_new_next_dbm) - _f(rssi_old_next_dbm)
    t_hyst = _crossing_s(hysteresis_db, diff_now, diff_next, now_s, horizon_s)
    # the old link is lost when its RSSI falls to the minimum: a crossing of -RSSI upwards through -min
    t_lost = _crossing_s(-_f(min_rssi_dbm), -_f(rssi_old_now_dbm), -_f(rssi_old_next_dbm), now_s, horizon_s)
    return np.minimum(np.minimum(t_hyst, t_lost), _f(now_s) + _f(horizon_s))


def coordinated_triggers_s(handover_at_s: ArrayLike, now_s: ArrayLike, premigration: ArrayLike,
                           migrates: ArrayLike, hands_over: ArrayLike,
                           margin: float = 0.1) -> tuple[F64, F64, F64]:
    """Trigger times (pre-migration, migration, handover) of Ngo et al. 2020, sec. IV-B and fig. 2.

    Our reading of fig. 2's fourth timeline: both outages start at the same instant, so the shorter lies
    inside the longer and the downtime is max(T_mig, T_ho). That instant is the hysteresis handover time
    ``handover_at_s``; the pre-migration (which must be over before the migration's final checkpoint, or the
    whole state would move during the outage) is triggered (1 + margin) x its estimate earlier, the paper's
    10 % error margin. When that would be before ``now_s`` the pre-migration starts now and the migration
    follows when it is done; the handover is never delayed past its instant, since the radio link decides
    it (the old BS may be lost), so such a user gets two outages. A user that only migrates (b' = b) starts
    its pre-migration now. Times that do not apply (no migration / no handover) are nan.
    """
    migrates_b = np.asarray(migrates, dtype=bool)
    hands_b = np.asarray(hands_over, dtype=bool)
    pre_span = (1.0 + margin) * _f(premigration)
    earliest = _f(now_s) + pre_span
    mig_at = np.maximum(np.where(hands_b, _f(handover_at_s), earliest), earliest)
    pre = np.where(migrates_b, mig_at - pre_span, np.nan)
    mig = np.where(migrates_b, mig_at, np.nan)
    ho = np.where(hands_b, _f(handover_at_s), np.nan)
    return pre, mig, ho


def sequential_triggers_s(handover_at_s: ArrayLike, now_s: ArrayLike, premigration: ArrayLike,
                          migrates: ArrayLike, hands_over: ArrayLike) -> tuple[F64, F64, F64]:
    """Trigger times of the cloud, random and nearest planners (Ngo et al. 2020, sec. V-A).

    They are triggered by the handover: the handover runs at the hysteresis instant, the pre-migration starts
    then in the background, and the migration follows when it is done, so the two outages are apart (fig. 6b-c).
    A migration without a handover starts its pre-migration now.
    """
    migrates_b = np.asarray(migrates, dtype=bool)
    hands_b = np.asarray(hands_over, dtype=bool)
    start = np.where(hands_b, _f(handover_at_s), _f(now_s))
    pre = np.where(migrates_b, start, np.nan)
    mig = np.where(migrates_b, start + _f(premigration), np.nan)
    ho = np.where(hands_b, _f(handover_at_s), np.nan)
    return pre, mig, ho


def outage_s(migration_at_s: ArrayLike, migration: ArrayLike, handover_at_s: ArrayLike,
             handover: ArrayLike) -> F64:
    """Total service downtime: the length of the union of [t_mig, t_mig + T_mig] and [t_ho, t_ho + T_ho].

    nan trigger times (the part does not happen) contribute nothing. Coordinated triggers give
    max(T_mig, T_ho) (Ngo et al. 2020, sec. IV-B); sequential ones give about T_mig + T_ho.
    """
    a0 = _f(migration_at_s)
    b0 = _f(handover_at_s)
    la = np.where(np.isnan(a0), 0.0, _f(migration))
    lb = np.where(np.isnan(b0), 0.0, _f(handover))
    a0 = np.where(np.isnan(a0), 0.0, a0)
    b0 = np.where(np.isnan(b0), 0.0, b0)
    overlap = np.clip(np.minimum(a0 + la, b0 + lb) - np.maximum(a0, b0), 0.0, None)
    return la + lb - np.where((la > 0) & (lb > 0), overlap, 0.0)


MAX_FROZEN_RTTS = 50.0
MAX_SLOPE_SAMPLES = 500  # pairwise slopes grow as n^2; the first 500 migrations are plenty


@dataclass(frozen=True, slots=True)
class PrecopyModel:
    """The fitted parameters of one service's pre-copy migration (Clark et al. 2005; see :func:`precopy_times_s`).

    ``resident_bytes`` is what the first round sends (the service's resident memory), ``dirty_bytes_per_s``
    how fast it dirties pages while running, ``round_overhead_s`` what a leave-running round costs beyond
    its transfer and one RTT (dump, diff, framing), ``final_overhead_s`` the same for the frozen round,
    ``restore_base_s`` + ``restore_s_per_byte`` * resident the restore at the destination,
    ``rounds`` the leave-running rounds before the freeze, ``wire_ratio`` the bytes on the wire per byte
    of state (the adaptive compression of Zhang et al. 2019 sends less than the pages; 1 = uncompressed),
    and ``frozen_rtts`` the round trips inside the frozen window (1: the destination's verification of the
    final round; measured on two or more RTTs it is fitted, see :func:`fit_precopy`).
    """

    resident_bytes: float
    dirty_bytes_per_s: float
    round_overhead_s: float
    final_overhead_s: float
    restore_base_s: float
    restore_s_per_byte: float
    rounds: int = 1
    wire_ratio: float = 1.0
    frozen_rtts: float = 1.0

    def __post_init__(self) -> None:
        for name in ("resident_bytes", "dirty_bytes_per_s", "round_overhead_s", "final_overhead_s",
                     "restore_base_s", "restore_s_per_byte"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValidationError(f"pre-copy model: {name} = {v} must be finite and >= 0")
        if not 1 <= self.rounds <= 100:
            raise ValidationError(f"pre-copy model: rounds = {self.rounds} must be in [1, 100]")
        if not (np.isfinite(self.wire_ratio) and 0 < self.wire_ratio <= 1):
            raise ValidationError(f"pre-copy model: wire_ratio = {self.wire_ratio} must be in (0, 1]")
        if not (np.isfinite(self.frozen_rtts) and 0 <= self.frozen_rtts <= MAX_FROZEN_RTTS):
            raise ValidationError(f"pre-copy model: frozen_rtts = {self.frozen_rtts} must be in [0, {MAX_FROZEN_RTTS}]")


def precopy_restore_s(model: PrecopyModel, resident_bytes: ArrayLike | None = None) -> F64:
    """Restore time at the destination, affine in the resident size (what CRIU maps back in)."""
    size = _f(model.resident_bytes if resident_bytes is None else resident_bytes)
    return model.restore_base_s + model.restore_s_per_byte * size


def precopy_times_s(model: PrecopyModel, link_bps: ArrayLike, rtt_s: ArrayLike) -> tuple[F64, F64, F64]:
    """(frozen, total, final round bytes) of one pre-copy migration over a link (Clark et al. 2005, sec. 3-4).

    Round 1 sends the resident memory while the service runs; round k+1 sends what was dirtied during round
    k, min(resident, dirty rate x round k's duration), each round lasting its overhead + wire bytes / rate +
    one RTT (wire bytes = bytes x ``wire_ratio``). After ``rounds`` such rounds the service is frozen for
    the final delta: frozen = final overhead + final wire bytes / rate + ``frozen_rtts`` x RTT + restore,
    and total = the leave-running rounds + frozen. With no leave-running round this would be eq. 5's
    stop-and-copy outage (Ngo et al. 2020) of the full state.
    """
    link, rtt = _f(link_bps), _f(rtt_s)
    resident = model.resident_bytes
    size = np.full(np.broadcast(link, rtt).shape, resident)
    elapsed = np.zeros_like(size)
    wire = model.wire_ratio
    for _ in range(model.rounds):
        duration = model.round_overhead_s + transfer_s(size * wire, link) + rtt
        elapsed = elapsed + duration
        size = np.minimum(resident, model.dirty_bytes_per_s * duration)
    frozen = (model.final_overhead_s + transfer_s(size * wire, link) + model.frozen_rtts * rtt
              + precopy_restore_s(model))
    return frozen, elapsed + frozen, size


@dataclass(frozen=True, slots=True)
class MigrationSample:
    """One measured pre-copy migration, the unit :func:`fit_precopy` fits from (sizes in bytes, times in s).

    ``pre_bytes`` is what the leave-running rounds sent, ``final_bytes`` the frozen round, ``frozen_s`` the
    window from the freeze to the restored service, ``restore_s`` the destination's restore, ``total_s``
    the whole migration. ``rounds``, ``resident_bytes`` and ``wire_bytes`` (what all rounds put on the wire)
    are known only when the agents' statistics are at hand; otherwise one round is assumed, the resident
    size is ``pre_bytes`` and the wire ratio is inferred (see :func:`fit_precopy`).
    """

    pre_bytes: float
    final_bytes: float
    link_bps: float
    rtt_s: float
    frozen_s: float
    restore_s: float
    total_s: float
    rounds: int = 1
    resident_bytes: float | None = None
    wire_bytes: float | None = None


def _wire_ratio(s: MigrationSample) -> float:
    """Wire bytes per state byte: measured when known; else 1 unless the pre-copy phase was faster than its
    bytes at the link's rate allow, which only compression explains (then the whole phase is transfer)."""
    sent = s.pre_bytes + s.final_bytes
    if s.wire_bytes is not None and sent > 0:
        return float(min(1.0, max(1e-3, s.wire_bytes / sent)))
    full = float(transfer_s(s.pre_bytes, s.link_bps))
    room = s.total_s - s.frozen_s - s.rounds * s.rtt_s
    return 1.0 if full <= 0 or room >= full else float(min(1.0, max(1e-3, room / full)))


def _frozen_overhead(rtt_s: F64, rest_s: F64) -> tuple[float, float]:
    """(final overhead, RTTs in the frozen window) from what each frozen window leaves after its final
    transfer and restore. When the samples span RTTs (at least 1.5x apart) the RTT count is the Theil-Sen
    slope over the RTT (the median of the pairwise slopes: one restore slowed down by a busy machine does
    not tilt it, as it would a least-squares line); else one RTT is assumed."""
    if rtt_s.min() > 0 and rtt_s.max() >= 1.5 * rtt_s.min():
        r, y = rtt_s[:MAX_SLOPE_SAMPLES], rest_s[:MAX_SLOPE_SAMPLES]
        i, j = np.triu_indices(r.size, k=1)
        apart = np.abs(r[j] - r[i]) >= 0.2 * r.min()
        if apart.any():
            slopes = (y[j] - y[i])[apart] / (r[j] - r[i])[apart]
            k = float(np.clip(np.median(slopes), 0.0, MAX_FROZEN_RTTS))
            return max(0.0, float(np.median(rest_s - k * rtt_s))), k
    return max(0.0, float(np.median(rest_s - rtt_s))), 1.0


def fit_precopy(samples: list[MigrationSample]) -> PrecopyModel:
    """The :class:`PrecopyModel` of one service from its measured migrations (medians: one slow run on a busy
    machine should not move the fit).

    Each sample is solved for the parameters of :func:`precopy_times_s`: the restore line by least squares
    over the resident sizes (a constant when they do not vary), the frozen round's overhead as what the
    frozen window leaves after the final transfer, RTT and restore, a leave-running round's overhead as what
    the pre-copy phase (total - frozen) leaves after its transfers and RTTs, and the dirty rate as the final
    bytes over the last leave-running round's duration (the later rounds' mean size when there were several).
    Measured over RTTs at least 1.5x apart, the frozen window's RTT count is the slope of a line over the
    RTT (the real protocol's round trips, and TCP's restart after the idle pre-copy pause, exceed one).
    Transfers are wire bytes (:func:`_wire_ratio`) over the link's rate; negative residues clamp to 0.
    """
    if not samples:
        raise ValidationError("pre-copy fit: no migrations to fit")
    res = _f([s.resident_bytes if s.resident_bytes is not None else s.pre_bytes for s in samples])
    restore = _f([s.restore_s for s in samples])
    if len(samples) >= 2 and np.ptp(res) > 0.05 * np.max(res):
        slope, base = np.polyfit(res, restore, 1)
        if slope < 0 or base < 0:  # not a meaningful line: fall back to the constant
            slope, base = 0.0, float(np.median(restore))
    else:
        slope, base = 0.0, float(np.median(restore))
    final_rest, round_over, dirty, ratios = [], [], [], []
    for s, m in zip(samples, res, strict=True):
        w = _wire_ratio(s)
        ratios.append(w)
        final_rest.append(s.frozen_s - float(transfer_s(s.final_bytes * w, s.link_bps)) - s.restore_s)
        pre_s = s.total_s - s.frozen_s
        over = max(0.0, (pre_s - float(transfer_s(s.pre_bytes * w, s.link_bps)) - s.rounds * s.rtt_s) / s.rounds)
        round_over.append(over)
        last_bytes = m if s.rounds == 1 else max(0.0, s.pre_bytes - m) / (s.rounds - 1)
        last_s = over + float(transfer_s(last_bytes * w, s.link_bps)) + s.rtt_s
        dirty.append(s.final_bytes / last_s if last_s > 0 else 0.0)
    final_over, rtts = _frozen_overhead(_f([s.rtt_s for s in samples]), _f(final_rest))
    return PrecopyModel(resident_bytes=float(np.median(res)), dirty_bytes_per_s=float(np.median(dirty)),
                        round_overhead_s=float(np.median(round_over)),
                        final_overhead_s=final_over,
                        restore_base_s=max(0.0, float(base)), restore_s_per_byte=max(0.0, float(slope)),
                        rounds=int(np.median([s.rounds for s in samples]).round()),
                        wire_ratio=float(np.median(ratios)), frozen_rtts=rtts)
