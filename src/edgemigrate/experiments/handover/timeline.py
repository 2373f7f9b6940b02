"""Fig. 6 of Ngo et al. 2020: the E2E delay of every request over a 50 s window, one panel per planner, with the
user-seen downtime gaps shaded, the engine's frozen windows and the radio outages marked.

The window is centred on each run's first move (a migration or a handover) so the panels line up on the event
they are about; times are seconds since the MU started. It reads the run folders the experiment left
(``runs/<service>__<planner>__<repeat>/``: ``requests.jsonl``, ``events.json``, ``mu_summary.json``), so
``--reanalyse`` redraws it with nothing running.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemigrate.experiments.handover.analysis import Gap, Move, Request, gaps, moves, read_requests
from edgemigrate.experiments.handover.bed import RunRecord

WINDOW_S = 50.0  # the paper's fig. 6 spans 50 s
LEAD_S = 15.0  # how much of the window lies before the first move


@dataclass(frozen=True, slots=True)
class Timeline:
    """One run's fig. 6 panel, in seconds since the MU started."""

    planner: str
    t0_s: float  # the window's start
    points: list[tuple[float, float]]  # (reply time, E2E delay) of the answered requests in the window
    gaps: list[tuple[float, float]]  # user-seen downtime gaps (start, end)
    frozen: list[tuple[float, float]]  # the engine's frozen windows (freeze -> restored)
    outages: list[tuple[float, float]]  # the radio outages of the handovers


def load_record(run_dir: Path, link: Mapping[str, Any] | None = None) -> RunRecord:
    """A finished run's record from its folder (the names say service, planner and repeat)."""
    service, planner, repeat = run_dir.name.split("__")
    return RunRecord(service, planner, int(repeat), run_dir, json.loads((run_dir / "events.json").read_text()),
                     json.loads((run_dir / "mu_summary.json").read_text()), [], dict(link or {}))


def timeline(rec: RunRecord, requests: Sequence[Request], outage_s: float,
             window_s: float = WINDOW_S, lead_s: float = LEAD_S) -> Timeline:
    """The panel of one run: the window starts ``lead_s`` before the first move (or at the MU's start)."""
    start = float(rec.mu_summary.get("start_s", 0.0))
    mvs: list[Move] = moves(rec, outage_s)
    first = min((mv.window()[0] for mv in mvs), default=start + lead_s)
    t0 = max(start, first - lead_s)
    t1 = t0 + window_s

    def inside(a: float, b: float) -> bool:
        return b >= t0 and a <= t1

    def rel(a: float, b: float) -> tuple[float, float]:
        return a - start, b - start

    run_gaps: list[Gap] = gaps(requests)[0]
    points = [(r.recv_s - start, r.recv_s - r.send_s) for r in requests
              if r.recv_s is not None and r.reply is not None and t0 <= r.recv_s <= t1]
    frozen = [rel(m["freeze_s"] if m.get("freeze_s") is not None else m["start_s"], m["end_s"])
              for m in (mv.migration for mv in mvs) if m is not None]
    outages = [rel(mv.handover_s, mv.handover_s + mv.outage_s) for mv in mvs if mv.handover_s is not None]
    return Timeline(rec.planner, t0 - start, points,
                    [rel(g.start_s, g.end_s) for g in run_gaps if inside(g.start_s, g.end_s)],
                    [w for w in frozen if inside(w[0] + start, w[1] + start)],
                    [w for w in outages if inside(w[0] + start, w[1] + start)])


def service_timelines(folder: Path, service: str, planners: Sequence[str], outage_s: float,
                      repeat: int = 0) -> list[Timeline]:
    """One panel per planner that has a finished run ``repeat`` of ``service`` in ``folder/runs``."""
    out = []
    for planner in planners:
        run_dir = folder / "runs" / f"{service}__{planner}__{repeat}"
        if not (run_dir / "events.json").exists() or not (run_dir / "mu_summary.json").exists():
            continue
        rec = load_record(run_dir)
        out.append(timeline(rec, read_requests(run_dir / "requests.jsonl"), outage_s))
    return out


def plot_timelines(panels: Sequence[Timeline], service: str, path: Path, window_s: float = WINDOW_S) -> Path:
    """Stack the panels (shared axes); gaps grey, frozen windows red, radio outages blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(7.0, 1.9 * len(panels) + 0.6), sharey=True, squeeze=False)
    for ax, p in zip(axes[:, 0], panels, strict=True):
        for a, b in p.gaps:
            ax.axvspan(a, b, color="0.75", lw=0, label="downtime gap")
        for a, b in p.frozen:
            ax.axvspan(a, b, ymax=0.08, color="tab:red", lw=0, label="frozen (engine)")
        for a, b in p.outages:
            ax.axvspan(a, b, ymin=0.08, ymax=0.16, color="tab:blue", lw=0, label="radio outage")
        if p.points:
            ax.plot([t for t, _ in p.points], [d * 1e3 for _, d in p.points], ".", ms=2, color="k", label="request")
        ax.set_xlim(p.t0_s, p.t0_s + window_s)
        ax.set_title(p.planner, fontsize=9, loc="left")
        ax.set_ylabel("E2E delay (ms)", fontsize=8)
        ax.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=6, loc="upper right", ncol=4)
    axes[-1, 0].set_xlabel("time since the MU started (s)")
    fig.suptitle(f"{service}: E2E delay per request, downtime shaded (fig. 6 analogue)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def timeline_figures(folder: Path, services: Sequence[str], planners: Sequence[str], outage_s: float,
                     out: Path) -> list[Path]:
    """``fig6_timeline_<service>.png`` for every service with at least one finished run."""
    paths = []
    for service in services:
        panels = service_timelines(folder, service, planners, outage_s)
        if panels:
            paths.append(plot_timelines(panels, service, out / f"fig6_timeline_{service}.png"))
    return paths


__all__ = ["LEAD_S", "WINDOW_S", "Timeline", "load_record", "plot_timelines", "service_timelines", "timeline",
           "timeline_figures"]
