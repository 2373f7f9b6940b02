"""Compression experiment plumbing: plans, validation, and one real sweep end to end (root + CRIU)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.core.errors import ConfigError
from edgemigrate.experiments.compression.experiment import (
    LinkMeter,
    RunConfig,
    link_busy_utilisation,
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
    lean = plan_ratechange(base, ["kvstore"], 200, 10, 1.5, "zstd", [1, 9], ["model:lz4"], ["none", "rule"])
    assert [x.selector for x in lean] == ["fixed:zstd:1", "fixed:zstd:9", "model:lz4", "model"]
    with pytest.raises(ConfigError, match="only none, model, rule"):
        plan_ratechange(base, ["kvstore"], 200, 10, 1.5, without=["fixed:zstd:1"])


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
    # measured on the router's device while the image crossed: a shaped link cannot carry more than its rate
    # (packet bytes, 5 % for the tbf bucket and the sampling grid), and uncompressed it is the bottleneck
    assert 0.5 < none["link_util"] <= 1.05
    t = read_table(out / "runs.csv")
    assert list(t["selector"]) == ["none", "model"] and (t["ok"] == "True").all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["experiment"] == "rates" and man["git_sha"] and len(man["runs"]) == 2
    assert (out / "rates_kvstore.png").stat().st_size > 10_000


def test_link_busy_utilisation_trims_the_ends_and_counts_stalls() -> None:
    rate_bps = 8e6  # 1 MB/s
    t = np.arange(0.0, 10.01, 0.01)
    # idle 1 s (a 1 KB control message), 4 MB at the full rate, 2 s stall, 2 MB at the full rate, idle
    rate = np.where((t > 1) & (t <= 5), 1e6, 0.0) + np.where((t > 7) & (t <= 9), 1e6, 0.0)
    b = 1000 + np.concatenate([[0.0], np.cumsum(rate[1:] * 0.01)])
    b[0] = 0
    u = link_busy_utilisation(t, b.astype(np.int64), rate_bps)
    # busy from ~1.07 s to ~8.93 s with a 2 s stall: 6 MB - 2 x 64 KiB over ~7.87 s
    assert u == pytest.approx((6e6 - 2 * 65536) / 7.87 / 1e6, rel=0.01)
    assert link_busy_utilisation(t[:2], b[:2].astype(np.int64), rate_bps) is None
    assert link_busy_utilisation(t, np.zeros_like(t, dtype=np.int64), rate_bps) is None


def test_link_meter_samples_a_real_device_counter() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    with LinkMeter("/proc/self/ns/net", "lo", period_s=0.005) as meter:
        with socket.create_connection(("127.0.0.1", port)) as c, srv.accept()[0] as peer:
            payload = b"x" * (1 << 20)
            for _ in range(4):
                c.sendall(payload)
                got = 0
                while got < len(payload):
                    got += len(peer.recv(1 << 20))
                time.sleep(0.02)
            # one sample between the baseline and the last (read after the exit): wait for it rather than
            # count on the sampling thread having run during the transfer
            deadline = time.monotonic() + 60
            while len(meter.samples()[0]) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    srv.close()
    t, b = meter.samples()
    assert len(t) >= 3 and np.all(np.diff(t) > 0) and np.all(np.diff(b) >= 0)
    assert b[-1] - b[0] >= 4 << 20  # at least the payload crossed lo


def test_link_meter_on_a_missing_device_records_nothing() -> None:
    with LinkMeter("/proc/self/ns/net", "no-such-dev0") as meter:
        pass
    assert len(meter.samples()[0]) == 0
