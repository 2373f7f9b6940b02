"""The checkpoint image checker: a real CRIU checkpoint tampered as a compromised source could, and
crafted/garbage image bytes (only :class:`ImagePolicyError` may come out).

The real tests need root + CRIU >= 4.2 + runc (CI is root and runs them); the crafted ones run anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.engine.checkpoint import tamper

from edgemigrate.cluster import real_engine_skip_reason
from edgemigrate.control.spec import SERVICE_GID, SERVICE_UID, ServiceKind, ServiceSpec, build_bundle
from edgemigrate.core.errors import EdgeMigrateError
from edgemigrate.engine.checkpoint.criuimg import (
    CORE_MAGIC,
    IDS_MAGIC,
    INVENTORY_MAGIC,
    MNTS_MAGIC,
    PSTREE_MAGIC,
    WIRE_LEN,
    WIRE_VARINT,
    ImageFormatError,
    Message,
    encode_message,
    read_image,
    write_image,
)
from edgemigrate.engine.checkpoint.imagecheck import (
    ImagePolicy,
    ImagePolicyError,
    check_image,
    policy_from_bundle,
    policy_from_config,
)

V = WIRE_VARINT
L = WIRE_LEN
NETNS = "/run/netns/emtest"


def _bundle(tmp: Path, port: int = 7000) -> Path:
    return build_bundle(ServiceSpec("counter", ServiceKind.COUNTER, "127.0.0.1", port), NETNS, tmp / "bundle")


# ------------------------------------------------------------------------------ a crafted checkpoint
def _creds(uid: int, caps: int) -> bytes:
    f: list[tuple[int, int, int | bytes]] = [(n, V, uid) for n in range(1, 9)]
    for number in (9, 10, 11, 12):
        f += [(number, V, caps & 0xFFFFFFFF), (number, V, caps >> 32)]
    f += [(13, V, 0), (18, V, 1), (19, V, 0), (19, V, 0)]
    return encode_message(f)


def _ids(ns: dict[int, int]) -> bytes:
    return encode_message([(1, V, 2), (2, V, 2), (3, V, 2), (4, V, 2)] + [(n, V, v) for n, v in sorted(ns.items())])


CRIU_NS = {5: 1, 6: 2, 7: 3, 8: 4, 9: 6, 10: 7, 11: 8, 12: 5}
TASK_NS = CRIU_NS | {5: 9, 7: 10, 8: 11, 9: 12}  # new pid, ipc, uts and mount namespaces


def craft(image_dir: Path, policy: ImagePolicy) -> Path:
    """The images the checker reads, as CRIU 4.2.1 writes them for one two-thread task."""
    image_dir.mkdir(parents=True)
    caps = dict(policy.caps)["permitted"]
    write_image(image_dir / "inventory.img", INVENTORY_MAGIC,
                [encode_message([(1, V, 2), (3, L, _ids(CRIU_NS)), (4, V, 1), (6, V, 0)])])
    write_image(image_dir / "pstree.img", PSTREE_MAGIC,
                [encode_message([(1, V, 1), (2, V, 0), (3, V, 1), (4, V, 1), (5, V, 1), (5, V, 6)])])
    rlimits = encode_message([(1, L, encode_message([(1, V, 1024), (2, V, 1024)]))] * 16)
    tc = encode_message([(1, V, 1), (2, V, 0), (3, V, 0), (4, V, 0), (5, V, 0), (6, L, b"python"),
                         (8, L, rlimits)])
    for tid in (1, 6):
        thread = encode_message([(1, V, 0), (2, V, 24), (10, L, _creds(policy.uid, caps)), (13, L, b"python")])
        core = [(1, V, 1)] + ([(3, L, tc)] if tid == 1 else []) + [(5, L, thread)]
        write_image(image_dir / f"core-{tid}.img", CORE_MAGIC, [encode_message(core)])
    write_image(image_dir / "ids-1.img", IDS_MAGIC, [_ids(TASK_NS)])
    mounts = []
    for i, rule in enumerate(policy.mounts):
        m: list[tuple[int, int, int | bytes]] = [(1, V, rule.fstype), (2, V, 50 + i), (3, V, 40), (4, V, 50),
                                                 (5, V, rule.flags | 0x200000)]
        root = rule.destination[len("/proc"):] if rule.kind == "proc-ro" else "/"
        m += [(6, L, root.encode()), (7, L, rule.destination.encode()), (8, L, b"none"), (9, L, b"")]
        if rule.kind == "bind":
            m.append((18, L, rule.destination.encode()))
        elif rule.kind == "masked":
            m = [f for f in m if f[0] != 1] + [(1, V, 5)]
        mounts.append(encode_message(m))
    write_image(image_dir / "mountpoints-12.img", MNTS_MAGIC, mounts)
    return image_dir


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, ImagePolicy]:
    policy = policy_from_bundle(_bundle(tmp_path))
    return craft(tmp_path / "img", policy), policy


def test_crafted_image_within_the_bundle_is_accepted(crafted: tuple[Path, ImagePolicy]) -> None:
    check_image(*crafted)


def test_policy_comes_from_the_bundle_as_written(tmp_path: Path) -> None:
    policy = policy_from_bundle(_bundle(tmp_path))
    assert (policy.uid, policy.gid) == (SERVICE_UID, SERVICE_GID) and policy.no_new_privs
    assert dict(policy.caps) == dict.fromkeys(("inheritable", "permitted", "effective", "bounding", "ambient"), 0)
    assert policy.fresh_namespaces == {"pid", "ipc", "uts", "mount"}  # the network namespace is joined
    low = policy_from_bundle(build_bundle(ServiceSpec("web", ServiceKind.WEB, "127.0.0.1", 80), NETNS,
                                          tmp_path / "low"))
    assert dict(low.caps)["ambient"] == 1 << 10  # CAP_NET_BIND_SERVICE only, only for a port below 1024


EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    "caps": (lambda d: tamper.raise_caps(d), "capabilities"),
    "bounding only": (lambda d: tamper.raise_caps(d, 1 << 21, ("bnd",)), "bounding capabilities SYS_ADMIN"),
    "no_new_privs": (tamper.clear_no_new_privs, "no_new_privs"),
    "uid": (lambda d: tamper.set_ids(d, 1234, 1234), "uid is 1234"),
    "groups": (lambda d: tamper.set_ids(d, SERVICE_UID, SERVICE_GID, [SERVICE_GID, 27]), r"groups \[27\]"),
    "secbits": (lambda d: tamper.set_secbits(d, 0x14), "secbits"),
    "no creds": (tamper.drop_creds, "no thread_core.creds"),
    "host mount ns": (tamper.share_host_mount_ns, "namespaces"),
    "rw /usr": (lambda d: tamper.make_mount_writable(d, "/usr"), "lacks flags 0x1"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_crafted_image_tampered_is_refused(crafted: tuple[Path, ImagePolicy], edit: str) -> None:
    image_dir, policy = crafted
    fn, why = EDITS[edit]
    fn(image_dir)
    with pytest.raises(ImagePolicyError, match=why):
        check_image(image_dir, policy)


def _edit_mounts(image_dir: Path, fn: Callable[[list[Message]], list[bytes]]) -> None:
    path = image_dir / "mountpoints-12.img"
    msgs = [Message.parse(e, "m") for e in read_image(path, MNTS_MAGIC)]
    write_image(path, MNTS_MAGIC, fn(msgs))


def test_crafted_mount_tables_outside_the_bundle_are_refused(crafted: tuple[Path, ImagePolicy]) -> None:
    image_dir, policy = crafted
    pristine = image_dir.parent / "pristine"
    shutil.copytree(image_dir, pristine)
    extra = encode_message([(1, V, 16), (2, V, 99), (3, V, 1), (4, V, 50), (5, V, 0), (6, L, b"/"),
                            (7, L, b"/host"), (8, L, b"/dev/vda"), (9, L, b"")])
    cases: dict[str, Callable[[list[Message]], list[bytes]]] = {
        "not in the bundle": lambda ms: [encode_message(m.fields) for m in ms] + [extra],
        "two mounts at": lambda ms: [encode_message(m.fields) for m in ms] + [encode_message(ms[-1].fields)],
        # the host's /etc mapped onto the bundle's /usr
        "bind mount": lambda ms: [encode_message(tamper.put(list(m.fields), 18, [(L, b"/etc")]))
                                  if m.text(7, "p") == "/usr" else encode_message(m.fields) for m in ms],
        # a proc mount rooted elsewhere in proc
        "proc-ro mount": lambda ms: [encode_message(tamper.put(list(m.fields), 6, [(L, b"/1/root")]))
                                     if m.text(7, "p") == "/proc/sys" else encode_message(m.fields) for m in ms],
    }
    for why, fn in cases.items():
        case = image_dir.parent / "case"
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(pristine, case)
        _edit_mounts(case, fn)
        with pytest.raises(ImagePolicyError, match=why):
            check_image(case, policy)


def test_crafted_structure_errors_are_refused(crafted: tuple[Path, ImagePolicy]) -> None:
    image_dir, policy = crafted
    (image_dir / "creds-1.img").write_bytes(b"")
    with pytest.raises(ImagePolicyError, match="legacy creds"):
        check_image(image_dir, policy)
    (image_dir / "creds-1.img").unlink()
    shutil.copy(image_dir / "core-6.img", image_dir / "core-7.img")  # a thread pstree does not list
    with pytest.raises(ImagePolicyError, match="do not match the threads"):
        check_image(image_dir, policy)
    (image_dir / "core-7.img").unlink()
    (image_dir / "mountpoints-13.img").write_bytes((image_dir / "mountpoints-12.img").read_bytes())
    with pytest.raises(ImagePolicyError, match="other namespaces"):
        check_image(image_dir, policy)
    (image_dir / "mountpoints-13.img").unlink()
    tamper.set_seccomp_mode(image_dir, 7)
    with pytest.raises(ImagePolicyError, match="unknown seccomp mode"):
        check_image(image_dir, policy)


def test_seccomp_weaker_than_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["linux"]["seccomp"] = tamper.SECCOMP_PROFILE
    policy = policy_from_config(cfg)
    image_dir = craft(tmp_path / "img", policy)
    with pytest.raises(ImagePolicyError, match="seccomp mode 0 is weaker"):
        check_image(image_dir, policy)
    tamper.set_seccomp_mode(image_dir, 2)
    check_image(image_dir, policy)


def test_duplicate_singular_field_is_refused(crafted: tuple[Path, ImagePolicy]) -> None:
    """protobuf-c keeps the last uid and merges repeated sub-messages: the checker must not pick one."""
    image_dir, policy = crafted
    tamper.edit_creds(image_dir, lambda c: c + [(1, V, 0)])
    with pytest.raises(ImagePolicyError, match="occurs 2 times"):
        check_image(image_dir, policy)


def test_policy_of_a_config_it_cannot_judge_is_an_error() -> None:
    for cfg in (None, [], {"process": {"user": {"uid": -1}}}, {"process": {"capabilities": {"bounding": ["X"]}}},
                {"mounts": [{"destination": "/x", "type": "overlay"}]}, {"linux": {"namespaces": ["pid"]}},
                {"process": {"apparmorProfile": "p"}}):
        with pytest.raises(ImagePolicyError):
            policy_from_config(cfg)


_NAMES = ("inventory.img", "pstree.img", "core-1.img", "core-6.img", "ids-1.img", "mountpoints-12.img")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(_NAMES), cut=st.integers(0, 4096), junk=st.binary(max_size=64),
       flip=st.integers(0, 1 << 16))
def test_mangled_images_raise_only_the_policy_error(crafted: tuple[Path, ImagePolicy], name: str, cut: int,
                                                    junk: bytes, flip: int) -> None:
    image_dir, policy = crafted
    work = image_dir.parent / "fuzz"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(image_dir, work)
    data = bytearray((work / name).read_bytes())
    if data:
        data[flip % len(data)] ^= 1 + flip % 255
    (work / name).write_bytes(bytes(data[:cut]) + junk)
    try:
        check_image(work, policy)
    except ImagePolicyError:
        pass


@pytest.mark.parametrize("data", [b"", b"\x19\x43\x56\x54", b"\x19\x43\x56\x54\x47\x38\x05\x55\xff\xff\xff\xff",
                                  b"\x19\x43\x56\x54\x47\x38\x05\x55\x02\x00\x00\x00\x0b\x00",
                                  b"\x19\x43\x56\x54\x47\x38\x05\x55\x0b\x00\x00\x00" + b"\xff" * 11])
def test_garbage_core_images(crafted: tuple[Path, ImagePolicy], data: bytes) -> None:
    image_dir, policy = crafted
    (image_dir / "core-1.img").write_bytes(data)
    with pytest.raises(ImagePolicyError) as info:
        check_image(image_dir, policy)
    assert isinstance(info.value, EdgeMigrateError) and not isinstance(info.value, ImageFormatError)


def test_oversized_and_missing_images(crafted: tuple[Path, ImagePolicy]) -> None:
    image_dir, policy = crafted
    with (image_dir / "core-1.img").open("r+b") as fh:
        fh.truncate(5 << 20)
    with pytest.raises(ImagePolicyError, match="larger than"):
        check_image(image_dir, policy)
    (image_dir / "core-1.img").unlink()
    with pytest.raises(ImagePolicyError, match="do not match"):
        check_image(image_dir, policy)
    with pytest.raises(ImagePolicyError, match="pstree.img: cannot read"):
        check_image(image_dir.parent / "nosuch", policy)


# --------------------------------------------------------------------------- a real CRIU checkpoint
@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, object]]:
    """A counter service checkpointed once by the project's runtime: (image, bundle, runtime)."""
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    from edgemigrate.engine.checkpoint.runc import RuncCriuRuntime

    tmp = tmp_path_factory.mktemp("imagecheck")
    name = f"emic{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    netns = f"/run/netns/{name}"
    images = Path("/dev/shm") / f"emic-{os.getpid()}"
    rt = RuncCriuRuntime(tmp / "runc", netns, images / "work", tmp / "logs")
    bundle = build_bundle(ServiceSpec("counter", ServiceKind.COUNTER, "127.0.0.1", 7000), netns, tmp / "bundle")
    try:
        rt.run("counter", bundle)
        tamper._wait_listening(netns, "127.0.0.1", 7000)
        rt.checkpoint("counter", images / "s" / "img", leave_running=False)
        yield images / "s" / "img", bundle, rt
    finally:
        for cid in rt.list():
            rt.kill(cid)
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(images, ignore_errors=True)


@pytest.mark.criu
@pytest.mark.netns
def test_real_checkpoint_is_accepted_and_restores_without_capabilities(real_checkpoint: tuple[Path, Path, object],
                                                               tmp_path: Path) -> None:
    image, bundle, rt = real_checkpoint
    check_image(image, policy_from_bundle(bundle))
    img = image.parent / "restore"
    shutil.rmtree(img, ignore_errors=True)
    shutil.copytree(image, img)
    restored = rt.restore("counter", bundle, img)  # type: ignore[attr-defined]
    try:
        time.sleep(0.2)
        status = tamper.proc_view(restored.pid)
        assert status["Uid"] == " ".join([str(SERVICE_UID)] * 4) and status["Gid"] == " ".join([str(SERVICE_GID)] * 4)
        assert status["CapEff"] == status["CapBnd"] == "0000000000000000" and status["NoNewPrivs"] == "1"
        assert status["/usr"] == "ro" and status["mntns"] == "own"
    finally:
        rt.kill("counter")  # type: ignore[attr-defined]


REAL_EDITS = {k: EDITS[k] for k in ("caps", "no_new_privs", "uid", "groups", "secbits", "no creds", "host mount ns",
                                    "rw /usr")}


@pytest.mark.criu
@pytest.mark.netns
@pytest.mark.parametrize("edit", list(REAL_EDITS))
def test_real_checkpoint_tampered_is_refused(real_checkpoint: tuple[Path, Path, object], edit: str) -> None:
    image, bundle, _ = real_checkpoint
    img = image.parent / f"t-{edit.replace(' ', '_').replace('/', '')}"
    shutil.rmtree(img, ignore_errors=True)
    shutil.copytree(image, img)
    fn, why = REAL_EDITS[edit]
    fn(img)
    with pytest.raises(ImagePolicyError, match=why):
        check_image(img, policy_from_bundle(bundle))


@pytest.mark.criu
@pytest.mark.netns
def test_real_checkpoint_under_a_bundle_with_fewer_rights_is_refused(
        real_checkpoint: tuple[Path, Path, object], tmp_path: Path) -> None:
    """The same untampered image is refused by a destination whose bundle differs (another uid)."""
    image, bundle, _ = real_checkpoint
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    with pytest.raises(ImagePolicyError, match="uid 1000"):
        check_image(image, policy_from_config(cfg))


def test_symlinks_and_fifos_are_not_followed(crafted: tuple[Path, ImagePolicy]) -> None:
    image_dir, policy = crafted
    core = image_dir / "core-1.img"
    shutil.move(core, image_dir.parent / "elsewhere.img")
    core.symlink_to(image_dir.parent / "elsewhere.img")
    with pytest.raises(ImagePolicyError, match="core-1.img: cannot read"):
        check_image(image_dir, policy)
    core.unlink()
    os.mkfifo(core)
    with pytest.raises(ImagePolicyError, match="not a regular file"):
        check_image(image_dir, policy)
