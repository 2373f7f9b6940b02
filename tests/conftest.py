"""Fixtures every test folder shares: ``realbed``, a real testbed + host agents for the tests that migrate real
containers (root, CRIU >= 4.2, runc; skipped otherwise).

One cluster per test module, with a testbed name and subnet of this process, so that parallel runs and other
engineers' testbeds never collide (:class:`edgemigrate.cluster.LocalCluster`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edgemigrate.cluster import LocalCluster, real_engine_skip_reason


@pytest.fixture(scope="module")
def realbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    reason = real_engine_skip_reason()
    if reason:
        pytest.skip(reason)
    pid = os.getpid()
    cluster = LocalCluster.up(f"mt{pid % 100000}", None, tmp_path_factory.mktemp("realbed"))
    try:
        yield cluster
    finally:
        cluster.down()
