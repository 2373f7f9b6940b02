"""The container-runtime interface the migration engine drives (one driver per runtime, as in p.haul)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ContainerState(enum.Enum):
    ABSENT = "absent"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class CheckpointStats:
    """One dump. ``frozen_s``: how long the service was frozen - CRIU's own frozen time (from its stats image,
    the wall time if absent), or the whole freeze when the runtime froze the container itself; ``freezing_s``:
    the time the cgroup freezer took before that (clients feel both). From CRIU's ``stats-dump`` (-1 / 0.0
    when the runtime has none): ``pages_written`` and ``pages_skipped_parent`` (pages a parent image already
    held: only with dirty-page tracking), ``memdump_s`` (collecting the pages) and ``memwrite_s`` (writing
    them)."""

    image_dir: Path
    image_bytes: int
    duration_s: float
    frozen_s: float
    leave_running: bool
    freezing_s: float = 0.0
    pages_written: int = -1
    pages_skipped_parent: int = -1
    memdump_s: float = 0.0
    memwrite_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RestoreStats:
    """One restore. ``lazy_pages``: the container runs but its private memory is still being copied in
    (userfaultfd); :meth:`Runtime.wait_pages` returns when every page is in."""

    pid: int
    duration_s: float
    lazy_pages: bool = False


class Runtime(Protocol):
    """Checkpoint/restore of one host's containers (network namespace fixed per instance)."""

    def run(self, container_id: str, bundle: Path) -> int:
        """Start a container from an OCI bundle, detached; returns its host PID."""
        ...

    def checkpoint(self, container_id: str, image_dir: Path, *, leave_running: bool) -> CheckpointStats:
        """Dump the container into ``image_dir``; without ``leave_running`` the container is gone afterwards,
        with it a paused container stays paused."""
        ...

    def pause(self, container_id: str) -> None:
        """Freeze all the container's processes (it keeps its memory, sockets and address)."""
        ...

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        ...

    def restore(self, container_id: str, bundle: Path, image_dir: Path, *, lazy_pages: bool = False) -> RestoreStats:
        """Restore a container from ``image_dir`` with the local ``bundle`` (mounts/security from the bundle).

        ``lazy_pages`` asks for a restore that returns before the memory is copied (the runtime may refuse
        and restore eagerly: see ``RestoreStats.lazy_pages``); ``image_dir`` must then stay until
        :meth:`wait_pages` returned."""
        ...

    def prepare_restore(self, container_id: str, image_dir: Path) -> None:
        """Optional head start of a lazy restore of ``image_dir`` (whatever does not need the container's
        address yet); the restore uses it, :meth:`kill` of the (absent) container ends it unused."""
        ...

    def wait_pages(self, container_id: str) -> float:
        """Block until a lazily restored container has all its pages (0.0 at once if none are pending);
        returns the seconds waited. Raises if the copy failed: the container's memory is then incomplete
        and the container must not be kept."""
        ...

    def kill(self, container_id: str) -> None:
        """Stop and delete the container (no error if absent)."""
        ...

    def state(self, container_id: str) -> ContainerState: ...

    def pid(self, container_id: str) -> int | None: ...
