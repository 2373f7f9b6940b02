from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError, ValidationError
from edgemigrate.engine.adaptive.netstate import INITIAL_STATE, NetworkState
from edgemigrate.engine.adaptive.selectors import (
    COLD_START_BANDWIDTHS_BYTES_PER_S,
    DEFAULT_PROFILES,
    MIN_OBSERVED_BYTES,
    PROBE_EVERY_CHUNKS,
    SEED_RULE_TABLE,
    Choice,
    CodecProfile,
    FixedSelector,
    ModelSelector,
    RuleSelector,
    measure_profiles,
    region,
)
from edgemigrate.engine.codecs.images import ImageCodecPolicy, is_page_image

MB = 1e6
RTT_POINTS = {0: 0.5, 1: 0.95, 2: 1.5}  # one RTT ratio inside each region
LOSS_POINTS = {0: 0.01, 1: 0.3, 2: 0.7}


def _state(i: int, rtt_ratio: float, loss: float, bw: float | None = None) -> NetworkState:
    return NetworkState(i, 0.01, rtt_ratio, loss, bw)


def test_seed_table_is_a_monotone_permutation_of_plus4_to_minus4() -> None:
    flat = sorted(itertools.chain.from_iterable(SEED_RULE_TABLE))
    assert flat == list(range(-4, 5))
    t = np.array(SEED_RULE_TABLE)
    assert (np.diff(t, axis=0) <= 0).all() and (np.diff(t, axis=1) <= 0).all()


@pytest.mark.parametrize(("r", "l_"), list(itertools.product(range(3), range(3))))
def test_every_region_applies_its_delta(r: int, l_: int) -> None:
    expected = {
        (0, 0): 4,
        (0, 1): 3,
        (1, 0): 2,
        (1, 1): 1,
        (2, 0): 0,
        (2, 1): -1,
        (0, 2): -2,
        (1, 2): -3,
        (2, 2): -4,
    }
    sel = RuleSelector(min_level=1, max_level=12, default_level=6)
    state = _state(1, RTT_POINTS[r], LOSS_POINTS[l_])
    assert sel.regions(state) == (r, l_)
    assert sel.choose(state) == Choice("lz4", 6 + expected[(r, l_)])


def test_rule_default_clamping_and_holding_between_samples() -> None:
    sel = RuleSelector()
    assert sel.choose(INITIAL_STATE) == Choice("lz4", 4)  # default level before any measurement
    good = _state(1, 0.5, 0.0)
    assert sel.choose(good).level == 8
    assert sel.choose(good).level == 8  # same sample: no second adjustment
    assert sel.choose(_state(2, 0.5, 0.0)).level == 9  # clamped at 9
    assert sel.choose(_state(3, 2.0, 0.9)).level == 5
    assert sel.choose(_state(4, 2.0, 0.9)).level == 1
    assert sel.choose(_state(5, 2.0, 0.9)).level == 1  # clamped at 1
    assert [h[3] for h in sel.history] == [8, 9, 5, 1, 1]


def test_region_boundaries_belong_to_the_better_region() -> None:
    assert region(0.85, 0.85, 1.05) == 0
    assert region(1.05, 0.85, 1.05) == 1
    assert region(1.0500001, 0.85, 1.05) == 2


def test_rule_selector_validates() -> None:
    with pytest.raises(ValidationError):
        RuleSelector(max_level=13)
    with pytest.raises(ValidationError):
        RuleSelector(table=((1, 2), (3, 4)))
    with pytest.raises(ValidationError):
        RuleSelector(loss_thresholds=(0.5, 0.2))
    with pytest.raises(ConfigError, match="did you mean"):
        RuleSelector(codec="lz5")
    with pytest.raises(ValidationError):
        FixedSelector("zlib", 10)


# synthetic profiles: speed falls and ratio improves with level (per core, bytes/s)
PROFILES = [
    CodecProfile("none", 0, 1e12, 1e12, 1.0),
    CodecProfile("lz4", 1, 1000 * MB, 3000 * MB, 0.32),
    CodecProfile("lz4", 6, 120 * MB, 4000 * MB, 0.24),
    CodecProfile("zstd", 3, 600 * MB, 2000 * MB, 0.18),
    CodecProfile("zstd", 19, 2.4 * MB, 2000 * MB, 0.155),
]


def _analytic_best(bw: float, cores: float) -> Choice:
    best = max(PROFILES, key=lambda p: min(cores * p.compress_bytes_per_s, bw / p.ratio, cores * p.decompress_bytes_per_s))
    return best.choice


@pytest.mark.parametrize("bw_mbit", [1, 5, 10, 100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("cores", [1, 2, 8])
def test_model_selector_picks_the_analytic_optimum(bw_mbit: float, cores: int) -> None:
    bw = bw_mbit * 1e6 / 8
    sel = ModelSelector(PROFILES, compress_cores=cores, hysteresis=0.0)
    assert sel.choose(_state(1, 1.0, 0.0, bw)) == _analytic_best(bw, cores)


def test_model_selector_known_regimes() -> None:
    sel = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.0)
    # 1 Mbit/s: zstd-19 on 2 cores = 4.8 MB/s < 0.125/0.155; pick zstd-19 (link-bound: best ratio wins)
    assert sel.choose(_state(1, 1, 0, 0.125 * MB)) == Choice("zstd", 19)
    # 1 Gbit/s: zstd-3 gives min(1200, 125/0.18=694) = 694 MB/s, best
    assert sel.choose(_state(2, 1, 0, 125 * MB)) == Choice("zstd", 3)
    # 100 Gbit/s link: CPU-bound; sending raw (12.5 GB/s) beats every compressor
    assert sel.choose(_state(3, 1, 0, 12_500 * MB)) == Choice("none", 0)
    # unknown bandwidth: the minimax-regret choice over 1 Mbit/s..1 Gbit/s, or the analytic optimum at the hint
    cold = sel.choose(INITIAL_STATE)
    assert cold.codec == "zstd" and cold.level <= 6  # an entropy coder fast enough for 1 Gbit/s, not lz4-1
    shares = []
    for b in COLD_START_BANDWIDTHS_BYTES_PER_S:
        rates = sel.rates_bytes_per_s(float(b))
        shares.append(rates / rates.max())
    worst = np.min(shares, axis=0)
    assert worst[sel.profiles.index(next(p for p in sel.profiles if p.choice == cold))] == worst.max()
    assert worst.max() > worst[[p.choice for p in sel.profiles].index(Choice("lz4", 1))]
    hinted = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.0, bandwidth_hint_bytes_per_s=0.125 * MB)
    assert hinted.choose(INITIAL_STATE) == Choice("zstd", 19)


def test_model_selector_learns_from_observations_and_hysteresis_holds() -> None:
    sel = ModelSelector(PROFILES, compress_cores=1, hysteresis=0.0)
    bw = 62.5 * MB  # 500 Mbit/s
    assert sel.choose(_state(1, 1, 0, bw)) == Choice("zstd", 3)  # min(600, 347) beats lz4-1's min(1000, 195)
    # the CPU turns out 12x slower than profiled (contention): every level slows alike; and the data
    # compresses 10 % worse than the profiling sample
    for _ in range(12):
        sel.observe(Choice("zstd", 3), 1_000_000, 198_000, 1_000_000 / (50 * MB))
    z3, l1 = sel.profile(Choice("zstd", 3)), sel.profile(Choice("lz4", 1))
    assert z3.compress_bytes_per_s < 70 * MB and l1.compress_bytes_per_s < 120 * MB
    assert l1.compress_bytes_per_s / z3.compress_bytes_per_s == pytest.approx(1000 / 600)  # the ordering of levels is kept
    assert z3.ratio == pytest.approx(0.198, rel=0.02) and l1.ratio == pytest.approx(0.352, rel=0.02)
    # lz4-1 is now CPU-bound near 100 MB/s, zstd-3 near 60 MB/s, raw at 62.5 MB/s: lz4-1 is best
    rates = sel.rates_bytes_per_s(bw)
    assert sel.choose(_state(2, 1, 0, bw)) == PROFILES[int(np.argmax(rates))].choice == Choice("lz4", 1)
    sel.observe(Choice("none", 0), 1000, 1000, 0.0)  # raw chunks teach nothing
    assert sel.profile(Choice("lz4", 1)) == l1
    # at 250 MB/s lz4-1 (min(1000, 781) = 781) beats zstd-3 (min(600, 1389) = 600) by 30 %:
    # without hysteresis the selector switches, with 50 % hysteresis it holds zstd-3
    eager = ModelSelector(PROFILES, compress_cores=1, hysteresis=0.0)
    sticky = ModelSelector(PROFILES, compress_cores=1, hysteresis=0.5)
    for s in (eager, sticky):
        assert s.choose(_state(1, 1, 0, 10 * MB)) == Choice("zstd", 3)
    assert eager.choose(_state(2, 1, 0, 250 * MB)) == Choice("lz4", 1)
    assert sticky.choose(_state(2, 1, 0, 250 * MB)) == Choice("zstd", 3)


def test_measure_profiles_on_real_data() -> None:
    data = (b"edge migration " * 2000) + bytes(20_000)
    profs = measure_profiles(data, [("none", 0), ("lz4", 1), ("zstd", 3)], min_time_s=0.001)
    assert [p.choice for p in profs] == [Choice("none", 0), Choice("lz4", 1), Choice("zstd", 3)]
    assert profs[0].ratio == 1.0
    assert all(p.ratio < 0.1 for p in profs[1:])
    assert all(p.compress_bytes_per_s > 0 and p.decompress_bytes_per_s > 0 for p in profs)
    with pytest.raises(ValidationError):
        ModelSelector([], compress_cores=1)


def test_image_policy_uses_wkdm_for_pages_only() -> None:
    assert is_page_image("pages-1.img") and is_page_image("pages-12.img")
    assert not is_page_image("pagemap-1.img") and not is_page_image("xpages-1.img")
    pol = ImageCodecPolicy()
    assert pol.codec_for("pages-3.img", Choice("lz4", 5)).name == "wkdm"
    c = pol.codec_for("core-1.img", Choice("lz4", 5))
    assert (c.name, c.level) == ("lz4", 5)
    assert ImageCodecPolicy(page_codec=None).codec_for("pages-3.img", Choice("zstd", 2)).name == "zstd"
    with pytest.raises(ConfigError):
        ImageCodecPolicy(page_codec="wkdn")


def test_model_selector_probes_a_compressor_while_sending_raw_and_recovers() -> None:
    # profiled on a bad sample: everything looks incompressible, so raw wins at 100 Mbit/s
    bad = [CodecProfile("none", 0, 1e12, 1e12, 1.0), CodecProfile("zstd", 1, 300 * MB, 1000 * MB, 1.02)]
    sel = ModelSelector(bad, compress_cores=2, hysteresis=0.0)
    bw = 12.5 * MB
    picks = [sel.choose(_state(i + 1, 1, 0, bw)) for i in range(PROBE_EVERY_CHUNKS)]
    assert picks[:-1] == [Choice("none", 0)] * (PROBE_EVERY_CHUNKS - 1)
    assert picks[-1] == Choice("zstd", 1)  # the probe
    # the probe shows the real data compresses 3x: the selector switches to compressing for good
    for _ in range(3):
        sel.observe(Choice("zstd", 1), 1 << 20, (1 << 20) // 3, (1 << 20) / (300 * MB))
    assert [sel.choose(_state(100 + i, 1, 0, bw)) for i in range(3)] == [Choice("zstd", 1)] * 3


def test_model_selector_ignores_tiny_chunks() -> None:
    sel = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.0)
    before = sel.profile(Choice("zstd", 3))
    sel.observe(Choice("zstd", 3), MIN_OBSERVED_BYTES - 1, 10, 1.0)  # a 1 s, 6000x "compression" of a tiny file
    assert sel.profile(Choice("zstd", 3)) == before


def test_model_selector_starts_from_defaults_and_takes_measured_profiles_midway() -> None:
    sel = ModelSelector(DEFAULT_PROFILES, compress_cores=2, hysteresis=0.0)
    first = sel.choose(_state(1, 1, 0, 12.5 * MB))  # 100 Mbit/s: a zstd level by the default profiles
    assert first.codec == "zstd"
    sel.observe(first, 1 << 20, (1 << 20) // 2, 0.01)  # this data compresses only 2x: factors move
    # measured on this migration's data: zstd-9 exists now, and the CPU is far slower than the table
    measured = [CodecProfile("none", 0, 1e12, 1e12, 1.0), CodecProfile("zstd", 1, 50 * MB, 500 * MB, 0.40),
                CodecProfile("zstd", 9, 5 * MB, 500 * MB, 0.30)]
    sel.replace_profiles(measured)
    assert sel.profile(Choice("zstd", 9)).ratio == pytest.approx(0.30)  # factors restart from the new profiles
    assert sel.choose(_state(2, 1, 0, 1.25 * MB)) == Choice("zstd", 9)  # 10 Mbit/s: the strong level
    with pytest.raises(ValidationError):
        sel.replace_profiles([])


def test_preferred_is_what_choose_would_pick_without_changing_the_selector() -> None:
    sel = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.05)
    assert sel.choose(_state(1, 1, 0, 125 * MB)) == Choice("zstd", 3)
    slow = _state(2, 1, 0, 0.125 * MB)
    assert sel.preferred(slow) == Choice("zstd", 19)
    assert sel.current == sel.profiles.index(PROFILES[3])  # still zstd-3: preferred() chose nothing
    assert sel.choose(slow) == Choice("zstd", 19)


def test_worth_recompressing_only_for_a_slower_link_with_spare_compressors() -> None:
    sel = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.05)
    lz4, z3, z19 = Choice("lz4", 1), Choice("zstd", 3), Choice("zstd", 19)
    at = lambda bw: _state(1, 1, 0, bw)  # noqa: E731
    # 10 MB/s: zstd-3's output on 2 cores (2 * 600 * 0.18 = 216 MB/s) is far above the link: redo lz4-1 chunks
    assert sel.worth_recompressing(lz4, z3, at(10 * MB))
    # ... but not the other way round (more bytes), nor to the same choice, nor to sending raw
    assert not sel.worth_recompressing(z3, lz4, at(10 * MB))
    assert not sel.worth_recompressing(z3, z3, at(10 * MB))
    assert not sel.worth_recompressing(lz4, Choice("none", 0), at(10 * MB))
    # 1 MB/s: zstd-19's output (2 * 2.4 * 0.155 = 0.74 MB/s) cannot keep up with the link, so compressing
    # chunks again with it would make the link wait
    assert not sel.worth_recompressing(z3, z19, at(1 * MB))
    assert sel.worth_recompressing(z3, z19, at(0.2 * MB))  # 0.74 >= 2 x 0.2 MB/s
    # never on the cold start's guess: only a measured bandwidth says the link got slower
    assert not sel.worth_recompressing(lz4, z3, INITIAL_STATE)
    assert not sel.worth_recompressing(lz4, Choice("zlib", 6), at(10 * MB))  # not a candidate


def test_cold_start_hedges_only_over_links_at_least_as_fast_as_the_floor() -> None:
    sel = ModelSelector(PROFILES, compress_cores=2, hysteresis=0.0)
    unbounded = sel.preferred(INITIAL_STATE)
    assert unbounded == sel.profiles[sel.cold_start_index()].choice

    def minimax(grid: np.ndarray) -> Choice:
        rates = sel.rates_bytes_per_s(grid[:, None])
        return sel.profiles[int(np.argmax((rates / rates.max(axis=1, keepdims=True)).min(axis=0)))].choice

    floor = 60 * MB  # what crossed while TCP ramped up
    bounded = NetworkState(3, 0.02, 1.0, 0.0, None, floor)
    grid = np.concatenate(([floor], COLD_START_BANDWIDTHS_BYTES_PER_S[COLD_START_BANDWIDTHS_BYTES_PER_S > floor]))
    assert sel.preferred(bounded) == minimax(grid)
    # the test profiles: zstd-3 is right from 60 MB/s up (CPU-bound at 1200 MB/s), zstd-19 no longer a worry
    assert sel.preferred(bounded) == Choice("zstd", 3)
    # a link known to carry 400 MB/s (above the grid): zstd-3 would now starve it, lz4-1 is the analytic best
    assert unbounded == Choice("zstd", 3)
    assert sel.preferred(NetworkState(4, 0.02, 1.0, 0.0, None, 400 * MB)) == _analytic_best(400 * MB, 2) \
        == Choice("lz4", 1)
    # a floor above every grid point leaves the floor itself: the analytic best there
    fast = NetworkState(4, 0.02, 1.0, 0.0, None, 20_000 * MB)
    assert sel.preferred(fast) == _analytic_best(20_000 * MB, 2) == Choice("none", 0)
    # a measured bandwidth overrides any floor
    assert sel.preferred(NetworkState(5, 0.02, 1.0, 0.0, 0.125 * MB, 60 * MB)) == Choice("zstd", 19)
