"""Snapshot validation: peer data, so every bad field is a ValidationError that names it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgemigrate.core.errors import EdgeMigrateError, ValidationError
from edgemigrate.planning import Snapshot, Timing, evaluate
from tests.planning import tiny


def test_valid_snapshot_is_read_only_and_detached_from_its_inputs() -> None:
    tasks = np.full(2, 50.0)
    snap = tiny.snapshot(usr=tiny.users(2, tasks=tasks))
    tasks[0] = -1.0
    assert snap.users.tasks[0] == 50.0
    with pytest.raises(ValueError):
        snap.users.tasks[0] = 1.0
    assert snap.users.server.dtype == np.int64 and snap.servers.is_cloud.dtype == np.bool_


def _bad_users(**over: Any) -> Any:
    return lambda: tiny.snapshot(usr=tiny.users(2, **over))


def _bad_servers(**over: Any) -> Any:
    return lambda: tiny.snapshot(srv=tiny.servers(3, **over))


def _bad_bss(**over: Any) -> Any:
    return lambda: tiny.snapshot(base=tiny.bss(**over))


BAD = [
    (_bad_users(task_bytes=np.array([1.0, -1.0])), r"snapshot\.users\.task_bytes\[1\] = -1"),
    (_bad_users(tasks=np.array([1.0, np.nan])), r"snapshot\.users\.tasks\[1\]"),
    (_bad_users(proc_s=np.ones(3)), r"snapshot\.users\.proc_s has shape \(3,\)"),
    (_bad_users(server=np.array([0, 7])), r"snapshot\.users\.server\[1\] = 7 is out of range"),
    (_bad_users(bs=np.array([0.5, 0])), r"snapshot\.users\.bs\[0\] = 0.5 must be an integer"),
    (_bad_users(bs=np.array([0, 2])), r"snapshot\.users\.bs\[1\] = 2 is out of range"),
    (_bad_users(rssi_now_dbm=np.array([[-60.0, np.nan], [-60.0, -70.0]])), r"snapshot\.users\.rssi_now_dbm\[0, 1\]"),
    (_bad_users(rssi_next_dbm=np.array([[-60.0, np.inf], [-60.0, -70.0]])), r"snapshot\.users\.rssi_next_dbm holds \+inf"),
    (_bad_users(rssi_now_dbm=np.full((2, 3), -60.0), rssi_next_dbm=np.full((2, 3), -60.0)),
     r"snapshot\.users\.rssi_now_dbm has 3 BS columns, but there are 2"),
    (_bad_users(delta_bytes=["a", "b"]), r"snapshot\.users\.delta_bytes must be numeric"),
    (_bad_servers(cpu_power=np.array([1.0, 0.0, 1.0])), r"snapshot\.servers\.cpu_power\[1\] = 0 must be finite > 0"),
    (_bad_servers(is_cloud=np.array([0, 1, 0])), r"snapshot\.servers\.is_cloud must be 3 booleans"),
    (_bad_servers(link_bps=np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])),
     r"snapshot\.servers\.link_bps\[1, 2\] = 0"),
    (_bad_servers(psi=np.array([1.0, -1.0, 1.0])), r"snapshot\.servers\.psi\[1\]"),
    (_bad_servers(memory_bytes=np.array([1.0, np.nan, 1.0])), r"snapshot\.servers\.memory_bytes\[1\] = nan"),
    (_bad_bss(rtt_s=np.full((2, 2), 0.01)), r"snapshot\.bss\.rtt_s has shape \(2, 2\), expected \(2, 3\)"),
    (_bad_bss(max_users=np.array([1, -1])), r"snapshot\.bss\.max_users\[1\] = -1"),
    (lambda: tiny.snapshot(base=tiny.bss(2, 4)), r"snapshot\.bss\.backhaul_bps has 4 server columns, but there are 3"),
    (lambda: tiny.snapshot(horizon_s=0.0), r"snapshot\.horizon_s = 0 must be finite > 0"),
    (lambda: tiny.snapshot(margin=1.5), r"snapshot\.margin = 1.5 must be <= 1"),
    (lambda: tiny.snapshot(now_s=float("nan")), r"snapshot\.now_s"),
    (lambda: Snapshot(servers=tiny.servers(), bss=tiny.bss(), users={"server": [0]}, now_s=0.0, horizon_s=1.0),
     r"snapshot\.users must be a Users"),
]


@pytest.mark.parametrize(("build", "match"), BAD, ids=[m for _, m in BAD])
def test_bad_field_is_named(build: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as err:
        build()
    assert isinstance(err.value, EdgeMigrateError)
    assert "\n" not in str(err.value)


def test_capacities_may_be_unlimited_and_rssi_unheard() -> None:
    srv = tiny.servers(3, cpu_cores=np.array([8.0, 8.0, np.inf]))
    usr = tiny.users(2, rssi_now_dbm=np.array([[-60.0, -np.inf], [-60.0, -70.0]]))
    snap = tiny.snapshot(srv, usr=usr)
    assert snap.servers.cpu_cores[2] == np.inf and snap.users.rssi_now_dbm[0, 1] == -np.inf


def test_evaluate_rejects_an_assignment_that_does_not_fit_the_snapshot() -> None:
    snap = tiny.snapshot()
    with pytest.raises(ValidationError, match=r"plan server must be 2 indices in \[0, 3\)"):
        evaluate(snap, "x", np.array([0, 3]), np.array([0, 0]), Timing.COORDINATED)
    with pytest.raises(ValidationError, match="plan bs"):
        evaluate(snap, "x", np.array([0, 0]), np.array([0]), Timing.COORDINATED)
    mine = np.array([1, 1])
    plan = evaluate(snap, "x", mine, np.array([1, 1]), Timing.COORDINATED)
    mine[0] = 0  # the caller's array stays writable and the plan keeps its own copy
    assert plan.server[0] == 1 and not plan.server.flags.writeable
