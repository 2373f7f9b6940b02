"""ShareOn's two-node emulation, shortened, on the real testbed (root, CRIU): node 1 under real stress-ng load
decides by itself and migrates the recognition service to node 2, whose load has just dropped.

What is asserted is structural, on purpose: the node's own decision record precedes the migration, the
decision was taken on a measured total delay above the threshold, the migration went through the node's
agent under its grant, and the service's state (a counter per user) is intact on node 2. Whether the delay
then drops is a measured property of a machine this test shares with everything else CI runs (two busy
cores): it is printed as a JSON line for the log and reported from the full experiment, not asserted here.
The threshold is twice the idle processing time measured at the start (the lowest of four readings; not the
paper's 100 ms, which a busy machine exceeds idle), and the load at 1 may take node 1's whole CPU (the load
cgroup's quota) with the weight of 8 processes against the service's one (the default weight 2 barely slows
a service that sleeps between requests: measured, it never crossed twice its idle time), so the test's
trigger is the load it applies.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pytest

from edgemigrate.cluster import LocalCluster
from edgemigrate.experiments.shareon.emulation import NODE2, SERVICE, EmulationConfig, run_once

pytestmark = [pytest.mark.criu, pytest.mark.netns, pytest.mark.slow]


def test_node1_migrates_by_itself_when_its_delay_crosses_the_threshold(realbed: LocalCluster) -> None:
    if shutil.which("stress-ng") is None:
        pytest.skip("stress-ng not installed (scripts/install-system-deps)")
    cfg = EmulationConfig(repeats=1, step_s=10.0, levels=2, threshold_s=0.001, threshold_idle_factor=2.0,
                          stress_workers=2, load_weight=8, calibrate_s=4.0)
    records: list[dict[str, Any]] = []
    try:
        res = run_once(realbed, cfg, "shareon", 0, records.append)
    finally:
        realbed.stop_all(SERVICE)
    done_at = [i for i, r in enumerate(records) if r["event"] == "migration_done" and r["ok"]]
    if not done_at:
        rounds = [r.get("containers") for r in records if r["event"] == "round"]
        failed = [r.get("error") for r in records if r["event"] == "migration_done"]
        pytest.fail(f"node 1 never moved the service (threshold {res.threshold_s:.3f} s, idle {res.t_p_avg_s:.3f} s);"
                    f" refused attempts: {failed}; its rounds saw: {rounds}")
    done = records[done_at[0]]
    start = max(i for i in range(done_at[0]) if records[i]["event"] == "migration_start")
    decision = records[max(i for i in range(start) if records[i]["event"] == "round")]
    # node 2 admitted the move (its measured load + this service's demand below the grant's bound), after
    # node 1's own round recorded its confirmed decision and right before the migration
    admission = records[start - 1]
    assert admission["event"] == "admission" and admission["to"] == NODE2 and admission["admitted"] is True
    assert admission["used_fraction"] + admission["demand_fraction"] < admission["admit_below"]
    assert decision["event"] == "round" and decision["node"] == "edge1"
    assert decision["decisions"] == [{**decision["decisions"][0], "service": SERVICE, "to": NODE2, "confirmed": True}]
    assert decision["containers"][SERVICE]["t_total_s"] > res.threshold_s
    assert records[start]["t_s"] >= decision["t_s"] and done["t_start_s"] == records[start]["t_s"]
    # the state went with it: every reply's counter is the previous one + 1, and node 2 holds the last one
    counters = [k for _, _, k in res.rows]
    assert counters == list(range(1, len(counters) + 1)) and res.counter_final == len(counters) > 0
    assert res.served_by == [NODE2] and res.client_errors == []
    before = [d for t, d, _ in res.rows if done["t_start_s"] - 3.0 <= t < done["t_start_s"]]
    after = [d for t, d, _ in res.rows if t > done["t_s"] + 0.5]
    print(json.dumps({"test": "shareon_emulation_real", "threshold_s": res.threshold_s, "idle_s": res.t_p_avg_s,
                      "delay_before_s": float(np.mean(before)) if before else None,
                      "delay_after_s": float(np.mean(after)) if after else None,
                      "migration_s": done["t_s"] - done["t_start_s"], "requests": len(counters)}))
