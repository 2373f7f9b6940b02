"""The real set-up of one handover experiment: a testbed with base stations, one agent per server, and per run
a fresh store, the controller (in this process, on its own thread and event loop) and the virtual MU (a
process in the client's namespace that talks to the controller's mTLS API as ``mu-<user>``).

Handover rule per planner (what ``docs/handover.md`` states):

* ``orchestrated``: the MU never hands itself over (``--coordinated``). The controller's plan does, through
  :class:`~edgemigrate.controller.testbed_backend.TestbedHandover`, and a handover that comes with a
  migration starts when the source agent freezes the service (``handover_at_freeze``).
* ``nearest``, ``random``: the MU hands itself over by relative RSSI hysteresis (3 dB) as soon as its radio
  says so, uncoordinated (Ngo et al. 2020, sec. V-A: these planners "are triggered when BS handover is
  triggered"); the controller learns it from the MU's reports and only records the handover.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.cluster import LocalCluster
from edgemigrate.cluster.local import AgentProc
from edgemigrate.control.client import DEFAULT_AGENT_PORT
from edgemigrate.control.spec import ServiceKind, ServiceSpec
from edgemigrate.controller.api import issue_mu_cert
from edgemigrate.controller.monitor import Monitor, SnapshotDefaults
from edgemigrate.controller.service import Controller, serve
from edgemigrate.controller.sim.measurements import parse_record, record_from_stats
from edgemigrate.controller.store import BaseStation, Host, HostRole, Placement, User, open_store
from edgemigrate.controller.testbed_backend import TestbedBackend, TestbedHandover
from edgemigrate.core.errors import EdgeMigrateError, EngineError
from edgemigrate.costs.handover import MigrationSample, PrecopyModel, fit_precopy, precopy_times_s
from edgemigrate.engine.transport.tls import create_pki
from edgemigrate.experiments.handover.design import TESTBED, HandoverConfig, ServiceSetup
from edgemigrate.planning import make_planner
from edgemigrate.testbed import Testbed, config_from_mapping, free_subnet
from edgemigrate.testbed.bs import outage_mode

log = logging.getLogger(__name__)

USER = "mu1"
CLIENT = "client1"
PORT = 7000
SERVERS = ("edge1", "edge2", "edge3", "cloud")
GIB = 1 << 30
SETTLE_GIVE_UP_S = 180.0  # a migration still in flight when the MU stops gets this long to finish
READY_GIVE_UP_S = 60.0
DEPLOY_ATTEMPTS = 3
# the radio geometry of the MU (mobileuser.radio.default_sites): bsK at x = (K - 1) * spacing
_MU = [sys.executable, "-m", "edgemigrate.mobileuser"]


@dataclass
class RunRecord:
    """What one run left behind, for :mod:`.analysis`."""

    service: str
    planner: str
    repeat: int
    folder: Path
    events: list[dict[str, Any]]
    mu_summary: dict[str, Any]
    actions: list[dict[str, Any]]
    link: dict[str, Any] = field(default_factory=dict)


class HandoverBed:
    """Testbed + PKI + agents, up for the whole experiment; :meth:`run` is one (service, planner, repeat)."""

    def __init__(self, cfg: HandoverConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = root
        self.cluster: LocalCluster | None = None
        # per service, the measured pre-copy migrations the planners' model is fitted to (warm-up + runs)
        self.samples: dict[str, list[MigrationSample]] = {}

    # ------------------------------------------------------------------ bring-up
    def up(self) -> None:
        cfg = self.cfg
        name = cfg.testbed_name
        if name in Testbed.names():
            Testbed.load(name).down()
        raw = dict(TESTBED) | {"subnet": cfg.subnet or free_subnet(150, 199)}
        Testbed.up(config_from_mapping(raw, where="handover testbed"), name=name)
        self.root.mkdir(parents=True, exist_ok=True)
        pki = create_pki(self.root / "pki", list(SERVERS))
        c = LocalCluster(name, self.root, pki, Path("/dev/shm") / f"edgemigrate-{name}", port=DEFAULT_AGENT_PORT)
        self.cluster = c
        try:
            for h in SERVERS:
                c.agents[h] = AgentProc(h, c)
                c.agents[h].start()
        except BaseException:
            self.down()
            raise
        self.mu_pki = issue_mu_cert(pki, USER)

    def down(self) -> None:
        if self.cluster is not None:
            self.cluster.down()
            self.cluster = None

    @property
    def tb(self) -> Testbed:
        return Testbed.load(self.cfg.testbed_name)

    # ------------------------------------------------------------------ one run
    def _store(self, path: Path) -> str:
        tb, c = self.tb, self.cluster
        assert c is not None
        url = f"sqlite:///{path}"
        with open_store(url) as store:
            for h, (ip, port) in sorted(c.directory.addrs.items()):
                role = HostRole.CLOUD if h == "cloud" else HostRole.EDGE
                store.put_host(Host(h, role, f"{ip}:{port}", 4.0, 16 * GIB, 100 * GIB))
            for k, b in enumerate(tb.base_stations()):
                rate = tb.bs_link(b.name, f"edge{k + 1}").rate_mbit * 1e6
                store.put_base_station(BaseStation(b.name, k * self.cfg.bs_spacing_m, 0.0, rate, 8))
            store.put_user(User(USER))
        return url

    def precopy_model(self, service: str) -> PrecopyModel | None:
        """The pre-copy model (Clark et al. 2005) fitted to ``service``'s measured migrations so far, or None
        (the planners then price eq. 5's stop-and-copy) before any."""
        samples = self.samples.get(service)
        return fit_precopy(samples) if samples else None

    def add_samples(self, service: str, rows: list[dict[str, Any]]) -> None:
        """The migration rows of a run (``analysis.migration_rows``) as samples of the model's fit; a row the
        fit cannot use (no pre-copy round, a NaN from a failed statistic) is left out."""
        for r in rows:
            try:
                # the fit needs the engine's frozen window, not the user-seen downtime (NaN-free, bounded)
                rec = parse_record(dict(r, downtime_s=r["frozen_s"]))
            except (EdgeMigrateError, KeyError, TypeError, ValueError) as exc:
                log.warning("migration row of %s not used for the pre-copy fit: %s", service, exc)
                continue
            if rec.sample.pre_bytes > 0:
                self.samples.setdefault(service, []).append(rec.sample)

    def warm_up(self, service: str) -> None:
        """One real migration edge1 -> edge2 of ``service`` before its runs, so that the first orchestrated run
        already plans with a model fitted on this machine (its load included) rather than eq. 5's defaults."""
        c = self.cluster
        assert c is not None
        setup = self.cfg.setup(service)
        spec = ServiceSpec(service, ServiceKind(setup.kind), self.tb.service_ip(0), PORT, setup.resident_mb)
        c.stop_all(service)
        try:
            self._deploy(spec)
            stats = c.migrate(service, "edge2", src="edge1", compression=self.cfg.compression,
                              precopy_read=self.cfg.precopy_read)
            link = self.tb.link("edge1", "edge2")
            rec = parse_record(record_from_stats(stats, service=service, planner="warmup", repeat=0,
                                                 link_bps=link.rate_mbit * 1e6, rtt_s=link.rtt_ms / 1000.0))
            self.samples.setdefault(service, []).append(rec.sample)
        except EdgeMigrateError as exc:  # the runs still run; the first plans price eq. 5 instead
            log.warning("warm-up migration of %s failed: %s", service, exc)
        finally:
            c.stop_all(service)

    def _defaults(self, service: str, planner: str) -> SnapshotDefaults:
        """What the monitor does not measure: the testbed's real BS -> server and server -> server RTTs, the
        edge links, and the pre-copy model fitted so far."""
        tb = self.tb
        rtt = {(b.name, h): tb.bs_link(b.name, h).rtt_ms / 1000.0 for b in tb.base_stations() for h in SERVERS}
        host_rtt = {(a, b): tb.link(a, b).rtt_ms / 1000.0 for a in SERVERS for b in SERVERS if a < b}
        link = tb.link("edge1", "edge2")
        model = self.precopy_model(service)
        return SnapshotDefaults(link_bps=link.rate_mbit * 1e6, edge_rtt_s=0.002,
                                cloud_rtt_s=0.152, bs_host_rtt_s=rtt, min_rssi_dbm=self.cfg.cell_edge_rssi_dbm(),
                                horizon_s=planner_horizon_s(self.cfg, planner, model, link.rate_mbit * 1e6,
                                                            link.rtt_ms / 1000.0),
                                precopy=model, host_rtt_s=host_rtt)

    def _reset_radio(self) -> None:
        tb = self.tb
        if tb.serving_bs(CLIENT) != "bs1":
            tb.handover(CLIENT, "bs1", outage_s=0.0)

    def run(self, service: str, planner: str, repeat: int, folder: Path, seed: int) -> RunRecord:
        """One run: deploy on edge1 behind bs1, the controller with ``planner``, the MU along its path."""
        cfg, c = self.cfg, self.cluster
        assert c is not None
        setup = cfg.setup(service)
        folder.mkdir(parents=True, exist_ok=True)
        c.stop_all(service)
        self._reset_radio()
        url = self._store(folder / "store.db")
        spec = ServiceSpec(service, ServiceKind(setup.kind), self.tb.service_ip(0), PORT, setup.resident_mb)
        self._deploy(spec)
        with open_store(url) as store:
            store.put_placement(Placement(USER, service, "edge1", "bs1"))
        events: list[dict[str, Any]] = []
        coordinated = planner == "orchestrated"
        hook = TestbedHandover(cfg.testbed_name, {USER: CLIENT}, cfg.handover_outage_s) if coordinated else None
        defaults = self._defaults(service, planner)
        backend_kw: dict[str, Any] = {"handover_at_freeze": coordinated, "compression": cfg.compression,
                                      "precopy_read": cfg.precopy_read}
        if hook is not None:
            backend_kw["handover_hook"] = hook
        if defaults.precopy is not None:  # the delta estimate from the earlier migrations (sec. IV-B)
            backend_kw["dirty_bytes_per_s"] = {service: defaults.precopy.dirty_bytes_per_s}
        with _controller(url, c, planner, seed, backend_kw, events, defaults, cfg.controller_interval_s,
                         folder) as (ip, port):
            summary = self._mu(service, setup, folder, ip, port, coordinated)
            _settle(url)
        with open_store(url) as store:
            actions = [{"kind": a.kind.value, "state": a.state.value, "source_host": a.source_host,
                        "dest_host": a.dest_host, "source_bs": a.source_bs, "dest_bs": a.dest_bs,
                        "detail": a.detail} for a in store.actions()]
        c.stop_all(service)
        link = {"edge_edge_bps": self.tb.link("edge1", "edge2").rate_mbit * 1e6,
                "edge_edge_rtt_s": self.tb.link("edge1", "edge2").rtt_ms / 1000.0,
                "edge_cloud_bps": self.tb.link("edge1", "cloud").rate_mbit * 1e6,
                "edge_cloud_rtt_s": self.tb.link("edge1", "cloud").rtt_ms / 1000.0}
        return RunRecord(service, planner, repeat, folder, events, summary, actions, link)

    def _deploy(self, spec: ServiceSpec) -> None:
        """Deploy on edge1; again after a failed start (the agent gives a service 10 s to answer, and OpenCV
        can take longer to load on a busy 2-core machine)."""
        c = self.cluster
        assert c is not None
        for attempt in range(DEPLOY_ATTEMPTS):
            try:
                c.deploy("edge1", spec)
                return
            except EdgeMigrateError as exc:
                if attempt == DEPLOY_ATTEMPTS - 1:
                    raise
                log.warning("deploy of %s failed (%s); once more", spec.name, exc)
                c.stop_all(spec.name)

    def _mu(self, service: str, setup: ServiceSetup, folder: Path, ip: str, port: int,
            coordinated: bool) -> dict[str, Any]:
        cfg = self.cfg
        argv = [*_MU, "--testbed", cfg.testbed_name, "--host", CLIENT, "--user", USER, "--service", service,
                "--kind", setup.kind, "--controller", f"{ip}:{port}", "--mu-pki", str(self.mu_pki),
                "--log", str(folder / "requests.jsonl"), "--duration-s", str(setup.duration_s),
                "--speed-m-per-s", str(setup.speed_m_per_s), "--bs-spacing-m", str(cfg.bs_spacing_m),
                "--request-gap-s", str(cfg.request_gap_s), "--report-every-s", str(cfg.report_every_s),
                "--request-timeout-s", str(setup.request_timeout_s),
                "--min-rssi-dbm", repr(cfg.cell_edge_rssi_dbm())]
        if coordinated:
            argv.append("--coordinated")
        mode = outage_mode(self.tb, CLIENT)  # hold (lossless) or blackhole: testbed/bs.py
        with (folder / "mu.log").open("wb") as err:
            proc = self.tb.popen_in(CLIENT, argv, stdout=subprocess.PIPE, stderr=err)
            out, _ = proc.communicate(timeout=setup.duration_s + 600)
        lines = out.decode(errors="replace").strip().splitlines()
        if proc.returncode not in (0, 1) or not lines:
            raise EngineError(f"the MU failed (exit {proc.returncode}); see {folder / 'mu.log'}")
        summary = json.loads(lines[-1]) | {"outage_mode": mode}
        (folder / "mu_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return dict(summary)


def planner_horizon_s(cfg: HandoverConfig, planner: str, model: PrecopyModel | None, link_bps: float,
                      rtt_s: float) -> float:
    """The planner's t' - t. The baselines look one report period ahead: they are triggered by the handover
    (Ngo et al. 2020, sec. V-A), so their hysteresis at t' is the MU's own, now; a longer look-ahead would
    start their pre-copy at a predicted handover, before the real one. Orchestrated: the configured horizon,
    or longer when a pre-migration takes longer: the crossing must be in sight (1 + 10 %) x T_pre-mig ahead
    (fig. 2's margin), plus a report period for the RSSI trend to show it, or the pre-copy starts too late
    to end at the handover."""
    if planner != "orchestrated":
        return cfg.report_every_s
    if model is None:
        return cfg.horizon_s
    frozen, total, _ = precopy_times_s(model, link_bps, rtt_s)
    pre_s = float(total) - float(frozen)
    horizon = min(60.0, max(cfg.horizon_s, 1.1 * pre_s + cfg.report_every_s))
    log.info("planner horizon %.1f s (fitted pre-migration %.1f s)", horizon, pre_s)
    return horizon


def _settle(url: str) -> None:
    """Wait until the controller has no action in flight (a migration the MU's end interrupted finishes)."""
    give_up = time.monotonic() + SETTLE_GIVE_UP_S
    while True:
        with open_store(url) as store:
            if not store.in_flight():
                return
        if time.monotonic() > give_up:
            raise EngineError(f"actions still in flight {SETTLE_GIVE_UP_S:g} s after the MU stopped")
        time.sleep(0.2)


@contextlib.contextmanager
def _controller(url: str, c: LocalCluster, planner: str, seed: int, backend_kw: dict[str, Any],
                events: list[dict[str, Any]], defaults: SnapshotDefaults, interval_s: float,
                folder: Path) -> Iterator[tuple[str, int]]:
    """The controller of ``planner`` serving on the testbed's management address, on a thread of its own."""
    tb = Testbed.load(c.name)
    ip = tb.mgmt_ip
    if ip is None:
        raise EngineError("the handover testbed needs its management link (the MU reaches the controller there)")
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    failed: list[BaseException] = []
    store_box: list[Any] = []
    task_box: list[asyncio.Task[None]] = []

    async def main() -> None:
        store = open_store(url)  # opened on the controller's thread: SQLite connections stay on theirs
        store_box.append(store)
        backend = TestbedBackend(c.directory, observer=events.append, **backend_kw)
        ctl = Controller.build(store, backend, make_planner(planner), monitor=Monitor(store, defaults), seed=seed)
        await serve(ctl, c.pki, ip, 0, interval_s=interval_s, ready=ready.append)

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        task_box.append(loop.create_task(main()))
        try:
            loop.run_until_complete(task_box[0])
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the experiment's thread
            failed.append(exc)
        finally:
            for s in store_box:
                s.close()
            loop.close()

    t = threading.Thread(target=thread_main, name=f"controller-{planner}", daemon=True)
    handler = logging.FileHandler(folder / "controller.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    ctl_log = logging.getLogger("edgemigrate.controller")
    ctl_log.addHandler(handler)
    ctl_log.setLevel(logging.INFO)
    ctl_log.propagate = False  # its log is the run folder's controller.log, not the experiment's progress
    t.start()
    try:
        give_up = time.monotonic() + READY_GIVE_UP_S
        while not ready:
            if failed or not t.is_alive():
                raise EngineError(f"the controller did not start: {failed[0] if failed else 'exited'}")
            if time.monotonic() > give_up:
                raise EngineError(f"the controller did not serve within {READY_GIVE_UP_S:g} s")
            time.sleep(0.05)
        yield ip, ready[0]
    finally:
        if task_box and t.is_alive():
            loop.call_soon_threadsafe(task_box[0].cancel)
        t.join(30)
        ctl_log.removeHandler(handler)
        ctl_log.propagate = True
        handler.close()
    if failed:
        raise EngineError(f"the controller failed: {failed[0]}")

