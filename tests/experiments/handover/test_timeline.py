"""The fig. 6 timeline from a run folder written here by hand: what lands in the 50 s window, and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.experiments.handover.analysis import read_requests
from edgemigrate.experiments.handover.timeline import load_record, timeline, timeline_figures

START = 1000.0


def _run(folder: Path, planner: str, freeze_at: float) -> Path:
    d = folder / "runs" / f"counter__{planner}__0"
    d.mkdir(parents=True)
    lines, seq, t = [], 0, START + 0.5
    while t < START + 80.0:
        seq += 1
        if freeze_at <= t - START < freeze_at + 0.6:  # the service answers nothing while frozen
            t += 0.02
            continue
        lines.append({"seq": seq, "send_s": t, "recv_s": t + 0.01, "reply": seq, "server": "edge1", "bs": "bs1"})
        t += 0.03
    (d / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    mig = {"event": "migration", "service": "counter", "from": "edge1", "to": "edge2", "ok": True,
           "start_s": START + freeze_at - 4.0, "freeze_s": START + freeze_at, "end_s": START + freeze_at + 0.6,
           "stats": {"rounds": [], "frozen_window_s": 0.6}}
    ho = {"event": "handover", "user": "mu1", "from_bs": "bs1", "to_bs": "bs2", "start_s": START + freeze_at,
          "end_s": START + freeze_at + 0.5, "by": "controller"}
    (d / "events.json").write_text(json.dumps([ho, mig]))
    (d / "mu_summary.json").write_text(json.dumps({"start_s": START, "handovers_at_s": [], "counter_ok": True}))
    return d


def test_window_is_centred_on_the_first_move_and_holds_its_gap(tmp_path: Path) -> None:
    d = _run(tmp_path, "orchestrated", freeze_at=30.0)
    p = timeline(load_record(d), read_requests(d / "requests.jsonl"), outage_s=0.5)
    # the first move starts with its pre-copy at 26 s; the window starts 15 s before, spans 50 s
    assert p.t0_s == pytest.approx(11.0)
    assert all(11.0 <= t <= 61.0 for t, _ in p.points) and len(p.points) > 1000
    assert p.frozen == [pytest.approx((30.0, 30.6))] and p.outages == [pytest.approx((30.0, 30.5))]
    assert len(p.gaps) == 1 and p.gaps[0][0] < 30.0 + 0.05 and p.gaps[0][1] > 30.6
    assert all(d_s == pytest.approx(0.01) for _, d_s in p.points)


def test_a_window_never_starts_before_the_mu(tmp_path: Path) -> None:
    d = _run(tmp_path, "nearest", freeze_at=8.0)
    p = timeline(load_record(d), read_requests(d / "requests.jsonl"), outage_s=0.5)
    assert p.t0_s == 0.0


def test_figures_one_per_service_with_runs(tmp_path: Path) -> None:
    for planner, at in (("orchestrated", 30.0), ("nearest", 32.0)):
        _run(tmp_path, planner, at)
    paths = timeline_figures(tmp_path, ["counter", "facedetect"], ["orchestrated", "nearest", "random"], 0.5,
                             tmp_path)
    assert [p.name for p in paths] == ["fig6_timeline_counter.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
