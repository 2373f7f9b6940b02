"""Markdown table of ``bench_migration.py --client-load`` runs: one row per (git SHA, service, strategy), every
repeat's value of the client-side metrics side by side (not a mean: three repeats are too few to hide one).

Run: ``.venv/bin/python benchmarks/stall_table.py docs/results/precopy-stall/before-after.jsonl``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = [
    ("longest client gap (s)", "move_max_gap_s"),
    ("client stall (s)", "move_stall_s"),
    ("stall / longest gap", "stall_over_final_gap"),
    ("frozen window (s)", "frozen_window_s"),
    ("restore (s)", "restore_s"),
    ("CRIU frozen per round (s)", "frozen_s_per_round"),
    ("acked writes lost", "acked_writes_lost"),
]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, list):
        return " ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"
    return str(v)


def table(lines: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for d in lines:
        groups.setdefault((d["git_sha"], d["service"], d["strategy"]), []).append(d)
    head = "| git | service | strategy | " + " | ".join(c for c, _ in COLUMNS) + " |"
    out = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for (sha, service, strategy), runs in groups.items():
        cells = [" / ".join(_fmt(r.get(key)) for r in runs) for _, key in COLUMNS]
        out.append(f"| {sha} | {service} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(out)


SPLIT = [  # the final round's parts, in the order clients wait for them (runs from before this split: "-")
    ("pause", ("final_round_s", "pause_s")), ("lock", ("final_round_s", "lock_s")),
    ("dump", ("final_round_s", "dump_s")), ("CRIU memdump", ("final_round_s", "memdump_s")),
    ("CRIU memwrite", ("final_round_s", "memwrite_s")), ("plan", ("final_round_s", "plan_s")),
    ("send + verify (1 RTT)", ("final_round_s", "transfer_s")), ("dest check+lock+IP", ("destination_s", "ip_lock_s")),
    ("dest runc restore", ("destination_s", "runc_restore_s")), ("longest client gap", ("move_max_gap_s",)),
]


def split_table(lines: list[dict[str, Any]]) -> str:
    """Where the final round's frozen window goes, one row per run (seconds)."""
    out = ["| git | service | strategy | " + " | ".join(c for c, _ in SPLIT) + " |", "|" + "---|" * (3 + len(SPLIT))]
    for d in lines:
        cells = []
        for _, path in SPLIT:
            v: Any = d
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            cells.append(_fmt(v))
        out.append(f"| {d['git_sha']} | {d['service']} | {d['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jsonl", type=Path, help="bench_migration.py --client-load output")
    ap.add_argument("--split", action="store_true", help="the final round's parts per run instead")
    args = ap.parse_args(argv)
    try:
        lines = [json.loads(ln) for ln in args.jsonl.read_text().splitlines() if ln.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {args.jsonl}: {exc}", file=sys.stderr)
        return 2
    loaded = [d for d in lines if d.get("client_load")]
    print(split_table(loaded) if args.split else table(loaded))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
