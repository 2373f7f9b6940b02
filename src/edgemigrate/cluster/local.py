"""A local cluster for tests and benchmarks: a testbed, a PKI and one real agent process per edge host.

Agents are started exactly as a user would (``edgemigrate agent --host NAME`` under ``nsenter --net``), each
with its own state and image directories; :meth:`LocalCluster.where_running` checks the truth in every
host's runc state, not what the agents claim.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.control import client
from edgemigrate.control.client import DEFAULT_AGENT_PORT, AgentDirectory
from edgemigrate.control.spec import ServiceSpec
from edgemigrate.engine.transport.tls import create_pki, host_dir
from edgemigrate.testbed.config import config_from_mapping
from edgemigrate.testbed.testbed import Testbed, free_subnet

READY_TIMEOUT_S = 20.0
_AGENT_BOOT = "import sys; from edgemigrate.cli import main; sys.exit(main())"


def real_engine_skip_reason() -> str | None:
    """Why the real engine cannot run here (None if it can): root, CRIU >= 4.2, runc, nsenter, iptables."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, CRIU)"
    for tool in ("criu", "runc", "nsenter", "iptables-save"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install-system-deps)"
    out = subprocess.run(["criu", "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"Version:\s*(\d+)\.(\d+)", out)
    if not m or (int(m.group(1)), int(m.group(2))) < (4, 2):
        return f"CRIU >= 4.2 needed, found {out.strip() or 'none'} (scripts/install-criu)"
    return None


@dataclass
class AgentProc:
    host: str
    cluster: LocalCluster
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.cluster.root / "agents" / self.host

    @property
    def log_path(self) -> Path:
        return self.cluster.root / f"agent-{self.host}.log"

    def start(self, *extra: str) -> None:
        self.extra = list(extra)
        ready = self.state_dir / "ready"
        ready.unlink(missing_ok=True)
        c = self.cluster
        argv = ["nsenter", f"--net={c.tb.netns_path(self.host)}", "--", sys.executable, "-c", _AGENT_BOOT, "-v",
                "agent", "--host", self.host, "--testbed", c.name, "--pki", str(host_dir(c.pki, self.host)),
                "--port", str(c.port),
                "--state-dir", str(self.state_dir), "--image-dir", str(c.images / self.host),
                "--io-timeout-s", str(c.io_timeout_s), *self.extra]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent {self.host} did not start; see {self.log_path}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self, *extra: str) -> None:
        self.kill()
        self.start(*extra)


@dataclass
class LocalCluster:
    name: str
    root: Path
    pki: Path
    images: Path
    port: int = DEFAULT_AGENT_PORT
    io_timeout_s: float = 6.0
    agents: dict[str, AgentProc] = field(default_factory=dict)

    @property
    def tb(self) -> Testbed:
        """The testbed, reloaded: agents change its state (service IPs) from other processes."""
        return Testbed.load(self.name)

    @property
    def directory(self) -> AgentDirectory:
        tb = self.tb
        return AgentDirectory({h: (tb.host_ip(h), self.port) for h in self.agents}, self.pki)

    @staticmethod
    def run(coro: Any) -> Any:
        return asyncio.run(coro)

    @classmethod
    def up(cls, name: str, subnet: str | None, root: Path, edges: int = 3, io_timeout_s: float = 6.0) -> LocalCluster:
        """``subnet=None`` takes the first 10.x.0.0/16 no other testbed uses (:func:`free_subnet`)."""
        if name in Testbed.names():
            Testbed.load(name).down()
        Testbed.up(config_from_mapping({"edges": edges, "clouds": 0, "clients": 1, "subnet": subnet or free_subnet()}),
                   name=name)
        hosts = [f"edge{i}" for i in range(1, edges + 1)]
        root.mkdir(parents=True, exist_ok=True)
        c = cls(name, root, create_pki(root / "pki", hosts), Path("/dev/shm") / f"edgemigrate-{name}",
                io_timeout_s=io_timeout_s)
        try:
            for h in hosts:
                c.agents[h] = AgentProc(h, c)
                c.agents[h].start()
        except BaseException:
            c.down()
            raise
        return c

    def down(self) -> None:
        for ag in self.agents.values():
            ag.kill()
        for ag in self.agents.values():
            runc_root = ag.state_dir / "runc"
            if runc_root.exists():
                for cid in os.listdir(runc_root):
                    _runc_kill(runc_root, cid)
        self.tb.down()
        shutil.rmtree(self.images, ignore_errors=True)

    def deploy(self, host: str, spec: ServiceSpec) -> None:
        self.run(client.deploy(self.directory, host, spec))

    def migrate(self, name: str, to: str, strategy: str = "precopy", src: str | None = None,
                **compression: str) -> dict[str, Any]:
        """``compression``: ``compression=``, ``page_codec=``, ``pipeline=`` of :func:`client.migrate`."""
        return self.run(client.migrate(self.directory, name, to, strategy, src_host=src, **compression))

    def where_running(self, name: str) -> list[str]:
        """Hosts whose runc state really holds ``name`` running."""
        out = []
        for host, ag in self.agents.items():
            proc = subprocess.run(["runc", "--root", str(ag.state_dir / "runc"), "state", name],
                                  capture_output=True, text=True, check=False)
            if proc.returncode == 0 and '"status": "running"' in proc.stdout:
                out.append(host)
        return out

    def stop_all(self, name: str) -> None:
        """Remove ``name`` everywhere (containers, agent records, service IPs) between tests."""
        for ag in self.agents.values():
            _runc_kill(ag.state_dir / "runc", name)
            (ag.state_dir / "services.json").unlink(missing_ok=True)
        tb = self.tb
        for ip in list(tb.services()):
            tb.remove_service_ip(ip)


def _runc_kill(runc_root: Path, cid: str) -> None:
    subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], capture_output=True, check=False)
    time.sleep(0.1)
    subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", cid], capture_output=True, check=False)
