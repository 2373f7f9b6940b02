"""Identifiers that become file names: one strict pattern, and paths built only from checked parts.

Session ids, service names, host names and round numbers arrive from peers, journals and the command line,
and end up as directory or file names (``incoming/<session>``, ``sessions/<session>.json``,
``bundles/<service>``, ``<host>.key``). Each is checked with :func:`check_id` - ``re.fullmatch``, because
``re.match`` with ``$`` also accepts a trailing newline - before it touches a path, and :func:`child` is the
only way the agents join one onto a directory.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgemigrate.core.errors import ValidationError

ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_ID_RE = re.compile(ID_PATTERN)
MAX_ROUND = 1 << 20


def check_id(value: object, what: str) -> str:
    """``value`` if it is a lowercase identifier (``[a-z0-9][a-z0-9-]{0,62}``), else a one-line error."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        shown = repr(value)[:80] if isinstance(value, str) else type(value).__name__
        raise ValidationError(f"{what}: {shown} is not an identifier (expected {ID_PATTERN})")
    return value


def check_round(value: object, what: str = "round") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ROUND:
        raise ValidationError(f"{what}: {value!r:.80} is not a round number (1..{MAX_ROUND})")
    return value


def child(root: Path, *parts: str, suffix: str = "") -> Path:
    """``root/part1/part2...`` (``suffix`` appended to the last part), every part checked by :func:`check_id`."""
    if not parts:
        raise ValidationError("child: no path part given")
    out = root
    for i, part in enumerate(parts):
        name = check_id(part, "path part")
        out = out / (name + suffix if i == len(parts) - 1 else name)
    return out


def round_dir(root: Path, round_index: int) -> Path:
    return root / f"round-{check_round(round_index)}"
