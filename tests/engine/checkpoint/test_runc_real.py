"""The runc + CRIU driver on a real container: pre-copy dumps, page delta, rebuilt image, restore.

Root + CRIU >= 4.2 + runc (CI is root and runs it). One network namespace of its own, no testbed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.control.netns import in_netns
from edgemigrate.control.spec import ServiceKind, ServiceSpec, build_bundle
from edgemigrate.engine.checkpoint import netlock
from edgemigrate.engine.checkpoint.criuimg import INVENTORY_MAGIC, read_one
from edgemigrate.engine.checkpoint.runc import (
    LAZY_MIN_PAGES_BYTES,
    CriuError,
    RuncCriuRuntime,
    lazy_pages_supported,
)
from edgemigrate.engine.checkpoint.runtime import ContainerState
from edgemigrate.engine.manifest import RoundReceiver, plan_round

pytestmark = [pytest.mark.criu, pytest.mark.netns]


@pytest.fixture
def netns() -> Iterator[str]:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"emrt{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    # the service's own address: the lock holds all TCP of it, and CRIU itself talks TCP over 127.0.0.1
    subprocess.run(["ip", "-n", name, "addr", "add", f"{SERVICE_IP}/32", "dev", "lo"], check=True)
    subprocess.run(["ip", "-n", name, "addr", "add", f"{CLIENT_IP}/32", "dev", "lo"], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


SERVICE_IP = "10.254.0.1"
CLIENT_IP = "10.254.0.2"  # not the service's address: the engine aborts every socket of that one
NETWORK_LOCK_SKIP = 2  # criu/include/cr_options.h enum NETWORK_LOCK_METHOD


def _lock_method(image_dir: Path) -> int:
    """The network lock a dump used, as its inventory records it (a restore takes the same)."""
    return read_one(image_dir / "inventory.img", INVENTORY_MAGIC).uint(11, "network_lock_method", default=0)


def _tcp_sockets(netns: str, ip: str) -> list[str]:
    out = subprocess.run(["nsenter", f"--net={netns}", "ss", "-t", "-n", "-H", "src", ip], capture_output=True,
                         text=True, check=True).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def _ask(sock: socket.socket) -> int:
    sock.sendall(b"INC\n")
    return int(sock.recv(64).split()[0])


def _connect_counter(netns: str, tmp_path: Path) -> socket.socket:
    """A client connection to the counter the test just started, once it listens."""
    deadline = time.monotonic() + 60  # give-up only: a busy 2-core CI machine can take long to start it
    while True:
        try:
            with in_netns(netns):
                return socket.create_connection((SERVICE_IP, 7000), timeout=10, source_address=(CLIENT_IP, 0))
        except OSError:
            if time.monotonic() >= deadline:  # a wait that gave up, not a timing check
                pytest.fail("counter never listened: " + (tmp_path / "logs/counter.log").read_text())
            time.sleep(0.1)


def test_precopy_dumps_delta_rebuild_and_restore_keep_a_tcp_client(netns: str, tmp_path: Path) -> None:
    images = Path("/dev/shm") / f"emrt-{os.getpid()}"
    rt = RuncCriuRuntime(tmp_path / "runc", netns, images / "work", tmp_path / "logs")
    spec = ServiceSpec("counter", ServiceKind.COUNTER, SERVICE_IP, 7000, resident_mb=24)
    bundle = build_bundle(spec, netns, tmp_path / "bundle")
    try:
        rt.run("counter", bundle)
        client = _connect_counter(netns, tmp_path)
        assert [_ask(client), _ask(client)] == [1, 2]
        r1 = rt.checkpoint("counter", images / "src/round-1", leave_running=True)
        assert rt.state("counter") is ContainerState.RUNNING and r1.image_bytes > 24 << 20
        assert 0 < r1.frozen_s <= r1.duration_s
        assert _ask(client) == 3
        assert _lock_method(r1.image_dir) == NETWORK_LOCK_SKIP and netlock.criu_drop_rules(netns) == []
        rules = netlock.lock_service(netns, SERVICE_IP)  # the engine's lock, taken before the final dump
        rt.pause("counter")  # the engine's final round: paused, then dumped; it stays paused
        r2 = rt.checkpoint("counter", images / "src/round-2", leave_running=True)
        assert rt.state("counter") is ContainerState.PAUSED
        assert netlock.criu_drop_rules(netns) == rules and len(rules) == 2  # CRIU added none of its own
        # CRIU's stats: every page written again (no dirty-page tracking on this kernel, no parent image)
        assert r2.pages_written * 4096 >= 24 << 20 and r2.pages_skipped_parent == 0 and r2.memwrite_s > 0
        rt.kill("counter")
        assert rt.state("counter") is ContainerState.ABSENT
        # the killed copy's socket was not in repair mode: it lingers (sending FINs the lock drops) and holds
        # the connection's address and ports, which the restore below needs - the engine aborts it
        assert _tcp_sockets(netns, SERVICE_IP)
        netlock.destroy_sockets(netns, SERVICE_IP)
        assert _tcp_sockets(netns, SERVICE_IP) == []
        p1 = plan_round("counter", 1, False, r1.image_dir, None)
        p2 = plan_round("counter", 2, True, r2.image_dir, r1.image_dir)
        assert p2.manifest.payload_bytes < 0.05 * r2.image_bytes
        dst1 = RoundReceiver(p1.manifest, images / "dst/round-1", None)
        for c, data in p1.iter_chunks():
            dst1.accept_chunk(c.index, data)
        dst2 = RoundReceiver(p2.manifest, images / "dst/round-2", dst1.finish())
        for c, data in p2.iter_chunks():
            dst2.accept_chunk(c.index, data)
        rebuilt = dst2.finish()
        for f in r2.image_dir.iterdir():
            assert (rebuilt / f.name).read_bytes() == f.read_bytes(), f.name
        restored = rt.restore("counter", bundle, rebuilt)
        assert restored.pid > 0 and rt.state("counter") is ContainerState.RUNNING
        assert netlock.criu_drop_rules(netns) == rules  # a restore leaves the engine's lock alone
        netlock.unlock_service(netns, SERVICE_IP)
        assert netlock.criu_drop_rules(netns) == []
        assert _ask(client) == 4  # the same TCP connection, the same counter
        with pytest.raises(CriuError, match="checkpoint of nosuch failed"):
            rt.checkpoint("nosuch", images / "x", leave_running=True)
    finally:
        rt.kill("counter")
        subprocess.run(["rm", "-rf", str(images)], check=False)


def _page_daemons(image_dir: Path) -> list[int]:
    """PIDs of ``criu lazy-pages`` processes serving ``image_dir`` (read from /proc; not their ``timeout``)."""
    return [p for p in _page_groups(image_dir) if _argv0(p).endswith(b"criu")]


def _argv0(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def _digest(sock: socket.socket) -> bytes:
    sock.sendall(b"DIGEST\n")
    return sock.recv(256).strip()


def test_lazy_restore_brings_every_page_from_the_local_image(netns: str, tmp_path: Path) -> None:
    """``restore(lazy_pages=True)``: the container runs before its memory is in; after ``wait_pages`` the
    resident memory's digest and the counter are what was dumped, over the same TCP connection."""
    if not lazy_pages_supported():
        pytest.skip("this kernel does not let CRIU restore lazily (criu check --feature uffd-noncoop)")
    images = Path("/dev/shm") / f"emrt-lazy-{os.getpid()}"
    # 24 MB of pages: lazy only without the size threshold (with it, see the eager part below)
    rt = RuncCriuRuntime(tmp_path / "runc", netns, images / "work", tmp_path / "logs", lazy_min_pages_bytes=0)
    spec = ServiceSpec("counter", ServiceKind.COUNTER, SERVICE_IP, 7000, resident_mb=24)
    bundle = build_bundle(spec, netns, tmp_path / "bundle")
    try:
        rt.run("counter", bundle)
        client = _connect_counter(netns, tmp_path)
        assert _ask(client) == 1
        digest = _digest(client)
        netlock.lock_service(netns, SERVICE_IP)
        dumped = rt.checkpoint("counter", images / "src/round-1", leave_running=False)
        assert rt.state("counter") is ContainerState.ABSENT
        rt.prepare_restore("counter", dumped.image_dir)  # the daemon's head start, used by the restore
        [daemon] = _page_daemons(dumped.image_dir)
        restored = rt.restore("counter", bundle, dumped.image_dir, lazy_pages=True)
        assert restored.lazy_pages and rt.state("counter") is ContainerState.RUNNING
        assert _page_daemons(dumped.image_dir) in ([daemon], [])  # the same one (or already done)
        work = rt.work_dir(dumped.image_dir, "restore-work")
        assert work.is_dir()  # the daemon's log stays until wait_pages: a failed copy keeps it
        assert rt.wait_pages("counter") >= 0.0
        assert not work.exists() and rt.wait_pages("counter") == 0.0  # done once, its folder gone
        netlock.unlock_service(netns, SERVICE_IP)
        assert _digest(client) == digest and _ask(client) == 2
        # an eager restore (the default) has nothing to wait for; a head start it does not use is ended
        netlock.lock_service(netns, SERVICE_IP)
        again = rt.checkpoint("counter", images / "src/round-2", leave_running=False)
        rt.prepare_restore("counter", again.image_dir)
        assert len(_page_daemons(again.image_dir)) == 1
        rt.lazy_min_pages_bytes = LAZY_MIN_PAGES_BYTES  # 24 MB of pages do not pay for a daemon: eager
        assert not rt.restore("counter", bundle, again.image_dir, lazy_pages=True).lazy_pages
        assert rt.wait_pages("counter") == 0.0 and _page_daemons(again.image_dir) == []
        netlock.unlock_service(netns, SERVICE_IP)
        assert _digest(client) == digest and _ask(client) == 3
        rt.kill("counter")
        rt.prepare_restore("counter", again.image_dir)  # below the threshold: no head start either
        assert _page_daemons(again.image_dir) == []
        rt.lazy_min_pages_bytes = 0
        rt.prepare_restore("counter", again.image_dir)  # the destination's failure path: kill() ends it
        assert len(_page_daemons(again.image_dir)) == 1
        rt.kill("counter")
        assert _page_daemons(again.image_dir) == []
    finally:
        rt.kill("counter")
        subprocess.run(["rm", "-rf", str(images)], check=False)


def test_a_page_daemon_that_cannot_start_fails_the_restore_and_leaves_nothing(netns: str, tmp_path: Path) -> None:
    """No image to serve: ``criu lazy-pages`` exits at once, and the restore says so instead of hanging."""
    if not lazy_pages_supported():
        pytest.skip("this kernel does not let CRIU restore lazily (criu check --feature uffd-noncoop)")
    rt = RuncCriuRuntime(tmp_path / "runc", netns, tmp_path / "work", tmp_path / "logs", lazy_min_pages_bytes=0)
    spec = ServiceSpec("counter", ServiceKind.COUNTER, SERVICE_IP, 7000)
    bundle = build_bundle(spec, netns, tmp_path / "bundle")
    empty = tmp_path / "images" / "round-1"
    empty.mkdir(parents=True)
    with pytest.raises(CriuError, match="criu lazy-pages did not start"):
        rt.restore("counter", bundle, empty, lazy_pages=True)
    assert rt.state("counter") is ContainerState.ABSENT and rt.wait_pages("counter") == 0.0


def test_pause_freezes_only_a_freezer_that_runc_recorded_under_the_freezer_root(tmp_path: Path) -> None:
    """``pause`` writes the freezer named in runc's state.json itself (no runc process in the frozen window),
    but never a file outside the v1 freezer hierarchy: a state.json naming one falls back to ``runc pause``,
    which refuses a container it does not run."""
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    rt = RuncCriuRuntime(tmp_path / "runc", None, tmp_path / "work", tmp_path / "logs")
    target = tmp_path / "not-a-freezer"
    target.mkdir()
    (target / "freezer.state").write_text("THAWED")
    (tmp_path / "runc/ghost").mkdir(parents=True)
    (tmp_path / "runc/ghost/state.json").write_text(f'{{"cgroup_paths": {{"freezer": "{target}"}}}}')
    with pytest.raises(CriuError, match="pause of ghost"):
        rt.pause("ghost")
    assert (target / "freezer.state").read_text() == "THAWED"
    (tmp_path / "runc/ghost/state.json").write_text("{not json")
    with pytest.raises(CriuError, match="pause of ghost"):
        rt.pause("ghost")


def _gone(pids: list[int]) -> bool:
    """None of ``pids`` runs (a zombie waiting for init to reap it has ended)."""
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return False
    return True


def _wait_gone(image_dir: Path, what: str, give_up_s: float = 60.0) -> None:
    """Wait for every page daemon of ``image_dir`` to exit; a give-up with context, not a timing check."""
    deadline = time.monotonic() + give_up_s
    while _page_daemons(image_dir) or _page_groups(image_dir):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: page daemons {_page_daemons(image_dir)} of {image_dir} still run")
        time.sleep(0.05)


def _page_groups(image_dir: Path) -> list[int]:
    """Every process (``timeout`` and CRIU) whose argv names ``image_dir`` as a lazy-pages image folder."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"lazy-pages" in argv and str(image_dir).encode() in argv:
                out.append(int(proc.name))
    return out


def _dumped_counter(rt: RuncCriuRuntime, netns: str, tmp_path: Path, images: Path) -> tuple[Path, Path]:
    """A counter run, dumped (not left running) into ``images/src/round-1``; returns (image folder, bundle)."""
    spec = ServiceSpec("counter", ServiceKind.COUNTER, SERVICE_IP, 7000, resident_mb=8)
    bundle = build_bundle(spec, netns, tmp_path / "bundle")
    rt.run("counter", bundle)
    _connect_counter(netns, tmp_path).close()
    return rt.checkpoint("counter", images / "src/round-1", leave_running=False).image_dir, bundle


def test_a_page_daemon_no_restore_takes_is_killed_with_its_group(netns: str, tmp_path: Path) -> None:
    """``prepare_restore`` whose restore never comes (the source aborted): after ``lazy_connect_timeout_s``
    the daemon's whole process group (``timeout`` and CRIU) is killed and its work folder removed."""
    if not lazy_pages_supported():
        pytest.skip("this kernel does not let CRIU restore lazily (criu check --feature uffd-noncoop)")
    images = tmp_path / "images"
    rt = RuncCriuRuntime(tmp_path / "runc", netns, images / "work", tmp_path / "logs", lazy_min_pages_bytes=0,
                         lazy_connect_timeout_s=1.0)
    try:
        image_dir, _ = _dumped_counter(rt, netns, tmp_path, images)
        rt.prepare_restore("counter", image_dir)
        group = _page_groups(image_dir)
        [criu] = _page_daemons(image_dir)
        [leader] = [p for p in group if _argv0(p) == b"timeout"]  # CRIU under coreutils timeout
        assert os.getpgid(criu) == os.getpgid(leader) == leader  # a session of its own: killed as one group
        work = rt.work_dir(image_dir, "restore-work")
        assert (work / "lazy-pages.owner").is_file()
        _wait_gone(image_dir, "a head start no restore took")
        assert _gone(group) and not work.exists() and rt.wait_pages("counter") == 0.0
        assert rt.state("counter") is ContainerState.ABSENT
    finally:
        rt.kill("counter")


def test_a_restarted_runtime_ends_what_a_crashed_one_left(netns: str, tmp_path: Path) -> None:
    """A new runtime on the same work root (an agent restarted after a crash) kills a head-start daemon the
    old one left, kills a lazily restored copy whose pages were never waited for (so never committed), and
    removes their work folders; a hostile owner record naming an unrelated process kills nothing."""
    if not lazy_pages_supported():
        pytest.skip("this kernel does not let CRIU restore lazily (criu check --feature uffd-noncoop)")
    images = tmp_path / "images"
    args = (tmp_path / "runc", netns, images / "work", tmp_path / "logs")
    crashed = RuncCriuRuntime(*args, lazy_min_pages_bytes=0)
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        image_dir, bundle = _dumped_counter(crashed, netns, tmp_path, images)
        crashed.prepare_restore("counter", image_dir)
        daemons = _page_groups(image_dir)
        assert daemons
        hostile = images / "work" / "x-round-9.restore-work"
        hostile.mkdir()
        (hostile / "lazy-pages.owner").write_text(f'{{"pgid": {bystander.pid}, "container": "counter", '
                                                  '"pid": null}')
        (images / "work" / "y-round-9.restore-work").mkdir()
        (images / "work" / "y-round-9.restore-work" / "lazy-pages.owner").write_bytes(b"{" * 100_000)
        RuncCriuRuntime(*args, lazy_min_pages_bytes=0)  # the restart: the head start's daemon is ended
        assert _gone(daemons) and bystander.poll() is None
        assert not any(p.name.endswith(".restore-work") for p in (images / "work").iterdir())
        # a lazy restore whose wait_pages never ran: the copy is killed by its pid, with its daemon if alive
        restored = crashed.restore("counter", bundle, image_dir, lazy_pages=True)
        assert restored.lazy_pages and crashed.pid("counter") == restored.pid
        after = RuncCriuRuntime(*args, lazy_min_pages_bytes=0)
        assert after.state("counter") is ContainerState.ABSENT
        _wait_gone(image_dir, "a restarted runtime")
        assert not any(p.name.endswith(".restore-work") for p in (images / "work").iterdir())
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        crashed.kill("counter")
