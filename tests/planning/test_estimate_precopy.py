"""The migration estimate under a fitted pre-copy calibration (Clark et al. 2005) vs eq. 5's stop-and-copy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.costs import handover as ho
from edgemigrate.planning.estimate import Timing, evaluate, migration_times_s
from edgemigrate.planning.milp import OrchestratedPlanner
from tests.planning.tiny import servers, snapshot

# a fixed calibration of the order the testbed measures for the counter (34 MB resident, one leave-running
# round, 80 KB dirtied per round, 0.3 s of restore)
MODEL = ho.PrecopyModel(resident_bytes=34e6, dirty_bytes_per_s=50e3, round_overhead_s=0.4, final_overhead_s=0.2,
                        restore_base_s=0.3, restore_s_per_byte=0.0, rounds=1, wire_ratio=1.0, frozen_rtts=2.0)
RTT = np.array([[0.0, 0.05, 0.15], [0.05, 0.0, 0.15], [0.15, 0.15, 0.0]])


def test_precopy_strategy_prices_the_fitted_rounds_and_frozen_window() -> None:
    snap = snapshot(precopy=MODEL, server_rtt_s=RTT)
    pre, mig = migration_times_s(snap, np.array([0, 0, 1]), np.array([1, 2, 0]))
    # by hand: round 1 = 0.4 + 34e6 * 8 / 100e6 + RTT; frozen = 0.2 + dirty bytes * 8 / 100e6 + 2 RTT + 0.3
    for k, rtt in enumerate((0.05, 0.15)):
        round1 = 0.4 + 34e6 * 8 / 100e6 + rtt
        dirty = min(34e6, 50e3 * round1)
        assert pre[k] == pytest.approx(round1)
        assert mig[k] == pytest.approx(0.2 + dirty * 8 / 100e6 + 2 * rtt + 0.3)
    assert (pre[2], mig[2]) == (0.0, 0.0)  # user 1 is on server 0 already: it stays
    frozen, total, _ = ho.precopy_times_s(MODEL, 100e6, 0.05)
    assert pre[0] + mig[0] == pytest.approx(float(total)) and mig[0] == pytest.approx(float(frozen))


def test_stop_and_copy_keeps_eq5() -> None:
    snap = snapshot()
    pre, mig = migration_times_s(snap, np.array([0]), np.array([1]))
    U, S = snap.users, snap.servers
    assert pre[0] == pytest.approx(float(ho.premigration_s(S.psi[0], U.image_bytes[0], U.checkpoint_bytes[0],
                                                           S.cpu_power[0], 100e6)))
    assert mig[0] == pytest.approx(float(ho.migration_s(S.psi[0], S.rho[1], U.image_bytes[0], U.checkpoint_bytes[0],
                                                        U.delta_bytes[0], S.cpu_power[0], S.cpu_power[1], 100e6)))


def test_the_plan_and_the_milp_see_the_precopy_outage() -> None:
    # eq. 5 with large psi/rho makes a migration cost more than it gains; the pre-copy outage does not
    costly = servers(psi=np.full(3, 5e-3), rho=np.full(3, 5e-3))
    eq5 = snapshot(srv=costly)
    pc = snapshot(srv=costly, precopy=MODEL, server_rtt_s=RTT)
    p5 = evaluate(eq5, "x", [1, 1], [1, 1], Timing.COORDINATED)
    pp = evaluate(pc, "x", [1, 1], [1, 1], Timing.COORDINATED)
    assert np.all(pp.downtime_s < p5.downtime_s)
    _, mig = migration_times_s(pc, np.array([0, 1]), np.array([1, 1]))
    np.testing.assert_allclose(pp.downtime_s, np.maximum(mig, pc.handover_s))  # coordinated: max(T_mig, T_ho)
    plan = OrchestratedPlanner().plan(pc, np.random.default_rng(0))
    assert plan.optimal and plan.cost_s <= pp.cost_s + 1e-6


def test_bad_precopy_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="snapshot.precopy"):
        snapshot(precopy={"rounds": 1})
    with pytest.raises(ValidationError, match="snapshot.server_rtt_s"):
        snapshot(precopy=MODEL, server_rtt_s=np.full((2, 2), 0.05))
    with pytest.raises(ValidationError, match=r"snapshot.server_rtt_s\[0, 1\]"):
        snapshot(precopy=MODEL, server_rtt_s=np.where(RTT == 0.05, -1.0, RTT))
    assert dataclasses.replace(snapshot(precopy=MODEL), replan=None).precopy is MODEL
