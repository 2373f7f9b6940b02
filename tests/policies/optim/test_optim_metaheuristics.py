"""GA / DE / PSO on synthetic layer-sharing assignment problems."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.optim import SOLVERS, LayerAssignmentProblem, brute_force


def _reference_cost(p: LayerAssignmentProblem, a: np.ndarray) -> float:
    """Straight-line re-statement of the cost in the module docstring, one solution at a time."""
    total = sum(p.base_cost_s[k, a[k]] for k in range(p.n_tasks))
    for j in range(p.n_choices):
        on_j = [k for k in range(p.n_tasks) if a[k] == j]
        if not on_j:
            continue
        need = np.any(p.task_layers[on_j], axis=0) & ~p.node_layers[j]
        total += len(on_j) * p.layer_size_bytes[need].sum() * 8 / p.bandwidth_bps[j]
    return float(total)


@pytest.fixture(scope="module")
def tight() -> LayerAssignmentProblem:
    return LayerAssignmentProblem.random(50, 10, np.random.default_rng(0))


def test_vectorised_cost_matches_reference(tight: LayerAssignmentProblem) -> None:
    rng = np.random.default_rng(1)
    pop = tight.repair(rng.integers(0, tight.n_choices, size=(8, tight.n_tasks)))
    got = tight.evaluate(pop)
    want = [_reference_cost(tight, row) for row in pop]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_repair_restores_feasibility_and_keeps_feasible_rows(tight: LayerAssignmentProblem) -> None:
    rng = np.random.default_rng(2)
    raw = rng.integers(0, tight.n_choices, size=(30, tight.n_tasks))
    assert not tight.feasible(raw).all()
    fixed = tight.repair(raw)
    assert tight.feasible(fixed).all()
    assert (tight.evaluate(fixed) < 1e6).all()  # no penalty left
    np.testing.assert_array_equal(tight.repair(fixed), fixed)
    g = tight.greedy()
    assert tight.feasible(g).all()


def test_infeasible_is_penalised(tight: LayerAssignmentProblem) -> None:
    everything_on_node0 = np.zeros((1, tight.n_tasks), dtype=np.int64)
    assert tight.evaluate(everything_on_node0)[0] > 1e6


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("algo", ["ga", "de", "pso"])
def test_finds_brute_force_optimum_on_small_instances(algo: str, seed: int) -> None:
    prob = LayerAssignmentProblem.random(
        6, 3, np.random.default_rng(100 + seed), n_layers=10, layers_per_task=3, capacity_per_node=2
    )
    opt_x, opt_cost = brute_force(prob)
    assert opt_cost < 1e6
    fn, cfg = SOLVERS[algo]
    res = fn(prob, dataclasses.replace(cfg, pop_size=20, generations=80, polish=False), seed=seed)
    assert res.cost == pytest.approx(opt_cost, rel=1e-12)
    assert res.cost == pytest.approx(prob.evaluate(res.assignment)[0], rel=1e-12)


@pytest.mark.parametrize("polish", [False, True])
@pytest.mark.parametrize("algo", ["ga", "de", "pso"])
def test_tight_50x10_at_least_as_good_as_greedy(
    tight: LayerAssignmentProblem, algo: str, polish: bool
) -> None:
    fn, cfg = SOLVERS[algo]
    res = fn(tight, dataclasses.replace(cfg, generations=60, polish=polish), seed=3)
    greedy_cost = float(tight.evaluate(tight.greedy())[0])
    assert res.greedy_cost == pytest.approx(greedy_cost)
    assert tight.feasible(res.assignment).all()
    assert res.cost == pytest.approx(float(tight.evaluate(res.assignment)[0]))
    assert res.cost <= greedy_cost + 1e-9
    assert np.all(np.diff(res.history) <= 1e-9)  # elitist: best cost never gets worse
    if polish:
        assert res.cost < greedy_cost - 1e-6  # the greedy solution is not locally optimal on this instance


@pytest.mark.parametrize("algo", ["ga", "de", "pso"])
def test_same_seed_same_result(tight: LayerAssignmentProblem, algo: str) -> None:
    fn, cfg = SOLVERS[algo]
    cfg = dataclasses.replace(cfg, generations=20, polish=False)
    a, b = fn(tight, cfg, seed=7), fn(tight, cfg, seed=7)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_array_equal(a.history, b.history)


def test_bad_inputs_raise_validation_error(tight: LayerAssignmentProblem) -> None:
    with pytest.raises(ValidationError):
        tight.evaluate(np.zeros((2, tight.n_tasks + 1), dtype=np.int64))
    with pytest.raises(ValidationError):
        tight.evaluate(np.full((1, tight.n_tasks), tight.n_choices))
    with pytest.raises(ValidationError):
        dataclasses.replace(tight, capacity=tight.capacity[:-1])
    with pytest.raises(ValidationError):
        SOLVERS["ga"][1].__class__(pop_size=2)
    with pytest.raises(ValidationError):
        brute_force(tight)


@pytest.mark.parametrize("algo", ["ga", "de", "pso"])
def test_one_task_steps_are_solved_exactly_by_enumeration(algo: str) -> None:
    prob = LayerAssignmentProblem.random(1, 9, np.random.default_rng(5), capacity_per_node=1)
    fn, cfg = SOLVERS[algo]
    res = fn(prob, cfg, seed=0)
    assert res.evaluations <= prob.n_choices + 1
    assert res.cost == pytest.approx(brute_force(prob)[1])


def test_patience_stops_a_converged_search_early(tight: LayerAssignmentProblem) -> None:
    fn, cfg = SOLVERS["pso"]
    short = fn(tight, dataclasses.replace(cfg, generations=200, patience=5, polish=False), seed=0)
    full = fn(tight, dataclasses.replace(cfg, generations=200, patience=None, polish=False), seed=0)
    assert len(short.history) < len(full.history) == 201
    assert short.cost <= short.greedy_cost
