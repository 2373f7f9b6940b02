"""Real testbed + host agents for the migration tests (root, CRIU >= 4.2, runc; skipped otherwise).

One testbed per test module, with its own name and subnet so that parallel runs and other engineers'
testbeds never collide. Agents run as real ``edgemigrate agent`` processes inside the host namespaces
(``nsenter --net``), exactly as a user would start them.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgemigrate.control import client
from edgemigrate.control.client import AgentDirectory
from edgemigrate.control.spec import ServiceSpec

AGENT_PORT = 7400
READY_TIMEOUT_S = 20.0


def real_engine_skip_reason() -> str | None:
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
    bed: RealBed
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.bed.root / "agents" / self.host

    def start(self, *extra: str) -> None:
        self.extra = list(extra)
        ready = self.state_dir / "ready"
        ready.unlink(missing_ok=True)
        log = (self.bed.root / f"agent-{self.host}.log").open("ab")
        argv = ["nsenter", f"--net={self.bed.tb.netns_path(self.host)}", "--", sys.executable, "-c",
                "import sys; from edgemigrate.cli import main; sys.exit(main())", "-v", "agent", "--host", self.host, "--testbed", self.bed.name, "--pki",
                str(self.bed.pki), "--port", str(AGENT_PORT), "--state-dir", str(self.state_dir), "--image-dir",
                str(self.bed.images / self.host), "--io-timeout-s", "6", *self.extra]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent {self.host} did not start; see {self.bed.root}/agent-{self.host}.log")
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
class RealBed:
    name: str
    root: Path
    agents: dict[str, AgentProc]
    pki: Path
    images: Path

    @property
    def tb(self) -> Any:
        """The testbed, reloaded: agents change its state (service IPs) from other processes."""
        from edgemigrate.testbed.testbed import Testbed

        return Testbed.load(self.name)

    @property
    def directory(self) -> AgentDirectory:
        return AgentDirectory({h: (self.tb.host_ip(h), AGENT_PORT) for h in self.agents}, self.pki)

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def deploy(self, host: str, spec: ServiceSpec) -> None:
        self.run(client.deploy(self.directory, host, spec))

    def migrate(self, name: str, to: str, strategy: str = "precopy", src: str | None = None) -> dict[str, Any]:
        return self.run(client.migrate(self.directory, name, to, strategy, src_host=src))

    def where_running(self, name: str) -> list[str]:
        """Hosts whose agent reports ``name`` running AND whose runc root really holds it running."""
        out = []
        for host, ag in self.agents.items():
            runc_root = ag.state_dir / "runc"
            proc = subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True,
                                  text=True, check=False)
            if proc.returncode == 0 and '"status": "running"' in proc.stdout:
                out.append(host)
        return out

    def stop_all(self, name: str) -> None:
        for ag in self.agents.values():
            runc_root = ag.state_dir / "runc"
            subprocess.run(["runc", "--root", str(runc_root), "kill", name, "KILL"], capture_output=True, check=False)
            time.sleep(0.1)
            subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", name], capture_output=True, check=False)
            (ag.state_dir / "services.json").unlink(missing_ok=True)
        tb = self.tb
        for ip in list(tb.services()):
            tb.remove_service_ip(ip)


@pytest.fixture(scope="module")
def realbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealBed]:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    from edgemigrate.engine.transport.tls import create_pki
    from edgemigrate.testbed.config import config_from_mapping
    from edgemigrate.testbed.testbed import Testbed

    pid = os.getpid()
    name = f"mt{pid % 100000}"
    subnet = f"10.{200 + pid % 50}.0.0/16"
    for stale in Testbed.names():
        if stale == name:
            Testbed.load(stale).down()
    cfg = config_from_mapping({"edges": 3, "clouds": 0, "clients": 1, "subnet": subnet})
    Testbed.up(cfg, name=name)
    root = tmp_path_factory.mktemp("realbed")
    images = Path("/dev/shm") / f"edgemigrate-test-{name}"
    pki = create_pki(root / "pki", ["edge1", "edge2", "edge3"])
    bed = RealBed(name, root, {}, pki, images)
    try:
        for h in ("edge1", "edge2", "edge3"):
            bed.agents[h] = AgentProc(h, bed)
            bed.agents[h].start()
        yield bed
    finally:
        for ag in bed.agents.values():
            ag.kill()
        for ag in bed.agents.values():
            runc_root = ag.state_dir / "runc"
            if runc_root.exists():
                for cid in os.listdir(runc_root):
                    subprocess.run(["runc", "--root", str(runc_root), "kill", cid, "KILL"], capture_output=True)
                    time.sleep(0.1)
                    subprocess.run(["runc", "--root", str(runc_root), "delete", "-f", cid], capture_output=True)
        bed.tb.down()
        shutil.rmtree(images, ignore_errors=True)
