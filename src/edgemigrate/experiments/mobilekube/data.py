"""Test movements: imported traces, or held-out synthetic ones written in the cabspotting format.

Without real traces (the cabspotting set is not redistributable; users import their own copy) the test
episodes replay synthetic taxi-like movements drawn with a seed the training never uses, written as
``new_<id>.txt`` files with fixes every 58 s (the real sets' median, FORMATS.md) and read back through the
real import path (resampling to 5 minutes, area selection), so the pipeline is the one real traces take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemigrate.core.seeding import SeedTree
from edgemigrate.envs.mobilekube import MobileKubeConfig, build_network
from edgemigrate.mobility.taxi import CABSPOTTING_FIX_INTERVAL_S, TaxiLike
from edgemigrate.mobility.traces import Trajectories
from edgemigrate.mobility.writers import write_cabspotting

SYNTHETIC_T0_S = 1211302694.0
"""2008-05-20, inside the real set's 24 days (only the format needs a plausible time)."""


def write_synthetic_traces(folder: Path, cfg: MobileKubeConfig, n_cabs: int, n_steps: int, seed: int) -> Path:
    """``n_cabs`` synthetic cabs covering ``n_steps`` env steps, written into ``folder``; returns it."""
    net = build_network(cfg)
    taxi = TaxiLike(n_cabs, net.area)
    xy = [taxi.reset(SeedTree(seed).rng("mobilekube/test-traces"))]
    n_fixes = int(np.ceil(n_steps * cfg.step_s / CABSPOTTING_FIX_INTERVAL_S)) + 1
    for _ in range(n_fixes):
        xy.append(taxi.step(CABSPOTTING_FIX_INTERVAL_S))
    arr = np.stack(xy)
    ids = tuple(f"synth{i:03d}" for i in range(n_cabs))
    traj = Trajectories(ids, SYNTHETIC_T0_S, CABSPOTTING_FIX_INTERVAL_S, arr, np.ones(arr.shape[:2], bool),
                        net.projection, {"source": "synthetic taxi-like", "seed": seed})
    write_cabspotting(folder, traj)
    return folder
