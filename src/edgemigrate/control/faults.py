"""Fault injection of the agents' fault tests (``edgemigrate agent --inject-fault``): a real runtime whose
freezer fails as runc's does on a starved service.

Under heavy CPU load the v1 cgroup freezer may not reach ``FROZEN`` before runc gives up; ``runc pause`` then
thaws the container again and exits with ``unable to freeze`` (libcontainer/cgroups/fs/freezer.go). That
cannot be provoked on demand, so :class:`FreezeFailingRuntime` fails the first ``failures`` freezing calls
(``pause`` and a leave-running ``checkpoint`` of a running container) with that text, leaving the container
as runc would (running, thawed), and passes everything else to the real runtime.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edgemigrate.core.errors import EngineError
from edgemigrate.engine.checkpoint.runtime import CheckpointStats, ContainerState, RestoreStats, Runtime

RUNC_FREEZE_ERROR = "unable to freeze"  # runc 1.1's own words (libcontainer/cgroups/fs/freezer.go)
FAULTS = {"unable-to-freeze": 2, "never-freezes": 1 << 30}  # fault name -> freezing calls that fail


class FreezeFailingRuntime:
    """A :class:`Runtime` whose first ``failures`` freezes fail with runc's error; the rest is ``inner``'s."""

    def __init__(self, inner: Runtime, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.failed = 0
        self._lock = threading.Lock()

    def _fail_freeze(self, container_id: str, what: str) -> None:
        with self._lock:
            if self.failed >= self.failures:
                return
            self.failed += 1
        raise EngineError(f"{what} of {container_id} failed: {RUNC_FREEZE_ERROR}")

    def pause(self, container_id: str) -> None:
        self._fail_freeze(container_id, "pause")
        self.inner.pause(container_id)

    def checkpoint(self, container_id: str, image_dir: Path, *, leave_running: bool) -> CheckpointStats:
        if leave_running and self.inner.state(container_id) is ContainerState.RUNNING:
            self._fail_freeze(container_id, "checkpoint")
        return self.inner.checkpoint(container_id, image_dir, leave_running=leave_running)

    def run(self, container_id: str, bundle: Path) -> int:
        return self.inner.run(container_id, bundle)

    def resume(self, container_id: str) -> None:
        self.inner.resume(container_id)

    def restore(self, container_id: str, bundle: Path, image_dir: Path, *, lazy_pages: bool = False) -> RestoreStats:
        return self.inner.restore(container_id, bundle, image_dir, lazy_pages=lazy_pages)

    def prepare_restore(self, container_id: str, image_dir: Path) -> None:
        self.inner.prepare_restore(container_id, image_dir)

    def wait_pages(self, container_id: str) -> float:
        return self.inner.wait_pages(container_id)

    def kill(self, container_id: str) -> None:
        self.inner.kill(container_id)

    def state(self, container_id: str) -> ContainerState:
        return self.inner.state(container_id)

    def pid(self, container_id: str) -> int | None:
        return self.inner.pid(container_id)

    def list(self) -> list[str]:
        return self.inner.list()
