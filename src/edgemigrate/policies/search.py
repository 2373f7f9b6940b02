"""GA, DE and PSO as placement policies (Liu et al. 2024, sec. VI-A baselines 5-7).

Each tick, the queued tasks form one assignment problem over the N edge nodes + the cloud, solved by the
metaheuristics in ``policies/optim`` (problem-specific integer encoding, greedy-seeded population, repair to
feasibility). The fitness is Liu et al. 2024's cost model as far as it can be evaluated for many candidate
assignments at once (:func:`problem_from_view`):

* separable per (task, choice): computation C (eq. 6, the node's current workload), backhaul B (eq. 9),
  and for migrations the move time M (eq. 1);
* shared per choice: the layers the tasks placed there need and it lacks are pulled once over b_n
  (eqs. 2-3), and every task placed there waits for that pull (``LayerAssignmentProblem``);
* feasibility: the container cap (eq. 11) as per-choice capacity, and the simulator's mask (eq. 12 thresholds,
  service range) as allowed choices.
The simulator then applies the chosen assignment and charges the exact eqs. 1-10.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.policies.base import POLICIES, BatchPolicy
from edgemigrate.policies.least_delay import separable_parts_s
from edgemigrate.policies.optim import SOLVERS, LayerAssignmentProblem
from edgemigrate.sim.view import SimView


def problem_from_view(view: SimView, tasks: NDArray[np.int64]) -> LayerAssignmentProblem:
    """One tick's queue as a :class:`LayerAssignmentProblem` (module docstring). The per-task part is LEAST_DELAY's
    estimate (:func:`~edgemigrate.policies.least_delay.separable_parts_s`), the one tested against the costs
    the simulator charges."""
    tasks = np.asarray(tasks, dtype=np.int64)
    k = tasks.size
    parts = separable_parts_s(view, tasks)
    capacity = (view.max_containers - view.containers()).clip(0)
    capacity[-1] = max(k, 1)
    return LayerAssignmentProblem(
        base_cost_s=parts["computation_s"] + parts["backhaul_s"] + parts["move_s"],
        task_layers=view.task_layers(tasks),
        node_layers=view.layer_present(),
        layer_size_bytes=view.layer_sizes_bytes.astype(np.float64),
        bandwidth_bps=view.wired_bps.astype(np.float64),
        capacity=capacity.astype(np.int64),
        allowed=view.mask(tasks),
    )


class Metaheuristic(BatchPolicy):
    algo = "ga"

    def __init__(self, seed: int | None = None, **cfg: Any) -> None:
        super().__init__(seed)
        solver, default = SOLVERS[self.algo]
        self._solver: Any = solver
        self._cfg = dataclasses.replace(default, **cfg)  # type: ignore[type-var]

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        problem = problem_from_view(view, tasks)
        seed = int(self.rng.integers(0, 2**31 - 1))
        return np.asarray(self._solver(problem, self._cfg, seed=seed).assignment, dtype=np.int64)


@POLICIES.register("ga")
class GA(Metaheuristic):
    """GA (Liu et al. 2024, sec. VI-A baseline 5)."""

    name = algo = "ga"


@POLICIES.register("de")
class DE(Metaheuristic):
    """Differential evolution (Liu et al. 2024, sec. VI-A baseline 6)."""

    name = algo = "de"


@POLICIES.register("pso")
class PSO(Metaheuristic):
    """Particle swarm optimisation (Liu et al. 2024, sec. VI-A baseline 7)."""

    name = algo = "pso"
