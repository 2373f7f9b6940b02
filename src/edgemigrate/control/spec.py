"""Service specs the agents exchange, and the local OCI bundle each host builds for them.

A spec travels between agents (``HELLO``) as a small JSON object and is validated here. It never carries a
command line, mounts or security settings: the *receiving* host derives the process arguments from the
service kind and writes its own ``config.json`` (its own network namespace, read-only bind mounts, no
capabilities unless the port needs one).

The bundle alone does not bound a *restored* process: CRIU takes credentials, capabilities,
``no_new_privs``, seccomp mode and mount flags from the checkpoint image (measured in
``docs/security-checkpoint-images.md``). The destination therefore checks a received image against the
policy derived from this same ``config.json`` before restoring it
(:mod:`edgemigrate.engine.checkpoint.imagecheck`).

The bundle is a minimal rootfs: an empty read-only skeleton into which ``/usr``, ``/etc``, the Python
installation and the project tree are bind-mounted read-only (the services are this package's own
modules, run with the project's interpreter; Redis is Debian's ``/usr/bin/redis-server``; the ``web`` kind is
Debian's lighttpd started through :mod:`edgemigrate.workloads.httpd`, serving a ``page_bytes`` page).

:func:`build_bundle` is the project's only OCI bundle builder. It lives here, in the control layer, because the
host agent is what puts a service into a container, from this spec; the workloads are plain processes that know
nothing of containers, and the engine's runc driver takes a bundle it is given.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.core.cgroups import service_cgroup_path
from edgemigrate.core.errors import ConfigError
from edgemigrate.workloads.httpd import DEFAULT_PAGE_BYTES, MAX_PAGE_BYTES

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
MAX_RESIDENT_MB = 16384.0
_PKG_ROOT = Path(__file__).resolve().parents[2]  # .../src
# The services run as uid 0 but without any capability: an empty bounding set (an execve, even of a
# set-uid file, gives none back; noNewPrivileges as well), a read-only rootfs and read-only host trees,
# so root here owns nothing it could write outside its own tmpfs. They run as nobody just as well; the
# checkpoint is what prevents it: CRIU 4.2.1's dump reads each task's rlimits with prlimit(2), which for
# a task of another uid needs CAP_SYS_RESOURCE, and root on these hosts lacks it in its bounding set
# (the dump fails with "Can't get rlimit 0: Operation not permitted"). A user namespace does not help
# either: CRIU restores the mounts inside it, and the mapped uid cannot open the bind source under
# /root. See docs/security-checkpoint-images.md.
SERVICE_UID = 0
SERVICE_GID = 0
# Binding below this port needs CAP_NET_BIND_SERVICE (the service shares its edge host's network
# namespace, whose ip_unprivileged_port_start is not the bundle's to lower).
PRIVILEGED_PORT_END = 1024


class ServiceKind(enum.Enum):
    COUNTER = "counter"
    KVSTORE = "kvstore"
    REDIS = "redis"
    WEB = "web"  # lighttpd serving one static page
    FACEDETECT = "facedetect"  # OpenCV face detection + a counter per user
    PLATEDETECT = "platedetect"  # OpenCV licence-plate detection + a counter per user (ShareOn's alpr)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    kind: ServiceKind
    ip: str
    port: int
    resident_mb: float = 0.0
    dirty_pages_per_s: float = 0.0
    seed: int = 0
    page_bytes: int = DEFAULT_PAGE_BYTES  # the web kind's page size; ignored by the other kinds

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ConfigError(f"service.name: {self.name!r} must match {_NAME_RE.pattern}")
        try:
            ipaddress.IPv4Address(self.ip)
        except ValueError:
            raise ConfigError(f"service.ip: {self.ip!r} is not an IPv4 address") from None
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"service.port: {self.port} outside 1..65535")
        if not 0 <= self.resident_mb <= MAX_RESIDENT_MB:
            raise ConfigError(f"service.resident_mb: {self.resident_mb} outside 0..{MAX_RESIDENT_MB}")
        if self.dirty_pages_per_s < 0:
            raise ConfigError("service.dirty_pages_per_s: must be >= 0")
        if not 1024 <= self.page_bytes <= MAX_PAGE_BYTES:
            raise ConfigError(f"service.page_bytes: {self.page_bytes} outside 1024..{MAX_PAGE_BYTES}")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "kind": self.kind.value, "ip": self.ip, "port": self.port,
             "resident_mb": self.resident_mb, "dirty_pages_per_s": self.dirty_pages_per_s, "seed": self.seed}
        if self.kind is ServiceKind.WEB:
            d["page_bytes"] = self.page_bytes
        return d

    @classmethod
    def from_dict(cls, obj: Any) -> ServiceSpec:
        if not isinstance(obj, dict):
            raise ConfigError("service: expected an object")
        allowed = {"name", "kind", "ip", "port", "resident_mb", "dirty_pages_per_s", "seed", "page_bytes"}
        extra = set(obj) - allowed
        if extra:
            raise ConfigError(f"service: unknown keys {sorted(extra)}")
        try:
            kind = ServiceKind(obj.get("kind"))
        except ValueError:
            raise ConfigError(f"service.kind: {obj.get('kind')!r} is not one of "
                              f"{'/'.join(k.value for k in ServiceKind)}") from None
        for key, typ in (("name", str), ("ip", str), ("port", int)):
            if not isinstance(obj.get(key), typ) or isinstance(obj.get(key), bool):
                raise ConfigError(f"service.{key}: expected {typ.__name__}")
        nums = {}
        for key in ("resident_mb", "dirty_pages_per_s"):
            v = obj.get(key, 0.0)
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise ConfigError(f"service.{key}: expected a number")
            nums[key] = float(v)
        seed = obj.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError("service.seed: expected an integer")
        page_bytes = obj.get("page_bytes", DEFAULT_PAGE_BYTES)
        if not isinstance(page_bytes, int) or isinstance(page_bytes, bool):
            raise ConfigError("service.page_bytes: expected an integer")
        return cls(obj["name"], kind, obj["ip"], obj["port"], nums["resident_mb"], nums["dirty_pages_per_s"], seed,
                   page_bytes)

    def argv(self) -> list[str]:
        """The process command line, derived locally from the kind (never received from a peer)."""
        py = sys.executable
        if self.kind is ServiceKind.COUNTER:
            return [py, "-m", "edgemigrate.workloads.counter", "--host", self.ip, "--port", str(self.port),
                    "--resident-mb", str(self.resident_mb), "--seed", str(self.seed)]
        if self.kind is ServiceKind.KVSTORE:
            return [py, "-m", "edgemigrate.workloads.kvstore", "--host", self.ip, "--port", str(self.port),
                    "--resident-mb", str(self.resident_mb), "--dirty-pages-per-s", str(self.dirty_pages_per_s),
                    "--seed", str(self.seed)]
        if self.kind in (ServiceKind.FACEDETECT, ServiceKind.PLATEDETECT):
            return [py, "-m", f"edgemigrate.workloads.{self.kind.value}", "--host", self.ip, "--port", str(self.port),
                    "--resident-mb", str(self.resident_mb), "--seed", str(self.seed)]
        if self.kind is ServiceKind.WEB:  # the module writes the page + config into /tmp and execs lighttpd
            return [py, "-m", "edgemigrate.workloads.httpd", "--host", self.ip, "--port", str(self.port),
                    "--page-bytes", str(self.page_bytes), "--seed", str(self.seed), "--workdir", "/tmp/web"]
        from edgemigrate.workloads.redis import redis_argv

        return redis_argv(self.ip, self.port, binary="/usr/bin/redis-server", workdir="/tmp")


def _ro_bind(path: str) -> dict[str, Any]:
    return {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro", "nosuid", "nodev"]}


def build_bundle(spec: ServiceSpec, netns_path: str | None, bundle_dir: Path) -> Path:
    """Write ``bundle_dir/config.json`` + an empty rootfs skeleton for ``spec`` in ``netns_path``."""
    rootfs = bundle_dir / "rootfs"
    for d in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "root", "work"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        p = rootfs / link
        if not p.is_symlink():
            p.symlink_to(target)
    binds = ["/usr", "/etc"]
    prefix = Path(sys.prefix).resolve()
    base = Path(sys.base_prefix).resolve()
    extra = {str(_PKG_ROOT), str(prefix), str(base)}
    for p in sorted(extra):
        if not any(p == b or p.startswith(b + "/") for b in binds):
            binds.append(p)
            (rootfs / p.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # CAP_NET_BIND_SERVICE only when the port needs it, nothing else; in all five sets so that it also
    # survives an execve as a non-root user (ambient capabilities must be inheritable too)
    caps = ["CAP_NET_BIND_SERVICE"] if spec.port < PRIVILEGED_PORT_END else []
    namespaces: list[dict[str, str]] = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if netns_path:
        namespaces.append({"type": "network", "path": netns_path})
    config = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": SERVICE_UID, "gid": SERVICE_GID},
            "args": spec.argv(),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", f"PYTHONPATH={_PKG_ROOT}",
                    "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"],
            "cwd": "/tmp",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "inheritable",
                                                      "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": spec.name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
            *[_ro_bind(b) for b in binds],
        ],
        "linux": {
            "namespaces": namespaces,
            # per host, so the same service on two hosts (during a migration) never shares a cgroup
            "cgroupsPath": service_cgroup_path(Path(netns_path).name if netns_path else "host", spec.name),
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
    (bundle_dir / "config.json").write_text(json.dumps(config, indent=1))
    return bundle_dir
