"""One ShareOn node's loop: measure, query the neighbours, decide (Algorithm 2), migrate by itself.

Every ``period_s`` the node asks its own agent and each neighbour's for a resource report
(:func:`edgemigrate.control.reports.query_report`, with the node's own host certificate; a neighbour answers
only while a standing grant links the two). The reports become ShareOn's :class:`NodeReport` (through the
policy's own strict parser, so a neighbour that answers garbage or nothing is left out and logged, as
``parse_reports`` does in the simulator), the node's timed services become :class:`ContainerState`
(measured processing time + the user's network latency), and ``agent.decide(view)`` picks the moves. Each
round is appended to the node's decision record (a JSON line) *before* any migration it triggers starts; the
migration itself is asked of the node's own agent (:func:`edgemigrate.control.grants.node_migrate`), which
starts it only if the standing grant lists that service and destination.

Mapping of the measurements (what the paper leaves open; ``docs/shareon-emulation.md``):
``cpu_hz`` = the host's CPU capacity (its cgroup quota, in cores) x :data:`HZ_PER_CORE`; ``util_fac`` = the
measured fraction of it in use; ``ram_bytes`` = memory not used by the host's cgroup; ``t_p_avg_s`` = the
application's processing time on an idle node (calibrated); ``alpha_e_s`` = solved from the node's own
measured processing time where it runs a timed service (``costs.shareon.alpha_from_measurement``), else the
prior; ``demand_hz`` of a container = its request rate x the CPU seconds of one request (from the service's
own measurement; ``t_p_avg_s`` if it reports none) x :data:`HZ_PER_CORE` - CPU time, not wall time, so a
request that waits on a loaded node does not count as more work to move.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.control.grants import ask_admission, node_migrate, report_outcome
from edgemigrate.control.reports import HostReport, query_report
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.costs.shareon import alpha_from_measurement
from edgemigrate.engine.transport import tls
from edgemigrate.policies.shareon import (
    ContainerState,
    MigrationDecision,
    Neighbour,
    NodeView,
    ShareOnAgent,
    parse_reports,
)

log = logging.getLogger(__name__)

HZ_PER_CORE = 1e9  # a nominal speed: ShareOn's estimates only use ratios of cpu_hz
RUNTIME_IMAGE_BYTES = 90 << 20  # a Python + OpenCV service's image besides its declared memory (facedetect)


@dataclass(frozen=True, slots=True)
class NodeLoopConfig:
    """What one node knows besides its measurements. ``agents``: this host's and its neighbours' agent
    addresses; ``positions_m``: the nodes' positions; ``users``: per service, its user's position, network
    latency to this node (``t_net_s``) and request rate; ``bandwidth_bps``: b_ij to each neighbour."""

    host: str
    pki_dir: Path  # the host's own folder (hosts/HOST): its key and certificate
    agents: dict[str, tuple[str, int]]
    token: str  # the standing grant's token
    positions_m: dict[str, tuple[float, float]]
    users: dict[str, tuple[float, float, float, float]]  # service -> (x_m, y_m, t_net_s, requests_per_s)
    bandwidth_bps: dict[str, float]
    t_p_avg_s: float
    alpha_prior_s: float
    period_s: float = 1.0
    strategy: str = "precopy"
    # a service is moved only after this many consecutive rounds chose to move it: one round's view is the
    # mean of a few requests, and on a machine shared with other work one slow window is not a loaded node
    confirm_rounds: int = 1
    # the grant sets admit_below: ask the destination to admit each move first (control/grants.py), and on a
    # refusal ask the decision's next candidate
    admission: bool = False

    @property
    def neighbours(self) -> list[str]:
        return [h for h in self.agents if h != self.host]


@dataclass
class NodeLoop:
    """Runs the rounds; ``record`` gets every round (and every migration's outcome) as a dict, in order."""

    cfg: NodeLoopConfig
    agent: ShareOnAgent
    record: Callable[[dict[str, Any]], None]
    clock: Callable[[], float] = time.time
    migrations: list[dict[str, Any]] = field(default_factory=list)
    streak: dict[str, int] = field(default_factory=dict)  # service -> consecutive rounds that chose to move it

    def node_report(self, rep: HostReport) -> dict[str, Any]:
        """A host's resource report as ShareOn's NodeReport (wire form, parsed by the policy's own parser)."""
        x, y = self.cfg.positions_m.get(rep.host, (0.0, 0.0))
        timed = [s.processing_s for s in rep.services if s.processing_s is not None and s.state == "running"]
        alpha = self.cfg.alpha_prior_s
        if timed and rep.cpu_used_fraction > 0:
            alpha = float(alpha_from_measurement(max(timed), self.cfg.t_p_avg_s, rep.cpu_used_fraction))
        running = sum(1 for s in rep.services if s.state == "running")
        return {"node_id": rep.host, "x_m": x, "y_m": y, "cpu_hz": rep.cpu_cores * HZ_PER_CORE,
                "ram_bytes": float(max(0, rep.memory_total_bytes - rep.memory_used_bytes)),
                "n_containers": running, "util_fac": rep.cpu_used_fraction, "t_p_avg_s": self.cfg.t_p_avg_s,
                "alpha_e_s": alpha, "latency_var_s2": 0.0, "incoming_migrations": 0}

    async def _ask(self, host: str) -> HostReport | None:
        ctx = tls.client_context(self.cfg.pki_dir, self.cfg.host)
        try:
            return await query_report(ctx, host, self.cfg.agents[host])
        except (EdgeMigrateError, OSError) as exc:
            log.warning("%s: no usable report from %s: %s", self.cfg.host, host, exc)
            return None

    def containers(self, own: HostReport) -> tuple[ContainerState, ...]:
        out = []
        for s in own.services:
            if s.processing_s is None or s.state != "running" or s.name not in self.cfg.users:
                continue
            x, y, t_net_s, rate = self.cfg.users[s.name]
            cpu_s = s.cpu_s if s.cpu_s is not None else self.cfg.t_p_avg_s
            out.append(ContainerState(s.name, x, y, s.resident_mb * (1 << 20) + RUNTIME_IMAGE_BYTES,
                                      rate * cpu_s * HZ_PER_CORE, t_net_s, s.processing_s))
        return tuple(out)

    async def view(self) -> tuple[NodeView | None, dict[str, Any]]:
        """This round's view (None if the node cannot read its own report) and what the record keeps of it."""
        hosts = [self.cfg.host, *self.cfg.neighbours]
        reports = await asyncio.gather(*(self._ask(h) for h in hosts))
        own = reports[0]
        answers = [(h, None if r is None else self.node_report(r)) for h, r in zip(hosts, reports, strict=True)]
        parsed = parse_reports(answers)
        now = self.clock()
        rec: dict[str, Any] = {"t_s": now, "node": self.cfg.host,
                               "reports": {h: a for h, a in answers if a is not None}}
        if own is None or self.cfg.host not in parsed:
            return None, rec
        containers = self.containers(own)
        rec["containers"] = {c.container_id: {"t_proc_s": c.t_proc_s, "t_total_s": c.t_total_s} for c in containers}
        neighbours = tuple(Neighbour(parsed[h], self.cfg.bandwidth_bps.get(h, 0.0))
                           for h in self.cfg.neighbours if h in parsed)
        return NodeView(now, parsed[self.cfg.host], containers, neighbours), rec

    async def step(self) -> list[MigrationDecision]:
        """One round: view, decision, record, then the migrations (each asked of the node's own agent)."""
        view, rec = await self.view()
        decisions = self.agent.decide(view) if view is not None else []
        self.streak = {d.container_id: self.streak.get(d.container_id, 0) + 1 for d in decisions}
        confirmed = [d for d in decisions if self.streak[d.container_id] >= self.cfg.confirm_rounds]
        rec["decisions"] = [{"service": d.container_id, "to": d.destination_id, "reason": d.reason.value,
                             "est_total_s": d.est_total_s, "cost_s": d.cost_s,
                             "confirmed": d in confirmed} for d in decisions]
        self.record({"event": "round", **rec})
        demand = {c.container_id: c.demand_hz for c in view.containers} if view is not None else {}
        moved = []
        for d in confirmed:
            self.streak.pop(d.container_id, None)
            to = await self._destination(d, demand.get(d.container_id, 0.0) / HZ_PER_CORE)
            if to is not None:
                moved.append(dataclasses.replace(d, destination_id=to))
                await self._migrate(moved[-1])
        return moved

    async def _destination(self, d: MigrationDecision, demand_cores: float) -> str | None:
        """The first of the decision's destination and alternatives that admits the move (all of them, first
        first, without admission), or None; every answer is recorded."""
        if not self.cfg.admission:
            return d.destination_id
        for to in (d.destination_id, *d.alternatives):
            adm = await self._admit(d.container_id, to, demand_cores)
            self.record({"event": "admission", "t_s": self.clock(), "service": d.container_id, "to": to, **adm})
            if adm.get("admitted") is True:
                return to
        return None

    async def _admit(self, service: str, to: str, demand_cores: float) -> dict[str, Any]:
        """Ask ``to`` to admit ``service`` (a refusal, an error or silence is not an admission)."""
        try:
            return await ask_admission(self.cfg.pki_dir, self.cfg.host, to, self.cfg.agents[to], self.cfg.token,
                                       service, demand_cores)
        except (EdgeMigrateError, OSError) as exc:
            log.warning("%s: admission of %s by %s failed: %s", self.cfg.host, service, to, exc)
            return {"admitted": False, "error": str(exc)[:300]}

    async def _migrate(self, d: MigrationDecision) -> None:
        t0 = self.clock()
        self.record({"event": "migration_start", "t_s": t0, "service": d.container_id, "to": d.destination_id})
        try:
            stats = await node_migrate(self.cfg.pki_dir, self.cfg.host, self.cfg.agents[self.cfg.host],
                                       d.container_id, d.destination_id, self.cfg.agents[d.destination_id],
                                       self.cfg.token, self.cfg.strategy)
            out = {"event": "migration_done", "ok": True, "frozen_window_s": stats.get("frozen_window_s"),
                   "total_s": stats.get("total_s"), "n_rounds": stats.get("n_rounds"),
                   "bytes_on_wire": stats.get("bytes_on_wire")}
        except (EdgeMigrateError, OSError) as exc:
            log.warning("%s: migration of %s to %s failed: %s", self.cfg.host, d.container_id, d.destination_id, exc)
            out = {"event": "migration_done", "ok": False, "error": str(exc)[:300]}
        out |= {"t_s": self.clock(), "t_start_s": t0, "service": d.container_id, "to": d.destination_id}
        self.migrations.append(out)
        self.record(out)
        if self.cfg.admission:
            await self._release(d, bool(out["ok"]))

    async def _release(self, d: MigrationDecision, completed: bool) -> None:
        """Tell the destination the move it admitted is over, so its reservation goes now (it also goes when
        the destination's own session ends; a lost release only lapses at the reservation's expiry)."""
        try:
            released = await report_outcome(self.cfg.pki_dir, self.cfg.host, d.destination_id,
                                            self.cfg.agents[d.destination_id], self.cfg.token, d.container_id,
                                            completed)
        except (EdgeMigrateError, OSError) as exc:
            log.warning("%s: release of %s at %s failed (it expires there): %s", self.cfg.host, d.container_id,
                        d.destination_id, exc)
            released = None
        self.record({"event": "release", "t_s": self.clock(), "service": d.container_id, "to": d.destination_id,
                     "completed": completed, "released": released})

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``period_s`` until ``stop`` is set; a failing round is logged, never fatal."""
        while not stop.is_set():
            try:
                await self.step()
            except EdgeMigrateError as exc:
                log.warning("%s: round failed: %s", self.cfg.host, exc)
            with_timeout = asyncio.wait_for(stop.wait(), self.cfg.period_s)
            try:
                await with_timeout
            except TimeoutError:
                pass


def jsonl_recorder(path: Path) -> Callable[[dict[str, Any]], None]:
    """A decision record: one JSON line per round or migration event, flushed as it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(entry: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in entry.items()}
        with path.open("a") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")

    return write
