"""Ray fixtures of the RLlib tests: each ends exactly the processes it started (``procs.py``) and leaves the
test process's environment as it found it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.policies.rllib.procs import end, tree


def restore_ray_env(saved: dict[str, str]) -> None:
    """Put back the RAY_* variables as they were: ``ray.init`` sets some (RAY_AUTH_MODE=token among them) in
    ``os.environ`` for itself and its children, and a later test in this process (or a cluster it starts with
    this environment) would inherit them."""
    for key in [k for k in os.environ if k.startswith("RAY_") and k not in saved]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """An in-process Ray (2 CPUs) in a temp folder of its own; afterwards ``ray.shutdown()``, then every
    process it started that is still there is killed by PID, and the RAY_* environment restored."""
    ray = pytest.importorskip("ray")
    saved = {k: v for k, v in os.environ.items() if k.startswith("RAY_")}
    # Ray's socket paths live under the temp folder and must stay under 107 bytes: pytest's tmp_path is too long
    short = Path(tempfile.mkdtemp(prefix="emray", dir="/tmp"))
    before = set(tree([os.getpid()]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=str(short))
    try:
        yield
    finally:
        started = {p: s for p, s in tree([os.getpid()], [str(short)]).items() if p not in before}
        try:
            ray.shutdown()
            end(started, "in-process Ray")
        finally:
            restore_ray_env(saved)
            shutil.rmtree(short, ignore_errors=True)
