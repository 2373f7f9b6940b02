"""Per-chunk codec/level selection while a transfer runs (Zhang et al. 2019, sec. III-C and V-B).

A :class:`Selector` is asked :meth:`~Selector.choose` for every chunk just before that chunk is
compressed, with the latest :class:`~edgemigrate.engine.adaptive.netstate.NetworkState`, and is told
:meth:`~Selector.observe` what each compression actually achieved. Three implementations:

* :class:`FixedSelector` - one codec and level throughout (the "fixed level" baselines);
* :class:`RuleSelector` - Zhang et al. 2019's rule, eq. 2: the RTT ratio and the loss rate select one of nine
  regions, each region adds a level delta to the current lz4 level (default 4, clamped to 1..9);
* :class:`ModelSelector` - picks the codec/level that maximises the effective transfer rate
  ``min(cores * V_compress, B / C_ratio, cores_dst * V_decompress)`` from measured per-level profiles
  (Zhang et al. 2019, eqs. 6, 8 and the trade-off of eqs. 9-11).

Selectors are called from the sending thread only; they need no locking.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.engine.adaptive.netstate import Ewma, NetworkState
from edgemigrate.engine.codecs.registry import Choice, codec_spec, shared_codec


class Selector(Protocol):
    """Chooses the codec/level of the next chunk; learns from what each chunk achieved."""

    @property
    def name(self) -> str: ...

    def choose(self, state: NetworkState) -> Choice: ...

    def observe(self, choice: Choice, raw_bytes: int, compressed_bytes: int, compress_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class FixedSelector:
    """Always the same codec and level."""

    codec: str = "lz4"
    level: int = 1

    def __post_init__(self) -> None:
        spec = codec_spec(self.codec)
        if self.level not in spec.levels():
            raise ValidationError(
                f"selector: {self.codec} level {self.level} outside {spec.min_level}..{spec.max_level}"
            )

    @property
    def name(self) -> str:
        return f"fixed-{self.codec}-{self.level}"

    def choose(self, state: NetworkState) -> Choice:
        return Choice(self.codec, self.level)

    def observe(self, choice: Choice, raw_bytes: int, compressed_bytes: int, compress_s: float) -> None:
        return None


# Rows: RTT ratio region (<= 0.85, <= 1.05, > 1.05); columns: loss region (<= 0.2, <= 0.5, > 0.5).
SEED_RULE_TABLE: tuple[tuple[int, int, int], ...] = (
    (+4, +3, -2),
    (+2, +1, -3),
    (0, -1, -4),
)


def region(value: float, low: float, high: float) -> int:
    """0 if ``value <= low``, 1 if ``value <= high``, else 2 (a threshold value belongs to the better region,
    as Zhang et al. 2019's closed intervals ``[0, 0.85]``, ``[0, 0.2]`` list it first)."""
    return 0 if value <= low else (1 if value <= high else 2)


class RuleSelector:
    """Zhang et al. 2019's adaptive rule (eq. 1 ``Netstate = State(RTT, packetLoss)`` and eq. 2 ``Delta_level``).

    On every *new* network sample (``state.sample_id`` changed) the level moves by
    ``table[rtt_region][loss_region]`` and is clamped to ``[min_level, max_level]``; between samples the
    level is held, so choosing per chunk does not re-apply one measurement many times.

    The 3x3 table. Eq. 2 lists nine cases but names the region ``RTT in [0.85, 1.05], loss in [0.2, 0.5]``
    twice (for +1 and for -1) and never names ``RTT > 1.05, loss in [0.2, 0.5]``. We give -1 to that
    missing region, because (a) it is the only region left, so every listed delta keeps exactly one
    region, and (b) it is the only placement that keeps the table monotone: the delta then never
    increases when the RTT ratio grows (per loss column: +4, +2, 0 / +3, +1, -1 / -2, -3, -4) nor when
    the loss grows (per RTT row: +4, +3, -2 / +2, +1, -3 / 0, -1, -4). The other reading (-1 in the
    duplicated cell, +1 in the missing one) would give the mid-loss column +3, -1, +1: a *worse* RTT
    (mid -> high) would raise the level, against Zhang et al. 2019's ordering of the regions from good to bad.

    The sign convention is Zhang et al. 2019's: a better network raises the level (stronger lz4), a worse one
    lowers it. :class:`ModelSelector` derives its choice from measured rates instead.
    """

    def __init__(
        self,
        codec: str = "lz4",
        default_level: int = 4,
        min_level: int = 1,
        max_level: int = 9,
        rtt_thresholds: tuple[float, float] = (0.85, 1.05),
        loss_thresholds: tuple[float, float] = (0.2, 0.5),
        table: Sequence[Sequence[int]] = SEED_RULE_TABLE,
    ) -> None:
        spec = codec_spec(codec)
        if not spec.min_level <= min_level <= default_level <= max_level <= spec.max_level:
            raise ValidationError(
                f"rule selector: need {spec.min_level} <= min_level <= default_level <= max_level <= {spec.max_level}"
                f" for {codec}, got {min_level}, {default_level}, {max_level}"
            )
        if len(table) != 3 or any(len(row) != 3 for row in table):
            raise ValidationError("rule selector: table must be 3x3 (RTT region x loss region)")
        for lo, hi, what in (rtt_thresholds + ("rtt_thresholds",), loss_thresholds + ("loss_thresholds",)):
            if not 0 <= lo < hi:
                raise ValidationError(f"rule selector: {what} must satisfy 0 <= low < high, got ({lo}, {hi})")
        self.codec = codec
        self.min_level, self.max_level = min_level, max_level
        self.rtt_thresholds, self.loss_thresholds = rtt_thresholds, loss_thresholds
        self.table = tuple(tuple(int(x) for x in row) for row in table)
        self.level = default_level
        self._last_sample = 0
        self.history: list[tuple[int, int, int, int]] = []  # (sample_id, rtt_region, loss_region, level)

    @property
    def name(self) -> str:
        return "rule"

    def regions(self, state: NetworkState) -> tuple[int, int]:
        return region(state.rtt_ratio, *self.rtt_thresholds), region(state.loss_rate, *self.loss_thresholds)

    def choose(self, state: NetworkState) -> Choice:
        if state.sample_id > 0 and state.sample_id != self._last_sample:
            self._last_sample = state.sample_id
            r, l_ = self.regions(state)
            self.level = min(self.max_level, max(self.min_level, self.level + self.table[r][l_]))
            self.history.append((state.sample_id, r, l_, self.level))
        return Choice(self.codec, self.level)

    def observe(self, choice: Choice, raw_bytes: int, compressed_bytes: int, compress_s: float) -> None:
        return None


MIN_OBSERVED_BYTES = 64 << 10  # chunks smaller than this do not update the model selector's factors
RECOMPRESS_SPARE = 2.0  # compressors this many times faster than the link may redo the lookahead (see below)
PROBE_EVERY_CHUNKS = 8  # while sending raw, compress one chunk in this many to keep the estimates fresh
# Bandwidths the cold start of :class:`ModelSelector` guards against: 1 Mbit/s .. 1 Gbit/s, log-spaced. (Above
# ~1 Gbit/s sending raw beats every compressor on a few cores, and a cold start hedging for that would pick the
# fastest, weakest codec for every slower link.)
COLD_START_BANDWIDTHS_BYTES_PER_S: np.ndarray = np.logspace(np.log10(1e6 / 8), np.log10(1e9 / 8), 19)


@dataclass(frozen=True, slots=True)
class CodecProfile:
    """Measured behaviour of one codec/level on representative data (single core).

    ``ratio`` is output/input (Zhang et al. 2019's ``C_ratio``/``R_i``: smaller is better).
    """

    codec: str
    level: int
    compress_bytes_per_s: float
    decompress_bytes_per_s: float
    ratio: float

    @property
    def choice(self) -> Choice:
        return Choice(self.codec, self.level)


# What the model selector starts from before its own profiles of this migration's data are measured: the
# measurements of every codec and level on one core of this machine (one core, a real 322 MiB CRIU page image of a Python process; ratio as output/input).
DEFAULT_PROFILES: tuple[CodecProfile, ...] = (
    CodecProfile("none", 0, 1e12, 1e12, 1.0),
    CodecProfile("lz4", 1, 1141e6, 3020e6, 1 / 3.14),
    CodecProfile("lz4", 3, 209e6, 3900e6, 1 / 3.99),
    CodecProfile("lz4", 6, 118e6, 3900e6, 1 / 4.15),
    CodecProfile("lz4", 9, 46e6, 3900e6, 1 / 4.20),
    CodecProfile("zstd", 1, 1056e6, 2100e6, 1 / 5.6),
    CodecProfile("zstd", 3, 670e6, 2100e6, 1 / 5.6),
    CodecProfile("zstd", 6, 208e6, 2100e6, 1 / 5.69),
)


def measure_profiles(
    sample: bytes, candidates: Iterable[tuple[str, int]], min_time_s: float = 0.02
) -> tuple[CodecProfile, ...]:
    """Time every candidate's compression and decompression of ``sample`` on one core.

    Each measurement repeats until at least ``min_time_s`` has passed, to get above timer resolution.
    Times are the calling thread's CPU time (``time.thread_time``), not wall time: profiling runs beside other
    work (the round being hashed, other processes), and a preempted millisecond would make one level look
    many times slower than it is. What contention really costs is learned online (:class:`ModelSelector`).
    """
    if not sample:
        raise ValidationError("measure_profiles: the sample is empty")
    out = []
    for name, level in candidates:
        codec = shared_codec(name, level)
        comp_s, reps, t0 = 0.0, 0, time.thread_time()
        while True:
            z = codec.compress(sample)
            reps += 1
            comp_s = time.thread_time() - t0
            if comp_s >= min_time_s:
                break
        dec_s, dreps, t0 = 0.0, 0, time.thread_time()
        while True:
            codec.decompress(z, len(sample))
            dreps += 1
            dec_s = time.thread_time() - t0
            if dec_s >= min_time_s:
                break
        out.append(
            CodecProfile(
                name, level, len(sample) * reps / comp_s, len(sample) * dreps / dec_s, len(z) / len(sample)
            )
        )
    return tuple(out)


def effective_rate_bytes_per_s(
    compress_bytes_per_s: np.ndarray | float,
    decompress_bytes_per_s: np.ndarray | float,
    ratio: np.ndarray | float,
    bandwidth_bytes_per_s: float | np.ndarray,
    compress_cores: float,
    decompress_cores: float,
) -> np.ndarray:
    """Raw bytes per second a pipelined compressed transfer sustains (Zhang et al. 2019, eqs. 6 and 8).

    ``TPS_system = min(TPS_processing, TPS_transfer)`` with ``TPS_processing`` the compress (and, at the
    destination, decompress) throughput of all cores and ``TPS_transfer = B / R`` (eq. 6). Eq. 11
    (``V_compress (1 - C_ratio) >= V_network``) is the serial version of the same trade-off; with
    pipelining a codec pays off as soon as this rate exceeds ``B``.
    """
    return np.minimum(
        np.minimum(
            np.asarray(compress_bytes_per_s, dtype=float) * compress_cores,
            bandwidth_bytes_per_s / np.asarray(ratio, dtype=float),
        ),
        np.asarray(decompress_bytes_per_s, dtype=float) * decompress_cores,
    )


class ModelSelector:
    """Chooses the codec/level with the highest :func:`effective_rate_bytes_per_s` at the current bandwidth.

    ``profiles`` come from :func:`measure_profiles` (include ``("none", 0)`` to allow sending raw) and are
    refined online by :meth:`observe`. What a chunk teaches is applied to *every* profile through two
    shared factors, EWMAs of observed/profiled compress speed (how much CPU this transfer really gets:
    contention slows all levels alike) and of observed/profiled ratio (how compressible this data is
    compared with the profiling sample). Refining only the level in use would leave the others with stale,
    optimistic numbers and make the choice hop between levels.
    ``hysteresis``: keep the current choice unless another is that fraction faster, so noise in the
    bandwidth estimate does not make the level flap. Before any bandwidth is measured,
    ``bandwidth_hint_bytes_per_s`` (e.g. the link's nominal rate, or the last migration's goodput) stands in.
    Without a hint the bandwidth is unknown, so the cold start picks the *minimax-regret* candidate: the one
    whose worst-case share of the best achievable rate, over bandwidths from ``COLD_START_BANDWIDTHS_BYTES_PER_S``
    (1 Mbit/s .. 1 Gbit/s, the span of edge backhaul links), is highest. It is typically a fast entropy coder (zstd 1-3), which neither starves
    a fast link nor wastes a slow one - always taking the fastest compressor (lz4-1) used to cost up to 40 %
    more bytes on the wire for the first seconds of every migration.
    """

    def __init__(
        self,
        profiles: Sequence[CodecProfile],
        compress_cores: float,
        decompress_cores: float | None = None,
        hysteresis: float = 0.05,
        alpha: float = 0.3,
        bandwidth_hint_bytes_per_s: float | None = None,
    ) -> None:
        if compress_cores <= 0:
            raise ValidationError(f"model selector: compress_cores must be > 0, got {compress_cores}")
        if not 0 <= hysteresis < 1:
            raise ValidationError(f"model selector: hysteresis must be in [0, 1), got {hysteresis}")
        self.compress_cores = compress_cores
        self.decompress_cores = compress_cores if decompress_cores is None else decompress_cores
        self.hysteresis = hysteresis
        if bandwidth_hint_bytes_per_s is not None and bandwidth_hint_bytes_per_s <= 0:
            raise ValidationError(
                f"model selector: bandwidth_hint_bytes_per_s must be > 0, got {bandwidth_hint_bytes_per_s}"
            )
        self.bandwidth_hint_bytes_per_s = bandwidth_hint_bytes_per_s
        self._alpha = alpha
        self.current: int | None = None
        self.profiles: list[CodecProfile] = []
        self._raw_streak = 0  # chunks sent raw since the last compressed one
        self.replace_profiles(profiles)

    def replace_profiles(self, profiles: Sequence[CodecProfile]) -> None:
        """Use new profiles from now on (e.g. measured on this migration's data, replacing
        :data:`DEFAULT_PROFILES` the transfer started with). The learned factors restart at 1: they were
        relative to the old profiles. The current choice is kept if it is still a candidate."""
        if not profiles:
            raise ValidationError("model selector: no codec profiles given")
        for p in profiles:
            if p.compress_bytes_per_s <= 0 or p.decompress_bytes_per_s <= 0 or p.ratio <= 0:
                raise ValidationError(
                    f"model selector: profile {p.codec}-{p.level} has a non-positive rate or ratio"
                )
        old = self.profiles[self.current].choice if self.current is not None else None
        self.profiles = list(profiles)
        self._index = {p.choice: i for i, p in enumerate(self.profiles)}
        self._cpu = Ewma(self._alpha)  # observed / profiled compress speed
        self._data = Ewma(self._alpha)  # observed / profiled compression ratio
        self._cpu.update(1.0)
        self._data.update(1.0)
        self._speed0 = np.array([p.compress_bytes_per_s for p in self.profiles], dtype=float)
        self._ratio0 = np.array([p.ratio for p in self.profiles], dtype=float)
        self._is_none = np.array([p.codec == "none" for p in self.profiles])
        self.current = self._index.get(old) if old is not None else None

    @property
    def name(self) -> str:
        return "model"

    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """Current (compress speed, ratio) of every profile; ``none`` is never scaled."""
        cpu, data = float(self._cpu.value or 1.0), float(self._data.value or 1.0)
        speed = np.where(self._is_none, self._speed0, self._speed0 * cpu)
        ratio = np.where(self._is_none, self._ratio0, self._ratio0 * data)
        return speed, ratio

    def rates_bytes_per_s(self, bandwidth_bytes_per_s: float | np.ndarray) -> np.ndarray:
        """Effective rate of every profile at ``bandwidth_bytes_per_s`` (same order as ``profiles``; a column of
        bandwidths gives one row per bandwidth)."""
        speed, ratio = self._estimates()
        dec = np.array([p.decompress_bytes_per_s for p in self.profiles], dtype=float)
        return effective_rate_bytes_per_s(
            speed, dec, ratio, bandwidth_bytes_per_s, self.compress_cores, self.decompress_cores
        )

    def _bandwidth(self, state: NetworkState) -> float | None:
        bw = state.bandwidth_bytes_per_s if state.bandwidth_bytes_per_s else self.bandwidth_hint_bytes_per_s
        return bw if bw is not None and bw > 0 else None

    def _pick(self, bw: float | None, floor_bytes_per_s: float | None = None) -> int:
        if bw is None:
            return self.cold_start_index(floor_bytes_per_s)
        rates = self.rates_bytes_per_s(bw)
        best = int(np.argmax(rates))
        cur = self.current
        if cur is not None and rates[cur] >= (1.0 - self.hysteresis) * rates[best]:
            best = cur
        return best

    def preferred(self, state: NetworkState) -> Choice:
        """What :meth:`choose` would pick at ``state`` (hysteresis included), without changing any state."""
        return self.profiles[self._pick(self._bandwidth(state), state.bandwidth_floor_bytes_per_s)].choice

    def worth_recompressing(self, old: Choice, new: Choice, state: NetworkState) -> bool:
        """Whether a chunk compressed ahead as ``old`` should be compressed again as ``new`` before it is sent.

        Yes when, at the *measured* bandwidth (never the cold start's guess), ``new`` puts at least
        ``hysteresis`` fewer bytes on the link and leaves the compressors idle most of the time: its output
        rate on all cores, ``cores * V_new * R_new``, is at least ``RECOMPRESS_SPARE`` times the link's ``B``.
        Then compressing the few chunks of the lookahead again finishes long before their turn on the link
        and costs nothing the transfer waits for. This happens when the link became slower than ``old`` was
        chosen for; when it became faster, what is already compressed is sent as it is (the CPU is then what
        limits the transfer, and compressing again would spend it).
        """
        bw = state.bandwidth_bytes_per_s
        i, j = self._index.get(old), self._index.get(new)
        if not bw or bw <= 0 or i is None or j is None or i == j or self._is_none[j]:
            return False
        speed, ratio = self._estimates()
        fewer_bytes = ratio[j] <= (1.0 - self.hysteresis) * ratio[i]
        return bool(fewer_bytes and self.compress_cores * speed[j] * ratio[j] >= RECOMPRESS_SPARE * bw)

    def choose(self, state: NetworkState) -> Choice:
        bw = self._bandwidth(state)
        best = self._pick(bw, state.bandwidth_floor_bytes_per_s)
        self.current = best
        if self._is_none[best]:
            # Sending raw teaches nothing about the data or the CPU, so a choice of ``none`` made on a wrong
            # estimate would never be revisited: every PROBE_EVERY_CHUNKS-th raw chunk is compressed by the
            # best compressor instead (without changing the current choice), refreshing both factors.
            self._raw_streak += 1
            if self._raw_streak >= PROBE_EVERY_CHUNKS:
                self._raw_streak = 0
                top = float(COLD_START_BANDWIDTHS_BYTES_PER_S[-1])
                rates = self.rates_bytes_per_s(bw) if bw else self.rates_bytes_per_s(top)
                return self.profiles[int(np.argmax(np.where(self._is_none, -np.inf, rates)))].choice
        else:
            self._raw_streak = 0
        return self.profiles[best].choice

    def cold_start_index(self, floor_bytes_per_s: float | None = None) -> int:
        """Index of the minimax-regret profile over :data:`COLD_START_BANDWIDTHS_BYTES_PER_S` (see the class doc), or
        over those at or above ``floor_bytes_per_s`` when the link is known to be at least that fast
        (``NetworkState.bandwidth_floor_bytes_per_s``: what TCP got acknowledged while it ramped up). Once 50 MB/s
        have crossed, hedging against a 1 Mbit/s link only weighs links that cannot be this one."""
        grid = np.asarray(COLD_START_BANDWIDTHS_BYTES_PER_S, dtype=float)
        if floor_bytes_per_s is not None and floor_bytes_per_s > grid[0]:
            grid = np.concatenate(([floor_bytes_per_s], grid[grid > floor_bytes_per_s]))
        # (bandwidths, profiles) in one broadcast: this runs for every chunk until a bandwidth is measured, on
        # the event loop that also encrypts the data connection (one call per bandwidth took ~150 us a chunk)
        rates = self.rates_bytes_per_s(grid[:, None])
        share = rates / rates.max(axis=1, keepdims=True)
        return int(np.argmax(share.min(axis=0)))

    def observe(self, choice: Choice, raw_bytes: int, compressed_bytes: int, compress_s: float) -> None:
        i = self._index.get(choice)
        if i is None or raw_bytes < MIN_OBSERVED_BYTES or self._is_none[i]:
            return  # small image files (core, fdinfo...) say little about the pages and cost mostly overhead
        self._data.update((compressed_bytes / raw_bytes) / float(self._ratio0[i]))
        if compress_s > 0:
            self._cpu.update((raw_bytes / compress_s) / float(self._speed0[i]))

    def profile(self, choice: Choice) -> CodecProfile:
        """The current (online-refined) estimate for ``choice``."""
        i = self._index[choice]
        speed, ratio = self._estimates()
        return replace(self.profiles[i], compress_bytes_per_s=float(speed[i]), ratio=float(ratio[i]))
