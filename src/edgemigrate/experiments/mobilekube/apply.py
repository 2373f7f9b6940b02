"""``edgemigrate experiment mobilekube apply``: a Mobile-Kube agent's placements carried out on a real backend.

Ghafouri et al. 2022 (Mobile-Kube), sec. VI, fig. 1: the agent's per-step placement is passed to a real
Kubernetes cluster, where a move is start-new / wait-ready / delete-old. Here the env
(``edgemigrate/MobileKube-v0``, evaluation mode: an illegal placement is skipped) is stepped with an agent and
each step's placement is applied through the controller (:class:`~edgemigrate.controller.placement.PlacementApplier`:
store actions, deployment, backend) on

- ``kubernetes``: a real API server (``--kubeconfig``, or a local one started here with the fake kubelet of
  :mod:`edgemigrate.cluster.kube`); after every step the pods must be on the planned nodes and exactly the
  empty nodes cordoned (the seed's energy mechanism);
- ``testbed``: real containers on the emulated hosts, each service a stateful counter; every move once with
  live pre-copy migration (ours, Clark et al. 2005) and once with the seed's recreate (start the new
  container, wait until it is healthy, stop the old one). A client sends a request every 10 ms during each
  move: the interruption is the longest gap between replies, and the counter is checked after every move
  (the state survives iff the replies continue at the previous count + 1).

Results folder: ``moves.csv``, ``steps.csv``, ``summary.md``, ``summary.json``, ``plots/interruption.png``,
``config.json`` and ``manifest.json`` (seed, versions, git SHA).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason
from edgemigrate.cluster.kube import LocalKube, kube_skip_reason
from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.backend import Backend, BackendError, HostUnreachable, MigrationResult
from edgemigrate.controller.deployment import Deployment
from edgemigrate.controller.kube_backend import KubernetesBackend
from edgemigrate.controller.monitor import Monitor
from edgemigrate.controller.placement import (
    Move,
    MoveOutcome,
    PlacementApplier,
    RecreateBackend,
    placement_moves,
)
from edgemigrate.controller.service import Controller
from edgemigrate.controller.store import BaseStation, Host, HostRole, open_store
from edgemigrate.controller.testbed_backend import TestbedBackend
from edgemigrate.core.errors import ConfigError
from edgemigrate.core.runs import new_run_dir, run_name
from edgemigrate.core.stats import mean_ci95
from edgemigrate.envs.mobilekube import MobileKubeEnv
from edgemigrate.experiments.results import json_line, manifest, write_json, write_table
from edgemigrate.planning import make_planner
from edgemigrate.policies.mobilekube import AGENTS, PlacementAgent, make_agent
from edgemigrate.workloads.probe import Probe, ProbeResult

BACKENDS = ("kubernetes", "testbed")
STRATEGIES = ("live", "recreate")
COUNTER_PORT = 7000
GIB = 1 << 30
BASE_STATION = "bs-0"  # users' radio links are the env's business; the store needs one station to refer to


@dataclass(frozen=True, slots=True)
class ApplyConfig:
    backend: str
    agent: str = "latency-greedy"
    steps: int = 5
    n_nodes: int = 4
    n_users: int = 12  # 2 users per service; with 4 nodes latency-greedy moves ~2 services a step
    n_services: int = 6
    seed: int = 0
    strategies: tuple[str, ...] = STRATEGIES  # the testbed's; Kubernetes has only recreate
    kubeconfig: str | None = None
    trace: str = "taxi"
    resident_mb: float = 8.0  # each counter's memory: what a live migration copies
    settle_s: float = 0.3  # the probe runs this long before and after each move

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise ConfigError(f"--strategy {','.join(bad) or '(none)'}: choose from {', '.join(STRATEGIES)}")
        for name in ("steps", "n_nodes", "n_users", "n_services"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 10_000:
                raise ConfigError(f"--{name.replace('_', '-')} {v!r}: must be an integer in [1, 10000]")
        if self.backend == "testbed" and self.n_nodes > 16:
            raise ConfigError(f"--n-nodes {self.n_nodes}: the testbed emulates at most 16 hosts here")


@dataclass(frozen=True, slots=True)
class MoveRecord:
    """One applied move; ``interruption_s``/``state_kept`` come from the testbed's client (NaN/None on
    Kubernetes, where the fake kubelet runs no process to ask)."""

    backend: str
    strategy: str
    step: int
    service: str
    source: str
    dest: str
    state: str
    interruption_s: float = math.nan
    state_kept: bool | None = None
    counter_before: int = -1
    counter_after: int = -1
    reconnects: int = 0
    engine_frozen_s: float = math.nan  # the source's frozen window as the engine measured it (live only)
    engine_total_s: float = math.nan  # the backend's whole move (live: the engine; Kubernetes: create->deleted)


@dataclass(frozen=True, slots=True)
class StepRecord:
    backend: str
    strategy: str
    step: int
    moves: int
    failed: int
    on_plan: bool  # every service runs on the node the agent's placement says
    cordon_ok: bool | None  # Kubernetes: the cordoned nodes are exactly the empty ones
    empty_nodes: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    out_dir: Path
    moves: tuple[MoveRecord, ...]
    steps: tuple[StepRecord, ...]
    summary: dict[str, Any]


def load_agent(name: str, env: MobileKubeEnv | None = None) -> PlacementAgent:
    """A built-in agent by name, or an RLlib checkpoint folder for ``env``'s spaces (``policies.rllib``, whose
    loader refuses a checkpoint trained for another env size in one line). Without ``env`` only checks ``name``."""
    if name in AGENTS.names():
        return make_agent(name)
    if not Path(name).is_dir():
        raise ConfigError(f"--agent {name!r}: neither a built-in agent ({', '.join(AGENTS.names())}) "
                          "nor a checkpoint folder")
    try:
        from edgemigrate.policies.rllib import agent as rllib_agent  # type: ignore[attr-defined]
    except ImportError:
        raise ConfigError(f"--agent {name}: loading a checkpoint needs edgemigrate.policies.rllib "
                          "(the RLlib agents), which this installation does not have") from None
    if env is None:
        return make_agent("stay")  # the name is plausible; the real load needs the env's spaces
    return rllib_agent.load_agent(name, env.observation_space, env.action_space)  # type: ignore[no-any-return]


def node_names(backend: str, n: int) -> list[str]:
    return [f"node-{i}" for i in range(n)] if backend == "kubernetes" else [f"edge{i + 1}" for i in range(n)]


def episode(cfg: ApplyConfig) -> Iterator[tuple[int, np.ndarray, int]]:
    """(step, placement, empty nodes) for the initial placement (step 0) and after each of ``cfg.steps`` steps
    of the env with ``cfg.agent`` in evaluation mode (an illegal placement is skipped: the previous one kept)."""
    env = MobileKubeEnv(n_nodes=cfg.n_nodes, n_users=cfg.n_users, n_services=cfg.n_services, trace=cfg.trace,
                        seed=cfg.seed, training=False, episode_steps=cfg.steps)
    agent = load_agent(cfg.agent, env)
    obs, info = env.reset(seed=cfg.seed)
    yield 0, info["placement"], cfg.n_nodes - len(set(info["placement"].tolist()))
    for t in range(1, cfg.steps + 1):
        obs, _r, terminated, truncated, info = env.step(agent.act(obs, info))
        yield t, info["placement"], int(info["empty_servers"])
        if terminated or (truncated and t < cfg.steps):
            return


def _controller(backend: Backend, nodes: list[str], db: Path, addr: Callable[[str], str],
                results: dict[str, MigrationResult]) -> Controller:
    """The controller as ``Controller.build`` makes it, except that each finished migration's statistics are
    also kept in ``results`` (service -> last result): the engine's own times beside the client's."""
    store = open_store(f"sqlite:///{db}")
    for n in nodes:
        store.put_host(Host(n, HostRole.EDGE, addr(n), 4.0, 16 * GIB, 100 * GIB))
    store.put_base_station(BaseStation(BASE_STATION, 0.0, 0.0, 1e9, 10_000))
    monitor = Monitor(store)

    def migrated(r: MigrationResult) -> None:
        results[r.service] = r
        monitor.ingest_migration(r)

    return Controller(store, backend, make_planner("nearest"), monitor,
                      Deployment(store, backend, on_migrated=migrated))


def _stat(results: dict[str, MigrationResult], service: str, key: str) -> float:
    r = results.get(service)
    v = None if r is None else r.stats.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _services(n: int) -> list[str]:
    return [f"svc-{j}" for j in range(n)]


def _as_map(placement: np.ndarray, nodes: list[str]) -> dict[str, str]:
    return {s: nodes[int(k)] for s, k in zip(_services(placement.size), placement, strict=True)}


# --------------------------------------------------------------------------------------------- Kubernetes
async def _kube_run(cfg: ApplyConfig, kubeconfig: str, out_dir: Path, progress: Callable[[str], None]
                    ) -> tuple[list[MoveRecord], list[StepRecord]]:
    backend = KubernetesBackend(kubeconfig)
    version = await backend.check()
    nodes = node_names("kubernetes", cfg.n_nodes)
    for n in nodes:
        try:
            await backend.host_status(n)
        except HostUnreachable as exc:
            raise ConfigError(f"--kubeconfig {kubeconfig}: {exc}; the cluster needs nodes "
                              f"{nodes[0]}..{nodes[-1]} (Ready)") from None
    progress(f"kubernetes {version} at {backend.server}: {cfg.n_nodes} nodes")
    results: dict[str, MigrationResult] = {}
    applier = PlacementApplier(_controller(backend, nodes, out_dir / "ctl.db", lambda n: "127.0.0.1:10250",
                                           results), BASE_STATION)
    specs = [ServiceSpec(s, ServiceKind.COUNTER, f"10.96.0.{j + 1}", COUNTER_PORT)
             for j, s in enumerate(_services(cfg.n_services))]
    moves: list[MoveRecord] = []
    steps: list[StepRecord] = []
    try:
        for t, placement, empty in episode(cfg):
            target = _as_map(placement, nodes)
            if t == 0:
                await applier.deploy(specs, target)
                await backend.release_empty(nodes)
                outcomes: list[MoveOutcome] = []
            else:
                outcomes = await applier.apply(target)
            moves += [MoveRecord("kubernetes", "recreate", t, o.move.service, o.move.source, o.move.dest,
                                 o.action.state.value, state_kept=False,
                                 engine_total_s=_stat(results, o.move.service, "total_s")) for o in outcomes]
            results.clear()
            running = await backend.placement()
            unused = set(nodes) - set(target.values())
            cordoned = await backend.cordoned()
            steps.append(StepRecord("kubernetes", "recreate", t, len(outcomes),
                                    sum(not o.done for o in outcomes), running == target,
                                    cordoned & set(nodes) == unused, empty))
            progress(f"step {t}: {len(outcomes)} moves, pods on plan: {running == target}, "
                     f"cordoned: {','.join(sorted(cordoned)) or '-'}")
    finally:
        for s in specs:
            for n in nodes:
                try:
                    await backend.stop(s.name, n)
                except BackendError:
                    pass
    return moves, steps


def _run_kubernetes(cfg: ApplyConfig, out_dir: Path, progress: Callable[[str], None]
                    ) -> tuple[list[MoveRecord], list[StepRecord]]:
    if cfg.kubeconfig is not None:
        return asyncio.run(_kube_run(cfg, cfg.kubeconfig, out_dir, progress))
    reason = kube_skip_reason()
    if reason:
        raise ConfigError(f"--backend kubernetes without --kubeconfig starts a local API server, which {reason}")
    progress("starting a local kube-apiserver + etcd with a fake kubelet")
    with LocalKube.up(out_dir / "kube", node_names("kubernetes", cfg.n_nodes)) as kube:
        return asyncio.run(_kube_run(cfg, str(kube.kubeconfig), out_dir, progress))


# --------------------------------------------------------------------------------------------- testbed
def _counter_value(bed: LocalCluster, spec: ServiceSpec) -> int:
    """The counter's value (GET: no increment), asked from the testbed's client host."""
    with in_netns(bed.tb.netns_path("client1")):
        s = socket.create_connection((spec.ip, spec.port), timeout=10)
    with s, s.makefile("rb") as f:
        s.sendall(b"GET\n")
        return int(f.readline())


def _measured(bed: LocalCluster, spec: ServiceSpec, settle_s: float) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """before/after callbacks around one move: a probe client and the counter checked on both sides."""
    box: dict[str, Any] = {}

    async def before(mv: Move) -> None:
        box["before"] = await asyncio.to_thread(_counter_value, bed, spec)
        with in_netns(bed.tb.netns_path("client1")):
            box["probe"] = Probe(spec.ip, spec.port, reconnect=True).start()  # its thread keeps the netns
        await asyncio.sleep(settle_s)

    async def after(mv: Move) -> tuple[ProbeResult, int, int]:
        await asyncio.sleep(settle_s)
        res: ProbeResult = await asyncio.to_thread(box["probe"].stop)
        return res, box["before"], await asyncio.to_thread(_counter_value, bed, spec)

    return before, after


async def _testbed_strategy(bed: LocalCluster, cfg: ApplyConfig, strategy: str, out_dir: Path,
                            progress: Callable[[str], None]) -> tuple[list[MoveRecord], list[StepRecord]]:
    nodes = node_names("testbed", cfg.n_nodes)
    specs = {s: ServiceSpec(s, ServiceKind.COUNTER, bed.tb.service_ip(j), COUNTER_PORT, cfg.resident_mb)
             for j, s in enumerate(_services(cfg.n_services))}
    live = TestbedBackend(bed.directory)
    backend: Backend = live if strategy == "live" else RecreateBackend(live, specs)
    addrs = bed.directory.addrs
    results: dict[str, MigrationResult] = {}
    ctl = _controller(backend, nodes, out_dir / f"ctl-{strategy}.db", lambda n: f"{addrs[n][0]}:{addrs[n][1]}",
                      results)
    applier = PlacementApplier(ctl, BASE_STATION)
    moves: list[MoveRecord] = []
    steps: list[StepRecord] = []
    for t, placement, empty in episode(cfg):
        target = _as_map(placement, nodes)
        if t == 0:
            await applier.deploy(list(specs.values()), target)
        step_moves = []
        for mv in placement_moves(applier.current(), target):
            before, after = _measured(bed, specs[mv.service], cfg.settle_s)
            await before(mv)
            (outcome,) = await applier.apply({mv.service: mv.dest})
            res, was, now = await after(mv)
            kept = (res.monotonic and not res.jumps and res.first_value == was + 1 and now == res.last_value)
            rec = MoveRecord("testbed", strategy, t, mv.service, mv.source, mv.dest, outcome.action.state.value,
                             res.max_gap_s, kept, was, now, res.reconnects,
                             _stat(results, mv.service, "frozen_window_s"), _stat(results, mv.service, "total_s"))
            step_moves.append(rec)
            results.pop(mv.service, None)  # a move that failed must not show the previous move's numbers
            progress(f"{strategy} step {t}: {mv.service} {mv.source} -> {mv.dest} {rec.state}, "
                     f"gap {res.max_gap_s * 1e3:.0f} ms, counter {was} -> {now} ({'kept' if kept else 'LOST'})")
        on_plan = all(bed.where_running(s) == [n] for s, n in target.items())
        moves += step_moves
        steps.append(StepRecord("testbed", strategy, t, len(step_moves),
                                sum(m.state != "done" for m in step_moves), on_plan, None, empty))
    for s in specs:
        bed.stop_all(s)
    return moves, steps


def _run_testbed(cfg: ApplyConfig, out_dir: Path, progress: Callable[[str], None]
                 ) -> tuple[list[MoveRecord], list[StepRecord]]:
    reason = real_engine_skip_reason()
    if reason:
        raise ConfigError(f"--backend testbed runs real containers, which {reason}")
    pid = os.getpid()
    progress(f"starting a testbed with {cfg.n_nodes} hosts and their agents")
    bed = LocalCluster.up(f"mk{pid % 100000}", f"10.{150 + pid % 50}.0.0/16", out_dir / "testbed",
                          edges=cfg.n_nodes)
    moves: list[MoveRecord] = []
    steps: list[StepRecord] = []
    try:
        for strategy in cfg.strategies:
            m, s = asyncio.run(_testbed_strategy(bed, cfg, strategy, out_dir, progress))
            moves += m
            steps += s
    finally:
        bed.down()
    return moves, steps


# --------------------------------------------------------------------------------------------- results
def summarise(moves: list[MoveRecord], steps: list[StepRecord]) -> dict[str, Any]:
    """Per (backend, strategy): moves, failed, interruption mean +- 95 % CI and max, state kept, plan kept."""
    out: dict[str, Any] = {}
    for key in sorted({(m.backend, m.strategy) for m in moves} | {(s.backend, s.strategy) for s in steps}):
        ms = [m for m in moves if (m.backend, m.strategy) == key]
        ss = [s for s in steps if (s.backend, s.strategy) == key]
        gaps = [m.interruption_s for m in ms if not math.isnan(m.interruption_s)]
        row: dict[str, Any] = {"moves": len(ms), "failed": sum(m.state != "done" for m in ms),
                               "steps_on_plan": sum(s.on_plan for s in ss), "steps": len(ss)}
        if gaps:
            mean, ci = mean_ci95(gaps) if len(gaps) > 1 else (gaps[0], math.nan)
            row |= {"interruption_mean_s": mean, "interruption_ci95_s": ci, "interruption_max_s": max(gaps),
                    "state_kept": sum(bool(m.state_kept) for m in ms)}
        frozen = [m.engine_frozen_s for m in ms if not math.isnan(m.engine_frozen_s)]
        if frozen:
            row["engine_frozen_mean_s"] = float(np.mean(frozen))
        if any(s.cordon_ok is not None for s in ss):
            row["steps_cordon_ok"] = sum(bool(s.cordon_ok) for s in ss)
        out[f"{key[0]}/{key[1]}"] = row
    return out


def _markdown(cfg: ApplyConfig, summary: dict[str, Any]) -> str:
    lines = [f"# Mobile-Kube placements applied: {cfg.backend}, agent {cfg.agent}",
             "", f"{cfg.steps} steps, {cfg.n_nodes} nodes, {cfg.n_users} users, {cfg.n_services} services, "
             f"seed {cfg.seed}. Interruption = the longest gap between replies of a client sending a request "
             "every 10 ms during the move (testbed); state kept = the counter continued at +1.", "",
             "| backend/strategy | moves | failed | steps on plan | interruption mean ± 95 % CI (ms) | max (ms) "
             "| state kept | steps with exactly the empty nodes cordoned |", "|---|---|---|---|---|---|---|---|"]
    for k, r in summary.items():
        gap = (f"{r['interruption_mean_s'] * 1e3:.0f} ± {r['interruption_ci95_s'] * 1e3:.0f}"
               if "interruption_mean_s" in r else "-")
        mx = f"{r['interruption_max_s'] * 1e3:.0f}" if "interruption_max_s" in r else "-"
        kept = f"{r['state_kept']}/{r['moves']}" if "state_kept" in r else "no (recreated)"
        cordon = f"{r['steps_cordon_ok']}/{r['steps']}" if "steps_cordon_ok" in r else "-"
        lines.append(f"| {k} | {r['moves']} | {r['failed']} | {r['steps_on_plan']}/{r['steps']} | {gap} | {mx} "
                     f"| {kept} | {cordon} |")
    lines += [f"\n{k}: the engine measured the source frozen for {r['engine_frozen_mean_s'] * 1e3:.0f} ms on "
              "average, beside the client-seen gap above."
              for k, r in summary.items() if "engine_frozen_mean_s" in r]
    return "\n".join(lines) + "\n"


def _plot(moves: list[MoveRecord], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    groups = sorted({m.strategy for m in moves if not math.isnan(m.interruption_s)})
    for i, g in enumerate(groups):
        ys = [m.interruption_s * 1e3 for m in moves if m.strategy == g and not math.isnan(m.interruption_s)]
        ax.scatter(np.full(len(ys), i) + np.linspace(-0.15, 0.15, len(ys)), ys, label=g, s=14)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("interruption per move (ms)")
    ax.set_title("Client-seen interruption per move (testbed)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_apply(cfg: ApplyConfig, out_root: Path, progress: Callable[[str], None] = lambda s: None) -> ApplyResult:
    """Step the env with ``cfg.agent`` and apply every placement on ``cfg.backend``; write the results folder."""
    # a bad agent, checkpoint or env size fails in one line before any cluster starts
    load_agent(cfg.agent, MobileKubeEnv(n_nodes=cfg.n_nodes, n_users=cfg.n_users, n_services=cfg.n_services,
                                        trace=cfg.trace, seed=cfg.seed, training=False, episode_steps=cfg.steps))
    out_dir = new_run_dir(out_root, run_name(f"mobilekube-apply-{cfg.backend}", Path(cfg.agent).name, cfg.seed))
    write_json(out_dir / "config.json", dataclasses.asdict(cfg))
    t0 = time.monotonic()
    run = _run_kubernetes if cfg.backend == "kubernetes" else _run_testbed
    moves, steps = run(cfg, out_dir, progress)
    summary = summarise(moves, steps)
    cols = [f.name for f in dataclasses.fields(MoveRecord)]
    write_table(out_dir / "moves.csv", {c: np.array([_cell(getattr(m, c)) for m in moves], dtype=object)
                                        for c in cols})
    scols = [f.name for f in dataclasses.fields(StepRecord)]
    write_table(out_dir / "steps.csv", {c: np.array([_cell(getattr(s, c)) for s in steps], dtype=object)
                                        for c in scols})
    write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(_markdown(cfg, summary))
    if any(not math.isnan(m.interruption_s) for m in moves):
        _plot(moves, out_dir / "plots" / "interruption.png")
    write_json(out_dir / "manifest.json", manifest(cfg.seed, extra={"wall_s": time.monotonic() - t0}))
    return ApplyResult(out_dir, tuple(moves), tuple(steps), summary)


def _cell(v: Any) -> Any:
    return "" if v is None else v


def json_lines(result: ApplyResult) -> list[str]:
    """The summary as JSON lines (one per backend/strategy), as the benchmarks print them."""
    return [json_line({"experiment": "mobilekube-apply", "run": k, **v}) for k, v in result.summary.items()]
