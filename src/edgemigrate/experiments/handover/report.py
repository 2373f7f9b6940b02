"""Tables and figures of a handover experiment: ``summary.csv``, ``summary.md`` (with the targets of the issue
and the table I analogue) and three PNGs (Ngo et al. 2020, figs. 4-5 and table I analogues).

Every mean carries the half-width of its 95 % Student-t interval over the repeats (``core/stats.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.core.stats import mean_ci95

METRICS = ("downtime_s", "frozen_downtime_s", "longest_gap_s", "frozen_s", "mean_delay_s", "p95_delay_s",
           "mean_proc_s", "mean_trans_s", "migrations", "handovers")
DOWNTIME_TARGET = 0.30  # orchestrated total downtime at least 30 % below nearest and random
DELAY_TARGET = 0.13  # mean E2E delay at least 13 % below
BYTES_TARGET = 0.04  # migration-phase bytes at most 4 % of the pre-migration bytes


def summarise(runs: Sequence[Mapping[str, Any]], migrations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (service, planner): mean and CI of each run metric, and the bytes per phase."""
    out = []
    keys = sorted({(r["service"], r["planner"]) for r in runs}, key=lambda k: (k[0], _order(k[1])))
    for service, planner in keys:
        rs = [r for r in runs if (r["service"], r["planner"]) == (service, planner)]
        ms = [m for m in migrations if (m["service"], m["planner"]) == (service, planner)]
        row: dict[str, Any] = {"service": service, "planner": planner, "repeats": len(rs)}
        for k in METRICS:
            vals = [float(r[k]) for r in rs if not math.isnan(float(r.get(k, math.nan)))]  # older runs: no split
            row[k], row[f"{k}_ci95"] = mean_ci95(vals) if vals else (math.nan, 0.0)
        pre = sum(m["pre_bytes"] for m in ms)
        row["pre_bytes_per_migration"] = pre / len(ms) if ms else math.nan
        row["final_bytes_per_migration"] = sum(m["final_bytes"] for m in ms) / len(ms) if ms else math.nan
        ratios = [m["final_bytes"] / m["pre_bytes"] for m in ms if m["pre_bytes"] > 0]
        row["final_over_pre_max"] = max(ratios) if ratios else math.nan
        row["final_over_pre"] = sum(m["final_bytes"] for m in ms) / pre if pre else math.nan
        row["counter_ok"] = all(bool(r["counter_ok"]) for r in rs)
        row["moves_verified"] = sum(1 for m in ms if m["counter_ok"] is True)
        row["moves_unverified"] = sum(1 for m in ms if m["counter_ok"] is None)
        out.append(row)
    return out


def _order(planner: str) -> int:
    return {"orchestrated": 0, "nearest": 1, "random": 2}.get(planner, 9)


def targets(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per service: the orchestrated planner against each baseline, and whether each target holds."""
    out = []
    for service in sorted({r["service"] for r in summary}):
        by = {r["planner"]: r for r in summary if r["service"] == service}
        orch = by.get("orchestrated")
        if orch is None:
            continue
        for base in ("nearest", "random"):
            b = by.get(base)
            if b is None:
                continue
            down = 1.0 - orch["downtime_s"] / b["downtime_s"] if b["downtime_s"] > 0 else math.nan
            core = (1.0 - orch["frozen_downtime_s"] / b["frozen_downtime_s"] if b["frozen_downtime_s"] > 0
                    else math.nan)
            delay = 1.0 - orch["mean_delay_s"] / b["mean_delay_s"] if b["mean_delay_s"] > 0 else math.nan
            trans = 1.0 - orch["mean_trans_s"] / b["mean_trans_s"] if b["mean_trans_s"] > 0 else math.nan
            out.append({"service": service, "baseline": base, "downtime_reduction": down,
                        "downtime_ok": bool(down >= DOWNTIME_TARGET), "frozen_downtime_reduction": core,
                        "frozen_downtime_ok": bool(core >= DOWNTIME_TARGET), "delay_reduction": delay,
                        "delay_ok": bool(delay >= DELAY_TARGET), "trans_reduction": trans})
        out.append({"service": service, "baseline": "-", "final_over_pre_max": max(
            (r["final_over_pre_max"] for r in by.values() if not math.isnan(r["final_over_pre_max"])), default=math.nan),
            "bytes_ok": all(not (r["final_over_pre_max"] > BYTES_TARGET) for r in by.values()),
            "counter_ok": all(r["counter_ok"] for r in by.values()),
            "moves_verified": sum(r["moves_verified"] for r in by.values()),
            "moves_unverified": sum(r["moves_unverified"] for r in by.values())})
    return out


def _f(v: Any, scale: float = 1.0, digits: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int | float) and not math.isnan(v):
        return f"{v * scale:.{digits}f}"
    return "-"


def markdown(summary: Sequence[Mapping[str, Any]], goals: Sequence[Mapping[str, Any]], note: str) -> str:
    lines = ["# Coordinated migration + handover on the testbed (Ngo et al. 2020, sec. V)", "", note, "",
             "## Downtime and E2E delay (figs. 4-5 analogues), mean +- 95 % CI over repeats", "",
             "| service | planner | runs | moves (mig/ho) | user-seen downtime s | of it at freeze + outage s "
             "| longest gap s | engine frozen s | mean E2E ms | of it processing ms | of it transmission ms "
             "| p95 E2E ms | counter |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(
            f"| {r['service']} | {r['planner']} | {r['repeats']} | {_f(r['migrations'], digits=1)}/"
            f"{_f(r['handovers'], digits=1)} | {_f(r['downtime_s'])} +- {_f(r['downtime_s_ci95'])} | "
            f"{_f(r['frozen_downtime_s'])} +- {_f(r['frozen_downtime_s_ci95'])} | {_f(r['longest_gap_s'])} | {_f(r['frozen_s'])} +- {_f(r['frozen_s_ci95'])} | "
            f"{_f(r['mean_delay_s'], 1e3, 1)} +- {_f(r['mean_delay_s_ci95'], 1e3, 1)} | "
            f"{_f(r['mean_proc_s'], 1e3, 1)} +- {_f(r['mean_proc_s_ci95'], 1e3, 1)} | "
            f"{_f(r['mean_trans_s'], 1e3, 1)} +- {_f(r['mean_trans_s_ci95'], 1e3, 1)} | {_f(r['p95_delay_s'], 1e3, 1)} "
            f"| {_f(r['counter_ok'])} |")
    lines += ["", "## Checkpoint bytes per phase (table I analogue)", "",
              "| service | planner | pre-migration bytes / migration | migration-phase bytes / migration | "
              "ratio (all) | ratio (worst migration) |", "|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['service']} | {r['planner']} | {_f(r['pre_bytes_per_migration'], 1e-6, 2)} MB | "
                     f"{_f(r['final_bytes_per_migration'], 1e-3, 1)} KB | {_f(r['final_over_pre'], 100, 2)} % | "
                     f"{_f(r['final_over_pre_max'], 100, 2)} % |")
    lines += ["", "Processing: the server's own time in each reply (facedetect's upload: decode + detect); "
              "transmission: the rest of the E2E delay (upload, propagation, queueing). The counter's replies "
              "carry no processing time (-).",
              "", "## Targets", "", "| service | vs | downtime reduction (>= 30 %) | at freeze + outage only "
              "| E2E delay reduction (>= 13 %) | transmission delay reduction |", "|---|---|---|---|---|---|"]
    for g in goals:
        if g["baseline"] != "-":
            lines.append(f"| {g['service']} | {g['baseline']} | {_f(g['downtime_reduction'], 100, 1)} % "
                         f"({_f(g['downtime_ok'])}) | {_f(g['frozen_downtime_reduction'], 100, 1)} % "
                         f"({_f(g['frozen_downtime_ok'])}) | {_f(g['delay_reduction'], 100, 1)} % "
                         f"({_f(g['delay_ok'])}) | {_f(g.get('trans_reduction', math.nan), 100, 1)} % |")
    for g in goals:
        if g["baseline"] == "-":
            lines.append(f"\n{g['service']}: worst migration-phase/pre-migration bytes "
                         f"{_f(g['final_over_pre_max'], 100, 2)} % (<= 4 %: {_f(g['bytes_ok'])}); counter "
                         f"continuous in every run and across every move it answered after: "
                         f"{_f(g['counter_ok'])} ({g['moves_verified']} moves verified, {g['moves_unverified']} "
                         f"ended with the run before a reply)")
    return "\n".join(lines) + "\n"


def plots(summary: Sequence[Mapping[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    services = sorted({r["service"] for r in summary})
    planners = sorted({r["planner"] for r in summary}, key=_order)
    paths = []
    paths.append(_fig4(summary, services, planners, out / "fig4_e2e_delay.png"))
    for key, ylabel, scale, fname in (("downtime_s", "total user-seen downtime per run (s)", 1.0, "fig5_downtime"),
                                      ("frozen_s", "engine frozen time per run (s)", 1.0, "frozen")):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        width = 0.8 / max(1, len(planners))
        for j, p in enumerate(planners):
            rows = [_row(summary, s, p) for s in services]
            x = np.arange(len(services)) + j * width
            ax.bar(x, [r[key] * scale if r else np.nan for r in rows], width,
                   yerr=[r[f"{key}_ci95"] * scale if r else 0 for r in rows], capsize=3, label=p)
        ax.set_xticks(np.arange(len(services)) + width * (len(planners) - 1) / 2, services)
        ax.set_ylabel(ylabel)
        ax.legend()
        fig.tight_layout()
        paths.append(out / f"{fname}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    labels = [f"{r['service']}\n{r['planner']}" for r in summary]
    x = np.arange(len(summary))
    ax.bar(x - 0.2, [r["pre_bytes_per_migration"] for r in summary], 0.4, label="pre-migration")
    ax.bar(x + 0.2, [r["final_bytes_per_migration"] for r in summary], 0.4, label="migration (frozen)")
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("bytes per migration")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "table1_bytes_per_phase.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def _fig4(summary: Sequence[Mapping[str, Any]], services: list[str], planners: list[str], path: Path) -> Path:
    """Fig. 4 analogue: mean E2E delay per service and planner, stacked processing + transmission, each part
    with its 95 % CI; one panel per service (facedetect's delay is ~100x the counter's). A service whose
    replies carry no processing time gets one bar, labelled as not split."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(services), figsize=(3.4 * len(services), 3.6), squeeze=False)
    for ax, s in zip(axes[0], services, strict=True):
        x = np.arange(len(planners))
        rows = [_row(summary, s, p) for p in planners]
        split = all(r is not None and not math.isnan(r["mean_proc_s"]) for r in rows)
        if split:
            proc = [r["mean_proc_s"] * 1e3 for r in rows if r]
            trans = [r["mean_trans_s"] * 1e3 for r in rows if r]
            ax.bar(x, proc, 0.6, yerr=[r["mean_proc_s_ci95"] * 1e3 for r in rows if r], capsize=3,
                   label="processing", color="tab:orange")
            ax.bar(x, trans, 0.6, bottom=proc, yerr=[r["mean_trans_s_ci95"] * 1e3 for r in rows if r], capsize=3,
                   label="transmission", color="tab:blue")
            ax.legend(fontsize=7)
        else:
            ax.bar(x, [r["mean_delay_s"] * 1e3 if r else np.nan for r in rows], 0.6,
                   yerr=[r["mean_delay_s_ci95"] * 1e3 if r else 0 for r in rows], capsize=3, color="tab:gray",
                   label="E2E (not split)")
            ax.legend(fontsize=7)
        ax.set_xticks(x, planners, fontsize=8)
        ax.set_title(s)
        ax.set_ylabel("mean E2E delay (ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _row(summary: Sequence[Mapping[str, Any]], service: str, planner: str) -> Mapping[str, Any] | None:
    return next((r for r in summary if r["service"] == service and r["planner"] == planner), None)
