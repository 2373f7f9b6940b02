"""Run folders: resolved config, versions, git SHA, metrics tables and plots side by side.

Layout of one run (``results/{scenario}__{policy}__{seed}__{time}/``)::

    manifest.json   what ran: command, seed, versions (python, numpy, ...), git SHA (+dirty), timings
    config.json     the fully resolved scenario (every default filled in)
    steps.csv       one row per tick (namespaced metrics: see sim/recorder.py)
    decisions.csv   one row per placement decision with its four delays (Liu et al. 2024, eqs. 1-10)
    summary.json    headline numbers
    plots/*.png     latency components over time, migrations, node load
"""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate import __version__
from edgemigrate.core.runs import new_run_dir, run_name

__all__ = ["git_sha", "json_line", "manifest", "new_run_dir", "read_table", "run_name", "strict_json", "versions",
           "write_json", "write_table"]

VERSIONED = ("numpy", "scipy", "gymnasium", "torch", "matplotlib", "click")


def git_sha(cwd: Path | None = None) -> str:
    """``<sha>`` or ``<sha>-dirty`` of the source tree, or ``unknown`` outside a git checkout."""
    here = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"edgemigrate": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(strict_json(data), indent=2, sort_keys=False, default=_json_default,
                               allow_nan=False) + "\n")


def json_line(data: Any) -> str:
    """One line of strict JSON (the experiments' progress lines): what ``jq`` and JavaScript can read."""
    return json.dumps(strict_json(data), default=_json_default, allow_nan=False)


def strict_json(data: Any) -> Any:
    """``data`` with every non-finite float (a mean over no values, a ratio to zero) as ``None``: strict JSON
    has no NaN or Infinity, and a reader should see "no value", not a parse error."""
    if isinstance(data, float | np.floating):
        return float(data) if np.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [strict_json(v) for v in data]
    if isinstance(data, np.ndarray):  # its elements too: json would write a NaN in it, or refuse it
        return strict_json(data.tolist())
    return data


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_table(path: Path, columns: Mapping[str, NDArray]) -> None:
    """Write equal-length columns as CSV (floats with full precision, so results round-trip exactly)."""
    names = list(columns)
    arrays = [np.asarray(columns[k]) for k in names]
    n = len(arrays[0]) if arrays else 0
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        cols = [a.tolist() for a in arrays]
        for i in range(n):
            w.writerow([c[i] for c in cols])


def read_table(path: Path) -> dict[str, NDArray]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    names, body = rows[0], rows[1:]
    out: dict[str, NDArray] = {}
    for j, name in enumerate(names):
        vals = [r[j] for r in body]
        try:
            out[name] = np.array([float(v) for v in vals])
        except ValueError:
            out[name] = np.array(vals)
    return out


def manifest(seed: int, command: list[str] | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "command": command if command is not None else sys.argv,
        "seed": seed,
        "git_sha": git_sha(),
        "versions": versions(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **dict(extra or {}),
    }
