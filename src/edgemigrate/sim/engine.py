"""The discrete-time simulator.

Phase order inside one tick ``t`` (time ``t * dt_s``); every phase is vectorised over users/tasks/nodes
except APPLY, which places queued tasks one after another because each placement changes the node state
the next one sees:

1. MOVE       users advance one tick on their mobility model (traces or generators).
2. ASSOCIATE  strongest-station association with hysteresis; handovers counted.
3. ARRIVE     finished tasks leave; running tasks' CPU demand fluctuates; tasks whose user left their node's
              coverage are queued for PASSIVE migration and tasks on nodes above the resource threshold
              (Liu et al. 2024, eq. 12) for PROACTIVE migration (newest first, until the node is below it again);
              then new tasks arrive (Poisson per active user). All queued tasks are timestamped.
4. DECIDE     the decider picks, for each queued task, an edge node or the cloud (index N).
5. APPLY      placements in queue order; an infeasible choice falls back to the cloud (Liu et al. 2024, sec. VI-A);
              missing layers join the node's FIFO download queue (eqs. 2-3), evicting unused cached
              layers in LRU order when storage is short (compiled loop: ``sim/kernels.py``).
6. DOWNLOAD   layer downloads advance to the end of the tick (bytes completed counted).
7. COST       the four delays of each decision (eqs. 1-10) are computed, vectorised, at APPLY time and
              summed for the tick here.
8. RECORD     one row of per-tick metrics; per-decision rows were appended in APPLY.

Randomness comes only from generators named in a :class:`SeedTree`, so two simulators in one process
never share state and the same seed gives identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.core.seeding import SeedTree
from edgemigrate.costs import four_delay as fd
from edgemigrate.radio.association import Associator
from edgemigrate.radio.uplink import ring_uplink_bps
from edgemigrate.sim.config import DecisionKind, SimParams
from edgemigrate.sim.kernels import (
    ApplyOut,
    ImageLayers,
    NodeArrays,
    NodeLimits,
    TaskArrays,
    apply_kernel,
    finishing_bytes_kernel,
    left_coverage_kernel,
    release_kernel,
)
from edgemigrate.sim.recorder import COST_SUMS, TICK_SUMS, Recorder
from edgemigrate.sim.state import NodeState, TaskTable
from edgemigrate.sim.view import SimView
from edgemigrate.sim.world import World

CPU_FLUCTUATION_SIGMA = 0.05  # log-normal step of a running task's CPU demand per tick (drives eq. 12)


class Mobility(Protocol):
    """What the engine needs of a mobility model (see ``edgemigrate.mobility``)."""

    n_users: int
    active: NDArray[np.bool_]

    def reset(self, rng: np.random.Generator) -> NDArray[np.float64]: ...

    def step(self, dt_s: float) -> NDArray[np.float64]: ...


class Decider(Protocol):
    """Picks a node (0..N-1) or the cloud (N) for each queued task; see :class:`edgemigrate.sim.view.SimView`."""

    def decide(self, view: SimView, tasks: NDArray[np.int64]) -> NDArray[np.int64]: ...


@dataclass(frozen=True, slots=True)
class Costs:
    """The cost components of a batch of decisions (seconds), eqs. (1)-(10) of Liu et al. 2024."""

    move_s: NDArray[np.float64]
    download_s: NDArray[np.float64]
    wait_s: NDArray[np.float64]
    migration_s: NDArray[np.float64]
    computation_s: NDArray[np.float64]
    deployment_s: NDArray[np.float64]
    backhaul_s: NDArray[np.float64]
    total_s: NDArray[np.float64]


class Simulator:
    def __init__(self, world: World, mobility: Mobility, params: SimParams, seed: int = 0) -> None:
        self.world = world
        self.mobility = mobility
        self.params = params
        self.seed = seed
        st = world.stations
        self.associator = Associator(st.xy_m, st.coverage_m, world.pathloss, world.handover)
        n = world.n_nodes
        nodes, cloud = world.nodes, world.cloud
        # per-row constants with the cloud as row N
        self.cpu_hz = np.append(nodes.cpu_hz, cloud.cpu_hz)
        self.wired_bps = np.append(nodes.wired_bps, cloud.wired_bps)
        self.backhaul_bps = np.append(nodes.backhaul_bps, cloud.backhaul_bps)
        self.storage_bytes = np.append(nodes.storage_bytes, np.inf)
        self.max_containers = np.append(nodes.max_containers, np.iinfo(np.int64).max)
        hops = np.full((n + 1, n + 1), cloud.hops, dtype=np.int64)
        hops[:n, :n] = world.backhaul.hops
        hops[n, n] = 0
        self.hops = hops
        self.layer_sizes = world.catalog.layer_size_bytes.astype(np.float64)
        self.image_layers = world.catalog.image_layers
        self.image_matrix = world.catalog.matrix
        self._n = n
        # service range per row; the cloud (and every node when the rule is off) covers everyone
        self._coverage = np.append(nodes.coverage_m, np.inf)
        if not params.placement_within_coverage:
            self._coverage[:] = np.inf
        self._node_xy = np.vstack([nodes.xy_m, [[0.0, 0.0]]])
        self._img_indptr = np.concatenate([[0], np.cumsum([len(x) for x in self.image_layers])]).astype(np.int64)
        self._img_indices = np.concatenate(self.image_layers).astype(np.int64)
        self._cpu_cap = (1 - params.sigma_cpu) * self.cpu_hz
        self._storage_cap = (1 - params.sigma_storage) * self.storage_bytes
        self._layers = ImageLayers(indptr=self._img_indptr, indices=self._img_indices, layer_bytes=self.layer_sizes)
        self._limits = NodeLimits(max_containers=self.max_containers, cpu_cap_hz=self._cpu_cap,
                                  storage_cap_bytes=self._storage_cap, storage_bytes=self.storage_bytes,
                                  wired_bps=self.wired_bps, xy_m=self._node_xy, coverage_m=self._coverage)
        self.view = _make_view(self)
        self.reset(seed)

    # ------------------------------------------------------------------ lifecycle
    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        seeds = SeedTree(self.seed)
        self.rng_tasks = seeds.rng("tasks")
        self.rng_dynamics = seeds.rng("dynamics")
        n_users = self.mobility.n_users
        self.user_xy = np.asarray(self.mobility.reset(seeds.rng("mobility")), dtype=np.float64)
        if self.user_xy.shape != (n_users, 2):
            raise ValidationError(f"mobility returned positions of shape {self.user_xy.shape}, expected ({n_users}, 2)")
        self.station = np.full(n_users, -1, dtype=np.int64)
        self.station, _, self.station_dist_m = self.associator.step(self.user_xy, self.station)
        self.tasks = TaskTable()
        self.nodes = NodeState(self.world.n_nodes, self.world.catalog.n_layers)
        ns = self.nodes  # bundled once: the node arrays are only ever updated in place
        self._node_bundle = NodeArrays(containers=ns.containers, cpu_used_hz=ns.cpu_used_hz,
                                       load_cycles=ns.load_cycles, active_bytes=ns.active_bytes,
                                       stored_bytes=ns.stored_bytes, queue_free_at_s=ns.queue_free_at_s,
                                       completion_s=ns.completion_s, refcount=ns.refcount, last_used_s=ns.last_used_s)
        self._task_bundle: TaskArrays | None = None
        self.queue = np.zeros(0, dtype=np.int64)
        self.step_index = 0
        self.recorder = Recorder(self.params.n_steps)
        self._tick: dict[str, float] = {}

    @property
    def now_s(self) -> float:
        return self.step_index * self.params.dt_s

    @property
    def done(self) -> bool:
        return self.step_index >= self.params.n_steps

    def run(self, decider: Decider, progress: Callable[[int], None] | None = None) -> Recorder:
        """Run all remaining ticks with ``decider``; ``progress(i)`` is called after each tick."""
        while not self.done:
            self.step(decider)
            if progress is not None:
                progress(self.step_index)
        return self.recorder

    def step(self, decider: Decider) -> None:
        queued = self.begin_tick()
        if queued.size:
            actions = np.asarray(decider.decide(self.view, queued), dtype=np.int64)
            if actions.shape != queued.shape:
                raise ValidationError(f"decider returned {actions.shape[0]} actions for {queued.shape[0]} tasks")
            self.apply(queued, actions)
        self.end_tick()

    # ------------------------------------------------------------------ phases 1-3
    def begin_tick(self) -> NDArray[np.int64]:
        """Phases MOVE, ASSOCIATE, ARRIVE; returns the tasks to decide this tick, in queue order."""
        p = self.params
        now = self.now_s
        tick = dict.fromkeys(TICK_SUMS, 0.0)
        # 1. MOVE
        if self.step_index > 0:
            self.user_xy = np.asarray(self.mobility.step(p.dt_s), dtype=np.float64)
        # 2. ASSOCIATE
        self.station, handed, self.station_dist_m = self.associator.step(self.user_xy, self.station)
        tick["handovers"] = int(handed.sum())
        # 3. ARRIVE: departures, fluctuation, migration triggers, arrivals
        t = self.tasks
        alive = t.alive_ids()
        placed = alive[t.node[alive] >= 0]
        done = placed[t.end_s[placed] <= now]
        if done.size:
            self._release(done)
            t.free(done)
            tick["completions"] = done.size
        placed = placed[t.end_s[placed] > now]
        self._fluctuate(placed)
        n = self.world.n_nodes
        on_edge = placed[t.node[placed] < n]
        if on_edge.size:
            buf = np.empty(on_edge.size, dtype=np.int64)
            k_left = left_coverage_kernel(on_edge, t.user, t.node, self.user_xy, self.world.nodes.xy_m,
                                          self.world.nodes.coverage_m, buf)
            left = buf[:k_left]
            if left.size:
                self._requeue(left, DecisionKind.PASSIVE, now)
                tick["migrations_passive"] = left.size
        tick["migrations_proactive"] = self._proactive(now)
        tick["arrivals"] = self._arrive(now)
        self._tick = tick
        k = p.max_decisions_per_step or len(self.queue)
        return self.queue[:k].copy()

    def _fluctuate(self, placed: NDArray[np.int64]) -> None:
        """Running tasks' CPU demand drifts (log-normal steps clipped to the workload range)."""
        if placed.size == 0 or CPU_FLUCTUATION_SIGMA == 0:
            return
        t = self.tasks
        lo, hi = self.world.workload.cpu_request_hz
        old = t.cpu_hz[placed]
        new = np.clip(old * np.exp(self.rng_dynamics.normal(0.0, CPU_FLUCTUATION_SIGMA, placed.size)), lo, hi)
        t.cpu_hz[placed] = new
        self.nodes.cpu_used_hz += np.bincount(t.node[placed], weights=new - old, minlength=self._n + 1)

    def _proactive(self, now: float) -> int:
        """Queue tasks off nodes whose free CPU or storage fell below sigma (Liu et al. 2024, eq. 12), newest
        first."""
        ns, n = self.nodes, self._n
        cpu_cap, sto_cap = self._cpu_cap[:n], self._storage_cap[:n]
        over = np.flatnonzero((ns.cpu_used_hz[:n] > cpu_cap * (1 + 1e-12)) | (ns.active_bytes[:n] > sto_cap))
        if over.size == 0:
            return 0
        t = self.tasks
        alive = t.alive_ids()
        alive = alive[np.isin(t.node[alive], over)]
        # newest placement first within each node (stable: ties keep task order)
        alive = alive[np.lexsort((-t.queued_at_s[alive], t.node[alive]))]
        moved: list[int] = []
        cpu, active = ns.cpu_used_hz.copy(), ns.active_bytes.copy()
        for task in alive:
            node = t.node[task]
            if cpu[node] <= cpu_cap[node] * (1 + 1e-12) and active[node] <= sto_cap[node]:
                continue
            moved.append(int(task))
            cpu[node] -= t.cpu_hz[task]
            layers = self.image_layers[t.image[task]]
            only = layers[ns.refcount[node, layers] == 1]  # conservative: layers shared by two leavers stay counted
            active[node] -= float(self.layer_sizes[only].sum())
        if moved:
            self._requeue(np.array(moved, dtype=np.int64), DecisionKind.PROACTIVE, now)
        return len(moved)

    def _requeue(self, ids: NDArray[np.int64], kind: DecisionKind, now: float) -> None:
        t = self.tasks
        self._release(ids)
        t.prev_node[ids] = t.node[ids]
        t.node[ids] = -1
        t.kind[ids] = kind
        t.queued_at_s[ids] = now
        self.queue = np.concatenate([self.queue, ids])

    def _arrive(self, now: float) -> int:
        w, rng = self.world.workload, self.rng_tasks
        active_users = np.flatnonzero(np.asarray(self.mobility.active, dtype=bool))
        # independent Poisson arrivals per active user == one Poisson total split uniformly over them
        k = int(rng.poisson(w.arrival_rate_per_user_s * self.params.dt_s * active_users.size))
        if k == 0:
            return 0
        users = np.sort(active_users[rng.integers(0, active_users.size, k)])
        ids = self.tasks.allocate(k)
        t = self.tasks
        t.user[ids] = users
        t.image[ids] = rng.choice(self.world.catalog.n_images, size=k, p=self.world.image_probs)
        t.data_bytes[ids] = rng.uniform(*w.data_bytes, k)
        t.density_cpb[ids] = rng.uniform(*w.density_cycles_per_bit, k)
        t.cycles[ids] = t.data_bytes[ids] * 8.0 * t.density_cpb[ids]
        t.cpu_hz[ids] = rng.uniform(*w.cpu_request_hz, k)
        t.service_bytes[ids] = rng.uniform(*w.service_bytes, k)
        t.migration_s_per_hop[ids] = rng.uniform(*w.migration_s_per_hop, k)
        t.end_s[ids] = now + rng.exponential(w.mean_duration_s, k)
        t.kind[ids] = DecisionKind.ARRIVAL
        t.queued_at_s[ids] = now
        self.queue = np.concatenate([self.queue, ids])
        return k

    # ------------------------------------------------------------------ phases 4-5
    def feasible(self, tasks: NDArray[np.int64], nodes: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each task may be placed on the paired node now (eq. 11 and the eq. 12 thresholds)."""
        tasks = np.asarray(tasks, dtype=np.int64)
        nodes = np.asarray(nodes, dtype=np.int64)
        ns, n, t = self.nodes, self._n, self.tasks
        edge = nodes < n
        e = np.where(edge, nodes, 0)
        ok = ns.containers[e] < self.max_containers[e]
        ok &= ns.cpu_used_hz[e] + t.cpu_hz[tasks] <= self._cpu_cap[e]
        need = self.image_matrix[t.image[tasks]] & (ns.refcount[e] == 0)
        new_active = need.astype(np.float64) @ self.layer_sizes
        ok &= ns.active_bytes[e] + new_active <= self._storage_cap[e]
        if self.params.placement_within_coverage:
            d = self.user_xy[t.user[tasks]] - self.world.nodes.xy_m[e]
            ok &= np.hypot(d[:, 0], d[:, 1]) <= self._coverage[e]
        return np.where(edge, ok, nodes == n)

    def apply(self, tasks: NDArray[np.int64], actions: NDArray[np.int64]) -> Costs:
        """Place ``tasks`` on ``actions`` in order (phase APPLY) and return their costs (phase COST)."""
        tasks = np.asarray(tasks, dtype=np.int64)
        actions = np.asarray(actions, dtype=np.int64)
        n = self._n
        if ((actions < 0) | (actions > n)).any():
            raise ValidationError(f"action out of range 0..{n}: {actions[(actions < 0) | (actions > n)][:3]}")
        now = self.now_s
        t = self.tasks
        k = tasks.size
        out = ApplyOut(node=np.empty(k, dtype=np.int64), download_s=np.zeros(k), load_before_cycles=np.zeros(k),
                       fallback=np.zeros(k, dtype=bool))
        apply_kernel(tasks, actions, now, n, self._task_arrays(), self.user_xy, self._layers, self._limits,
                     self._node_bundle, out)
        nodes_out, fallback = out.node, out.fallback
        costs = self._costs(tasks, nodes_out, out.download_s, out.load_before_cycles, now)
        prev = t.prev_node[tasks].copy()
        moved = (prev >= 0) & (prev != nodes_out)
        t.migrations[tasks] += moved
        t.total_s[tasks] += costs.total_s
        t.queued_at_s[tasks] = now
        # drop decided tasks from the queue (they are its head, in order)
        if np.array_equal(self.queue[:k], tasks):  # the usual case: the head of the queue, in order
            self.queue = self.queue[k:]
        else:
            self.queue = self.queue[np.isin(self.queue, tasks, invert=True)]
        self.recorder.record_decisions({
            "step": np.full(k, self.step_index), "task": tasks, "user": t.user[tasks], "kind": t.kind[tasks],
            "prev_node": prev, "node": nodes_out, "fallback": fallback, "wait_s": costs.wait_s,
            "move_s": costs.move_s, "download_s": costs.download_s, "migration_s": costs.migration_s,
            "computation_s": costs.computation_s, "deployment_s": costs.deployment_s,
            "backhaul_s": costs.backhaul_s, "total_s": costs.total_s,
        })
        tick = self._tick
        tick["decisions"] += k
        tick["fallbacks_to_cloud"] += int(fallback.sum())
        for name in COST_SUMS:
            tick[name] += float(getattr(costs, name).sum())
        return costs

    def _release(self, ids: NDArray[np.int64]) -> None:
        """Free the resources of placed tasks (they finished or are being migrated)."""
        release_kernel(np.ascontiguousarray(ids, dtype=np.int64), self._n, self._task_arrays(), self._layers,
                       self._node_bundle)

    def _task_arrays(self) -> TaskArrays:
        # Kept between calls (a fresh bundle makes each kernel call a few microseconds slower) and rebuilt when
        # the task table has grown, which replaces all its columns.
        c, b = self.tasks.cols, self._task_bundle
        if b is None or b.node is not c["node"]:
            b = TaskArrays(image=c["image"], cpu_hz=c["cpu_hz"], cycles=c["cycles"], node=c["node"], user=c["user"])
            self._task_bundle = b
        return b

    def _costs(self, tasks: NDArray[np.int64], nodes: NDArray[np.int64], download: NDArray[np.float64],
               load_before: NDArray[np.float64], now: float) -> Costs:
        """Liu et al. 2024, eqs. (1)-(10) for a batch of decisions, vectorised."""
        t, p = self.tasks, self.params
        prev = t.prev_node[tasks]
        mig_hops = np.where(prev >= 0, self.hops[np.maximum(prev, 0), nodes], 0)
        mig_bps = np.minimum(self.backhaul_bps[np.maximum(prev, 0)], self.backhaul_bps[nodes])
        move = fd.migration_move_s(t.service_bytes[tasks], mig_bps, t.migration_s_per_hop[tasks], mig_hops)
        wait = now - t.queued_at_s[tasks]
        s = fd.migration_delay_s(move, download, wait, p.wait_factor)
        c = fd.computation_delay_s(t.data_bytes[tasks], t.density_cpb[tasks], load_before, self.cpu_hz[nodes])
        users = t.user[tasks]
        access_node = self.access_node(users)
        uplink = ring_uplink_bps(self.station_dist_m[users], self._station_coverage(users), self.world.uplink_mbit)
        a = fd.access_delay_s(t.data_bytes[tasks], uplink)
        pd = fd.deployment_delay_s(a, download)
        b = fd.backhaul_delay_s(t.data_bytes[tasks], self.backhaul_bps[nodes], p.backhaul_s_per_hop,
                                self.hops[access_node, nodes])
        return Costs(move, download, wait, s, c, pd, b, fd.total_delay_s(s, c, pd, b))

    # ------------------------------------------------------------------ helpers used by views
    def access_node(self, users: NDArray[np.int64]) -> NDArray[np.int64]:
        """Edge node behind each user's station; users out of coverage use the nearest station's node."""
        st = self.station[users]
        missing = st < 0
        if missing.any():
            st = st.copy()
            st[missing] = self.associator.nearest(self.user_xy[users[missing]])[0]
        return self.world.stations.node[st]

    def _station_coverage(self, users: NDArray[np.int64]) -> NDArray[np.float64]:
        st = self.station[users]
        cov = self.world.stations.coverage_m[np.maximum(st, 0)]
        return np.where(st >= 0, cov, 1.0)  # out of coverage: distance is inf -> beyond every ring -> lowest rate

    # ------------------------------------------------------------------ phases 6-8
    def end_tick(self) -> None:
        p, ns, n = self.params, self.nodes, self.world.n_nodes
        now, nxt = self.now_s, self.now_s + p.dt_s
        # 6. DOWNLOAD: layers whose completion falls inside this tick finish now
        tick = self._tick
        busy = np.flatnonzero(ns.queue_free_at_s > now)  # only these nodes have downloads in flight
        tick["download_bytes"] = finishing_bytes_kernel(ns.completion_s, busy, now, nxt, self.layer_sizes)
        # 7. COST was accumulated by apply(); 8. RECORD
        cpu = ns.cpu_used_hz[:n] / self.cpu_hz[:n]
        tick.update(
            step=self.step_index, time_s=now, users_active=int(np.asarray(self.mobility.active).sum()),
            queued=len(self.queue), tasks_edge=int(ns.containers[:n].sum()), tasks_cloud=int(ns.containers[n]),
            cpu_util_mean=float(cpu.mean()), cpu_util_max=float(cpu.max()),
            storage_util_mean=float((ns.stored_bytes[:n] / self.storage_bytes[:n]).mean()),
            containers_mean=float(ns.containers[:n].mean()),
        )
        self.recorder.record_step(self.step_index, tick)
        self.step_index += 1


def _make_view(sim: Simulator) -> SimView:
    return SimView(sim)
