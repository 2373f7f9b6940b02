"""The ShareOn node loop without sockets: its two I/O seams (asking an agent for a report, asking its own
agent to migrate) are replaced, so the rounds, the record order, the confirmation and the handling of
neighbours that answer garbage or nothing are checked on their own. The real loop over real agents runs in
tests/experiments/shareon/test_emulation_real.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from edgemigrate.control.reports import HostReport, ServiceReport
from edgemigrate.core.errors import EngineError
from edgemigrate.costs.shareon import RegionThresholds
from edgemigrate.edgenode import loop as loop_mod
from edgemigrate.edgenode.loop import NodeLoop, NodeLoopConfig
from edgemigrate.policies.shareon import ShareOnAgent, ShareOnParams


def _report(host: str, util: float, proc_s: float | None = None) -> HostReport:
    svcs = () if proc_s is None else (ServiceReport("plates", "platedetect", "running", 0.0, proc_s, 0.02),)
    return HostReport(host, 1.7e9, 2.0, util, 10.0, 1 << 30, 8 << 30, svcs)


def _loop(answers: dict[str, list[HostReport | None]], confirm: int = 1) -> tuple[NodeLoop, list[dict[str, Any]],
                                                                                  list[tuple[str, str]]]:
    records: list[dict[str, Any]] = []
    moves: list[tuple[str, str]] = []
    cfg = NodeLoopConfig("edge1", Path("/nonexistent"), {h: ("127.0.0.1", 1) for h in ("edge1", "edge2", "edge3")},
                         "0" * 64, {}, {"plates": (0.0, 0.0, 0.005, 4.0)}, {"edge2": 100e6, "edge3": 100e6},
                         t_p_avg_s=0.03, alpha_prior_s=0.06, confirm_rounds=confirm)
    params = ShareOnParams(RegionThresholds(1e8, 2e8, 64e6, 128e6), t_app_th_s=0.1, l_d_s_per_m=0.0,
                           user_latency_s=0.0, cost_th_s=120.0)
    nl = NodeLoop(cfg, ShareOnAgent(params), records.append, clock=lambda: float(len(records)))

    async def ask(host: str) -> HostReport | None:
        return answers[host].pop(0)

    async def migrate(d: Any) -> None:
        moves.append((d.container_id, d.destination_id))
        records.append({"event": "migration_start", "service": d.container_id})

    nl._ask = ask  # type: ignore[method-assign]
    nl._migrate = migrate  # type: ignore[method-assign]
    return nl, records, moves


def test_a_slow_service_moves_to_the_idle_neighbour_after_the_round_is_recorded() -> None:
    nl, records, moves = _loop({"edge1": [_report("edge1", 0.9, 0.25)], "edge2": [_report("edge2", 0.05)],
                                "edge3": [_report("edge3", 0.95)]})
    asyncio.run(nl.step())
    assert moves == [("plates", "edge2")]
    assert [r["event"] for r in records] == ["round", "migration_start"]
    rnd = records[0]
    assert rnd["decisions"][0]["to"] == "edge2" and rnd["containers"]["plates"]["t_total_s"] == pytest.approx(0.255)


def test_a_fast_service_stays() -> None:
    nl, records, moves = _loop({"edge1": [_report("edge1", 0.1, 0.04)], "edge2": [_report("edge2", 0.0)],
                                "edge3": [_report("edge3", 0.0)]})
    asyncio.run(nl.step())
    assert moves == [] and records[0]["decisions"] == []


def test_confirmation_needs_consecutive_rounds() -> None:
    slow, fast = _report("edge1", 0.9, 0.25), _report("edge1", 0.1, 0.04)
    idle = _report("edge2", 0.0)
    nl, records, moves = _loop({"edge1": [slow, fast, slow, slow], "edge2": [idle] * 4, "edge3": [None] * 4},
                               confirm=2)
    for _ in range(4):
        asyncio.run(nl.step())
    assert moves == [("plates", "edge2")]  # rounds 1 and 3 alone do not count; 3 then 4 do
    assert [d["confirmed"] for r in records if r["event"] == "round" for d in r["decisions"]] == [False, False, True]


def test_neighbours_that_answer_nothing_or_lie_about_who_they_are_are_left_out() -> None:
    # edge2 does not answer, edge3 answers with edge2's identity: no usable neighbour, no move, no crash
    nl, records, moves = _loop({"edge1": [_report("edge1", 0.9, 0.25)], "edge2": [None],
                                "edge3": [_report("edge2", 0.0)]})
    asyncio.run(nl.step())
    assert moves == [] and set(records[0]["reports"]) == {"edge1", "edge3"}
    assert records[0]["decisions"] == []


def test_a_node_that_cannot_read_its_own_report_decides_nothing() -> None:
    nl, records, moves = _loop({"edge1": [None], "edge2": [_report("edge2", 0.0)], "edge3": [None]})
    asyncio.run(nl.step())
    assert moves == [] and records[0]["decisions"] == [] and "containers" not in records[0]


def test_an_unreachable_agent_is_an_unusable_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def refuse(*args: Any, **kw: Any) -> HostReport:
        raise EngineError("REPORT from edge1: not the client, this host, or a granted neighbour")

    monkeypatch.setattr(loop_mod, "query_report", refuse)
    monkeypatch.setattr(loop_mod.tls, "client_context", lambda pki, name: None)
    nl, _, _ = _loop({})
    assert asyncio.run(NodeLoop._ask(nl, "edge2")) is None


def _two_idle() -> dict[str, list[HostReport | None]]:
    return {"edge1": [_report("edge1", 0.9, 0.25)], "edge2": [_report("edge2", 0.05)],
            "edge3": [_report("edge3", 0.1)]}


def test_with_admission_a_refusal_sends_the_move_to_the_next_candidate() -> None:
    nl, records, moves = _loop(_two_idle())
    nl.cfg = dataclasses.replace(nl.cfg, admission=True)
    asked: list[tuple[str, str, float]] = []

    async def admit(service: str, to: str, demand_cores: float) -> dict[str, Any]:
        asked.append((service, to, demand_cores))
        return {"admitted": to == "edge3"}

    nl._admit = admit  # type: ignore[method-assign]
    assert [d.destination_id for d in asyncio.run(nl.step())] == ["edge3"]
    assert [a[1] for a in asked] == ["edge2", "edge3"] and asked[0][2] == pytest.approx(4.0 * 0.02)
    assert moves == [("plates", "edge3")]
    assert [r["event"] for r in records] == ["round", "admission", "admission", "migration_start"]


def test_with_admission_nobody_admitting_means_no_move_and_errors_are_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    nl, records, moves = _loop(_two_idle())
    nl.cfg = dataclasses.replace(nl.cfg, admission=True)

    async def garbage(*a: Any, **kw: Any) -> dict[str, Any]:
        raise EngineError("REPORT_REPLY from edge2: no admission answer")

    monkeypatch.setattr(loop_mod, "ask_admission", garbage)
    assert asyncio.run(nl.step()) == []
    assert moves == []
    adm = [r for r in records if r["event"] == "admission"]
    assert [r["admitted"] for r in adm] == [False, False] and "no admission answer" in adm[0]["error"]
