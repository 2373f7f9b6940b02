"""Genetic algorithm over the integer assignment encoding (Liu et al. 2024, sec. VI-A baseline GA, after its
ref. [6]).

Tournament selection, gene-wise uniform crossover, reassignment + swap mutation, repair, elitism, greedy-seeded
start, optional local-search polish (see :mod:`edgemigrate.policies.optim.common`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.optim.common import OptimResult, SearchConfig, SearchContext, population_search
from edgemigrate.policies.optim.problem import AssignmentProblem


@dataclass(frozen=True, slots=True)
class GAConfig(SearchConfig):
    crossover_rate: float = 0.9
    mutation_rate: float | None = None  # per gene; None = 1/K
    swap_rate: float = 0.3  # probability that a child also swaps the choices of two tasks
    tournament: int = 3
    elite: int = 2

    MIN_POP_SIZE: ClassVar[int] = 4

    def _check_operators(self) -> None:
        if not 1 <= self.elite < self.pop_size:
            raise ValidationError(f"GAConfig: need 1 <= elite < pop_size: {self}")


def ga(problem: AssignmentProblem, cfg: GAConfig = GAConfig(), seed: int = 0) -> OptimResult:
    """Minimise ``problem.evaluate`` with a GA; deterministic for a given ``seed``."""
    return population_search(problem, cfg, seed, "ga", partial(_generation, cfg))


def _generation(
    cfg: GAConfig, ctx: SearchContext, pop: NDArray[np.int64], cost: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Children of tournament winners (crossover, mutation, swap, repair) replace all but the elite."""
    rng, k, m = ctx.rng, ctx.problem.n_tasks, ctx.problem.n_choices
    p_mut = cfg.mutation_rate if cfg.mutation_rate is not None else 1.0 / k
    n_children = cfg.pop_size - cfg.elite
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
    child = ctx.problem.repair(child)
    child_cost = ctx.evaluate(child)
    elite = np.argsort(cost, kind="stable")[: cfg.elite]
    return np.concatenate([pop[elite], child]), np.concatenate([cost[elite], child_cost])
