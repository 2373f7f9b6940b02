"""Refuse a received checkpoint whose process would get more than the destination's own bundle grants.

``runc restore`` takes the container's *process* state from the CRIU image, not from ``config.json``:
measured on runc 1.1.5 + CRIU 4.2.1 (``docs/security-checkpoint-images.md``), a tampered image sets the
restored process's uid/gid/groups, all five capability sets, ``no_new_privs``, securebits and seccomp
mode, and the flags of every mount (a read-only bind of the host's ``/usr`` comes back writable). The
bundle only decides which external paths exist and where the root is. So before a restore the destination
reads the few images that carry those values and compares them with a policy derived from *its own*
bundle (:func:`policy_from_bundle`), never from anything the peer sent.

Call order in the agent: final round verified -> :func:`check_image` -> ``runtime.restore``. The check
is pure (reads files, no processes); every failure, malformed input included, is an
:class:`ImagePolicyError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.checkpoint.criuimg import (
    CORE_MAGIC,
    IDS_MAGIC,
    INVENTORY_MAGIC,
    MNTS_MAGIC,
    PSTREE_MAGIC,
    ImageFormatError,
    Message,
    read_messages,
    read_one,
)

MAX_TASKS = 256
MAX_CONFIG_BYTES = 1 << 20

# include/uapi/linux/capability.h, in bit order (CAP_CHOWN = 0 .. CAP_CHECKPOINT_RESTORE = 40)
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
_CAP_BIT = {f"CAP_{name}": i for i, name in enumerate(CAPABILITIES)}
# creds_entry fields of the five sets, named as in the OCI spec
_CAP_SETS = (("inheritable", 9), ("permitted", 10), ("effective", 11), ("bounding", 12), ("ambient", 19))

# seccomp modes (images/core.proto); strict allows only read/write/exit/sigreturn, so it is the strongest
SECCOMP_DISABLED, SECCOMP_STRICT, SECCOMP_FILTER = 0, 1, 2
_SECCOMP_RANK = {SECCOMP_DISABLED: 0, SECCOMP_FILTER: 1, SECCOMP_STRICT: 2}

# The namespaces CRIU creates on restore are those in which the root task's ids (ids-<pid>.img) differ
# from the inventory's root_ids (criu/pstree.c get_clone_mask); task_kobj_ids_entry field numbers.
_NS_IDS = {"pid": 5, "network": 6, "ipc": 7, "uts": 8, "mount": 9, "user": 10, "time": 12}
_NS_ALL = {"pid", "network", "ipc", "uts", "mount", "user", "time", "cgroup"}
# CRIU restores a process into a time namespace of its own (so that its monotonic clocks continue), so the
# image of a service that was migrated before has one: isolation that grants nothing, allowed either way
OPTIONAL_FRESH_NAMESPACES = frozenset({"time"})

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_OPTION = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
# images/mnt.proto fstype
FSTYPE_PROC, FSTYPE_TMPFS, FSTYPE_DEVPTS, FSTYPE_MQUEUE = 1, 5, 6, 14
_FSTYPE = {"proc": FSTYPE_PROC, "tmpfs": FSTYPE_TMPFS, "devpts": FSTYPE_DEVPTS, "mqueue": FSTYPE_MQUEUE}
# runc hides a masked file by bind-mounting /dev/null over it (CRIU records it as that external)
_MASK_FILE_KEY = "/dev/null"

RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS", "LOCKS",
           "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")
_RLIMIT = {f"RLIMIT_{name}": i for i, name in enumerate(RLIMITS)}

_IMG_NAME = re.compile(r"^(core|ids|mountpoints|creds)-(\d{1,10})\.img$")


class ImagePolicyError(EngineError):
    """A received checkpoint would restore a process the destination's bundle does not allow, or is
    unreadable. The agent must not restore it."""


@dataclass(frozen=True, slots=True)
class MountRule:
    """What one mountpoint of the bundle may look like in the image's mount table.

    ``kind``: ``root`` (the bundle's rootfs), ``bind`` (an external path runc maps by destination),
    ``fs`` (a fresh filesystem of ``fstype``), ``masked`` (a maskedPath: /dev/null or a read-only tmpfs),
    ``proc-ro`` (a readonlyPath: a read-only bind of the proc mount's subtree).
    """

    destination: str
    kind: str
    flags: int = 0  # MS_* bits the restored mount must carry
    fstype: int = 0


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """The most a restored process may have: read from the destination's own ``config.json``."""

    uid: int
    gid: int
    groups: frozenset[int]
    caps: tuple[tuple[str, int], ...]  # (OCI set name, bit mask) for the five sets
    no_new_privs: bool
    min_seccomp_mode: int
    fresh_namespaces: frozenset[str]  # created by the restore: exactly these may differ from CRIU's
    mounts: tuple[MountRule, ...]
    rlimits: tuple[tuple[int, int], ...]  # (resource, hard limit)
    secbits: int = 0  # securebits the process may carry (runc sets none)


# ------------------------------------------------------------------------------------------- policy
def _cap_mask(names: Any, where: str) -> int:
    if names is None:
        return 0
    if not isinstance(names, list):
        raise ImagePolicyError(f"{where}: expected a list of capability names")
    mask = 0
    for n in names:
        if n not in _CAP_BIT:
            raise ImagePolicyError(f"{where}: unknown capability {n!r}")
        mask |= 1 << _CAP_BIT[n]
    return mask


def _flags(options: Any) -> int:
    return sum(bit for opt, bit in _MS_OPTION.items() if isinstance(options, list) and opt in options)


def _mount_rules(cfg: dict[str, Any], where: str) -> tuple[MountRule, ...]:
    root = cfg.get("root") or {}
    rules = [MountRule("/", "root", MS_RDONLY if root.get("readonly") else 0)]
    for m in cfg.get("mounts") or []:
        dest, typ, opts = m.get("destination"), m.get("type"), m.get("options") or []
        if not isinstance(dest, str):
            raise ImagePolicyError(f"{where}: mount without a destination")
        if typ == "bind" or "bind" in opts or "rbind" in opts:
            rules.append(MountRule(dest, "bind", _flags(opts)))
        elif typ in _FSTYPE:
            rules.append(MountRule(dest, "fs", _flags(opts), _FSTYPE[typ]))
        else:  # fail closed: a bundle of ours with a mount type this checker cannot judge
            raise ImagePolicyError(f"{where}: mount {dest} of type {typ!r} is not supported by the checker")
    linux = cfg.get("linux") or {}
    rules += [MountRule(p, "masked", MS_RDONLY) for p in linux.get("maskedPaths") or []]
    rules += [MountRule(p, "proc-ro", MS_RDONLY, FSTYPE_PROC) for p in linux.get("readonlyPaths") or []
              if isinstance(p, str) and p.startswith("/proc/")]
    seen: set[str] = set()
    for r in rules:
        if r.destination in seen:
            raise ImagePolicyError(f"{where}: mountpoint {r.destination} twice")
        seen.add(r.destination)
    return tuple(rules)


def policy_from_config(cfg: Any, where: str = "config.json") -> ImagePolicy:
    """The policy for an OCI runtime config (the parsed ``config.json`` this host wrote)."""
    try:
        return _policy(cfg, where)
    except (AttributeError, TypeError, KeyError) as exc:  # a config that is not the shape we write
        raise ImagePolicyError(f"{where}: unexpected structure ({exc})") from None


def _policy(cfg: Any, where: str) -> ImagePolicy:
    if not isinstance(cfg, dict):
        raise ImagePolicyError(f"{where}: expected an object")
    proc = cfg.get("process") or {}
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    extra = user.get("additionalGids") or []
    if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 32 for x in (uid, gid, *extra)):
        raise ImagePolicyError(f"{where}: process.user ids must be uint32")
    caps_cfg = proc.get("capabilities") or {}
    caps = tuple((name, _cap_mask(caps_cfg.get(name), f"{where}: process.capabilities.{name}"))
                 for name, _ in _CAP_SETS)
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        raise ImagePolicyError(f"{where}: LSM labels are not supported by the checker")
    linux = cfg.get("linux") or {}
    fresh = set()
    for ns in linux.get("namespaces") or []:
        typ = ns.get("type")
        if typ not in _NS_ALL:
            raise ImagePolicyError(f"{where}: unknown namespace type {typ!r}")
        if not ns.get("path"):
            fresh.add(typ)
    rlimits = []
    for rl in proc.get("rlimits") or []:
        if rl.get("type") not in _RLIMIT or not isinstance(rl.get("hard"), int):
            raise ImagePolicyError(f"{where}: bad rlimit {rl!r}")
        rlimits.append((_RLIMIT[rl["type"]], int(rl["hard"])))
    return ImagePolicy(
        uid=uid, gid=gid, groups=frozenset({gid, *extra}), caps=caps,
        no_new_privs=bool(proc.get("noNewPrivileges")),
        min_seccomp_mode=SECCOMP_FILTER if linux.get("seccomp") else SECCOMP_DISABLED,
        fresh_namespaces=frozenset(fresh & set(_NS_IDS)), mounts=_mount_rules(cfg, where),
        rlimits=tuple(rlimits))


def policy_from_bundle(bundle_dir: Path) -> ImagePolicy:
    """The policy for the bundle this host built for the service (``bundle_dir/config.json``)."""
    path = bundle_dir / "config.json"
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ImagePolicyError(f"{path}: cannot read the bundle's config ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ImagePolicyError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise ImagePolicyError(f"{path}: not JSON ({exc})") from None
    return policy_from_config(cfg, str(path))


# -------------------------------------------------------------------------------------------- check
def check_image(image_dir: Path, policy: ImagePolicy) -> None:
    """Raise :class:`ImagePolicyError` unless ``image_dir`` restores within ``policy``."""
    try:
        _check(image_dir, policy)
    except ImageFormatError as exc:
        raise ImagePolicyError(f"checkpoint {image_dir.name}: unreadable image: {exc}") from None
    except ImagePolicyError as exc:
        raise ImagePolicyError(f"checkpoint {image_dir.name}: {exc}") from None


def _check(image_dir: Path, policy: ImagePolicy) -> None:
    tasks = _pstree(image_dir)
    tids = {tid for _, threads in tasks for tid in threads}
    present: dict[str, set[int]] = {"core": set(), "ids": set(), "mountpoints": set(), "creds": set()}
    try:
        names = [p.name for p in image_dir.iterdir()]
    except OSError as exc:
        raise ImagePolicyError(f"cannot list the image folder ({exc.strerror})") from None
    for name in names:
        m = _IMG_NAME.fullmatch(name)
        if m:
            present[m.group(1)].add(int(m.group(2)))
    if present["creds"]:  # pre-3.x per-task creds images: CRIU reads them when thread_core.creds is absent
        raise ImagePolicyError("legacy creds-*.img images are not accepted")
    if present["core"] != tids:
        raise ImagePolicyError(f"core images {sorted(present['core'])} do not match the threads {sorted(tids)}")
    for pid, threads in tasks:
        for tid in threads:
            _check_core(image_dir / f"core-{tid}.img", policy, leader=tid == pid)
    mnt_ns = _check_namespaces(image_dir, [pid for pid, _ in tasks], policy)
    if present["mountpoints"] - {mnt_ns}:
        raise ImagePolicyError(f"mount tables of other namespaces {sorted(present['mountpoints'] - {mnt_ns})}")
    if "mount" in policy.fresh_namespaces:
        _check_mounts(image_dir / f"mountpoints-{mnt_ns}.img", policy)


def _pstree(image_dir: Path) -> list[tuple[int, list[int]]]:
    msgs = read_messages(image_dir / "pstree.img", PSTREE_MAGIC)
    if not msgs:
        raise ImagePolicyError("pstree.img holds no task")
    if len(msgs) > MAX_TASKS:
        raise ImagePolicyError(f"pstree.img holds {len(msgs)} tasks (at most {MAX_TASKS})")
    tasks, seen = [], set()
    for m in msgs:
        pid = m.uint(1, "pid")
        threads = m.uints(5, "threads")
        if not threads or threads[0] != pid:
            raise ImagePolicyError(f"pstree.img: task {pid}'s first thread is not itself")
        if seen & set(threads) or len(set(threads)) != len(threads):
            raise ImagePolicyError(f"pstree.img: thread ids of task {pid} repeat")
        seen |= set(threads)
        tasks.append((pid, threads))
    if len(seen) > MAX_TASKS:
        raise ImagePolicyError(f"pstree.img holds {len(seen)} threads (at most {MAX_TASKS})")
    return tasks


def _cap_value(creds: Message, number: int, name: str) -> int:
    words = creds.uints(number, name)
    if len(words) > 2:  # CRIU keeps two 32-bit words (CR_CAP_SIZE)
        raise ImagePolicyError(f"{creds.where}: {name} has {len(words)} words")
    return sum(w << (32 * i) for i, w in enumerate(words))


def _check_core(path: Path, policy: ImagePolicy, *, leader: bool) -> None:
    core = read_one(path, CORE_MAGIC)
    thread = core.sub(5, "thread_core")
    if thread is None:  # CRIU then restores no creds at all: the task keeps CRIU's own (full root)
        raise ImagePolicyError(f"{path.name}: no thread_core")
    creds = thread.sub(10, "creds")
    if creds is None:
        raise ImagePolicyError(f"{path.name}: no thread_core.creds")
    tc = core.sub(3, "tc")
    if leader and tc is None:
        raise ImagePolicyError(f"{path.name}: thread leader without task core")
    if tc is not None:
        # the deprecated per-task seccomp fields override the per-thread ones (criu/cr-restore.c)
        if tc.has(11) or tc.has(12):
            raise ImagePolicyError(f"{path.name}: deprecated task-wide seccomp fields")
        _check_rlimits(path, tc, policy)
    where = f"{path.name}: creds"
    for name, number in (("uid", 1), ("euid", 3), ("suid", 5), ("fsuid", 7)):
        if (v := creds.uint(number, name)) != policy.uid:
            raise ImagePolicyError(f"{where}.{name} is {v}, the bundle runs the service as uid {policy.uid}")
    for name, number in (("gid", 2), ("egid", 4), ("sgid", 6), ("fsgid", 8)):
        if (v := creds.uint(number, name)) != policy.gid:
            raise ImagePolicyError(f"{where}.{name} is {v}, the bundle runs the service as gid {policy.gid}")
    extra = set(creds.uints(14, "groups")) - policy.groups
    if extra:
        raise ImagePolicyError(f"{where}.groups {sorted(extra)} are not granted by the bundle")
    for (name, allowed), (_, number) in zip(policy.caps, _CAP_SETS, strict=True):
        have = _cap_value(creds, number, name)
        if have & ~allowed:
            raise ImagePolicyError(f"{where}: {name} capabilities {_cap_names(have & ~allowed)} exceed the bundle's")
    secbits = creds.uint(13, "secbits")
    if secbits & ~policy.secbits:
        raise ImagePolicyError(f"{where}.secbits {secbits:#x} not allowed (bundle: {policy.secbits:#x})")
    if policy.no_new_privs and creds.uint(18, "no_new_privs", default=0) != 1:
        raise ImagePolicyError(f"{where}.no_new_privs is not set, the bundle sets noNewPrivileges")
    for number, name in ((15, "lsm_profile"), (16, "lsm_sockcreate"), (17, "apparmor_data")):
        if creds.has(number):
            raise ImagePolicyError(f"{where}.{name} present, the bundle sets no LSM label")
    mode = thread.uint(11, "seccomp_mode", default=SECCOMP_DISABLED)
    if mode not in _SECCOMP_RANK:
        raise ImagePolicyError(f"{path.name}: unknown seccomp mode {mode}")
    # Only a task's first thread is held to the bundle's mode: CRIU 4.2.1 records its other threads as
    # disabled even when they run filtered, and on restore they inherit the first thread's filter
    # (measured both ways, see the doc), so their recorded mode neither matters nor can be relied on.
    if leader and _SECCOMP_RANK[mode] < _SECCOMP_RANK[policy.min_seccomp_mode]:
        raise ImagePolicyError(f"{path.name}: seccomp mode {mode} is weaker than the bundle's "
                               f"{policy.min_seccomp_mode}")


def _check_rlimits(path: Path, tc: Message, policy: ImagePolicy) -> None:
    entry = tc.sub(8, "rlimits")
    if entry is None:
        return
    limits = entry.subs(1, "rlimits")
    for resource, hard in policy.rlimits:
        if resource >= len(limits):
            continue
        cur = limits[resource].uint(1, "cur", bits=64)
        top = limits[resource].uint(2, "max", bits=64)
        if top > hard or cur > top:
            raise ImagePolicyError(f"{path.name}: {RLIMITS[resource]} limit {cur}/{top} exceeds the bundle's {hard}")


def _check_namespaces(image_dir: Path, pids: list[int], policy: ImagePolicy) -> int:
    """Every task in the same namespaces, the root task's differing from CRIU's exactly in the bundle's
    fresh ones; returns the mount namespace id (its ``mountpoints-<id>.img`` is the mount table)."""
    inv = read_one(image_dir / "inventory.img", INVENTORY_MAGIC)
    root_ids = inv.sub(3, "root_ids")
    if root_ids is None:
        raise ImagePolicyError("inventory.img: no root_ids")
    first: dict[str, int] | None = None
    for pid in pids:
        ids = read_one(image_dir / f"ids-{pid}.img", IDS_MAGIC)
        mine = {ns: ids.uint(n, f"{ns}_ns_id", default=0) for ns, n in _NS_IDS.items()}
        if first is None:
            first = mine
        elif mine != first:
            raise ImagePolicyError(f"ids-{pid}.img: task {pid} is in other namespaces than the root task")
    if first is None:  # _pstree already refuses an empty tree; kept so that -O cannot change this
        raise ImagePolicyError("pstree.img holds no task")
    criu = {ns: root_ids.uint(n, f"root_ids.{ns}_ns_id", default=0) for ns, n in _NS_IDS.items()}
    fresh = {ns for ns in _NS_IDS if first[ns] != criu[ns]}
    if not policy.fresh_namespaces <= fresh <= policy.fresh_namespaces | OPTIONAL_FRESH_NAMESPACES:
        raise ImagePolicyError(f"the restore would create namespaces {sorted(fresh)}, the bundle "
                               f"creates {sorted(policy.fresh_namespaces)}")
    return first["mount"]


def _check_mounts(path: Path, policy: ImagePolicy) -> None:
    rules = {r.destination: r for r in policy.mounts}
    seen: set[str] = set()
    for m in read_messages(path, MNTS_MAGIC):
        point = m.text(7, "mountpoint")
        rule = rules.get(point or "")
        if rule is None or point is None:
            raise ImagePolicyError(f"{path.name}: mount at {point!r} is not in the bundle")
        if point in seen:
            raise ImagePolicyError(f"{path.name}: two mounts at {point}")
        seen.add(point)
        flags = m.uint(5, "flags")
        fstype = m.uint(1, "fstype")
        ext = m.text(18, "ext_key") if m.has(18) else None
        root = m.text(6, "root")
        ok = True
        if rule.kind == "root":
            ok = ext is None
        elif rule.kind == "bind":
            ok = ext == rule.destination
        elif rule.kind == "fs":
            ok = ext is None and fstype == rule.fstype and root == "/"
        elif rule.kind == "masked":
            ok = ext == _MASK_FILE_KEY or (ext is None and fstype == FSTYPE_TMPFS and root == "/")
            if ext == _MASK_FILE_KEY:
                flags |= MS_RDONLY  # /dev/null itself: writing to it discards the data
        elif rule.kind == "proc-ro":
            ok = ext is None and fstype == FSTYPE_PROC and root == rule.destination[len("/proc"):]
        if not ok:
            raise ImagePolicyError(f"{path.name}: mount at {point} is not the bundle's {rule.kind} mount "
                                   f"(fstype {fstype}, root {root!r}, external {ext!r})")
        if flags & rule.flags != rule.flags:
            raise ImagePolicyError(f"{path.name}: mount at {point} lacks flags {rule.flags & ~flags:#x} "
                                   f"(ro=1 nosuid=2 nodev=4 noexec=8) the bundle sets")


def _cap_names(mask: int) -> str:
    names = [CAPABILITIES[i] if i < len(CAPABILITIES) else str(i) for i in range(64) if mask >> i & 1]
    return ",".join(names[:6]) + (f",+{len(names) - 6} more" if len(names) > 6 else "")
