"""Bounds for every value that reaches the store, checked before anything is written.

Rows arrive from mobile users, agents and operators: any of them may send a negative size, a NaN delay or
a megabyte of "address". Each check names the field (``host.memory_bytes``) and what was expected in one
line, and raises the project's :class:`~edgemigrate.core.errors.ValidationError`. The limits are far past
anything real but keep every number inside a 64-bit column and every string short enough to log.
"""

from __future__ import annotations

import math

from edgemigrate.core.errors import ValidationError

MAX_BYTES = 1 << 60  # 1 EiB: more than any host's disk, well inside BIGINT
MAX_COUNT = 10_000_000
MAX_TIME_S = 1e11  # epoch seconds up to year ~5100; also bounds durations
MAX_TEXT = 255
MAX_DETAIL = 1000  # free-text reasons on actions (an error message)
MAX_RSSI_DBM = 50.0
MIN_RSSI_DBM = -200.0


def check_float(value: object, what: str, *, lo: float = 0.0, hi: float, lo_open: bool = False) -> float:
    """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); ints are accepted, bools not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{what}: expected a number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ValidationError(f"{what}: {x} is not a finite number")
    if x < lo or (lo_open and x == lo) or x > hi:
        left = "(" if lo_open else "["
        raise ValidationError(f"{what}: {x!r} is outside {left}{lo:g}, {hi:g}]")
    return x


def check_int(value: object, what: str, *, lo: int = 0, hi: int) -> int:
    """An int (not a bool, not a float) in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValidationError(f"{what}: {value} is outside [{lo}, {hi}]")
    return value


def check_text(value: object, what: str, *, max_len: int = MAX_TEXT, allow_empty: bool = False) -> str:
    """A short printable string without control characters (it ends up in logs and one-line errors)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(f"{what}: {len(value)} characters, at most {max_len} allowed")
    if not value and not allow_empty:
        raise ValidationError(f"{what}: must not be empty")
    if not value.isprintable():
        raise ValidationError(f"{what}: {value[:40]!r} contains control characters")
    return value


def check_address(value: object, what: str) -> str:
    """``host`` or ``host:port`` as an agent is reached: printable, no whitespace, bounded."""
    text = check_text(value, what)
    if any(c.isspace() for c in text):
        raise ValidationError(f"{what}: {text[:40]!r} contains whitespace")
    return text


def check_time(value: object, what: str) -> float:
    return check_float(value, what, hi=MAX_TIME_S)


def check_opt_time(value: object, what: str) -> float | None:
    return None if value is None else check_time(value, what)


def check_bytes(value: object, what: str) -> int:
    return check_int(value, what, hi=MAX_BYTES)


def check_rssi(value: object, what: str) -> float:
    return check_float(value, what, lo=MIN_RSSI_DBM, hi=MAX_RSSI_DBM)
