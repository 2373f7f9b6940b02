"""The assignment problem the metaheuristics solve, and a concrete layer-sharing instance.

At one decision step the simulator has ``K`` pending tasks (arrivals and migrations) and ``N + 1`` choices
(``N`` edge nodes, index ``N`` = the cloud). A solution is an integer vector ``a`` of length ``K`` with
``a[k]`` the choice of task ``k`` (a problem-specific integer encoding rather than a binary or permutation one:
every vector is an assignment and variation acts on the choices directly). The solvers only see the
:class:`AssignmentProblem` protocol, so the env layer can wrap the real four-delay cost model (Liu et al. 2024,
eqs. 1-10) behind it.

:class:`LayerAssignmentProblem` is a self-contained synthetic instance used by tests and benchmarks. Its cost is
the total delay of the ``K`` tasks (seconds), non-separable in the way that makes Liu et al. 2024's problem hard:

* ``base_cost_s[k, j]`` - the separable part (backhaul, computation, migration of task ``k`` on choice ``j``);
* layer sharing - the layers the tasks placed on ``j`` need and ``j`` lacks are pulled once per choice
  (Liu et al. 2024, sec. III: a layer already present, or pulled for another task, is not downloaded again), over
  bandwidth ``bandwidth_bps[j]``; all ``n_j`` tasks placed on ``j`` wait for that pull (they share the link),
  so the deployment term is ``sum_j n_j * missing_bytes_j * 8 / bandwidth_bps[j]``;
* capacities - at most ``capacity[j]`` tasks per choice (Liu et al. 2024, sec. VI-A: 30 containers per node; the
  cloud is unbounded) and an ``allowed`` mask (e.g. storage or CPU thresholds, Liu et al. 2024, eq. 12).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError

#: Cost added per task that violates a capacity or the allowed mask (only seen before repair).
INFEASIBLE_PENALTY = 1e6


@runtime_checkable
class AssignmentProblem(Protocol):
    """What GA/DE/PSO need to know about one step's assignment of pending tasks to choices."""

    @property
    def n_tasks(self) -> int:
        """``K``, the number of pending tasks."""
        ...

    @property
    def n_choices(self) -> int:
        """``N + 1``: the edge nodes plus the cloud (last index)."""
        ...

    def evaluate(self, pop: NDArray[np.int64]) -> NDArray[np.float64]:
        """Total cost of each row of ``pop`` (shape ``(P, K)``), lower is better; vectorised."""
        ...

    def repair(self, pop: NDArray[np.int64]) -> NDArray[np.int64]:
        """A feasible copy of ``pop``: overflow tasks move to their next-best feasible choice or the cloud."""
        ...

    def greedy(self) -> NDArray[np.int64]:
        """A feasible ``(K,)`` solution from a plain sequential greedy heuristic (the seed of the population)."""
        ...


@dataclass(frozen=True, slots=True)
class LayerAssignmentProblem:
    """A synthetic capacity-constrained, layer-sharing assignment problem (see the module docstring).

    Shapes: ``K`` tasks, ``M = N + 1`` choices (last = cloud), ``L`` layers.
    """

    base_cost_s: NDArray[np.float64]  # (K, M)
    task_layers: NDArray[np.bool_]  # (K, L)
    node_layers: NDArray[np.bool_]  # (M, L); the cloud row should hold every layer
    layer_size_bytes: NDArray[np.float64]  # (L,)
    bandwidth_bps: NDArray[np.float64]  # (M,)
    capacity: NDArray[np.int64]  # (M,) max tasks per choice in this step
    allowed: NDArray[np.bool_]  # (K, M); the cloud column must be all True

    def __post_init__(self) -> None:
        k, m = self.base_cost_s.shape
        n_layers = self.layer_size_bytes.shape[0]
        expected = {
            "task_layers": (k, n_layers),
            "node_layers": (m, n_layers),
            "bandwidth_bps": (m,),
            "capacity": (m,),
            "allowed": (k, m),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValidationError(f"LayerAssignmentProblem.{name}: shape {got}, expected {shape}")
        if not bool(self.allowed[:, -1].all()):
            raise ValidationError(
                "LayerAssignmentProblem.allowed: the cloud (last column) must always be allowed"
            )
        if int(self.capacity[-1]) < k:
            raise ValidationError(
                "LayerAssignmentProblem.capacity: the cloud (last entry) must hold every task"
            )
        if np.any(self.bandwidth_bps <= 0):
            raise ValidationError("LayerAssignmentProblem.bandwidth_bps: must be > 0")

    @property
    def n_tasks(self) -> int:
        return int(self.base_cost_s.shape[0])

    @property
    def n_choices(self) -> int:
        return int(self.base_cost_s.shape[1])

    # ---------------------------------------------------------------- cost
    def evaluate(self, pop: NDArray[np.int64]) -> NDArray[np.float64]:
        pop = _as_pop(pop, self.n_tasks, self.n_choices)
        k_idx = np.arange(self.n_tasks)
        onehot = (pop[:, :, None] == np.arange(self.n_choices)[None, None, :]).astype(np.float32)  # (P, K, M)
        need = (onehot.transpose(0, 2, 1) @ self.task_layers.astype(np.float32)) > 0.0  # (P, M, L)
        missing = need & ~self.node_layers[None, :, :]
        pull_s = (
            (missing.astype(np.float64) @ self.layer_size_bytes) * 8.0 / self.bandwidth_bps[None, :]
        )  # (P, M)
        count = onehot.sum(axis=1, dtype=np.float64)  # (P, M)
        total = self.base_cost_s[k_idx[None, :], pop].sum(axis=1) + (count * pull_s).sum(axis=1)
        overflow = np.maximum(count - self.capacity[None, :], 0.0).sum(axis=1)
        forbidden = (~self.allowed[k_idx[None, :], pop]).sum(axis=1)
        return total + INFEASIBLE_PENALTY * (overflow + forbidden)

    # ---------------------------------------------------------------- feasibility
    def feasible(self, pop: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Row-wise: every task on an allowed choice and no choice over capacity."""
        pop = _as_pop(pop, self.n_tasks, self.n_choices)
        counts = _counts(pop, self.n_choices)
        ok_cap = (counts <= self.capacity[None, :]).all(axis=1)
        ok_allowed = self.allowed[np.arange(self.n_tasks)[None, :], pop].all(axis=1)
        return np.asarray(ok_cap & ok_allowed, dtype=np.bool_)

    def repair(self, pop: NDArray[np.int64]) -> NDArray[np.int64]:
        """Move forbidden and overflow tasks to their cheapest (by ``base_cost_s``) choice with room.

        Overflowing tasks are evicted in order of least regret (cheapest to move), so the repair keeps the
        tasks that profit most from a choice on it. The cloud always has room, so the result is feasible.
        """
        pop = _as_pop(pop, self.n_tasks, self.n_choices).copy()
        bad_rows = np.flatnonzero(~self.feasible(pop))
        if bad_rows.size == 0:
            return pop
        order = np.argsort(self.base_cost_s, axis=1, kind="stable")  # (K, M) preference order per task
        for r in bad_rows:
            row = pop[r]
            counts = np.bincount(row, minlength=self.n_choices)
            homeless = [int(k) for k in np.flatnonzero(~self.allowed[np.arange(self.n_tasks), row])]
            for k in homeless:
                counts[row[k]] -= 1
            for j in np.flatnonzero(counts > self.capacity):
                on_j = np.flatnonzero((row == j) & self.allowed[:, j])
                members = [int(k) for k in on_j if k not in homeless]
                excess = int(counts[j]) - int(self.capacity[j])
                regret = [self._regret(k, int(j)) for k in members]
                for idx in np.argsort(regret, kind="stable")[:excess]:
                    homeless.append(members[idx])
                counts[j] -= excess
            for k in homeless:
                for j in order[k]:
                    if self.allowed[k, j] and counts[j] < self.capacity[j]:
                        row[k] = j
                        counts[j] += 1
                        break
        return pop

    def _regret(self, k: int, j: int) -> float:
        others = np.where(self.allowed[k], self.base_cost_s[k], np.inf)
        others[j] = np.inf
        return float(others.min() - self.base_cost_s[k, j])

    # ---------------------------------------------------------------- heuristics
    def greedy(self) -> NDArray[np.int64]:
        """Tasks in arrival order each take the choice of least marginal total cost that still has room."""
        m = self.n_choices
        need = np.zeros((m, self.layer_size_bytes.shape[0]), dtype=bool)
        counts = np.zeros(m, dtype=np.int64)
        pull_s = np.zeros(m)
        out = np.empty(self.n_tasks, dtype=np.int64)
        for k in range(self.n_tasks):
            new_need = need | self.task_layers[k][None, :]
            new_pull = ((new_need & ~self.node_layers) @ self.layer_size_bytes) * 8.0 / self.bandwidth_bps
            delta = self.base_cost_s[k] + (counts + 1) * new_pull - counts * pull_s
            delta = np.where(self.allowed[k] & (counts < self.capacity), delta, np.inf)
            j = int(np.argmin(delta))
            out[k] = j
            need[j] = new_need[j]
            pull_s[j] = new_pull[j]
            counts[j] += 1
        return out

    # ---------------------------------------------------------------- generator
    @classmethod
    def random(
        cls,
        n_tasks: int,
        n_nodes: int,
        rng: np.random.Generator,
        *,
        n_layers: int = 40,
        layers_per_task: int = 6,
        capacity_per_node: int | None = None,
        allowed_fraction: float = 0.9,
    ) -> LayerAssignmentProblem:
        """A random instance: ``n_nodes`` edge nodes plus the cloud.

        Magnitudes follow Liu et al. 2024, sec. VI-A loosely: layer sizes lognormal around 10 MB (a 0.5-100 MB
        service split into layers), edge download bandwidth U[12, 60] Mbit/s, computation + backhaul U[0.5, 5] s
        at the edge, the cloud 3-6 s slower but holding every layer. ``capacity_per_node`` defaults to
        ``ceil(K / N)``, which makes the instance tight (the edge can hold every task only just).
        """
        if n_tasks < 1 or n_nodes < 1:
            raise ValidationError(f"need n_tasks >= 1 and n_nodes >= 1, got {n_tasks}, {n_nodes}")
        m = n_nodes + 1
        size = np.clip(rng.lognormal(np.log(10e6), 0.8, n_layers), 0.2e6, 80e6)
        popularity = 1.0 / np.arange(1, n_layers + 1)  # Zipf-like layer popularity: tasks share layers
        popularity /= popularity.sum()
        task_layers = np.zeros((n_tasks, n_layers), dtype=bool)
        per_task = min(layers_per_task, n_layers)
        for k in range(n_tasks):
            task_layers[k, rng.choice(n_layers, size=per_task, replace=False, p=popularity)] = True
        node_layers = rng.random((m, n_layers)) < 0.25
        node_layers[-1] = True
        bandwidth = np.append(rng.uniform(12e6, 60e6, n_nodes), 1e9)
        base = rng.uniform(0.5, 5.0, (n_tasks, m))
        base[:, -1] = rng.uniform(3.0, 6.0, n_tasks) + base[:, :-1].mean(axis=1)
        cap = capacity_per_node if capacity_per_node is not None else -(-n_tasks // n_nodes)
        capacity = np.append(np.full(n_nodes, cap, dtype=np.int64), n_tasks)
        allowed = rng.random((n_tasks, m)) < allowed_fraction
        allowed[:, -1] = True
        return cls(base, task_layers, node_layers, size, bandwidth, capacity, allowed)


def brute_force(
    problem: AssignmentProblem, *, max_solutions: int = 2_000_000
) -> tuple[NDArray[np.int64], float]:
    """The exact optimum by enumeration (small instances only; feasibility via the problem's penalty)."""
    k, m = problem.n_tasks, problem.n_choices
    if m**k > max_solutions:
        raise ValidationError(f"brute_force: {m}^{k} solutions exceed max_solutions={max_solutions}")
    best_cost, best = np.inf, np.zeros(k, dtype=np.int64)
    it = itertools.product(range(m), repeat=k)
    while True:
        chunk = np.array(list(itertools.islice(it, 65536)), dtype=np.int64)
        if chunk.size == 0:
            break
        cost = problem.evaluate(chunk)
        i = int(np.argmin(cost))
        if cost[i] < best_cost:
            best_cost, best = float(cost[i]), chunk[i].copy()
    return best, best_cost


def _as_pop(pop: NDArray[np.int64], n_tasks: int, n_choices: int) -> NDArray[np.int64]:
    arr = np.asarray(pop, dtype=np.int64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_tasks:
        raise ValidationError(f"population shape {np.shape(pop)}, expected (P, {n_tasks})")
    if arr.size and (arr.min() < 0 or arr.max() >= n_choices):
        raise ValidationError(f"population holds a choice outside [0, {n_choices})")
    return arr


def _counts(pop: NDArray[np.int64], n_choices: int) -> NDArray[np.int64]:
    """Per-row histogram of choices, shape ``(P, M)``."""
    offs = pop + n_choices * np.arange(pop.shape[0])[:, None]
    return np.bincount(offs.ravel(), minlength=pop.shape[0] * n_choices).reshape(pop.shape[0], n_choices)
