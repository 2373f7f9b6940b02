"""The monitor: strict MU report decoding, replan triggers, and the snapshot it builds from the store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgemigrate.controller.backend import HostStatus, MigrationResult, ServiceState
from edgemigrate.controller.monitor import Monitor, SnapshotDefaults, mu_report_to_json, parse_mu_report
from edgemigrate.controller.store import (
    BsRssi,
    CheckpointKind,
    CheckpointRecord,
    HostState,
    MuReport,
    NotFoundError,
    TaskDelay,
    open_store,
)
from edgemigrate.core.errors import ValidationError
from edgemigrate.planning import make_planner

from .controller_helpers import RTT, seed_edge

NOW = 1_000_000.0


@pytest.fixture
def store():
    s = open_store("sqlite://:memory:", clock=lambda: NOW)
    seed_edge(s, ("u1", "u2"))
    yield s
    s.close()


@pytest.fixture
def monitor(store):
    return Monitor(store, SnapshotDefaults(bs_host_rtt_s=RTT), clock=lambda: NOW)


def _report(user="u1", **extra):
    body = {"user": user, "at_s": NOW, "delays": [{"service": "counter", "e2e_delay_s": 0.05}],
            "rssi": [{"base_station": "bs1", "rssi_dbm": -60.0}]}
    body.update(extra)
    return body


@pytest.mark.parametrize(("body", "key"), [
    ({"user": "u1"}, "mu_report.at_s"),
    (_report(extra=1), "mu_report.extra"),
    (_report(at_s="now"), "mu_report.at_s"),
    (_report(at_s=NOW + 3600), "mu_report.at_s"),
    (_report(delays=[{"service": "counter", "e2e_delay_s": -1.0}]), "task.e2e_delay_s"),
    (_report(delays=[{"service": "counter", "e2e_delay_s": True}]), "task.e2e_delay_s"),
    (_report(delays=[{"service": "Counter!", "e2e_delay_s": 0.1}]), "task.service"),
    (_report(delays={"service": "counter"}), "mu_report.delays"),
    (_report(rssi=[{"base_station": "bs1", "rssi_dbm": 120.0}]), "rssi.rssi_dbm"),
    (_report(rssi=[{"base_station": "bs1"}]), "mu_report.rssi[0].rssi_dbm"),
    (_report(rssi=[{"base_station": "bs1", "rssi_dbm": -60.0}, {"base_station": "bs1", "rssi_dbm": -61.0}]),
     "mu_report.rssi"),
    (_report(rssi=[{"base_station": "bs1", "rssi_dbm": -60.0}] * 1001), "mu_report.rssi"),
    ([1, 2], "mu_report"),
])
def test_bad_mu_reports_raise_one_line_naming_the_key(body, key) -> None:
    with pytest.raises(ValidationError) as err:
        parse_mu_report(body, now_s=NOW)
    msg = str(err.value)
    assert msg.startswith(key) and "\n" not in msg, msg


def test_report_round_trips_through_the_wire_form() -> None:
    r = MuReport("u1", NOW, (TaskDelay("counter", 0.02, 1500),), (BsRssi("bs2", -70.0),))
    assert parse_mu_report(mu_report_to_json(r)) == r


def test_ingest_stores_and_refuses_unknown_names(store, monitor) -> None:
    monitor.ingest_mu(_report())
    assert [s.e2e_delay_s for s in store.task_delays("u1")] == [0.05]
    with pytest.raises(NotFoundError, match="mu_report.user"):
        monitor.ingest_mu(_report(user="nobody"))
    with pytest.raises(NotFoundError, match="base_station"):
        monitor.ingest_mu(_report(rssi=[{"base_station": "bs9", "rssi_dbm": -50.0}]))
    assert len(store.task_delays("u1")) == 1  # the refused reports left nothing


def test_ingest_host_stores_services_and_declared_memory(store, monitor) -> None:
    monitor.ingest_host(HostStatus("edge1", (ServiceState("counter", "running", False, 64 << 20),
                                             ServiceState("old", "stopped", False, 32 << 20))))
    (rep,) = store.host_reports("edge1")
    assert rep.services == ("counter", "old") and rep.memory_used_bytes == 64 << 20


def test_replan_triggers_sla_and_rssi(monitor) -> None:
    assert monitor.needs_replan() == []
    monitor.ingest_mu(_report("u1", rssi=[{"base_station": "bs1", "rssi_dbm": -60.0},
                                          {"base_station": "bs2", "rssi_dbm": -58.5}]))
    assert monitor.needs_replan() == []  # 1.5 dB better is inside the 3 dB hysteresis
    monitor.ingest_mu(_report("u1", rssi=[{"base_station": "bs1", "rssi_dbm": -70.0},
                                          {"base_station": "bs2", "rssi_dbm": -50.0}]))
    monitor.ingest_mu(_report("u2", delays=[{"service": "counter", "e2e_delay_s": 0.9}]))  # SLA 0.5 s
    assert monitor.needs_replan() == ["u1", "u2"]


def test_snapshot_maps_store_to_planner_indices(store, monitor) -> None:
    monitor.ingest_mu(_report("u1", rssi=[{"base_station": "bs1", "rssi_dbm": -70.0},
                                          {"base_station": "bs2", "rssi_dbm": -50.0}]))
    store.record_checkpoint(CheckpointRecord("edge2", "counter", CheckpointKind.CHECKPOINT, NOW, 10**9, 2.0))
    snap, index = monitor.snapshot({"u1"})
    assert index.hosts == ("edge1", "edge2", "edge3") and index.bss == ("bs1", "bs2", "bs3")
    assert index.pairs == (("u1", "counter"), ("u2", "counter"))
    assert list(snap.replan) == [True, False]
    assert snap.users.rssi_now_dbm[0, 1] == -50.0 and math.isinf(snap.users.rssi_now_dbm[1, 1])
    assert snap.users.rssi_now_dbm[1, 0] == -60.0  # u2 reported nothing: assumed to hear its current BS
    assert snap.bss.rtt_s[1, 1] == 0.001 and snap.bss.rtt_s[0, 1] == 0.002
    assert snap.servers.psi[1] == pytest.approx(2e-9) and snap.servers.psi[0] == 1e-9
    plan = make_planner("nearest").plan(snap, np.random.default_rng(0))
    assert int(plan.server[0]) == 1 and int(plan.bs[0]) == 1  # u1 to bs2 and its nearest server, edge2


def test_snapshot_leaves_out_down_hosts_and_their_placements(store, monitor) -> None:
    store.set_host_state("edge1", HostState.DOWN)
    snap, index = monitor.snapshot()
    assert index.hosts == ("edge2", "edge3") and index.pairs == () and snap.users.n == 0


def test_migration_statistics_feed_the_eq5_history(store, monitor) -> None:
    stats = {"rounds": [{"image_bytes": 40_000_000, "dump_s": 0.4}, {"image_bytes": 1000, "dump_s": 0.01}],
             "full_checkpoint_bytes": 41_000_000, "restore_s": 0.6}
    recs = monitor.ingest_migration(MigrationResult("counter", "edge1", "edge2", stats))
    assert [(r.host, r.kind) for r in recs] == [("edge1", CheckpointKind.CHECKPOINT), ("edge2", CheckpointKind.RESTORE)]
    assert store.checkpoint_history("edge2")[0].size_bytes == 41_000_000
    assert monitor.ingest_migration(MigrationResult("counter", "edge1", "edge2", {"rounds": "?"})) == []
    with pytest.raises(ValidationError, match="checkpoint.duration_s"):
        monitor.ingest_migration(MigrationResult("counter", "edge1", "edge2",
                                                 {"full_checkpoint_bytes": 5, "restore_s": -1.0}))


def test_snapshot_takes_rtts_from_the_store_before_the_defaults(store, monitor) -> None:
    assert ("bs3", "edge2") not in RTT  # no override for this pair
    store.put_rtt("bs3", "edge2", 0.037)
    snap, index = monitor.snapshot()
    b, h = index.bss.index("bs3"), index.hosts.index("edge2")
    assert snap.bss.rtt_s[b, h] == pytest.approx(0.037)
    # a pair without a stored RTT keeps the default (or the override the fixture's defaults give)
    assert snap.bss.rtt_s[index.bss.index("bs3"), index.hosts.index("edge1")] == pytest.approx(
        monitor.defaults.bs_host_rtt_s.get(("bs3", "edge1"), monitor.defaults.edge_rtt_s))
