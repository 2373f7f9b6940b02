from __future__ import annotations

from pathlib import Path

from edgemigrate.experiments.compression.experiment import write_rows
from edgemigrate.experiments.compression.summary import summarise


def _row(selector: str, pipeline: str, total_s: float, rep: int, rate: float = 100.0) -> dict:
    return {"workload": "redis", "resident_mb": 64.0, "selector": selector, "page_codec": "none",
            "pipeline": pipeline, "rate_mbit": rate, "rtt_ms": 20.0, "strategy": "stop-and-copy", "repeat": rep,
            "ok": True, "total_s": total_s, "bytes_on_wire": 10_000_000, "raw_bytes": 30_000_000,
            "utilisation": 0.95, "pred_serial_s": 8.0, "pred_pipelined_s": 4.0}


def test_pipeline_summary_compares_modes_and_predictions(tmp_path: Path) -> None:
    rows = [_row("fixed:zstd:9", "pipelined", 4.0 + 0.2 * r, r) for r in range(3)]
    rows += [_row("fixed:zstd:9", "serial", 8.0 + 0.2 * r, r) for r in range(3)]
    write_rows(tmp_path / "runs.csv", rows)
    text = summarise("pipeline", tmp_path)
    assert (tmp_path / "summary.md").read_text() == text
    line = next(x for x in text.splitlines() if x.startswith("| 100 | fixed:zstd:9"))
    # means 4.2 / 8.2 -> 48.8 % faster; the prediction 4 / 8 -> 50 %
    assert "| 4.20 +- " in line and "| 8.20 +- " in line and "48.8 %" in line and "(50 %)" in line


def test_rates_summary_reports_time_saved_against_uncompressed(tmp_path: Path) -> None:
    rows = [_row("none", "pipelined", 10.0, 0), _row("model", "pipelined", 4.5, 0)]
    write_rows(tmp_path / "runs.csv", rows)
    text = summarise("rates", tmp_path)
    assert any(x.startswith("| 100 | model | 4.50 |") and x.endswith("55.0 % |") for x in text.splitlines())


def test_summary_shows_link_busy_utilisation_when_measured(tmp_path: Path) -> None:
    rows = [_row("none", "pipelined", 10.0, 0), {**_row("model", "pipelined", 4.5, 0), "link_util": 0.97}]
    write_rows(tmp_path / "runs.csv", rows)
    lines = summarise("rates", tmp_path).splitlines()
    assert next(x for x in lines if x.startswith("| 100 | model")).count("| 0.95 / 0.97 |") == 1
    assert "| 0.95 |" in next(x for x in lines if x.startswith("| 100 | none"))


def test_pipeline_plot_draws_one_readable_png(tmp_path: Path) -> None:
    from edgemigrate.experiments.compression.plots import plot_experiment

    rows = [{**_row(sel, mode, t, r, rate), "link_util": 0.96}
            for rate in (100.0, 1000.0) for sel, base in (("model", 3.0), ("fixed:zstd:9", 4.0))
            for mode, t in (("pipelined", base), ("serial", 2 * base)) for r in range(2)]
    write_rows(tmp_path / "runs.csv", rows)
    paths = plot_experiment("pipeline", tmp_path)
    assert [p.name for p in paths] == ["pipeline_redis.png"] and paths[0].stat().st_size > 20_000


def test_ratechange_summary_pairs_adaptive_and_fixed_runs_by_repeat(tmp_path: Path) -> None:
    # the machine drifts: repeat r is slow for everyone; the model is 0.5 s faster than zstd-1 in every repeat,
    # zstd-1 and zstd-9 are within 0.1 s of each other either way
    drift = [0.0, 3.0, 6.0]
    rows = []
    for r, d in enumerate(drift):
        for sel, t in (("fixed:zstd:1", 10.0), ("fixed:zstd:9", 10.0 + (0.1 if r % 2 else -0.1)),
                       ("model", 9.5)):
            rows.append({**_row(sel, "pipelined", t + d, r, 1000.0), "change_to_mbit": 20.0, "change_after_s": 0.5})
    write_rows(tmp_path / "runs.csv", rows)
    lines = summarise("ratechange", tmp_path).splitlines()
    # unpaired, the drift (+- 3 s) swamps the 0.5 s; paired it is exact
    assert "| model | 12.50 +- " in next(x for x in lines if x.startswith("| 1000 | model |"))
    z1 = next(x for x in lines if x.startswith("| model | fixed:zstd:1 |"))
    assert "| -0.50 +- 0.00 | 3 / 3 | faster |" in z1
    assert next(x for x in lines if x.startswith("| model | fixed:zstd:9 |")).endswith("| faster |")


def test_plots_read_the_bandwidth_of_wire_samples_under_either_key() -> None:
    # the results committed under docs/results spell the key of a sample's bandwidth estimate the old way
    from edgemigrate.experiments.compression.plots import _sample_bandwidth_bytes_per_s

    assert _sample_bandwidth_bytes_per_s({"t_s": 0.1, "bandwidth_bytes_per_s": 2.5e6}) == 2.5e6
    assert _sample_bandwidth_bytes_per_s({"t_s": 0.1, "bandwidth_Bps": 1.25e6}) == 1.25e6
