"""Destination-side admission in the ShareOn simulator (sim/shareon.py step 7b): a decision is a request the
destination answers one round trip later with its own current state and what it already admitted; a refused
request goes to the source's next candidate. Checked on a crowded corner at 10 Gbit/s, where transfers are
shorter than a tick and every node deciding from the same reports picks the same idle neighbour."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgemigrate.core.geo import Area
from edgemigrate.mobility import RandomWaypoint
from edgemigrate.policies.shareon.simpolicy import AgentPolicy
from edgemigrate.sim.shareon import ShareOnSim
from tests.policies.shareon.test_sim import CFG, GRID, params

HERD = dataclasses.replace(CFG, load=0.5, duration_s=240.0, warmup_s=60.0, inter_edge_bps=10e9)
CORNER = Area(0.0, 0.0, 2600.0, 2600.0)  # users around the four nodes of one corner of the grid


class Watched(ShareOnSim):
    """The simulator, recording each tick the migrations heading to each node and every admission answer."""

    def _reset(self) -> None:
        super()._reset()
        self.max_incoming = 0
        self.answers: list[tuple[int, float, float, float, float, bool]] = []  # (k after, util, reserved, demand, hz/k, ok)
        if self.admission is not None:
            real = self.admission

            def watch(cpu_hz: float, ram_bytes: float, n: int, util: float, res_n: int, res_hz: float,
                      demand_hz: float) -> bool:
                ok = real(cpu_hz, ram_bytes, n, util, res_n, res_hz, demand_hz)
                k = n + res_n + 1
                self.answers.append((k, util, res_hz / cpu_hz, demand_hz / cpu_hz, cpu_hz / k, ok))
                return ok

            self.admission = watch

    def _migrate(self, step: int) -> int:
        moving = self.mig_dst >= 0
        if moving.any():
            self.max_incoming = max(self.max_incoming, int(np.bincount(self.mig_dst[moving]).max()))
        return super()._migrate(step)


def _run(**overrides: Any) -> tuple[Watched, dict[str, float]]:
    pol = AgentPolicy.by_name("shareon", dataclasses.replace(params(HERD), **overrides))
    s = Watched(HERD, GRID, RandomWaypoint(120, CORNER, speed_mps=5.0), policy=pol, seed=3)
    return s, s.run().totals


def test_admission_bounds_what_a_destination_takes_and_refuses_the_rest() -> None:
    herd, free = _run(admit_util_high=None)
    assert free["migrations"] > 0 and herd.answers == [] and free["refusals_per_user_h"] == 0.0
    s, adm = _run()
    admitted = [a for a in s.answers if a[-1]]
    assert admitted and len(admitted) < len(s.answers)  # (refusals_per_user_h counts after warm-up only)
    th1 = params(HERD).thresholds.sp_th1_hz
    # every admission kept the destination below the bound with what it had already admitted, out of High
    for _, util, reserved, demand, per_container, _ in admitted:
        assert util + reserved + demand < 0.85 and per_container > th1
    # and every refusal is one that would have crossed it, or made the node High by Algorithm 1's count
    for _, util, reserved, demand, per_container, ok in s.answers:
        assert ok or util + reserved + demand >= 0.85 or per_container <= th1
    assert s.max_incoming <= herd.max_incoming
    assert adm["migrations_per_user_h"] < free["migrations_per_user_h"]


def test_without_admission_the_baselines_start_at_once() -> None:
    pol = AgentPolicy.by_name("processing_only", params(HERD))
    s = Watched(HERD, GRID, RandomWaypoint(120, CORNER, speed_mps=5.0), policy=pol, seed=3)
    totals = s.run().totals
    assert s.admission is None and s.answers == [] and totals["refusals_per_user_h"] == 0.0
    assert totals["migrations"] > 0
