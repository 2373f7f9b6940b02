"""Compare a final round's pages file with the previous round's while CRIU is still writing it.

The final round is frozen time: CRIU writes every page of the paused service (~3 GB/s into tmpfs, one
thread), then the engine compares them all with the previous round (:func:`.delta.changed_pages`). CRIU
writes its pages file from start to end and never rewrites or truncates it, so the part already written is
final, and a second core can compare it block by block while CRIU writes the rest: :class:`PrefixDiff`
follows each ``pages-*.img`` that the previous round also has, comparing page ``i`` with the previous
file's page ``i``. That is the comparison :func:`.delta.changed_pages` makes when both dumps hold the same
pages in the same order (the usual case since live rounds read exactly CRIU's page set), and it is used
only then: the result (:class:`.delta.KnownPrefix`) names the previous file it was compared with, and
``delta.changed_pages_counted`` checks the layout before it trusts it.

Only pages below the size seen at the *previous* poll are compared (bytes below a size just read are written,
but one poll later there is no doubt about it on any memory model), only whole blocks while the file grows,
and a file replaced meanwhile (a retried dump starts a new file) is not trusted: its inode is checked.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
from numpy.typing import NDArray

from edgemigrate.engine.delta import BLOCK_PAGES, PAGE_SIZE_BYTES, KnownPrefix

POLL_S = 0.001  # CRIU writes ~3 MB a millisecond here: one poll per block is plenty
_WORDS = PAGE_SIZE_BYTES // 8


@dataclass
class _Follow:
    fd: int
    ino: tuple[int, int]  # (st_dev, st_ino) of the file followed
    prev_mm: mmap.mmap
    prev: NDArray[np.uint64]
    masks: list[NDArray[np.bool_]] = field(default_factory=list)
    done: int = 0  # pages compared
    seen_bytes: int = 0  # the file's size at the previous poll

    def close(self) -> None:
        del self.prev
        self.prev_mm.close()
        os.close(self.fd)


class PrefixDiff:
    """A background thread comparing ``cur_dir``'s pages files with ``prev_dir``'s as they are written; use it
    as a context manager around the dump, then :meth:`result`. Failures only lose the head start."""

    def __init__(self, cur_dir: Path, prev_dir: Path, poll_s: float = POLL_S) -> None:
        self.cur_dir, self.prev_dir, self.poll_s = cur_dir, prev_dir, poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefix-diff", daemon=True)
        self._follows: dict[str, _Follow] = {}
        self._known: dict[str, KnownPrefix] = {}
        self.error: str | None = None

    def __enter__(self) -> PrefixDiff:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def compared_pages(self) -> int:
        """Pages compared so far (all files; a progress reading, safe to take from another thread)."""
        return sum(f.done for f in list(self._follows.values()))

    def result(self) -> dict[str, KnownPrefix]:
        """Pages file name -> what was compared before the dump ended (after the ``with`` block)."""
        return dict(self._known)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._poll():
                    self._stop.wait(self.poll_s)
        except (OSError, ValueError) as exc:  # e.g. the folder removed by a retried dump: no head start
            self.error = repr(exc)
            for f in self._follows.values():
                f.close()
            self._follows.clear()
        finally:
            self._finish()

    def _poll(self) -> bool:
        """Compare what became safe to read since the last poll; True if anything was compared."""
        progressed = False
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.cur_dir):
                name = entry.name
                if not (name.startswith("pages-") and name.endswith(".img")):
                    continue
                f = self._follows.get(name) or self._open(name)
                if f is not None:
                    progressed |= self._advance(f)
        return progressed

    def _open(self, name: str) -> _Follow | None:
        prev_path = self.prev_dir / name
        if not prev_path.is_file() or prev_path.stat().st_size < BLOCK_PAGES * PAGE_SIZE_BYTES:
            return None
        fd = os.open(self.cur_dir / name, os.O_RDONLY)
        st = os.fstat(fd)
        with prev_path.open("rb") as fh:
            prev_mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        n_prev = len(prev_mm) // PAGE_SIZE_BYTES
        prev = np.frombuffer(prev_mm, dtype=np.uint64, count=n_prev * _WORDS).reshape(n_prev, _WORDS)
        f = self._follows[name] = _Follow(fd, (st.st_dev, st.st_ino), prev_mm, prev)
        return f

    def _advance(self, f: _Follow) -> bool:
        safe_pages = f.seen_bytes // PAGE_SIZE_BYTES
        f.seen_bytes = os.fstat(f.fd).st_size
        progressed = False
        while f.done + BLOCK_PAGES <= min(safe_pages, f.prev.shape[0]) and not self._stop.is_set():
            off = f.done * PAGE_SIZE_BYTES
            mm = mmap.mmap(f.fd, BLOCK_PAGES * PAGE_SIZE_BYTES, access=mmap.ACCESS_READ, offset=off)
            try:
                cur = np.frombuffer(mm, dtype=np.uint64).reshape(BLOCK_PAGES, _WORDS)
                f.masks.append((cur != f.prev[f.done : f.done + BLOCK_PAGES]).any(axis=1))
                del cur
            finally:
                mm.close()
            f.done += BLOCK_PAGES
            progressed = True
        return progressed

    def _finish(self) -> None:
        """Keep each followed file's compared prefix if the path still names the file followed."""
        for name, f in self._follows.items():
            try:
                st = os.stat(self.cur_dir / name)
                same = (st.st_dev, st.st_ino) == f.ino and st.st_size >= f.done * PAGE_SIZE_BYTES
            except OSError:
                same = False
            if same and f.masks:
                self._known[name] = KnownPrefix(name, np.concatenate(f.masks))
            f.close()
        self._follows.clear()


__all__ = ["POLL_S", "PrefixDiff"]
