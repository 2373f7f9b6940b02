"""OCI bundles: the config is ours alone; a real runc run (and CRIU checkpoint/restore) inside a netns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edgemigrate.core.errors import ConfigError
from edgemigrate.engine.services.oci import (
    BundleSpec,
    build_bundle,
    config_json,
    delete,
    python_binds,
    python_module_argv,
    run_detached,
    runc_state,
    set_netns,
)
from edgemigrate.testbed.capabilities import criu_info


def _spec(cid: str, netns: str, *args: str) -> BundleSpec:
    return BundleSpec(cid, python_module_argv("edgemigrate.engine.services.counter", "--host", "127.0.0.1",
                                              "--port", "7300", *args), netns, ro_binds=python_binds())


def test_config_is_built_from_our_template_only(tmp_path: Path) -> None:
    spec = _spec("c1", "/run/netns/x-edge1")
    cfg = config_json(spec)
    assert cfg["process"]["terminal"] is False
    assert cfg["process"]["noNewPrivileges"] is True
    assert {"type": "network", "path": "/run/netns/x-edge1"} in cfg["linux"]["namespaces"]
    assert all(os.path.isabs(m["destination"]) for m in cfg["mounts"])
    binds = [m for m in cfg["mounts"] if m["type"] == "bind"]
    assert {m["source"] for m in binds} == {"/usr", *spec.ro_binds}
    assert all("ro" in m["options"] for m in binds)
    assert "seccomp" not in cfg["linux"] and "hooks" not in cfg
    b = build_bundle(spec, tmp_path / "b")
    assert json.loads((b / "config.json").read_text()) == cfg
    assert (b / "rootfs" / "usr").is_dir() and (b / "rootfs" / "etc" / "hostname").read_text() == "service\n"
    set_netns(b, "/run/netns/x-edge2")
    ns = json.loads((b / "config.json").read_text())["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x-edge2"} in ns


@pytest.mark.parametrize(
    "kwargs",
    [dict(netns_path="run/netns/x"), dict(ro_binds=("/a/../etc",)), dict(container_id="bad id"),
     dict(argv=("python3",)), dict(argv=())],
)
def test_bad_specs_are_rejected(kwargs: dict) -> None:
    base = dict(container_id="c1", argv=("/usr/bin/true",), netns_path="/run/netns/x")
    with pytest.raises(ConfigError):
        BundleSpec(**{**base, **kwargs})
    with pytest.raises(ConfigError, match="absolute"):
        build_bundle(BundleSpec(**base), Path("relative/dir"))


def _ask(netns: str, line: str) -> str:
    code = ("import socket,sys; s=socket.create_connection(('127.0.0.1',7300),timeout=10);"
            f"s.sendall(b'{line}\\n'); print(s.makefile().readline().strip())")
    for _ in range(100):
        p = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", "python3", "-c", code],
                           capture_output=True, text=True, check=False)
        if p.returncode == 0:
            return p.stdout.strip()
        time.sleep(0.05)
    raise AssertionError(p.stderr)


@pytest.mark.netns
def test_runc_runs_the_service_in_a_netns_and_criu_moves_it(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("needs root and runc")
    netns = f"toci{os.getpid() % 100000}"
    cid = f"emtest-{netns}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        bundle = build_bundle(_spec(cid, f"/run/netns/{netns}", "--resident-mb", "4"), tmp_path / "bundle")
        c = run_detached(bundle, cid)
        os.set_blocking(c.output, True)
        try:
            assert b"listening" in os.read(c.output, 4096)
            assert runc_state(cid)["status"] == "running"
            assert _ask(netns, "INC") == "1"
            if not criu_info().ok:
                return
            images = tmp_path / "images"
            subprocess.run(["runc", "checkpoint", "--image-path", str(images), cid], check=True,
                           capture_output=True, timeout=120)
            r_in, w_in = os.pipe()
            r_out, w_out = os.pipe()
            os.close(w_in)
            try:
                subprocess.run(["runc", "restore", "-d", "--image-path", str(images), "--bundle", str(bundle), cid],
                               stdin=r_in, stdout=w_out, stderr=w_out, check=True, timeout=120)
            finally:
                for fd in (r_in, w_out, r_out):
                    os.close(fd)
            assert runc_state(cid)["status"] == "running"
            assert _ask(netns, "INC") == "2"  # state survived checkpoint/restore
        finally:
            os.close(c.output)
            delete(cid)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
