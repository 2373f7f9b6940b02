"""Baselines of Liu et al. 2024, sec. VI-A decide by their documented scores, only among feasible nodes."""

from __future__ import annotations

import numpy as np
import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.policies import make_policy
from edgemigrate.policies.heuristics.layer_aware import DEP_SOFT_THRESHOLD

from ..sim.worlds import make_sim


def warm_sim():
    sim = make_sim(n_users=60, n_steps=40, seed=4)
    pol = make_policy("dep_soft", seed=0)
    for _ in range(15):  # warm layer caches
        sim.step(pol)
    queued = sim.begin_tick()
    assert queued.size > 3
    return sim, queued


@pytest.mark.parametrize("name", ["dep_soft", "kube", "down", "monkey", "nearest"])
def test_only_feasible_nodes_or_cloud(name: str) -> None:
    sim, q = warm_sim()
    view = sim.view
    acts = make_policy(name, seed=1).decide(view, q)
    mask = view.mask(q)
    assert mask[np.arange(q.size), acts].all()
    none = ~mask[:, : view.n_nodes].any(axis=1)
    assert (acts[none] == view.cloud).all()


def test_dep_soft_picks_among_nodes_near_best_layer_score() -> None:
    sim, q = warm_sim()
    view = sim.view
    acts = make_policy("dep_soft", seed=2).decide(view, q)
    mask = view.mask(q)[:, : view.n_nodes]
    score = view.present_bytes(q)[:, : view.n_nodes]
    for k, a in enumerate(acts):
        if a < view.n_nodes:
            assert score[k, a] >= DEP_SOFT_THRESHOLD * score[k][mask[k]].max() - 1e-6


def test_down_picks_fastest_download() -> None:
    sim, q = warm_sim()
    view = sim.view
    acts = make_policy("down", seed=2).decide(view, q)
    est = view.download_estimate_s(q)[:, : view.n_nodes]
    mask = view.mask(q)[:, : view.n_nodes]
    for k, a in enumerate(acts):
        if a < view.n_nodes:
            assert est[k, a] == pytest.approx(est[k][mask[k]].min())


def test_kube_prefers_nodes_holding_the_whole_image() -> None:
    sim, q = warm_sim()
    view = sim.view
    acts = make_policy("kube", seed=2).decide(view, q)
    present = view.image_present(q)[:, : view.n_nodes]
    mask = view.mask(q)[:, : view.n_nodes]
    for k, a in enumerate(acts):
        if a < view.n_nodes and (present[k] & mask[k]).any():
            size = view.task_layers(q[k : k + 1])[0] @ view.layer_sizes_bytes
            if size * present[k].sum() / view.n_nodes > 23 * 1024 * 1024:  # above the ImageLocality floor
                assert present[k, a]


def test_unknown_policy_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'dep_soft'"):
        make_policy("dep_sofft")
