"""Run folder names and confidence intervals: one helper each, used by every command that writes results."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.runs import new_run_dir, run_name
from edgemigrate.core.stats import ci95, mean_ci95, t95


def test_run_name_is_cleanrl_style_with_an_injected_time() -> None:
    when = time.mktime((2026, 12, 4, 21, 5, 9, 0, 0, -1))
    assert run_name("sf", "ppo", 3, when=when) == "sf__ppo__3__20261204-210509"


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path: Path) -> None:
    name = "toy__ppo__1__20261204-210509"
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: new_run_dir(tmp_path / "runs", name), range(16)))
    assert len(set(paths)) == 16 and all(p.is_dir() for p in paths)
    assert sorted(p.name for p in paths)[0] == name and (tmp_path / "runs" / f"{name}-16").is_dir()


def test_ci95_matches_the_student_t_interval() -> None:
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.776445; std = sqrt(2.5); n = 5
    assert ci95(v) == pytest.approx(2.776445 * np.sqrt(2.5) / np.sqrt(5), rel=1e-6)
    assert mean_ci95(v) == (3.0, ci95(v))
    assert t95(1) == t95(2)  # one sample is treated as one degree of freedom, never zero


def test_ci95_of_fewer_than_two_values_is_zero() -> None:
    assert ci95([]) == 0.0 and ci95([7.0]) == 0.0
