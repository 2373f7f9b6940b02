"""Testbed lifecycle for real: an established TCP connection survives a CRIU move with its service IP, and
``down`` leaves nothing behind (namespaces, links, routes, processes, state)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemigrate.testbed import Testbed, TestbedConfig, free_subnet
from edgemigrate.testbed.capabilities import criu_info
from tests.testbed.conftest import netns_skip_reason, unique_name, unique_subnet
from tests.waiting import wait_until

PY = sys.executable


def _wait_listening(tb: Testbed, host: str, port: int) -> None:
    wait_until(lambda: bool(tb.exec_in(host, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip()),
               f"something to listen on {host}:{port}", poll_s=0.05)


@pytest.mark.netns
@pytest.mark.criu
def test_established_connection_survives_criu_move_with_service_ip(small_testbed: Testbed, tmp_path: Path) -> None:
    info = criu_info()
    if not info.ok:
        pytest.skip(f"CRIU not usable: {info.detail}")
    tb = small_testbed
    ip = tb.service_ip(9)
    tb.add_service_ip(ip, "edge1")
    images = tmp_path / "images"
    images.mkdir()
    srv = tb.popen_in("edge1", [PY, "-m", "edgemigrate.workloads.counter", "--host", ip, "--port", "7200",
                                "--resident-mb", "8"],
                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      start_new_session=True)
    restored_pid = None
    try:
        _wait_listening(tb, "edge1", 7200)
        out = tmp_path / "probe.json"
        probe = tb.popen_in("client1", [PY, "-m", "edgemigrate.workloads.probe", "--host", ip, "--port",
                                        "7200", "--duration-s", "4", "--out", str(out)], stdout=subprocess.PIPE)
        assert probe.stdout is not None and probe.stdout.readline().strip() == b"probing"
        time.sleep(1.0)
        nsenter = ["nsenter", f"--net={tb.netns_path('edge1')}", "--"]
        subprocess.run([*nsenter, "criu", "dump", "-t", str(srv.pid), "-D", str(images), "--tcp-established",
                        "-o", "dump.log"], check=True, timeout=60)
        srv.wait(timeout=10)  # the dump killed the source
        # CRIU locked the connection with DROP rules in edge1; the destination needs them until it restores.
        rules = tb.exec_in("edge1", ["iptables-save"], check=True).stdout
        tb.exec_in("edge2", ["iptables-restore"], input_bytes=rules, check=True)
        tb.move_service_ip(ip, "edge1", "edge2")
        subprocess.run(["nsenter", f"--net={tb.netns_path('edge2')}", "--", "criu", "restore", "-D", str(images),
                        "--tcp-established", "-d", "--pidfile", str(tmp_path / "pid"), "-o", "restore.log"],
                       check=True, timeout=60, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        restored_pid = int((tmp_path / "pid").read_text())
        tb.exec_in("edge1", ["iptables", "-F"], check=True)
        assert probe.wait(timeout=60) == 0
        res = json.loads(out.read_text())
        assert res["error"] is None and res["reconnects"] == 0
        assert res["monotonic"] and res["jumps"] == []
        assert res["replies"] == res["requests"] > 50
        assert res["last_value"] - res["first_value"] + 1 == res["replies"]
        assert tb.exec_in("edge2", ["ss", "-Hltn", "sport = :7200"]).stdout.strip()
    finally:
        if srv.poll() is None:
            srv.kill()
        if restored_pid is not None:
            try:
                os.kill(restored_pid, 9)
            except ProcessLookupError:
                pass
        tb.exec_in("edge2", ["iptables", "-F"])
        tb.remove_service_ip(ip)


@pytest.mark.netns
def test_down_leaves_nothing_behind() -> None:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cfg = TestbedConfig(edges=2, clouds=1, clients=1, subnet=free_subnet(), mgmt_link=True)
    tb = Testbed.up(cfg, name=unique_name("d"))
    name = tb.name
    sleeper = tb.popen_in("edge1", ["sleep", "600"])
    tb.add_service_ip(tb.service_ip(0), "edge2")
    tb.exec_in("edge2", ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"], check=True)
    fwd_pid = tb.status()["forwarder"]["pid"]
    assert Path(f"/proc/{fwd_pid}").exists()
    # reachable from the root namespace through the management link
    ping = subprocess.run(["ping", "-c", "1", "-W", "2", tb.host_ip("edge1")], capture_output=True, check=False)
    assert ping.returncode == 0

    Testbed.load(name).down()  # from a fresh handle, as `edgemigrate testbed down` does

    assert sleeper.wait(timeout=10) is not None
    assert not Path(f"/proc/{fwd_pid}").exists() or Path(f"/proc/{fwd_pid}/stat").read_text().split()[2] == "Z"
    netns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not [ln for ln in netns_list.splitlines() if ln.split()[0].startswith(f"{name}-")]
    assert not Path(f"/sys/class/net/em-{name}").exists()
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True,
                            check=True).stdout
    assert cfg.subnet.split("/")[0].rsplit(".", 2)[0] + "." not in routes
    assert not Testbed.state_dir(name).exists()
    assert name not in Testbed.names()
    assert shutil.which("ip")  # sanity: the checks above really ran the tools


@pytest.mark.netns
def test_netem_emulator_plumbing_shapes_and_moves(tmp_path: Path) -> None:
    """The kernel-netem variant (looped veth links): rate shaping and routing everywhere; delay only where the
    kernel has sch_netem (not on our CI machines, where asking for delay is a clear error)."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    from edgemigrate.core.errors import ConfigError, EngineError
    from edgemigrate.testbed.capabilities import detect
    from edgemigrate.testbed.config import Emulator, LinkSpec

    caps = detect()
    links = {"edge_edge": LinkSpec(rate_mbit=20), "client_edge": LinkSpec(), "cloud_edge": LinkSpec(),
             "client_cloud": LinkSpec(), "client_client": LinkSpec(), "cloud_cloud": LinkSpec()}
    cfg = TestbedConfig(edges=2, clouds=0, clients=1, subnet=unique_subnet(13), mgmt_link=False,
                        emulator=Emulator.NETEM, links=links)
    if not caps.netem:
        with pytest.raises(ConfigError, match="no sch_netem"):
            Testbed.up(TestbedConfig(edges=2, clouds=0, clients=1, subnet=unique_subnet(13), mgmt_link=False,
                                     emulator=Emulator.NETEM), name=unique_name("n"))
    tb = Testbed.up(cfg, name=unique_name("n"))
    try:
        assert tb.emulator is Emulator.NETEM and tb.status()["forwarder"]["pid"] is None
        sink = tb.popen_in("edge2", [PY, "-m", "edgemigrate.testbed.netperf", "sink", "--port", "5302"],
                           stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
        tb.exec_in("edge1", [PY, "-m", "edgemigrate.testbed.netperf", "source", "--host", tb.host_ip("edge2"),
                             "--port", "5302", "--seconds", "3"], check=True, timeout_s=120)
        res = json.loads(sink.communicate(timeout=60)[0].strip().splitlines()[-1])
        assert 0.8 * 20e6 <= res["rate_bps"] <= 1.05 * 20e6, res
        ip = tb.service_ip(1)
        tb.add_service_ip(ip, "edge1")
        tb.move_service_ip(ip, "edge1", "edge2")
        assert tb.exec_in("client1", ["ping", "-c", "2", "-i", "0.05", "-W", "2", ip]).returncode == 0
        if caps.netem:
            tb.set_link("edge1", "edge2", rtt_ms=40)
            out = tb.exec_in("edge1", ["ping", "-c", "3", "-i", "0.05", tb.host_ip("edge2")]).stdout.decode()
            assert float(out.rsplit("=", 1)[1].split("/")[0]) >= 40.0
        else:
            with pytest.raises(EngineError, match="no sch_netem"):
                tb.set_link("edge1", "edge2", rtt_ms=40)
    finally:
        tb.down()
