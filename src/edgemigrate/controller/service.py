"""The controller process: monitor, planner and deployment around one store, served over the API.

:class:`Controller` holds the parts (Ngo et al. 2020, sec. III, fig. 1); :func:`serve` runs it: first
:meth:`Controller.resume` (a restarted controller finishes or rolls back what its previous run left in
flight, before it accepts a request), then the mTLS API (:mod:`.api`) and, every ``interval_s``, a round:
poll the hosts' agents, and plan for the users whose reports call for it. Rounds never overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.control.spec import ServiceSpec
from edgemigrate.controller.api import (
    CONTROLLER_NAME,
    IDLE_TIMEOUT_S,
    MAX_LINE_BYTES,
    REGISTER_OPS,
    ApiError,
    Caller,
    caller_from_cert,
    check_agent_address,
    check_register_body,
    decode_request,
    issue_controller_cert,
)
from edgemigrate.controller.backend import Backend, BackendError, HostUnreachable
from edgemigrate.controller.deployment import Deployment, RoundResult
from edgemigrate.controller.monitor import Monitor
from edgemigrate.controller.store import (
    Action,
    BaseStation,
    Host,
    HostRole,
    HostState,
    Placement,
    Store,
    User,
)
from edgemigrate.core.errors import ConfigError, EdgeMigrateError, ValidationError
from edgemigrate.core.ids import check_id
from edgemigrate.engine.transport import tls
from edgemigrate.planning import Planner, PlanningError, plan_covered

log = logging.getLogger(__name__)


def action_json(a: Action) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind.value, "user": a.user, "service": a.service, "state": a.state.value,
            "source_host": a.source_host, "dest_host": a.dest_host, "source_bs": a.source_bs,
            "dest_bs": a.dest_bs, "detail": a.detail}


@dataclass
class Controller:
    store: Store
    backend: Backend
    planner: Planner
    monitor: Monitor
    deployment: Deployment
    seed: int = 0
    # told about every host the operator registers (the testbed backend adds its agent's address)
    on_host_registered: Callable[[Host], None] | None = None

    def __post_init__(self) -> None:
        self._round_lock = asyncio.Lock()
        self._rng = np.random.default_rng(self.seed)
        self.uncovered: tuple[str, ...] = ()  # the last round's users no base station covers (reported, not planned)

    @classmethod
    def build(cls, store: Store, backend: Backend, planner: Planner, *, monitor: Monitor | None = None,
              clock: Callable[[], float] = time.time, seed: int = 0) -> Controller:
        mon = monitor or Monitor(store, clock=clock)
        dep = Deployment(store, backend, clock=clock, on_migrated=mon.ingest_migration)
        return cls(store, backend, planner, mon, dep, seed)

    async def resume(self) -> list[Action]:
        settled = await self.deployment.resume()
        for a in settled:
            log.warning("resumed action %s: %s (%s)", a.id, a.state.value, a.detail)
        return settled

    async def poll_hosts(self) -> dict[str, str]:
        """Ask every host's agent for its status: store it, mark silent hosts down and answering ones up."""
        out = {}
        for host in self.store.hosts():
            try:
                status = await self.backend.host_status(host.name)
            except HostUnreachable as exc:
                if host.state is HostState.UP:
                    log.warning("%s; marked down", exc)
                    self.store.set_host_state(host.name, HostState.DOWN)
                out[host.name] = HostState.DOWN.value
                continue
            except BackendError as exc:
                log.warning("status of %s refused: %s", host.name, exc)
                out[host.name] = host.state.value
                continue
            self.monitor.ingest_host(status)
            if host.state is HostState.DOWN:
                log.warning("host %s answers again; marked up", host.name)
                self.store.set_host_state(host.name, HostState.UP)
            out[host.name] = HostState.UP.value
        return out

    async def plan_round(self, users: list[str] | None = None) -> list[Action]:
        """Plan for ``users`` (None: those the monitor flags) and carry the plan out. If a host is found
        down while the plan runs, the users whose actions did not complete are planned once more without
        it (the plan fails over)."""
        async with self._round_lock:
            self.uncovered = ()
            todo = sorted(self.monitor.needs_replan() if users is None else users)
            if not todo:
                return []
            result = await self._one_round(set(todo))
            actions = list(result.actions)
            if result.hosts_down:
                again = {a.user for a in result.actions if a.state.value != "done"}
                if again:
                    log.warning("hosts %s went down during the plan; replanning %s", ", ".join(result.hosts_down),
                                ", ".join(sorted(again)))
                    actions += (await self._one_round(again)).actions
            return actions

    async def _one_round(self, users: set[str]) -> RoundResult:
        snap, index = self.monitor.snapshot(users)
        try:
            plan = plan_covered(self.planner, snap, self._rng)
        except PlanningError as exc:
            log.warning("planner %s found no plan: %s", self.planner.name, exc)
            return RoundResult((), ())
        result = await self.deployment.execute(plan, index, snap.users.server, snap.users.bs)
        self.uncovered = tuple(sorted(set(self.uncovered) | set(result.uncovered)))
        if result.uncovered:
            log.warning("no base station covers %s (RSSI below %g dBm now or at t'); they stay where they are",
                        ", ".join(result.uncovered), snap.min_rssi_dbm)
        return result

    async def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        """Operator request: start a user's service on a host, reached through a base station."""
        try:
            spec = ServiceSpec.from_dict(body["spec"])
            user, host, bs = (check_id(body[k], f"deploy.{k}") for k in ("user", "host", "base_station"))
        except KeyError as exc:
            raise ApiError(f"deploy.{exc.args[0]}: missing") from None
        except (TypeError, AttributeError) as exc:
            raise ApiError(f"deploy.spec: {exc}") from None
        if bs not in {b.name for b in self.store.base_stations()}:
            raise ApiError(f"deploy.base_station: {bs!r} is not in the store")
        if self.store.host(host).state is HostState.DOWN:
            raise ApiError(f"deploy.host: {host} is down")
        self.store.put_user(User(user, body.get("sla_delay_s")))
        placement = Placement(user, spec.name, host, bs)  # checked before anything runs
        await self.backend.deploy(spec, host)
        self.store.put_placement(placement)
        return {"placement": {"user": user, "service": spec.name, "host": host, "base_station": bs}}

    async def discover(self, body: dict[str, Any]) -> dict[str, Any]:
        """Where ``user``'s ``service`` runs now (host and address, as its host's agent reports it)."""
        user = check_id(body.get("user"), "discover.user")
        service = check_id(body.get("service"), "discover.service")
        p = self.store.placement(user, service)
        status = await self.backend.host_status(p.host)
        addr = next((s.address for s in status.services if s.name == service and s.state == "running"), None)
        if addr is None:
            raise ApiError(f"discover: {user}/{service} is not running on {p.host} right now")
        return {"host": p.host, "address": addr, "base_station": p.base_station}

    def status(self) -> dict[str, Any]:
        return {"hosts": {h.name: h.state.value for h in self.store.hosts()},
                "placements": [{"user": p.user, "service": p.service, "host": p.host, "base_station": p.base_station}
                               for p in self.store.placements()],
                "in_flight": [action_json(a) for a in self.store.in_flight()]}

    def register(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Operator request: add or replace a host, a base station or a user, or set a BS-to-host RTT.

        Every value goes through the store's row checks (identifier pattern, ranges, address form) before
        anything is written; a bad one is a one-line :class:`ApiError`/``ValidationError`` naming the key.
        """
        b = check_register_body(op, body)
        if op == "register_host":
            try:
                role = HostRole(b["role"])
            except ValueError:
                raise ApiError(f"register_host.role: {str(b['role'])[:20]!r} is not edge or cloud") from None
            old = {h.name: h for h in self.store.hosts()}.get(b["name"]) if isinstance(b["name"], str) else None
            host = Host(b["name"], role, check_agent_address(b["address"]), b["cpu_cores"], b["memory_bytes"], b["disk_bytes"],
                        old.state if old is not None else HostState.UP, b.get("cpu_events_per_s"))
            self.store.put_host(host)
            if self.on_host_registered is not None:
                self.on_host_registered(host)
            return {"host": host.name}
        if op == "register_base_station":
            bs = BaseStation(b["name"], b["x_m"], b["y_m"], b["bandwidth_bps"], b["max_users"])
            self.store.put_base_station(bs)
            return {"base_station": bs.name}
        if op == "register_user":
            user = User(b["name"], b.get("sla_delay_s"))
            self.store.put_user(user)
            return {"user": user.name}
        self.store.put_rtt(b["base_station"], b["host"], b["rtt_s"])
        return {"rtt": {"base_station": b["base_station"], "host": b["host"], "rtt_s": float(b["rtt_s"])}}

    async def handle(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        if op in REGISTER_OPS:
            return self.register(op, body)
        if op == "report_mu":
            report = self.monitor.ingest_mu(body.get("report"))
            return {"stored": {"delays": len(report.delays), "rssi": len(report.rssi)}}
        if op == "discover":
            return await self.discover(body)
        if op == "deploy":
            return await self.deploy(body)
        if op == "plan_now":
            users = body.get("users")
            if users is not None:
                if not isinstance(users, list) or len(users) > 10_000:
                    raise ApiError("plan_now.users: expected a list of at most 10000 user names")
                users = [check_id(u, "plan_now.users") for u in users]
            actions = [action_json(a) for a in await self.plan_round(users)]
            return {"actions": actions, "uncovered": list(self.uncovered)}
        if op == "poll_hosts":
            return {"hosts": await self.poll_hosts()}
        return self.status()


async def _serve_connection(ctl: Controller, pki_dir: Path, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    peer = tls.peer_name(ssl_object)
    try:
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        caller: Caller = caller_from_cert(peer, peer_der=der, pki_dir=pki_dir)
    except ApiError as exc:
        log.warning("connection refused: %s", exc)
        writer.write(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
        return
    try:
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT_S)
            except asyncio.LimitOverrunError:
                log.warning("request from %s rejected: line longer than %d bytes; closing", peer, MAX_LINE_BYTES)
                writer.write(json.dumps({"ok": False, "error": f"request: longer than {MAX_LINE_BYTES} bytes"})
                             .encode() + b"\n")
                await writer.drain()
                return
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            writer.write(json.dumps(await _answer(ctl, caller, peer, line)).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, OSError) as exc:
        log.info("connection from %s broke: %r", peer, exc)
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _answer(ctl: Controller, caller: Caller, peer: str | None, line: bytes) -> dict[str, Any]:
    try:
        op, body = decode_request(line.rstrip(b"\n"), caller)
        return {"ok": True, **await ctl.handle(op, body)}
    except (ApiError, ValidationError, ConfigError) as exc:
        log.warning("request from %s rejected: %s", peer, exc)
        return {"ok": False, "error": str(exc).splitlines()[0][:1000]}
    except EdgeMigrateError as exc:
        log.warning("request from %s failed: %s", peer, exc)
        return {"ok": False, "error": str(exc).splitlines()[0][:1000]}


async def start_server(ctl: Controller, pki_dir: Path, host: str, port: int) -> asyncio.Server:
    """The API server (after :meth:`Controller.resume`, which the caller runs first)."""
    issue_controller_cert(pki_dir)
    ctx = tls.server_context(pki_dir, CONTROLLER_NAME)
    return await asyncio.start_server(lambda r, w: _serve_connection(ctl, pki_dir, r, w), host, port, ssl=ctx,
                                      limit=MAX_LINE_BYTES + 1)


async def serve(ctl: Controller, pki_dir: Path, host: str, port: int, *, interval_s: float = 5.0,
                ready: Callable[[int], None] | None = None) -> None:
    """Resume, then serve the API and run a round every ``interval_s`` until cancelled."""
    await ctl.resume()
    server = await start_server(ctl, pki_dir, host, port)
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    async with server:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await ctl.poll_hosts()
                await ctl.plan_round()
            except EdgeMigrateError as exc:
                log.warning("round failed: %s", exc)
