"""RSSI prediction for the trigger times (Ngo et al. 2020, fig. 2): the trend function on injected series, and a
walk past two base stations on an injected clock, with and without prediction. Nothing reads the wall clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgemigrate.controller.deployment import actions_from_plan
from edgemigrate.controller.monitor import (
    MAX_RSSI_SLOPE_DB_PER_S,
    Monitor,
    SnapshotDefaults,
    rssi_trend_dbm,
)
from edgemigrate.controller.store import (
    BaseStation,
    BsRssi,
    Host,
    HostRole,
    MuReport,
    Placement,
    TaskDelay,
    User,
    open_store,
)
from edgemigrate.core.errors import ValidationError
from edgemigrate.costs import handover as ho
from edgemigrate.mobileuser.radio import RadioModel, default_sites
from edgemigrate.planning import make_planner
from edgemigrate.planning.coverage import plan_covered

T0 = 1_000_000.0
SPACING_M = 20.0
SPEED_M_PER_S = 1.0
REPORT_EVERY_S = 0.5
MODEL = ho.PrecopyModel(resident_bytes=12e6, dirty_bytes_per_s=50e3, round_overhead_s=0.3, final_overhead_s=0.2,
                        restore_base_s=0.3, restore_s_per_byte=0.0, rounds=1, frozen_rtts=2.0)


def test_trend_extrapolates_a_line_and_refuses_what_it_cannot_fit() -> None:
    t = np.arange(6) * 0.5
    assert rssi_trend_dbm(t, -50 - 2 * t, 5.0) == pytest.approx(-60.0)
    assert rssi_trend_dbm(t[::-1], (-50 - 2 * t)[::-1], 5.0) == pytest.approx(-60.0)  # order does not matter
    # only the newest reports count: an old level far away does not tilt the line
    assert rssi_trend_dbm([*t, 10, 10.5, 11, 11.5, 12, 12.5], [0, 0, 0, 0, 0, 0, *(-40 - t)], 13.0) == \
        pytest.approx(-42.5 - (13.0 - 12.5))
    assert rssi_trend_dbm([1.0, 1.2], [-50.0, -70.0], 10.0) == -70.0  # span under 1 s: the newest value
    assert rssi_trend_dbm([1.0], [-55.0], 100.0) == -55.0 and rssi_trend_dbm([], [], 1.0) == -math.inf
    steep = rssi_trend_dbm([0.0, 1.0], [0.0, -1000.0], 2.0)  # a glitch cannot extrapolate without bound
    assert steep == pytest.approx(-500.0 - MAX_RSSI_SLOPE_DB_PER_S * 1.5) or steep == -200.0
    assert rssi_trend_dbm([0.0, 1.0], [-60.0, -61.0], 1e9) == -200.0  # stays inside the store's range
    with pytest.raises(ValidationError, match="rssi trend"):
        rssi_trend_dbm([0.0, 1.0], [-60.0], 2.0)


def _walk(predict: bool) -> tuple[list[float], list[tuple[float, object, object]], float, float]:
    """The MU walks from bs1 towards bs2; every report, the monitor is asked and the orchestrated planner plans
    for a flagged user. Returns (trigger times, [(time, plan, actions)] of moving plans, t_cross, cell edge)."""
    now = [T0]
    store = open_store("sqlite://:memory:", clock=lambda: now[0])
    sites = default_sites(3, SPACING_M)
    radio = RadioModel(sites)
    for k, s in enumerate(sites, 1):
        store.put_host(Host(f"edge{k}", HostRole.EDGE, f"10.9.0.{k}:7400", 4.0, 8 << 30, 100 << 30))
        store.put_base_station(BaseStation(s.name, s.x_m, s.y_m, 1e9, 8))
    store.put_user(User("mu1"))
    store.put_placement(Placement("mu1", "counter", "edge1", "bs1"))
    cell_edge = radio.rssi_dbm((0.6 * SPACING_M, 0.0))["bs1"]  # the experiment's receiver minimum
    rtt = {(f"bs{b}", f"edge{h}"): 0.002 if b == h else 0.052 for b in (1, 2, 3) for h in (1, 2, 3)}
    defaults = SnapshotDefaults(bs_host_rtt_s=rtt, min_rssi_dbm=cell_edge, horizon_s=5.0, predict_rssi=predict,
                                precopy=MODEL, server_rtt_s=0.05)
    monitor = Monitor(store, defaults, clock=lambda: now[0])
    planner = make_planner("orchestrated")
    xs = np.linspace(0, SPACING_M, 20001)
    gap = np.array([radio.rssi_dbm((x, 0.0))["bs2"] - radio.rssi_dbm((x, 0.0))["bs1"] for x in xs])
    t_cross = T0 + float(xs[np.argmax(gap >= 3.0)]) / SPEED_M_PER_S
    triggers, moving = [], []
    for k in range(int(14.0 / REPORT_EVERY_S)):
        now[0] = T0 + k * REPORT_EVERY_S
        rssi = radio.rssi_dbm((SPEED_M_PER_S * (now[0] - T0), 0.0))
        # the MU offloads continuously: 20 tasks per report (what makes a migration worth its outage, eq. 3a)
        tasks = tuple(TaskDelay("counter", 0.01, 100) for _ in range(20))
        monitor.ingest_mu(MuReport("mu1", now[0], tasks, tuple(BsRssi(b, v) for b, v in rssi.items())))
        if "mu1" not in monitor.needs_replan():
            continue
        triggers.append(now[0])
        snap, index = monitor.snapshot({"mu1"})
        plan = plan_covered(planner, snap, np.random.default_rng(0))
        actions = actions_from_plan(plan, index, snap.users.server, snap.users.bs)
        if actions:
            moving.append((now[0], plan, actions))
    store.close()
    return triggers, moving, t_cross, cell_edge


def test_prediction_triggers_the_premigration_so_the_freeze_lands_at_the_predicted_crossing() -> None:
    triggers, moving, t_cross, _ = _walk(predict=True)
    frozen, total, _ = ho.precopy_times_s(MODEL, 100e6, 0.05)
    t_pre = float(total - frozen)
    assert triggers and triggers[0] < t_cross - 1.1 * t_pre  # flagged before the handover is due
    assert moving, "the planner never moved the user"
    at, plan, actions = moving[0]
    assert at < t_cross - 1.1 * t_pre  # planned early enough for the pre-copy rounds and the margin
    assert plan.precopy and plan.bs[0] == 1 and plan.server[0] == 1  # bs2 and its co-located edge2
    # the handover is planned at the predicted hysteresis crossing (the trend line's; the path loss is
    # log-distance, so the line misses the true crossing by a fraction of a second)
    assert plan.handover_at_s[0] == pytest.approx(t_cross, abs=0.5)
    assert plan.migration_at_s[0] == plan.handover_at_s[0]  # the freeze at the handover (fig. 2)
    assert plan.premigration_at_s[0] == pytest.approx(plan.handover_at_s[0] - 1.1 * t_pre)
    (a,) = actions
    assert a.migrate_at_s == pytest.approx(plan.premigration_at_s[0]) and a.migrate_at_s > at
    assert a.handover_at_s == pytest.approx(plan.handover_at_s[0])


def test_without_prediction_the_trigger_comes_at_the_crossing_and_the_freeze_after_it() -> None:
    triggers, moving, t_cross, _ = _walk(predict=False)
    assert triggers and triggers[0] >= t_cross - REPORT_EVERY_S
    at, plan, _ = moving[0]
    assert at >= t_cross - REPORT_EVERY_S
    assert plan.migration_at_s[0] > t_cross  # the pre-copy starts at the crossing: the freeze comes later


def test_a_hostile_rssi_series_cannot_push_the_trigger_out_of_range() -> None:
    """Reports a second apart that swing 200 dB: the slope bound keeps the prediction finite and in range."""
    now = [T0]
    store = open_store("sqlite://:memory:", clock=lambda: now[0])
    store.put_host(Host("edge1", HostRole.EDGE, "10.9.0.1:7400", 4.0, 8 << 30, 100 << 30))
    store.put_base_station(BaseStation("bs1", 0.0, 0.0, 1e9, 8))
    store.put_user(User("mu1"))
    store.put_placement(Placement("mu1", "counter", "edge1", "bs1"))
    monitor = Monitor(store, SnapshotDefaults(), clock=lambda: now[0])
    for k, v in enumerate((-30.0, -199.0, -30.0, -199.0)):
        now[0] = T0 + k
        monitor.ingest_mu(MuReport("mu1", now[0], (), (BsRssi("bs1", v),)))
    snap, _ = monitor.snapshot()
    assert np.all(np.isfinite(snap.users.rssi_next_dbm)) and np.all(snap.users.rssi_next_dbm >= -200.0)
    store.close()
