"""A real Kubernetes API server for the Kubernetes backend's tests (root; binaries from scripts/install-kubernetes).

One control plane per test module (etcd + kube-apiserver on free loopback ports in a temporary folder, with a
generated PKI), four registered nodes and the fake kubelet of :mod:`edgemigrate.cluster.kube`. The same class
serves ``edgemigrate experiment mobilekube apply --backend kubernetes``, which is why it lives in ``src/``.
Skipped with the reason when not root or the binaries are missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgemigrate.cluster.kube import LocalKube, kube_skip_reason

NODES = ("node-0", "node-1", "node-2", "node-3")


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKube]:
    reason = kube_skip_reason()
    if reason:
        pytest.skip(reason)
    k = LocalKube.up(tmp_path_factory.mktemp("kube"), NODES)
    try:
        yield k
    finally:
        k.down()
