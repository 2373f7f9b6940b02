"""The handover experiment's numbers from hand-made records: gaps, moves, per-migration rows and the targets.

No testbed: the records are what a run leaves (request log, events, the MU's summary), written here so that
every number the analysis reports can be checked against a value worked out by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError, DataFormatError
from edgemigrate.costs.handover import PrecopyModel
from edgemigrate.experiments.handover import MIGRATION_KEYS, HandoverConfig
from edgemigrate.experiments.handover.analysis import Request, gaps, moves, read_requests, run_summary
from edgemigrate.experiments.handover.bed import RunRecord, planner_horizon_s
from edgemigrate.experiments.handover.report import markdown, plots, summarise, targets

T0 = 1000.0
STEP = 0.02  # one answered request every 20 ms


def _log(path: Path, outages: list[tuple[float, float]], until: float = 20.0) -> None:
    """Requests every STEP s from T0 with a 2 ms reply; none answered inside an outage (relative times)."""
    lines, t, seq, counter = [], 0.0, 0, 0
    while t < until:
        seq += 1
        lost = any(a <= t < b for a, b in outages)
        if not lost:
            counter += 1
        lines.append(json.dumps({"seq": seq, "send_s": T0 + t, "recv_s": None if lost else T0 + t + 0.002,
                                 "server": "edge1", "bs": "bs1", "reply": None if lost else counter,
                                 "error": "timeout" if lost else None}))
        t += STEP
    path.write_text("\n".join(lines) + "\n")


def _migration(start: float, freeze: float, end: float, pre: int = 30_000_000, final: int = 90_000) -> dict:
    rounds = [{"round": 1, "final": False, "payload_bytes": pre, "wire_bytes": pre // 2},
              {"round": 2, "final": True, "payload_bytes": final, "wire_bytes": final // 2}]
    return {"event": "migration", "service": "counter", "from": "edge1", "to": "edge2", "start_s": T0 + start,
            "freeze_s": T0 + freeze, "end_s": T0 + end, "ok": True,
            "stats": {"rounds": rounds, "frozen_window_s": end - freeze, "restore_s": 0.3, "total_s": end - start,
                      "bytes_sent": pre + final}}


LINK = {"edge_edge_bps": 100e6, "edge_edge_rtt_s": 0.05, "edge_cloud_bps": 75e6, "edge_cloud_rtt_s": 0.15}


def test_coordinated_move_counts_one_gap_and_sequential_counts_two(tmp_path: Path) -> None:
    # orchestrated: the handover (controller) starts at the freeze; frozen 5.0-5.8, outage 5.0-5.5
    (tmp_path / "o").mkdir()
    _log(tmp_path / "o" / "requests.jsonl", [(5.0, 5.8)])
    orch = RunRecord("counter", "orchestrated", 0, tmp_path / "o",
                     [_migration(3.0, 5.0, 5.8), {"event": "handover", "start_s": T0 + 5.0, "end_s": T0 + 5.5}],
                     {"start_s": T0, "counter_ok": True, "handovers_at_s": []}, [], LINK)
    # nearest: the MU's own handover at 2.0 (outage 2.0-2.5), the migration's freeze 5.0-5.8 later
    (tmp_path / "n").mkdir()
    _log(tmp_path / "n" / "requests.jsonl", [(2.0, 2.5), (5.0, 5.8)])
    near = RunRecord("counter", "nearest", 0, tmp_path / "n",
                     [_migration(3.0, 5.0, 5.8), {"event": "handover", "start_s": T0 + 5.9, "end_s": T0 + 5.9}],
                     {"start_s": T0, "counter_ok": True, "handovers_at_s": [T0 + 2.0]}, [], LINK)
    o_row, o_migs = run_summary(orch, 0.5)
    n_row, n_migs = run_summary(near, 0.5)
    assert o_row["moves"] == n_row["moves"] == 1  # the recorded-only handover of nearest is not a second move
    assert o_row["downtime_s"] == pytest.approx(0.8, abs=0.03)
    assert n_row["downtime_s"] == pytest.approx(1.3, abs=0.05)
    assert o_migs[0]["handover_overlap_s"] == pytest.approx(0.5)
    assert n_migs[0]["handover_overlap_s"] == 0.0 and n_migs[0]["handover_outage_s"] == 0.5
    for row in o_migs + n_migs:
        assert list(row)[:len(MIGRATION_KEYS)] == list(MIGRATION_KEYS)
        assert (row["pre_bytes"], row["final_bytes"]) == (30_000_000, 90_000)
        assert row["link_bps"] == 100e6 and row["counter_ok"] is True
    summary = summarise([o_row, n_row], o_migs + n_migs)
    (goal, bytes_goal) = targets(summary)
    assert goal["baseline"] == "nearest" and goal["downtime_ok"]
    assert goal["downtime_reduction"] == pytest.approx(1 - 0.8 / 1.3, abs=0.03)
    assert bytes_goal["bytes_ok"] and bytes_goal["counter_ok"]


def test_a_counter_that_restarts_after_a_move_fails_that_move(tmp_path: Path) -> None:
    _log(tmp_path / "requests.jsonl", [(5.0, 5.8)])
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    out = []
    for line in lines:  # the destination lost the state: replies after the move start again from 1
        r = json.loads(line)
        if r["reply"] is not None and r["send_s"] > T0 + 5.8:
            r["reply"] -= 200
        out.append(json.dumps(r))
    (tmp_path / "requests.jsonl").write_text("\n".join(out) + "\n")
    rec = RunRecord("counter", "orchestrated", 0, tmp_path, [_migration(3.0, 5.0, 5.8)],
                    {"start_s": T0, "counter_ok": True, "handovers_at_s": []}, [], LINK)
    row, migs = run_summary(rec, 0.5)
    assert migs[0]["counter_ok"] is False and not row["counter_ok"]


def test_gaps_use_the_runs_normal_interval() -> None:
    reqs = [Request(i, i * STEP, i * STEP + 0.001, i) for i in range(100) if not 40 <= i < 60]
    found, normal = gaps(reqs)
    assert normal == pytest.approx(STEP)
    assert len(found) == 1 and found[0].downtime_s == pytest.approx(20 * STEP, abs=1e-9)


def test_an_old_mu_handover_is_not_paired_with_a_later_migration(tmp_path: Path) -> None:
    rec = RunRecord("counter", "random", 0, tmp_path, [_migration(100.0, 101.0, 102.0)],
                    {"start_s": T0, "handovers_at_s": [T0 + 1.0]}, [], LINK)
    mvs = moves(rec, 0.5)
    assert [(m.migration is not None, m.handover_s) for m in mvs] == [(False, T0 + 1.0), (True, None)]


def test_an_orchestrated_mus_own_handover_at_the_cell_edge_replaces_the_controllers_late_one(tmp_path: Path) -> None:
    """The freeze came past the old cell's edge: the MU re-attached itself at 4.0 and the controller's handover
    at the freeze (6.0) found it on bs2 already. The move's handover is the MU's; an unrelated controller
    handover later (to bs3) stays."""
    rec = RunRecord("counter", "orchestrated", 0, tmp_path, [_migration(1.0, 6.0, 6.8)],
                    {"start_s": T0, "handovers_at_s": [T0 + 4.0], "handovers": [[4.0, "bs1", "bs2"]]}, [], LINK)
    rec.events += [{"event": "handover", "start_s": T0 + 6.0, "end_s": T0 + 6.0, "to_bs": "bs2"},
                   {"event": "handover", "start_s": T0 + 30.0, "end_s": T0 + 30.5, "to_bs": "bs3"}]
    mvs = moves(rec, 0.5)
    assert [(m.migration is not None, m.handover_s) for m in mvs] == [(True, T0 + 4.0), (False, T0 + 30.0)]


@pytest.mark.parametrize("line", ['{"seq": 1, "send_s": "x", "recv_s": null, "reply": null}', "[1, 2]",
                                  "not json", '{"seq": true, "send_s": 1.0, "recv_s": 1.1, "reply": 3}',
                                  '{"seq": 1, "send_s": 1.0, "recv_s": NaN, "reply": 3}', "x" * 5000,
                                  '{"seq": 1, "send_s": 1.0, "recv_s": 1.1, "reply": 3, "proc_s": 0.5}',
                                  '{"seq": 1, "send_s": 1.0, "recv_s": null, "reply": null, "proc_s": 0.01}',
                                  '{"seq": 1, "send_s": 1.0, "recv_s": 1.1, "reply": 3, "proc_s": -0.01}'])
def test_bad_request_log_lines_are_one_line_errors_naming_the_line(tmp_path: Path, line: str) -> None:
    p = tmp_path / "requests.jsonl"
    p.write_text('{"seq": 1, "send_s": 1.0, "recv_s": 1.1, "reply": 1}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=r"requests.jsonl:2"):
        read_requests(p)


@pytest.mark.parametrize(("kw", "key"), [({"services": ("counter", "yolo")}, "services"),
                                         ({"planners": ()}, "planners"), ({"repeats": 0}, "repeats"),
                                         ({"bs_spacing_m": math.nan}, "bs_spacing_m"),
                                         ({"duration_s": 1.0}, "duration_s"),
                                         ({"compression": "zstd"}, "compression")])
def test_bad_configs_name_the_key(kw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"handover.{key}"):
        HandoverConfig(**kw)


def test_e2e_delay_is_split_into_processing_and_transmission(tmp_path: Path) -> None:
    """Fig. 4's breakdown: facedetect replies carry proc_s; the rest of each delay is transmission."""
    rows = []
    for planner, proc, total in (("orchestrated", 0.15, 0.20), ("nearest", 0.15, 0.30)):
        folder = tmp_path / planner
        folder.mkdir()
        lines = [json.dumps({"seq": i + 1, "send_s": T0 + i, "recv_s": T0 + i + total, "server": "edge1",
                             "bs": "bs1", "reply": i + 1, "error": None, "proc_s": proc}) for i in range(10)]
        (folder / "requests.jsonl").write_text("\n".join(lines) + "\n")
        rec = RunRecord("facedetect", planner, 0, folder, [], {"start_s": T0, "counter_ok": True}, [], LINK)
        row, _ = run_summary(rec, 0.5)
        assert row["mean_proc_s"] == pytest.approx(proc)
        assert row["mean_trans_s"] == pytest.approx(total - proc)
        assert row["mean_proc_s"] + row["mean_trans_s"] == pytest.approx(row["mean_delay_s"])
        rows.append(row)
    summary = summarise(rows, [])
    goal = targets(summary)[0]
    assert goal["trans_reduction"] == pytest.approx(1 - 0.05 / 0.15)
    md = markdown(summary, targets(summary), "note")
    assert "of it processing ms" in md and "| 150.0 +- 0.0 | 50.0 +- 0.0 |" in md
    paths = plots(summary, tmp_path)
    assert (tmp_path / "fig4_e2e_delay.png") in paths and (tmp_path / "fig4_e2e_delay.png").stat().st_size > 0


def test_the_beds_precopy_model_is_fitted_to_the_runs_migrations(tmp_path: Path) -> None:
    """The planners' pre-copy model comes from measured migrations; a row it cannot use is left out."""
    from edgemigrate.experiments.handover.bed import HandoverBed

    (tmp_path / "o").mkdir()
    _log(tmp_path / "o" / "requests.jsonl", [(5.0, 5.8)])
    rec = RunRecord("counter", "orchestrated", 0, tmp_path / "o",
                    [_migration(3.0, 5.0, 5.8), {"event": "handover", "start_s": T0 + 5.0, "end_s": T0 + 5.5}],
                    {"start_s": T0, "counter_ok": True, "handovers_at_s": []}, [], LINK)
    _, rows = run_summary(rec, 0.5)
    bed = HandoverBed(HandoverConfig(), tmp_path / "bed")
    assert bed.precopy_model("counter") is None  # nothing measured yet: eq. 5
    bed.add_samples("counter", rows + [dict(rows[0], frozen_s=math.nan), dict(rows[0], pre_bytes=0)])
    assert len(bed.samples["counter"]) == 1
    model = bed.precopy_model("counter")
    assert model is not None and model.rounds == 1 and model.resident_bytes == pytest.approx(30_000_000)
    assert bed.precopy_model("facedetect") is None


def test_only_the_orchestrated_planner_looks_one_pre_migration_ahead() -> None:
    """~200 MB uncompressed over 100 Mbit/s: 2 leave-running rounds of ~19 s together; the orchestrated planner
    must see the crossing (1 + 10 %) x that + one report period ahead, the handover-triggered ones do not."""
    cfg = HandoverConfig()
    model = PrecopyModel(resident_bytes=200e6, dirty_bytes_per_s=20e3, round_overhead_s=1.0, final_overhead_s=0.2,
                         restore_base_s=0.2, restore_s_per_byte=0.0, rounds=2, wire_ratio=1.0, frozen_rtts=1.0)
    pre_s = (1.0 + 200e6 * 8 / 100e6 + 0.05) + (1.0 + min(200e6, 20e3 * 17.05) * 8 / 100e6 + 0.05)
    got = planner_horizon_s(cfg, "orchestrated", model, 100e6, 0.05)
    assert got == pytest.approx(1.1 * pre_s + cfg.report_every_s, rel=1e-6)
    assert got > cfg.horizon_s
    for baseline in ("nearest", "random"):  # triggered by the MU's handover: no look-ahead past the next report
        assert planner_horizon_s(cfg, baseline, model, 100e6, 0.05) == cfg.report_every_s
        assert planner_horizon_s(cfg, baseline, None, 100e6, 0.05) == cfg.report_every_s
    assert planner_horizon_s(cfg, "orchestrated", None, 100e6, 0.05) == cfg.horizon_s  # eq. 5 before a fit
    small = PrecopyModel(resident_bytes=1e6, dirty_bytes_per_s=0.0, round_overhead_s=0.1, final_overhead_s=0.1,
                         restore_base_s=0.1, restore_s_per_byte=0.0, rounds=1, wire_ratio=1.0, frozen_rtts=1.0)
    assert planner_horizon_s(cfg, "orchestrated", small, 100e6, 0.05) == cfg.horizon_s  # never shorter


def test_a_runs_seed_depends_on_names_not_on_the_runs_lists() -> None:
    """The stored full experiment's seeds are what ``run_seed`` derives (its results stay reproducible), and a
    one-service, one-planner run draws the same seed as that run in the full experiment."""
    import csv

    from edgemigrate.experiments.handover.experiment import run_seed

    path = Path(__file__).resolve().parents[3] / "docs" / "results" / "handover" / "runs.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 60
    for r in rows:
        assert int(r["seed"]) == run_seed(0, r["service"], r["planner"], int(r["repeat"])), r
    assert run_seed(0, "facedetect", "random", 3) != run_seed(0, "counter", "random", 3)
    assert run_seed(1, "facedetect", "random", 3) != run_seed(0, "facedetect", "random", 3)
