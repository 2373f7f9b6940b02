"""Jumping particle swarm optimisation on the integer assignment (Liu et al. 2024, sec. VI-A baseline PSO).

Continuous PSO's velocity update ``v <- w v + c1 r1 (pbest - x) + c2 r2 (gbest - x)`` has no meaning for choice
indices; the jumping PSO of Moreno-Pérez et al. 2007 keeps its three attractors as probabilities per gene: with
probability ``w`` the gene jumps to a random choice (inertia/exploration), with ``c1`` it copies the particle's
own best, with ``c2`` the swarm's best, else it stays. Positions are repaired; greedy-seeded swarm; optional
polish. (A random-key PSO, keys decoded by argmax, never beat the greedy seed on the tight 50 x 10 instance.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.policies.optim.common import OptimResult, SearchConfig, SearchContext, population_search
from edgemigrate.policies.optim.problem import AssignmentProblem


@dataclass(frozen=True, slots=True)
class PSOConfig(SearchConfig):
    w: float = 0.01  # per-gene probability of a random jump
    c_personal: float = 0.1  # per-gene probability of copying the personal best
    c_global: float = 0.1  # per-gene probability of copying the global best

    def _check_operators(self) -> None:
        if min(self.w, self.c_personal, self.c_global) < 0 or self.w + self.c_personal + self.c_global > 1:
            raise ValidationError(
                f"PSOConfig: w, c_personal, c_global are probabilities summing to <= 1: {self}"
            )


def pso(problem: AssignmentProblem, cfg: PSOConfig = PSOConfig(), seed: int = 0) -> OptimResult:
    """Minimise ``problem.evaluate`` with jumping PSO; deterministic for a given ``seed``."""
    return population_search(problem, cfg, seed, "pso", _Swarm(cfg))


class _Swarm:
    """The swarm's moves. The search's population is the particles' personal bests; their current positions
    live here, between generations (they start at the initial population, the first personal bests)."""

    def __init__(self, cfg: PSOConfig) -> None:
        self.cfg = cfg
        self.x: NDArray[np.int64] | None = None

    def __call__(
        self, ctx: SearchContext, pbest: NDArray[np.int64], pbest_cost: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        cfg, rng = self.cfg, ctx.rng
        p, k, m = cfg.pop_size, ctx.problem.n_tasks, ctx.problem.n_choices
        x = pbest if self.x is None else self.x
        g = int(np.argmin(pbest_cost))
        t_jump, t_own, t_swarm = cfg.w, cfg.w + cfg.c_personal, cfg.w + cfg.c_personal + cfg.c_global
        u = rng.random((p, k))
        nxt = np.where(u < t_own, pbest, np.where(u < t_swarm, pbest[g][None, :], x))
        nxt = np.where(u < t_jump, rng.integers(0, m, size=(p, k)), nxt)
        self.x = x = ctx.problem.repair(nxt)
        cost = ctx.evaluate(x)
        better = cost < pbest_cost
        pbest[better], pbest_cost[better] = x[better], cost[better]
        return pbest, pbest_cost
