"""Run folder names, one format for every command that writes results.

CleanRL-style names ``{scenario}__{algo}__{seed}__{YYYYmmdd-HHMMSS}`` sort by time inside one scenario and say
what ran without opening the folder. Folders are created atomically: two runs started in the same second (a
sweep's parallel workers) get ``-2``, ``-3``, ... instead of one of them failing or both writing into one folder.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgemigrate.core.errors import ValidationError

MAX_SAME_NAME = 1000


def run_name(scenario: str, algo: str, seed: int | str, when: float | None = None) -> str:
    """``{scenario}__{algo}__{seed}__{time}``; ``when`` (seconds since the epoch) defaults to now."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if when is None else when))
    return f"{scenario}__{algo}__{seed}__{stamp}"


def new_run_dir(root: Path, name: str) -> Path:
    """Create ``root/name`` (or ``name-2``, ``name-3``, ... if taken) with one ``mkdir`` each, so it never races."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, MAX_SAME_NAME + 1):
        path = root / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ValidationError(f"{root}: no free run folder name for {name} after {MAX_SAME_NAME} tries")
