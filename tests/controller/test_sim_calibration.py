"""Measured migrations -> the pre-copy calibration (format 2): strict ``migrations.jsonl`` parsing (each bad
line is a one-line ``file:line: key`` error), the fit, format 1 files still loading as stop-and-copy, and the
``controller calibrate`` / ``controller simulate`` commands. The numbers are synthetic measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.cli import main
from edgemigrate.controller.sim import SimBackend, load_scenario, parse_calibration
from edgemigrate.controller.sim.calibration import CALIBRATION_FORMAT_V1, PRECOPY, STOP_AND_COPY
from edgemigrate.controller.sim.driver import compare_with_measured
from edgemigrate.controller.sim.measurements import (
    MAX_LINE_BYTES,
    MIGRATIONS_FILE,
    fit_calibration,
    load_migrations,
)
from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.planning import make_planner


def _rec(**kw: object) -> dict:
    base = {"service": "counter", "planner": "orchestrated", "repeat": 0, "pre_bytes": 51_000_000,
            "final_bytes": 30_000, "link_bps": 100e6, "rtt_s": 0.05, "frozen_s": 0.9, "restore_s": 0.55,
            "downtime_s": 0.9, "total_s": 3.4, "handover_outage_s": 0.0}
    base.update(kw)
    return base


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / MIGRATIONS_FILE
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _good(tmp_path: Path) -> Path:
    return _write(tmp_path, [json.dumps(_rec(repeat=i, frozen_s=f, downtime_s=f)) for i, f in
                             enumerate((0.8, 0.9, 1.3))])


@pytest.mark.parametrize(("line", "says"), [
    ("{not json", "not JSON"),
    (json.dumps(_rec(bogus=1)), "bogus: unknown key"),
    (json.dumps({k: v for k, v in _rec().items() if k != "rtt_s"}), "rtt_s: missing"),
    (json.dumps(_rec(service="../etc")), "service: '../etc' is not an identifier"),
    (json.dumps(_rec(frozen_s="fast")), "frozen_s: expected a number"),
    (json.dumps(_rec(total_s=-1.0)), "total_s = -1.0 must be in"),
    (json.dumps(_rec(link_bps=0)), "link_bps = 0 must be in (0"),
    ('{"service": "counter", "frozen_s": NaN}', "NaN is not a number"),
    (json.dumps(_rec(pre_bytes=1e300)), "pre_bytes = 1e+300 must be in"),
    (json.dumps(_rec(repeat=True)), "repeat = True: expected an integer"),
    (json.dumps(_rec(restore_s=2.0)), "restore_s = 2.0 exceeds frozen_s"),
    (json.dumps(_rec(rounds=0)), "rounds = 0: expected an integer in [1, 100]"),
    (json.dumps(_rec(n_rounds=0)), "n_rounds = 0: expected an integer in [1, 101]"),
    (json.dumps(_rec(pre_wire_bytes="x", final_wire_bytes=1)), "pre_wire_bytes: expected a number"),
    ("[1, 2]", "expected a JSON object"),
])
def test_a_bad_record_is_a_one_line_error_naming_file_line_and_key(tmp_path: Path, line: str, says: str) -> None:
    path = _write(tmp_path, [json.dumps(_rec()), "", line])
    with pytest.raises(DataFormatError) as err:
        load_migrations(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: ") and says in msg and "\n" not in msg, msg


def test_the_handover_experiments_own_rows_load(tmp_path: Path) -> None:
    """``calibrate --from`` a results folder: its rows carry the analysis' extra columns (``n_rounds`` counts
    the final round; wire bytes per phase), which are read as the experiment defines them."""
    extra = {"src": "edge1", "dst": "edge2", "n_rounds": 3, "pre_wire_bytes": 12_000_000, "final_wire_bytes": 9_000,
             "longest_gap_s": 1.1, "frozen_downtime_s": 0.8, "handover_overlap_s": 0.5, "handover_lead_s": 0.0,
             "start_s": 11.2, "counter_ok": None}
    (rec,) = load_migrations(_write(tmp_path, [json.dumps(_rec(**extra))]))
    assert rec.sample.rounds == 2 and rec.sample.wire_bytes == 12_009_000
    (same,) = load_migrations(_write(tmp_path, [json.dumps(_rec(**extra, rounds=5, wire_bytes=7))]))
    assert same.sample.rounds == 5 and same.sample.wire_bytes == 7  # the contract's keys win


def test_an_oversized_line_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps(_rec()), '{"service": "' + "a" * (2 * MAX_LINE_BYTES) + '"}'])
    with pytest.raises(DataFormatError, match=f":2: line longer than {MAX_LINE_BYTES} bytes"):
        load_migrations(path)


def test_an_empty_file_has_no_records(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no migration records"):
        load_migrations(_write(tmp_path, ["", "  "]))


def test_fit_calibration_writes_a_precopy_file_that_loads(tmp_path: Path) -> None:
    body = fit_calibration(load_migrations(_good(tmp_path)))
    cal = parse_calibration(json.loads(json.dumps(body)))
    assert cal.strategy == PRECOPY and set(cal.services) == {"counter"} and cal.samples["counter"] == 3
    assert cal.measured_downtimes_s("counter") == (0.8, 0.9, 1.3)
    assert cal.handover_s is None  # no record had a handover
    m = cal.precopy_model()
    assert m.resident_bytes == 51e6 and m.restore_base_s == pytest.approx(0.55)


def test_fit_calibration_skips_stop_and_copy_records_and_names_a_missing_service(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps(_rec(pre_bytes=0))])
    with pytest.raises(ValidationError, match="no pre-copy migration"):
        fit_calibration(load_migrations(path))
    with pytest.raises(ValidationError, match="service 'redis'"):
        fit_calibration(load_migrations(_good(tmp_path)), service="redis")


def test_measured_handover_outage_becomes_the_simulated_t_ho(tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps(_rec(handover_outage_s=0.7, downtime_s=1.0, repeat=i)) for i in range(2)])
    cal = parse_calibration(fit_calibration(load_migrations(path)))
    assert cal.handover_s == pytest.approx(0.7)
    assert SimBackend(load_scenario("handover-testbed"), cal).scenario.handover_s == pytest.approx(0.7)


def test_with_handovers_only_the_coordinated_moves_are_compared(tmp_path: Path) -> None:
    """A nearest move's handover is a separate gap, so its recorded downtime is the migration's alone and not
    what the simulator's max(T_mig, T_ho) is; the orchestrated moves' are."""
    lines = [json.dumps(_rec(planner=p, handover_outage_s=0.5, downtime_s=d, repeat=i))
             for i, (p, d) in enumerate([("orchestrated", 0.5), ("nearest", 0.9), ("orchestrated", 0.6),
                                         ("random", 1.1)])]
    cal = parse_calibration(fit_calibration(load_migrations(_write(tmp_path, lines))))
    assert cal.measured_downtimes_s("counter") == (0.5, 0.6)
    assert cal.samples["counter"] == 4  # the model is fitted on every move: the engine does not know the planner
    only_nearest = _write(tmp_path, [lines[1]])
    assert parse_calibration(fit_calibration(load_migrations(only_nearest))).measured_downtimes_s("counter") == (0.9,)


def test_the_simulated_precopy_downtime_matches_the_fitted_median(tmp_path: Path) -> None:
    cal = parse_calibration(fit_calibration(load_migrations(_good(tmp_path))))
    backend = SimBackend(load_scenario("handover-testbed"), cal)
    t = backend.migration_times_s(0, 1)
    assert t["downtime_s"] < t["total_s"]
    cmp = compare_with_measured(backend, make_planner("orchestrated"), cal, ticks=120)
    assert cmp["migrations"] >= 1 and cmp["measured_downtime_s"] == pytest.approx(0.9)
    assert 0.8 <= float(cmp["ratio"]) <= 1.2, cmp  # fitted to the same link: the model reproduces the median


def test_format_1_files_still_load_as_stop_and_copy() -> None:
    body = {"format": CALIBRATION_FORMAT_V1,
            "hosts": {"edge-0": {"cpu_power": 1000.0, "checkpoint": [{"bytes": 5e7, "seconds": 0.1}],
                                 "restore": [{"bytes": 7e7, "seconds": 0.14}]}},
            "measured_downtime_s": [0.7]}
    cal = parse_calibration(body)
    assert cal.strategy == STOP_AND_COPY and cal.hosts["edge-0"].psi == pytest.approx(2e-6)
    with pytest.raises(ValidationError, match="calibration.strategy: missing"):
        parse_calibration({**body, "format": "edgemigrate-calibration/2"})
    with pytest.raises(ValidationError, match=r"calibration.services: missing"):
        parse_calibration({"format": "edgemigrate-calibration/2", "strategy": "precopy", "hosts": body["hosts"]})


@pytest.mark.parametrize(("patch", "says"), [
    ({"rounds": 0}, "rounds = 0"),
    ({"wire_ratio": 2.0}, "wire_ratio = 2.0 must be in (0, 1]"),
    ({"dirty_bytes_per_s": -1}, "dirty_bytes_per_s = -1 must be finite"),
    ({"extra": 1}, "extra: unknown key"),
])
def test_a_bad_precopy_model_in_the_file_is_one_error(tmp_path: Path, patch: dict, says: str) -> None:
    body = fit_calibration(load_migrations(_good(tmp_path)))
    body["services"]["counter"].update(patch)
    with pytest.raises(ValidationError, match="calibration.services.counter") as err:
        parse_calibration(body)
    assert says in str(err.value)


def test_cli_calibrate_then_simulate(tmp_path: Path, capsys) -> None:
    run = tmp_path / "results" / "repeat-0"
    run.mkdir(parents=True)
    _good(run)
    cal = tmp_path / "cal.json"
    assert main(["controller", "calibrate", "--from", str(tmp_path / "results"), "-o", str(cal)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["service"] == "counter"
    assert main(["controller", "simulate", "--calibration", str(cal), "--ticks", "120"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"simulated_downtime_s", "measured_downtime_s", "ratio"} <= set(out)


@pytest.mark.parametrize(("args", "says"), [
    (["calibrate", "--from", "{empty}", "-o", "{tmp}/c.json"], "no migrations.jsonl here"),
    (["calibrate", "--from", "{bad}", "-o", "{tmp}/c.json"], "migrations.jsonl:1: not JSON"),
    (["calibrate", "--from", "{good}", "-o", "{tmp}/no/such/dir/c.json"], "cannot write"),
    (["simulate", "--calibration", "{bad}"], "is not JSON"),
    (["simulate", "--calibration", "{cal}", "--planner", "psychic"], "unknown planner"),
    (["simulate", "--calibration", "{cal}", "--service", "Bad/Name"], "--service"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], says: str) -> None:
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad" / MIGRATIONS_FILE
    bad.parent.mkdir()
    bad.write_text("{oops\n")
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(fit_calibration(load_migrations(_good(tmp_path)))))
    good = tmp_path / "good"
    good.mkdir()
    _good(good)
    subst = {"{good}": str(good), "{empty}": str(tmp_path / "empty"), "{bad}": str(bad if "calibrate" not in args else bad.parent),
             "{tmp}": str(tmp_path), "{cal}": str(cal)}
    argv = ["controller"]
    for a in args:
        for k, v in subst.items():
            a = a.replace(k, v)
        argv.append(a)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    line = err.splitlines()[-1]  # calibrate says how many migrations it read first
    assert line.startswith("edgemigrate: error:") and says in line and "Traceback" not in err, err


def test_agent_statistics_without_the_needed_fields_are_one_error() -> None:
    from edgemigrate.controller.sim.measurements import record_from_stats

    good = {"rounds": [{"final": False, "payload_bytes": 5e7, "image_bytes": 5e7},
                       {"final": True, "payload_bytes": 2e4, "image_bytes": 5e7}],
            "frozen_window_s": 0.7, "restore_s": 0.4, "total_s": 3.0, "final_round_bytes": 20000,
            "full_checkpoint_bytes": 50_000_000, "bytes_on_wire": 15_000_000}
    rec = record_from_stats(good, service="counter", planner="direct", repeat=0, link_bps=1e8, rtt_s=0.05)
    assert rec["pre_bytes"] == 50_000_000 and rec["rounds"] == 1 and rec["downtime_s"] == 0.7
    for bad, says in (({**good, "rounds": "many"}, "malformed"), ({k: v for k, v in good.items() if k != "restore_s"},
                                                                  "restore_s"),
                      ({**good, "total_s": -1.0}, "total_s = -1.0")):
        with pytest.raises(ValidationError, match=says):
            record_from_stats(bad, service="counter", planner="direct", repeat=0, link_bps=1e8, rtt_s=0.05)
