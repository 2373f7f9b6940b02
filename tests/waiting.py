"""Waiting for something another thread or process does, in tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], bool], what: str, limit_s: float = 60.0, poll_s: float = 0.01) -> None:
    """Poll ``cond`` (a guard against hanging, not a timing assertion: the limit only ends a test that would
    otherwise wait forever)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(poll_s)
