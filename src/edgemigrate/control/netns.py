"""Run a block of code with the calling thread inside another network namespace (``setns(2)`` via libc).

Sockets created inside the block stay in that namespace; threads started inside it inherit it. Python 3.11
has no ``os.setns``, hence ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

from edgemigrate.core.errors import EngineError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise EngineError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(netns_path: str | None) -> Iterator[None]:
    if not netns_path:
        yield
        return
    target = os.stat(netns_path)
    mine = os.stat("/proc/thread-self/ns/net")
    if (target.st_dev, target.st_ino) == (mine.st_dev, mine.st_ino):
        yield
        return
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    new = os.open(netns_path, os.O_RDONLY)
    try:
        _setns(new)
        try:
            yield
        finally:
            _setns(old)
    finally:
        os.close(old)
        os.close(new)
