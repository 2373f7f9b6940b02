"""The per-node ShareOn agent (Maheshwari et al. 2018, Algorithm 2) and the two migrating baselines of sec. VI,
on hand-built views whose right answer is worked out in each test."""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs.shareon import Reason, RegionThresholds
from edgemigrate.policies.shareon import (
    BandwidthOnlyAgent,
    ContainerState,
    Neighbour,
    NodeReport,
    NodeView,
    ProcessingOnlyAgent,
    ShareOnAgent,
    ShareOnParams,
    parse_reports,
    report_from_wire,
)

GIB = float(1 << 30)
TH = RegionThresholds(sp_th1_hz=1e9, sp_th2_hz=2e9, m_th1_bytes=0.25 * GIB, m_th2_bytes=0.5 * GIB)
P = ShareOnParams(TH, t_app_th_s=0.1, l_d_s_per_m=2e-6, user_latency_s=0.01, cost_th_s=10.0)


def report(node_id: str, x_m: float, *, k: int = 2, util: float = 0.2, alpha: float = 0.05, inflight: int = 0,
           cpu_hz: float = 8e9) -> NodeReport:
    return NodeReport(node_id, x_m, 0.0, cpu_hz, 8 * GIB, k, util, 0.02, alpha, 0.0, inflight)


def container(cid: str, x_m: float, *, t_net: float = 0.02, t_proc: float = 0.15, demand: float = 0.4e9,
              migrating: bool = False) -> ContainerState:
    return ContainerState(cid, x_m, 0.0, 50e6, demand, t_net, t_proc, migrating)


def view(me: NodeReport, containers: list[ContainerState], nbs: list[NodeReport],
         bw: float | list[float] = 1e9) -> NodeView:
    bws = bw if isinstance(bw, list) else [bw] * len(nbs)
    return NodeView(0.0, me, tuple(containers), tuple(Neighbour(r, b) for r, b in zip(nbs, bws, strict=True)))


ME = report("a", 0.0, k=20, util=1.5, alpha=0.1)  # 8e9/20 = 0.4e9 per container: High


def test_no_container_over_the_threshold_means_no_migration() -> None:
    v = view(ME, [container("c1", 0.0, t_net=0.02, t_proc=0.07)], [report("b", 1000.0)])
    assert ShareOnAgent(P).decide(v) == []


def test_a_slow_container_goes_to_the_favourable_neighbour_of_least_estimated_latency() -> None:
    # b: 1 km from the user, Low (4e9 Hz per container), util 0.2 -> t_p = 0.02 + (0.2 + 0.05) * 0.05 = 32.5 ms
    # c: same place, Med (1.6e9 per container), util 0.6 -> 0.02 + 0.65 * 0.05 = 52.5 ms
    nbs = [report("b", 1000.0, k=2), report("c", 1000.0, k=5, util=0.6)]
    # the user is next to a (11 ms network, under the 12 ms of a user 1 km away): processing is the reason
    [d] = ShareOnAgent(P).decide(view(ME, [container("c1", 0.0, t_net=0.011)], nbs))
    assert (d.container_id, d.source_id, d.destination_id) == ("c1", "a", "b")
    assert d.est_total_s == pytest.approx(0.01 + 0.002 + 0.0325)
    assert d.cost_s == pytest.approx(50e6 * 8 / 1e9)
    assert d.reason is Reason.PROCESSING


def test_a_high_region_neighbour_is_a_candidate_only_when_closer_to_the_user() -> None:
    busy_far = report("far", 5000.0, k=20, util=0.1)  # High (0.4e9/container), farther than a
    busy_near = report("near", 2000.0, k=20, util=0.1)  # High, but the user is at 2 km: closer than a
    user = container("c1", 2000.0, t_net=0.04, t_proc=0.1)
    [d] = ShareOnAgent(P).decide(view(ME, [user], [busy_far, busy_near]))
    assert d.destination_id == "near"
    assert ShareOnAgent(P).decide(view(ME, [user], [busy_far])) == []


def test_the_cost_threshold_counts_migrations_already_heading_there_and_this_rounds_own() -> None:
    # 50 MB over 100 Mbit/s = 4 s; with 1 in flight 8 s < 10 s; a second one this round would be 12 s
    nbs = [report("b", 1000.0, k=2, inflight=1)]
    cs = [container("c1", 0.0, t_proc=0.2), container("c2", 0.0, t_proc=0.15)]
    out = ShareOnAgent(P).decide(view(ME, cs, nbs, bw=100e6))
    assert [(d.container_id, d.destination_id) for d in out] == [("c1", "b")]
    assert out[0].cost_s == pytest.approx(8.0)
    assert ShareOnAgent(P).decide(view(ME, cs, [report("b", 1000.0, k=2, inflight=2)], bw=100e6)) == []


def test_this_rounds_choices_raise_the_destinations_load_for_the_next_container() -> None:
    # each container adds 0.4e9 / 8e9 = 0.05 to b's utilFac; with alpha = 1 s the second container's estimate
    # at b rises from 0.02 + 0.25 = 0.27 s past its measured 0.26 s, so it goes to c instead
    nbs = [report("b", 1000.0, k=2, util=0.2, alpha=1.0), report("c", 1000.0, k=2, util=0.22, alpha=1.0)]
    cs = [container("c1", 0.0, t_proc=0.3), container("c2", 0.0, t_proc=0.29)]
    out = ShareOnAgent(P).decide(view(ME, cs, nbs))
    assert [(d.container_id, d.destination_id) for d in out] == [("c1", "b"), ("c2", "c")]


def test_zero_bandwidth_and_migrating_containers_and_itself_are_never_chosen() -> None:
    cs = [container("c1", 0.0), container("c2", 0.0, migrating=True)]
    nbs = [report("b", 1000.0), report("a", 0.0, k=0)]
    for agent in (ShareOnAgent(P), ProcessingOnlyAgent(P), BandwidthOnlyAgent(P)):
        assert agent.decide(view(ME, cs, nbs, bw=[0.0, 1e9])) == []


def test_processing_only_ignores_distance_and_bandwidth_only_ignores_load() -> None:
    idle_far = report("idle", 20_000.0, k=1, util=0.0)
    busy_near = report("busy", 500.0, k=40, util=0.95, alpha=0.2)
    user = container("c1", 400.0, t_net=0.03, t_proc=0.2)
    v = view(ME, [user], [idle_far, busy_near], bw=[1e9, 1e9])
    assert [d.destination_id for d in ProcessingOnlyAgent(P).decide(v)] == ["idle"]
    assert [d.destination_id for d in BandwidthOnlyAgent(P).decide(v)] == ["busy"]
    # ShareOn: idle is 20 km away (10 + 40 ms network + 20 ms processing = 70 ms < 230 ms) and Low;
    # busy is closer but estimates 0.02 + (0.95 + 0.05) * 0.2 = 220 ms processing -> idle
    assert [d.destination_id for d in ShareOnAgent(P).decide(v)] == ["idle"]


def test_bandwidth_only_prefers_the_link_with_most_available_bandwidth() -> None:
    nbs = [report("b", 500.0, inflight=0), report("c", 500.0, inflight=3)]
    user = container("c1", 400.0, t_net=0.03)
    assert [d.destination_id for d in BandwidthOnlyAgent(P).decide(view(ME, [user], nbs, bw=[1e8, 1e9]))] == ["c"]
    assert [d.destination_id for d in BandwidthOnlyAgent(P).decide(view(ME, [user], nbs, bw=[1e9, 1e9]))] == ["b"]


def test_bad_parameters_are_one_line_errors_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="cost_th_s"):
        ShareOnParams(TH, cost_th_s=0.0)
    with pytest.raises(ValidationError, match="l_d_s_per_m"):
        ShareOnParams(TH, l_d_s_per_m=float("nan"))
    with pytest.raises(ValidationError, match="thresholds"):
        ShareOnParams("th")  # type: ignore[arg-type]


def test_a_report_survives_the_wire() -> None:
    r = report("node-7", -12.5, k=3, inflight=2)
    assert report_from_wire(r.to_wire()) == r


GOOD = report("b", 1.0).to_wire()


@pytest.mark.parametrize(("change", "match"), [
    ({"node_id": "../etc"}, "node_id"),
    ({"node_id": "b\n"}, "node_id"),
    ({"util_fac": float("nan")}, "util_fac"),
    ({"cpu_hz": -1.0}, "cpu_hz"),
    ({"cpu_hz": "8e9"}, "cpu_hz"),
    ({"n_containers": True}, "n_containers"),
    ({"n_containers": 10**12}, "n_containers"),
    ({"incoming_migrations": 1.5}, "incoming_migrations"),
    ({"x_m": 1e300}, "x_m"),
    ({"evil": 1}, "unknown keys"),
])
def test_garbage_reports_are_refused_with_the_key_named(change: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        report_from_wire({**GOOD, **change})


def test_missing_keys_and_non_mappings_are_refused() -> None:
    with pytest.raises(ValidationError, match="alpha_e_s"):
        report_from_wire({k: v for k, v in GOOD.items() if k != "alpha_e_s"})
    with pytest.raises(ValidationError, match="mapping"):
        report_from_wire([1, 2, 3])


def test_neighbours_that_answer_garbage_or_nothing_are_unavailable_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    answers = [("b", GOOD), ("c", None), ("d", {**GOOD, "node_id": "d", "cpu_hz": float("inf")}),
               ("e", GOOD), ("f", b"\xff\x00")]
    with caplog.at_level(logging.WARNING):
        got = parse_reports(answers)
    assert list(got) == ["b"]
    text = caplog.text
    assert "c did not answer" in text and "d answered garbage" in text and "e answered as b" in text
    assert "f answered garbage" in text


_num = st.floats(0.0, 5.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(-5e3, 5e3), st.integers(0, 30), _num, st.floats(0.0, 0.3),
                          st.integers(0, 4), st.sampled_from([0.0, 1e8, 1e9])), min_size=0, max_size=6),
       st.lists(st.tuples(st.floats(-5e3, 5e3), st.floats(0.0, 0.1), st.floats(0.0, 0.5), st.booleans()),
                min_size=0, max_size=8))
def test_every_decision_is_a_distinct_own_container_to_a_neighbour_that_passes_algorithm_2(
        nbs: list[tuple[float, int, float, float, int, float]], cs: list[tuple[float, float, float, bool]]) -> None:
    reports = [report(f"n{i}", x, k=k, util=u, alpha=al, inflight=inf) for i, (x, k, u, al, inf, _) in enumerate(nbs)]
    conts = [container(f"c{i}", x, t_net=tn, t_proc=tp, migrating=mg) for i, (x, tn, tp, mg) in enumerate(cs)]
    v = view(ME, conts, reports, bw=[b for *_, b in nbs])
    by_id = {c.container_id: c for c in conts}
    for agent in (ShareOnAgent(P), ProcessingOnlyAgent(P), BandwidthOnlyAgent(P)):
        out = agent.decide(v)
        assert len({d.container_id for d in out}) == len(out)
        for d in out:
            c = by_id[d.container_id]
            assert not c.migrating and c.t_total_s > P.t_app_th_s and d.source_id == "a"
            assert d.destination_id in {r.node_id for r in reports} and math.isfinite(d.cost_s)
            if isinstance(agent, ShareOnAgent):
                assert d.est_total_s < c.t_total_s and d.cost_s < P.cost_th_s
