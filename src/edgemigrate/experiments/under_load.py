"""A live migration of a service under ApacheBench load, and the per-second timeline table of such runs.

The load generator and what it measures (:mod:`edgemigrate.workloads.loadgen`) know nothing of migrations
beyond their time marks; this module drives one through a local cluster's agents
(:func:`edgemigrate.control.client.migrate`) while ab runs, which is why it lives with the experiments and not
with the workloads (those import only :mod:`edgemigrate.core`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgemigrate.control import client
from edgemigrate.core.errors import ConfigError, EngineError
from edgemigrate.workloads.loadgen import LoadConfig, LoadGenerator, LoadResult, MigrationMarks


def migrate_under_load(bed: Any, service: str, src: str, dst: str, url: str, out_dir: Path, *,
                       load: LoadConfig | None = None, netns_path: str | None = None, lead_s: float = 3.0,
                       tail_s: float = 4.0, strategy: str = "stop-and-copy", compression: str = "model",
                       page_codec: str = "none", pipeline: str = "pipelined", lead_read_bytes: int = 0,
                       tail_read_bytes: int = 0) -> tuple[dict[str, Any], LoadResult, MigrationMarks]:
    """Start ab, let it run ``lead_s``, migrate ``service`` from ``src`` to ``dst`` on ``bed`` (a
    :class:`~edgemigrate.cluster.LocalCluster`), keep the load ``tail_s`` longer, stop it.

    The marks: ``start``/``end`` are when the migration request was sent and its result came back; the final
    freeze is the start of the last round (the source reports the round when it is verified, with its
    duration ``round_s``, so ``freeze = time that report arrived - round_s``); ``resume = freeze +
    frozen_window_s`` (the source's frozen window ends when the destination reports the service restored).

    ``lead_read_bytes``/``tail_read_bytes``: also wait until ab has read this many bytes before the migration
    and after it (progress, not time: on a busy machine ab may read little in ``lead_s``). With
    ``concurrency x response size`` before and twice that after, some connection has completed a request
    before and started and completed one after, whatever the machine's speed.
    """
    if lead_s < 0 or tail_s < 0:
        raise ConfigError("lead_s and tail_s must be >= 0")
    gen = LoadGenerator(url, out_dir, load or LoadConfig(), netns_path)
    final_round: list[tuple[float, float]] = []

    def on_progress(event: dict[str, Any]) -> None:
        r = event.get("round")
        if isinstance(r, dict) and r.get("final"):
            final_round.append((time.time(), float(r["round_s"])))

    gen.start()
    try:
        time.sleep(lead_s)
        _wait_read(gen, lead_read_bytes, out_dir)
        if gen.proc is not None and gen.proc.poll() is not None:
            raise EngineError(f"ab ended before the migration started (exit {gen.proc.returncode}); see {out_dir}")
        t_start = time.time()
        stats = bed.run(client.migrate(bed.directory, service, dst, strategy, src_host=src, on_progress=on_progress,
                                       compression=compression, page_codec=page_codec, pipeline=pipeline))
        t_end = time.time()
        read_at_end = gen.progress().read_bytes
        time.sleep(tail_s)
        _wait_read(gen, read_at_end + tail_read_bytes, out_dir)
    except BaseException:
        gen.kill()
        raise
    result = gen.stop()
    if final_round:
        t_report, round_s = final_round[-1]
        freeze = max(t_start, t_report - round_s)
    else:  # no progress report: the frozen window is placed at the end (an upper bound of its start)
        freeze = max(t_start, t_end - float(stats.get("frozen_window_s", 0.0)))
    resume = min(t_end, freeze + float(stats.get("frozen_window_s", 0.0)))
    return stats, result, MigrationMarks(t_start, freeze, resume, t_end)


def _wait_read(gen: LoadGenerator, target_bytes: int, out_dir: Path, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while gen.progress().read_bytes < target_bytes:
        if (gen.proc is not None and gen.proc.poll() is not None) or time.monotonic() > deadline:
            raise EngineError(f"ab read {gen.progress().read_bytes} of {target_bytes} bytes and stopped making "
                              f"progress; see {out_dir}")
        time.sleep(0.05)


TIMELINE_COLUMNS = ("run", "workload", "selector", "rate_mbit", "repeat", "t_s", "qps", "mbit_s", "failed",
                    "start_s", "freeze_s", "resume_s", "end_s")


def write_timeline(path: Path, rows: list[dict[str, Any]]) -> None:
    """``timeline.csv``: one line per second of every run with a load (run = index of the row), the run's
    migration marks repeated on each line (seconds from ab's start)."""
    lines = [",".join(TIMELINE_COLUMNS)]
    for i, row in enumerate(rows):
        load = row.get("load")
        if not load:
            continue
        tl, mk = load["timeline"], load["marks"]
        head = [str(i), str(row["workload"]), str(row["selector"]), f"{row['rate_mbit']:g}", str(row.get("repeat", 0))]
        marks = [f"{mk[k]:.3f}" for k in ("start_s", "freeze_s", "resume_s", "end_s")]
        for t, q, m, f in zip(tl["t_s"], tl["qps"], tl["mbit_s"], tl["failed"], strict=True):
            lines.append(",".join([*head, f"{t:.3f}", f"{q:.3f}", f"{m:.3f}", str(f), *marks]))
    path.write_text("\n".join(lines) + "\n")
