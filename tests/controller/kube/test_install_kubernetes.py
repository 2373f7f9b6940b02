"""scripts/install-kubernetes: once the binaries are cached, a second run only checks them (root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from edgemigrate.cluster.kube import KUBE_CACHE, kube_skip_reason

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "install-kubernetes"


def test_a_second_run_uses_the_cache_and_prints_one_line() -> None:
    reason = kube_skip_reason() or (None if list(KUBE_CACHE.glob("*/kube-apiserver")) else "no cached build")
    if reason:
        pytest.skip(reason)
    r = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert "Kubernetes v1.20" in line and "cached in" in line and "etcd" in line
    assert "building" not in r.stderr
