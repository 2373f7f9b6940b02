"""Benchmarks of the real-data path: streaming a Rome-format trace file, and mobility model step cost.

    python benchmarks/bench_trace_read.py                 # 1,000,000 lines + taxi_like/rwp/manhattan at 10,000 users
    python benchmarks/bench_trace_read.py --lines 200000 --users 1000

Prints one JSON line per measurement:

- ``{"bench": "trace_read", "lines": ..., "seconds": ..., "lines_per_s": ..., "peak_rss_mb": ...,
  "baseline_rss_mb": ..., "file_mb": ..., "kept_fixes": ...}``: a synthetic file in the exact Rome format
  (320 taxis, one fix every ~7 s each, sorted by time, microseconds present on 3 of 4 lines) is written to a
  temp dir in bounded memory, then read by :func:`edgemigrate.mobility.read_roma` in a FRESH Python process
  with a 20-taxi and 2-hour cut and ``stop_after_end=False`` (so every line is parsed and hashed).
  ``peak_rss_mb`` is that process's peak resident set size, ``baseline_rss_mb`` its peak right after
  importing edgemigrate: the difference is what reading costs, independent of the file size.
- ``{"bench": "mobility_step", "model": ..., "users": ..., "us_per_step": ...}``: median over 5 repeats of the
  mean time of one ``step(1.0)`` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_TAXIS = 320
FIX_INTERVAL_S = 7.0
T0_UTC = 1391209200  # 2014-02-01 00:00:00+01


def write_roma_file(path: Path, n_lines: int, seed: int = 0) -> None:
    """Write ``n_lines`` Rome-format lines sorted by time, in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    pos = np.column_stack([41.89 + rng.normal(0, 0.03, N_TAXIS), 12.49 + rng.normal(0, 0.04, N_TAXIS)])
    rate = N_TAXIS / FIX_INTERVAL_S  # lines per second over the fleet
    t = float(T0_UTC)
    chunk = 20_000
    with path.open("w") as fh:
        for start in range(0, n_lines, chunk):
            n = min(chunk, n_lines - start)
            times = t + np.cumsum(rng.exponential(1.0 / rate, n))
            t = float(times[-1])
            taxis = rng.integers(0, N_TAXIS, n)
            pos += rng.normal(0, 0.0002, pos.shape)
            lat = pos[taxis, 0] + rng.normal(0, 1e-5, n)
            lon = pos[taxis, 1] + rng.normal(0, 1e-5, n)
            micro = rng.random(n) < 0.75
            lines = []
            for ti, tx, la, lo, mi in zip(times.tolist(), taxis.tolist(), lat.tolist(), lon.tolist(),
                                          micro.tolist(), strict=True):
                local = ti + 3600  # CET
                sec = int(local)
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
                frac = f".{int((local - sec) * 1e6):06d}" if mi else ""
                lines.append(f"{tx + 1};{stamp}{frac}+01;POINT({la:.13f} {lo:.13f})\n")
            fh.write("".join(lines))


_READER = r"""
import json, resource, sys, time
from edgemigrate.mobility import read_roma
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, ids, start, end = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), float(sys.argv[4])
t = time.perf_counter()
raw = read_roma(path, taxi_ids=ids, start=start, end=end, stop_after_end=False)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "lines": raw.lines_read, "kept_fixes": raw.n_fixes,
                  "peak_kb": peak, "base_kb": base}))
"""


def bench_trace_read(n_lines: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "taxi_february.txt"
        write_roma_file(path, n_lines)
        span_s = n_lines / (N_TAXIS / FIX_INTERVAL_S)
        start = T0_UTC + 0.25 * span_s
        end = min(start + 7200.0, T0_UTC + span_s)
        ids = ",".join(str(i) for i in range(1, 21))
        out = subprocess.run([sys.executable, "-c", _READER, str(path), ids, str(start), str(end)],
                             check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        return {
            "bench": "trace_read",
            "lines": r["lines"],
            "seconds": round(r["seconds"], 3),
            "lines_per_s": round(r["lines"] / r["seconds"]),
            "peak_rss_mb": round(r["peak_kb"] / 1024, 1),
            "baseline_rss_mb": round(r["base_kb"] / 1024, 1),
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "kept_fixes": r["kept_fixes"],
        }


def bench_mobility_step(model_name: str, n_users: int, steps: int = 300) -> dict[str, object]:
    from edgemigrate.core.geo import Area
    from edgemigrate.mobility import ManhattanGrid, RandomWaypoint, TaxiLike

    area = Area(-8000.0, -10000.0, 8000.0, 10000.0)
    model = {"taxi_like": TaxiLike, "random_waypoint": RandomWaypoint, "manhattan_grid": ManhattanGrid}[model_name](
        n_users, area)
    model.reset(np.random.default_rng(0))
    for _ in range(100):
        model.step(1.0)
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(steps):
            model.step(1.0)
        runs.append((time.perf_counter() - t) / steps * 1e6)
    return {"bench": "mobility_step", "model": model_name, "users": n_users,
            "us_per_step": round(float(np.median(runs)), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines in the generated Rome-format file")
    ap.add_argument("--users", type=int, default=10_000, help="users for the mobility step benchmark")
    ap.add_argument("--skip-read", action="store_true", help="only run the mobility step benchmark")
    args = ap.parse_args()
    if not args.skip_read:
        print(json.dumps(bench_trace_read(args.lines)), flush=True)
    for name in ("taxi_like", "random_waypoint", "manhattan_grid"):
        print(json.dumps(bench_mobility_step(name, args.users)), flush=True)


if __name__ == "__main__":
    main()
