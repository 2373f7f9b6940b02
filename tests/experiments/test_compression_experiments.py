"""Issue 4 experiment plumbing: plans, validation, and one real sweep end to end (root + CRIU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemigrate.control.harness import real_engine_skip_reason
from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.compression import (
    RunConfig,
    plan_levels,
    plan_pipeline,
    plan_ratechange,
    plan_rates,
    sweep,
)
from edgemigrate.experiments.results import read_table


def test_plans_cover_the_issue_grid() -> None:
    base = RunConfig()
    a = plan_rates(base, ["kvstore", "redis"], [5, 10, 20, 50, 100, 1000])
    assert len(a) == 2 * 6 * 3 and {c.selector for c in a} == {"none", "model", "rule"}
    b = plan_levels(base, ["kvstore"], [10, 100])
    assert {c.selector for c in b} == {*(f"fixed:zstd:{lv}" for lv in range(1, 10)), "model", "rule"}
    assert len(b) == 2 * 11
    c = plan_pipeline(base, ["redis"], [100])
    assert sorted((x.selector, x.pipeline) for x in c) == sorted(
        (s, p) for s in ("model", "fixed:zstd:3") for p in ("pipelined", "serial"))
    e = plan_ratechange(base, ["kvstore"], 200, 10, 1.5)
    assert all(x.change_to_mbit == 10 and x.change_after_s == 1.5 and x.rate_mbit == 200 for x in e)
    assert {"model", "rule", "none"} <= {x.selector for x in e}


@pytest.mark.parametrize("kw, what", [
    ({"workload": "mysql"}, "workload"),
    ({"selector": "fixed:lz4:42"}, "levels"),
    ({"pipeline": "both"}, "pipelined or serial"),
    ({"rate_mbit": 0}, "rate_mbit"),
    ({"change_after_s": 1.0}, "both"),
])
def test_bad_run_configs_are_refused(kw: dict, what: str) -> None:
    with pytest.raises(ConfigError, match=what):
        RunConfig(**kw)


@pytest.mark.criu
@pytest.mark.netns
def test_one_real_sweep_writes_csv_jsonl_manifest_and_plots(tmp_path: Path) -> None:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    lines: list[str] = []
    plan = [RunConfig(workload="kvstore", resident_mb=16, selector=s, rate_mbit=50, rtt_ms=10)
            for s in ("none", "model")]
    out = sweep("rates", plan, tmp_path, echo=lines.append, command=["test"])
    rows = [json.loads(x) for x in lines]
    assert [r["selector"] for r in rows] == ["none", "model"]
    assert all(r["bench"] == "compression" and r["total_s"] > 0 and r["rate_mbit"] == 50 for r in rows)
    none, model = rows
    assert model["bytes_on_wire"] < 0.8 * none["bytes_on_wire"]  # the 16 MiB heap compresses
    assert none["bytes_on_wire"] >= none["raw_bytes"]
    t = read_table(out / "runs.csv")
    assert list(t["selector"]) == ["none", "model"] and (t["ok"] == "True").all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["experiment"] == "rates" and man["git_sha"] and len(man["runs"]) == 2
    assert (out / "rates_kvstore.png").stat().st_size > 10_000
