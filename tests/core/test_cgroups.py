"""A host's cgroup subtree goes when the host goes; a busy cgroup is left alone; a bad name never reaches a path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgemigrate.core.cgroups import CGROUP_ROOT, remove_host_cgroups, service_cgroup_path


def test_service_path_is_per_host() -> None:
    assert service_cgroup_path("em-edge1", "kv") == "/edgemigrate/em-edge1/kv"


def test_removes_only_that_hosts_subtree_deepest_first(tmp_path: Path) -> None:
    for ctrl in ("memory", "cpu"):
        (tmp_path / ctrl / "edgemigrate" / "em-edge1" / "kv").mkdir(parents=True)
        (tmp_path / ctrl / "edgemigrate" / "em-edge2" / "kv").mkdir(parents=True)
    busy = tmp_path / "pids" / "edgemigrate" / "em-edge1" / "busy"
    busy.mkdir(parents=True)
    (busy / "task").write_text("1")  # a directory rmdir refuses stands for a cgroup that holds a task
    removed = remove_host_cgroups("em-edge1", root=tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == [
        "cpu/edgemigrate/em-edge1", "cpu/edgemigrate/em-edge1/kv",
        "memory/edgemigrate/em-edge1", "memory/edgemigrate/em-edge1/kv"]
    assert busy.is_dir() and (tmp_path / "memory" / "edgemigrate" / "em-edge2" / "kv").is_dir()


@pytest.mark.parametrize("bad", ["", "..", ".", "../memory", "a/b", "*", "em-edge1/../../x", "-x", "a" * 65])
def test_a_name_that_is_not_a_plain_name_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a namespace name"):
        remove_host_cgroups(bad, root=tmp_path)


REAL = CGROUP_ROOT / "memory"


@pytest.mark.skipif(os.geteuid() != 0 or not REAL.is_dir(), reason="needs root and the cgroup v1 memory hierarchy")
def test_real_cgroup_busy_then_removed() -> None:
    name = f"cgtest-{os.getpid()}"
    leaf = REAL / "edgemigrate" / name / "svc"
    leaf.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "600"])
    try:
        (leaf / "cgroup.procs").write_text(str(proc.pid))
        assert remove_host_cgroups(name) == []  # the task keeps it
        assert leaf.is_dir()
    finally:
        proc.kill()
        proc.wait()
    for _ in range(200):  # the kernel lets go of a dead task's cgroup asynchronously
        if remove_host_cgroups(name):
            break
        subprocess.run(["sleep", "0.05"], check=True)
    else:
        pytest.fail(f"{leaf} still busy after its only task died")
    assert not (REAL / "edgemigrate" / name).exists()
