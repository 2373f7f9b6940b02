"""Jumping particle swarm optimisation on the integer assignment (seed 000 baseline PSO, section VI-A).

Continuous PSO's velocity update ``v <- w v + c1 r1 (pbest - x) + c2 r2 (gbest - x)`` has no meaning for choice
indices; the jumping PSO of Moreno-Perez et al. (2007, "Discrete particle swarm optimization for the p-median
problem") keeps its three attractors as probabilities per gene: with probability ``w`` the gene jumps to a random
choice (inertia/exploration), with ``c1`` it copies the particle's own best, with ``c2`` the swarm's best, else it
stays. Positions are repaired; greedy-seeded swarm; optional polish.
(A random-key PSO, keys decoded by argmax, never beat the greedy seed on the tight 50 x 10 instance.)
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
class PSOConfig:
    pop_size: int = 50
    generations: int = 150
    w: float = 0.01  # per-gene probability of a random jump
    c_personal: float = 0.1  # per-gene probability of copying the personal best
    c_global: float = 0.1  # per-gene probability of copying the global best
    greedy_share: float = 0.3
    polish: bool = True
    patience: int | Literal["auto"] | None = "auto"  # generations without improvement before stopping

    def __post_init__(self) -> None:
        if self.pop_size < 2 or self.generations < 0:
            raise ValidationError(f"PSOConfig: need pop_size >= 2, generations >= 0: {self}")
        if min(self.w, self.c_personal, self.c_global) < 0 or self.w + self.c_personal + self.c_global > 1:
            raise ValidationError(
                f"PSOConfig: w, c_personal, c_global are probabilities summing to <= 1: {self}"
            )


def pso(problem: AssignmentProblem, cfg: PSOConfig = PSOConfig(), seed: int = 0) -> OptimResult:
    """Minimise ``problem.evaluate`` with jumping PSO; deterministic for a given ``seed``."""
    tiny = enumerate_if_tiny(problem, cfg.pop_size, "pso")
    if tiny is not None:
        return tiny
    rng = np.random.default_rng(seed)
    evaluate = _Counter(problem)
    k, m, p = problem.n_tasks, problem.n_choices, cfg.pop_size
    x = initial_population(problem, p, rng, cfg.greedy_share)
    cost = evaluate(x)
    greedy_cost = float(cost[0])
    pbest, pbest_cost = x.copy(), cost.copy()
    g = int(np.argmin(cost))
    history = [float(cost[g])]
    t_jump, t_own, t_swarm = cfg.w, cfg.w + cfg.c_personal, cfg.w + cfg.c_personal + cfg.c_global
    for _ in range(cfg.generations):
        u = rng.random((p, k))
        nxt = np.where(u < t_own, pbest, np.where(u < t_swarm, pbest[g][None, :], x))
        nxt = np.where(u < t_jump, rng.integers(0, m, size=(p, k)), nxt)
        x = problem.repair(nxt)
        cost = evaluate(x)
        better = cost < pbest_cost
        pbest[better], pbest_cost[better] = x[better], cost[better]
        g = int(np.argmin(pbest_cost))
        history.append(float(pbest_cost[g]))
        if stalled(history, cfg.patience, problem.n_tasks):
            break
    best, c = pbest[g].copy(), float(pbest_cost[g])
    if cfg.polish:
        best, c = local_search(problem, best, c, evaluate)
        history.append(c)
    return OptimResult(best, c, greedy_cost, np.asarray(history), evaluate.n, "pso")
