"""Genetic algorithm over the integer assignment encoding (seed 000 baseline GA, section VI-A, after [6]).

Tournament selection, gene-wise uniform crossover, reassignment + swap mutation, repair, elitism, greedy-seeded
start, optional local-search polish (see :mod:`edgemigrate.policies.optim.common`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.optim.common import (
    OptimResult,
    _Counter,
    enumerate_if_tiny,
    initial_population,
    local_search,
    stalled,
)
from edgemigrate.policies.optim.problem import AssignmentProblem


@dataclass(frozen=True, slots=True)
class GAConfig:
    pop_size: int = 50
    generations: int = 150
    crossover_rate: float = 0.9
    mutation_rate: float | None = None  # per gene; None = 1/K
    swap_rate: float = 0.3  # probability that a child also swaps the choices of two tasks
    tournament: int = 3
    elite: int = 2
    greedy_share: float = 0.3
    polish: bool = True
    patience: int | Literal["auto"] | None = "auto"  # generations without improvement before stopping

    def __post_init__(self) -> None:
        if self.pop_size < 4 or self.generations < 0 or not 1 <= self.elite < self.pop_size:
            raise ValidationError(
                f"GAConfig: need pop_size >= 4, generations >= 0, 1 <= elite < pop_size: {self}"
            )


def ga(problem: AssignmentProblem, cfg: GAConfig = GAConfig(), seed: int = 0) -> OptimResult:
    """Minimise ``problem.evaluate`` with a GA; deterministic for a given ``seed``."""
    tiny = enumerate_if_tiny(problem, cfg.pop_size, "ga")
    if tiny is not None:
        return tiny
    rng = np.random.default_rng(seed)
    evaluate = _Counter(problem)
    k, m = problem.n_tasks, problem.n_choices
    p_mut = cfg.mutation_rate if cfg.mutation_rate is not None else 1.0 / k
    pop = initial_population(problem, cfg.pop_size, rng, cfg.greedy_share)
    cost = evaluate(pop)
    greedy_cost = float(cost[0])
    history = [float(cost.min())]
    n_children = cfg.pop_size - cfg.elite
    for _ in range(cfg.generations):
        # tournament selection of 2 parents per child
        contenders = rng.integers(0, cfg.pop_size, size=(2 * n_children, cfg.tournament))
        winners = contenders[np.arange(2 * n_children), np.argmin(cost[contenders], axis=1)]
        pa, pb = pop[winners[:n_children]], pop[winners[n_children:]]
        cross = (rng.random((n_children, 1)) < cfg.crossover_rate) & (rng.random((n_children, k)) < 0.5)
        child = np.where(cross, pb, pa)
        mut = rng.random((n_children, k)) < p_mut
        child = np.where(mut, rng.integers(0, m, size=(n_children, k)), child)
        do_swap = np.flatnonzero(rng.random(n_children) < cfg.swap_rate)
        if do_swap.size and k > 1:
            i = rng.integers(0, k, size=do_swap.size)
            j = (i + rng.integers(1, k, size=do_swap.size)) % k
            child[do_swap, i], child[do_swap, j] = child[do_swap, j], child[do_swap, i]
        child = problem.repair(child)
        child_cost = evaluate(child)
        elite = np.argsort(cost, kind="stable")[: cfg.elite]
        pop = np.concatenate([pop[elite], child])
        cost = np.concatenate([cost[elite], child_cost])
        history.append(float(cost.min()))
        if stalled(history, cfg.patience, problem.n_tasks):
            break
    best = int(np.argmin(cost))
    x, c = pop[best].copy(), float(cost[best])
    if cfg.polish:
        x, c = local_search(problem, x, c, evaluate)
        history.append(c)
    return OptimResult(x, c, greedy_cost, np.asarray(history), evaluate.n, "ga")
