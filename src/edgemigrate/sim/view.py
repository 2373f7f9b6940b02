"""The read-only face of a running simulator that deciders (policies) see.

Policies never touch engine internals; everything they may use is a method here, computed on demand and
vectorised over the queried tasks (K) and nodes (N edge nodes + the cloud at index N).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.units import BITS_PER_BYTE

if TYPE_CHECKING:
    from edgemigrate.sim.engine import Simulator


class SimView:
    __slots__ = ("_sim",)

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    # ---------------------------------------------------------------- static facts
    @property
    def n_nodes(self) -> int:
        return self._sim.world.n_nodes

    @property
    def cloud(self) -> int:
        return self._sim.world.n_nodes

    @property
    def now_s(self) -> float:
        return self._sim.now_s

    @property
    def node_xy_m(self) -> NDArray[np.float64]:
        return self._sim.world.nodes.xy_m

    @property
    def hops(self) -> NDArray[np.int64]:
        """(N+1, N+1) hop counts, cloud included."""
        return self._sim.hops

    @property
    def cpu_hz(self) -> NDArray[np.float64]:
        return self._sim.cpu_hz

    @property
    def wired_bps(self) -> NDArray[np.float64]:
        return self._sim.wired_bps

    @property
    def backhaul_bps(self) -> NDArray[np.float64]:
        return self._sim.backhaul_bps

    @property
    def layer_sizes_bytes(self) -> NDArray[np.float64]:
        return self._sim.layer_sizes

    @property
    def rng_seed(self) -> int:
        return self._sim.seed

    # ---------------------------------------------------------------- node state (copies)
    def containers(self) -> NDArray[np.int64]:
        return self._sim.nodes.containers.copy()

    def cpu_used_hz(self) -> NDArray[np.float64]:
        return self._sim.nodes.cpu_used_hz.copy()

    def load_cycles(self) -> NDArray[np.float64]:
        """Workload w_t of each node in cycles (Liu et al. 2024, eq. 6); 0 for the cloud."""
        return self._sim.nodes.load_cycles.copy()

    @property
    def max_containers(self) -> NDArray[np.int64]:
        """Container cap C_n per node (eq. 11); effectively unbounded for the cloud."""
        return self._sim.max_containers

    @property
    def backhaul_s_per_hop(self) -> float:
        return self._sim.params.backhaul_s_per_hop

    def running_bytes(self) -> NDArray[np.float64]:
        """Total data size of the tasks running on each node (Liu et al. 2024, eq. 15, s_u)."""
        sim = self._sim
        t = sim.tasks
        alive = t.alive_ids()
        alive = alive[t.node[alive] >= 0]
        out = np.bincount(t.node[alive], weights=t.data_bytes[alive], minlength=sim.world.n_nodes + 1)
        return out.astype(np.float64)

    def layer_present(self) -> NDArray[np.bool_]:
        """(N+1, L): layer present or already downloading on each node."""
        return np.isfinite(self._sim.nodes.completion_s)

    def storage_free_frac(self) -> NDArray[np.float64]:
        sim = self._sim
        free = 1.0 - sim.nodes.active_bytes / sim.storage_bytes
        return np.where(np.isfinite(sim.storage_bytes), free, 1.0)

    # ---------------------------------------------------------------- task facts
    def task_user(self, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        return self._sim.tasks.user[tasks].copy()

    def task_image(self, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        return self._sim.tasks.image[tasks].copy()

    def task_layers(self, tasks: NDArray[np.int64]) -> NDArray[np.bool_]:
        """(K, L) layer indicator x_c^l of each task's image."""
        return self._sim.image_matrix[self._sim.tasks.image[tasks]]

    def task_attr(self, name: str, tasks: NDArray[np.int64]) -> NDArray:
        """A task column: data_bytes, density_cpb, cycles, cpu_hz, service_bytes, migration_s_per_hop, prev_node,
        kind, queued_at_s."""
        if name not in {"data_bytes", "density_cpb", "cpu_hz", "service_bytes", "prev_node", "kind",
                        "queued_at_s", "cycles", "migration_s_per_hop"}:
            raise KeyError(name)
        return getattr(self._sim.tasks, name)[tasks].copy()

    def user_xy_m(self, users: NDArray[np.int64]) -> NDArray[np.float64]:
        return self._sim.user_xy[users]

    def access_node(self, tasks: NDArray[np.int64]) -> NDArray[np.int64]:
        """The edge node behind the station each task's user is attached to."""
        return self._sim.access_node(self._sim.tasks.user[tasks])

    # ---------------------------------------------------------------- task x node
    def feasible(self, tasks: NDArray[np.int64], nodes: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Pairwise feasibility of placing tasks[i] on nodes[i] (cloud always feasible)."""
        return self._sim.feasible(tasks, nodes)

    def mask(self, tasks: NDArray[np.int64]) -> NDArray[np.bool_]:
        """(K, N+1) feasibility of every node for every task."""
        tasks = np.asarray(tasks, dtype=np.int64)
        n1 = self.n_nodes + 1
        tt = np.repeat(tasks, n1)
        nn = np.tile(np.arange(n1), tasks.size)
        return self._sim.feasible(tt, nn).reshape(tasks.size, n1)

    def image_present(self, tasks: NDArray[np.int64]) -> NDArray[np.bool_]:
        """(K, N+1) whether each task's whole image is present (every layer downloaded) on each node."""
        sim = self._sim
        done = sim.nodes.completion_s <= sim.now_s  # (N+1, L)
        x = self.task_layers(tasks)
        return (x.astype(np.int64) @ (~done).T.astype(np.int64)) == 0

    def present_bytes(self, tasks: NDArray[np.int64]) -> NDArray[np.float64]:
        """(K, N+1) bytes of each task's layers already on (or downloading to) each node."""
        x = self.task_layers(tasks).astype(np.float64) * self._sim.layer_sizes
        return x @ self.layer_present().T.astype(np.float64)

    def missing_bytes(self, tasks: NDArray[np.int64]) -> NDArray[np.float64]:
        """(K, N+1) bytes each task would still download on each node (Liu et al. 2024, eq. 15, z_n)."""
        x = self.task_layers(tasks).astype(np.float64) * self._sim.layer_sizes
        return x.sum(1, keepdims=True) - x @ self.layer_present().T.astype(np.float64)

    def download_estimate_s(self, tasks: NDArray[np.int64]) -> NDArray[np.float64]:
        """(K, N+1) estimated D (eq. 3) on each node: current queue backlog + missing bytes at b_n."""
        sim = self._sim
        backlog = np.maximum(sim.nodes.queue_free_at_s - sim.now_s, 0.0)
        missing = self.missing_bytes(tasks)
        return backlog[None, :] * (missing > 0) + missing * BITS_PER_BYTE / sim.wired_bps[None, :]

    def user_node_distance_m(self, tasks: NDArray[np.int64]) -> NDArray[np.float64]:
        """(K, N) distance from each task's user to each edge node."""
        xy = self.user_xy_m(self.task_user(tasks))
        return np.hypot(xy[:, None, 0] - self.node_xy_m[None, :, 0], xy[:, None, 1] - self.node_xy_m[None, :, 1])
