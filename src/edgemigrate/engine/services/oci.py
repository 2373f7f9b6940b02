"""OCI bundles for runc: run a service inside a testbed host, ready for ``runc checkpoint``/``restore``.

Everything in ``config.json`` comes from this module - never from an image - so no mount, capability, device
or security setting of a third party reaches the host (issue 3, "mounts and security settings are never
taken from the image"). The root file system is an empty skeleton whose ``/usr`` is the host's own ``/usr``,
bind-mounted read-only (Debian bookworm is merged-/usr: ``/bin``, ``/lib``... are symlinks into it), plus a
few copied ``/etc`` files; extra host paths (the project's venv and source tree for Python services) are
bind-mounted read-only at the same absolute paths. ``/tmp`` and ``/run`` are private tmpfs (CRIU dumps them).

The network namespace is the testbed host's: ``linux.namespaces`` holds ``{"type": "network", "path":
"/run/netns/<ns>"}``, so the service binds the host's (service) IP and a restore with the same bundle on
another host lands in that host's namespace if the caller rewrites the path (:func:`set_netns`). The process
has no terminal; its stdio are pipes (CRIU restores pipes; it cannot restore a tty that is not its own).

API::

    spec = BundleSpec(container_id="counter1", argv=python_module_argv("edgemigrate.engine.services.counter",
                      "--host", ip, "--port", "7000"), netns_path=tb.netns_path("edge1"),
                      ro_binds=python_binds())
    bundle = build_bundle(spec, Path("/var/lib/edgemigrate/bundles/counter1"))   # absolute
    c = run_detached(bundle, "counter1")     # runc run -d; c.pid, c.output (read end of the stdio pipe)
    runc_state("counter1")["status"]         # "running"
    delete("counter1")                       # runc delete --force

Checked here with runc 1.1.5 + CRIU 4.2.1: ``runc checkpoint --tcp-established`` and ``runc restore -d --bundle``
of such a bundle work. Pitfall: a detached ``runc run -d``/``runc restore -d`` hands ITS stdio to the container,
so never call it with ``capture_output=True`` (the caller would wait forever for EOF); pass pipes whose write
ends you close, as :func:`run_detached` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import ConfigError, EngineError

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "localtime")
MERGED_USR_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
# capabilities of an unprivileged service (runc's `runc spec` default)
CAPABILITIES = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


@dataclass(frozen=True, slots=True)
class BundleSpec:
    """What to run and where. All paths must be absolute."""

    container_id: str
    argv: tuple[str, ...]
    netns_path: str
    cwd: str = "/"
    env: tuple[str, ...] = (DEFAULT_PATH, "PYTHONUNBUFFERED=1")
    ro_binds: tuple[str, ...] = ()  # host paths mounted read-only at the same path
    rw_binds: tuple[str, ...] = ()  # host paths mounted read-write at the same path
    tmpfs_size_mb: int = 64
    memory_limit_bytes: int | None = None
    hostname: str = "service"
    extra_env: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.container_id or not all(c.isalnum() or c in "-_." for c in self.container_id):
            raise ConfigError(f"container id must be alphanumeric (with - _ .), got {self.container_id!r}")
        if not self.argv:
            raise ConfigError("argv must not be empty")
        for p in (self.netns_path, self.cwd, *self.ro_binds, *self.rw_binds):
            if not os.path.isabs(p) or ".." in Path(p).parts:
                raise ConfigError(f"bundle paths must be absolute without '..', got {p!r}")
        if not os.path.isabs(self.argv[0]):
            raise ConfigError(f"argv[0] must be an absolute path, got {self.argv[0]!r}")


def python_module_argv(module: str, *args: str) -> tuple[str, ...]:
    """``sys.executable -m module args`` (absolute interpreter path, as a bundle needs)."""
    return (os.path.abspath(sys.executable), "-m", module, *args)


def python_binds() -> tuple[str, ...]:
    """Host paths a Python service of this project needs: the venv, the base interpreter and the source tree."""
    import edgemigrate

    src_root = str(Path(edgemigrate.__file__).resolve().parent.parent)
    paths = {os.path.abspath(sys.prefix), os.path.realpath(sys.base_prefix), src_root}
    return tuple(sorted(p for p in paths if not p.startswith("/usr/") and p != "/usr"))


def config_json(spec: BundleSpec) -> dict[str, Any]:
    """The complete runtime config (OCI runtime-spec ``config.json``) for ``spec``."""
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777", f"size={spec.tmpfs_size_mb}m"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=755", "size=16m"]},
    ]
    for p in spec.ro_binds:
        mounts.append({"destination": p, "type": "bind", "source": p, "options": ["rbind", "ro", "nosuid", "nodev"]})
    for p in spec.rw_binds:
        mounts.append({"destination": p, "type": "bind", "source": p, "options": ["rbind", "rw", "nosuid", "nodev"]})
    linux: dict[str, Any] = {
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                       {"type": "network", "path": spec.netns_path}],
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
    }
    if spec.memory_limit_bytes is not None:
        linux["resources"]["memory"] = {"limit": int(spec.memory_limit_bytes)}
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(spec.argv),
            "env": list(spec.env) + list(spec.extra_env),
            "cwd": spec.cwd,
            "capabilities": {k: CAPABILITIES for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    }


def build_bundle(spec: BundleSpec, bundle_dir: Path) -> Path:
    """Write ``bundle_dir/config.json`` and the ``rootfs`` skeleton; returns the absolute bundle path."""
    bundle = Path(bundle_dir)
    if not bundle.is_absolute():
        raise ConfigError(f"bundle directory must be absolute, got {bundle}")
    rootfs = bundle / "rootfs"
    for d in ("usr", "etc", "proc", "dev", "sys", "tmp", "run", "root", "var/tmp", *spec.ro_binds, *spec.rw_binds):
        (rootfs / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for name, target in MERGED_USR_LINKS.items():
        link = rootfs / name
        if not link.is_symlink() and Path("/" + name).exists():
            link.symlink_to(target)
    for f in ETC_FILES:
        src = Path("/etc") / f
        if src.is_file():
            shutil.copy2(src, rootfs / "etc" / f, follow_symlinks=True)
    (rootfs / "etc" / "hostname").write_text(spec.hostname + "\n")
    tmp = bundle / "config.json.tmp"
    tmp.write_text(json.dumps(config_json(spec), indent=1))
    tmp.replace(bundle / "config.json")
    return bundle


def set_netns(bundle_dir: Path, netns_path: str) -> None:
    """Point an existing bundle at another host's network namespace (before a restore there)."""
    path = Path(bundle_dir) / "config.json"
    cfg = json.loads(path.read_text())
    for ns in cfg["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = netns_path
    path.write_text(json.dumps(cfg, indent=1))


@dataclass(frozen=True, slots=True)
class RunningContainer:
    container_id: str
    pid: int
    output: int  # read end of the pipe holding the container's stdout and stderr (caller closes it)


def _runc(args: Sequence[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("runc") is None:
        raise EngineError("runc not found (run scripts/install-runc as root)")
    proc = subprocess.run(["runc", *args], capture_output=True, check=False, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise EngineError(f"runc {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc


def run_detached(bundle_dir: Path, container_id: str) -> RunningContainer:
    """``runc run -d``: stdin is an empty pipe, stdout+stderr go to a pipe whose read end is returned."""
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    os.close(in_w)  # the service sees EOF on stdin
    try:
        proc = subprocess.run(["runc", "run", "-d", "--bundle", str(bundle_dir), container_id],
                              stdin=in_r, stdout=out_w, stderr=out_w, check=False, timeout=120)
    except FileNotFoundError:
        os.close(out_r)
        raise EngineError("runc not found (run scripts/install-runc as root)") from None
    finally:
        os.close(in_r)
        os.close(out_w)
    if proc.returncode != 0:
        os.set_blocking(out_r, False)
        try:
            msg = os.read(out_r, 4096).decode(errors="replace")
        except BlockingIOError:
            msg = ""
        os.close(out_r)
        raise EngineError(f"runc run {container_id} failed: {' '.join(msg.split())[:300]}")
    return RunningContainer(container_id, int(runc_state(container_id)["pid"]), out_r)


def runc_state(container_id: str) -> dict[str, Any]:
    return json.loads(_runc(["state", container_id]).stdout)


def delete(container_id: str) -> None:
    """Kill and remove the container (no error if it does not exist)."""
    _runc(["delete", "--force", container_id], check=False)
