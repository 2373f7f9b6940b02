"""A scenario driven by an imported real-format trace (the shared Rome-format sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.mobility import read_roma, to_trajectories
from edgemigrate.policies import make_policy
from edgemigrate.scenarios import build_simulator, load_scenario

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "traces" / "roma_format_sample.txt"


@pytest.fixture()
def rome_npz(tmp_path: Path) -> Path:
    if not SAMPLE.exists():
        pytest.skip("shared data folder not present")
    traj = to_trajectories(read_roma(SAMPLE), dt_s=10.0)  # projected about its own centroid
    return traj.save(tmp_path / "rome.npz")


def test_trace_is_reprojected_into_the_scenario_frame(rome_npz: Path) -> None:
    sc = load_scenario("ppcm-paper", ["users.model=\"trace\"", f"users.trace=\"{rome_npz}\"", "sim.n_steps=60"])
    sim = build_simulator(sc)
    sim.run(make_policy("nearest"))
    assert sim.recorder.decisions["task"].size > 0
    # positions are in the scenario frame: the users' lat/lon are the trace's lat/lon
    proj = sc.area.projection()
    latlon = proj.to_latlon(sim.user_xy)
    assert np.all(np.abs(latlon[:, 0] - 41.89) < 0.05) and np.all(np.abs(latlon[:, 1] - 12.49) < 0.05)


def test_trace_outside_the_area_is_a_clear_error(rome_npz: Path) -> None:
    sc = load_scenario("ppcm-paper", ["users.model=\"trace\"", f"users.trace=\"{rome_npz}\"", "area.origin_lat=45.0"])
    with pytest.raises(ConfigError, match="no fix of .* lies inside the scenario area"):
        build_simulator(sc)
