"""PNG plots of the compression experiments (read ``runs.csv`` of a results folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.experiments.compression.summary import has_number
from edgemigrate.experiments.results import read_table


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# the key of a wire sample's bandwidth estimate; the results committed under docs/results were written with
# the old spelling, which the plots still read
_BANDWIDTH_KEYS = ("bandwidth_bytes_per_s", "bandwidth_Bps")


def _sample_bandwidth_bytes_per_s(sample: dict[str, Any]) -> float:
    return float(next(sample[k] for k in _BANDWIDTH_KEYS if k in sample))


def _mean_by(t: dict[str, np.ndarray], mask: np.ndarray, key: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    xs = np.unique(t[key][mask])
    ys = np.array([t[value][mask & (t[key] == x)].astype(float).mean() for x in xs])
    return xs.astype(float), ys


def plot_experiment(experiment: str, run_dir: Path) -> list[Path]:
    """Draw the plots of ``experiment`` from ``run_dir/runs.csv``; returns the PNG paths (one per workload)."""
    if experiment == "web":
        return plot_web_all(run_dir)
    t = read_table(run_dir / "runs.csv")
    t = {k: (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in t.items()}
    plt = _plt()
    colour = {sel: f"C{i}" for i, sel in enumerate(np.unique(t["selector"]))}  # same colour in every panel
    out: list[Path] = []
    for wl in np.unique(t["workload"]):
        w = t["workload"] == wl
        if experiment == "pipeline":
            out.append(_plot_pipeline(plt, t, w, wl, run_dir))
            continue
        ncols = 3 if experiment == "ratechange" else 2
        fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4.5))
        if experiment == "levels":
            _plot_levels(axes, t, w, wl)
        elif experiment == "rates":
            _plot_rates(axes, t, w, wl, colour)
        else:
            _plot_ratechange(axes, t, w, wl, colour, run_dir)
        fig.tight_layout()
        path = run_dir / f"{experiment}_{wl}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def _plot_levels(axes: Any, t: dict[str, np.ndarray], w: np.ndarray, wl: str) -> None:
    """(b): time and bytes on the wire against the fixed level, one line per link rate; the adaptive selectors
    as horizontal lines of the same colour."""
    fixed = np.array([x.startswith("fixed:") for x in t["selector"]])
    level = np.array([int(x.rsplit(":", 1)[1]) if x.startswith("fixed:") else 0 for x in t["selector"]])
    for i, r in enumerate(np.unique(t["rate_mbit"][w])):
        m = w & (t["rate_mbit"] == r)
        lv = np.unique(level[m & fixed])
        for ax, col, what in ((axes[0], "total_s", "migration time (s)"),
                              (axes[1], "bytes_on_wire", "bytes on the wire (MB)")):
            scale = 1e-6 if col == "bytes_on_wire" else 1.0
            ys = [t[col][m & fixed & (level == v)].astype(float).mean() * scale for v in lv]
            ax.plot(lv, ys, "-o", color=f"C{i}", label=f"fixed levels, {r:g} Mbit/s")
            for sel, ls in (("model", "--"), ("rule", ":")):
                mm = m & (t["selector"] == sel)
                if mm.any():
                    ax.axhline(t[col][mm].astype(float).mean() * scale, color=f"C{i}", ls=ls,
                               label=f"{sel} selector, {r:g} Mbit/s")
            ax.set_xlabel("fixed compression level")
            ax.set_ylabel(what)
            ax.legend(fontsize=7)
    axes[0].set_title(f"{wl}: fixed levels vs adaptive selectors (lines)")


def _plot_rates(axes: Any, t: dict[str, np.ndarray], w: np.ndarray, wl: str, colour: dict[str, str]) -> None:
    """(a): migration time against the link rate per selector, and the time each saves against ``none``."""
    from matplotlib.ticker import FormatStrFormatter

    ax = axes[0]
    for sel in np.unique(t["selector"][w]):
        m = w & (t["selector"] == sel)
        xs, ys = _mean_by(t, m, "rate_mbit", "total_s")
        style = "-o" if not sel.startswith("fixed") else ":."
        ax.plot(xs, ys, style, label=sel, lw=2 if not sel.startswith("fixed") else 1, color=colour[sel])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("shaped link rate (Mbit/s)")
    ax.set_ylabel("migration time (s)")
    ax.set_title(f"{wl}: total migration time")
    ax.legend(fontsize=7)
    ax = axes[1]
    none = w & (t["selector"] == "none")
    for sel in np.unique(t["selector"][w]):
        if sel == "none" or not none.any():
            continue
        m = w & (t["selector"] == sel)
        xs, ys = _mean_by(t, m, "rate_mbit", "total_s")
        xn, yn = _mean_by(t, none, "rate_mbit", "total_s")
        common = np.intersect1d(xs, xn)
        red = [100 * (1 - ys[xs == x][0] / yn[xn == x][0]) for x in common]
        ax.plot(common, red, "-o" if not sel.startswith("fixed") else ":.", label=sel, color=colour[sel])
    # Zhang et al. 2019 report 45.4 % saved by adaptive compression: the bar the experiment is held to
    ax.axhline(45, color="grey", ls="--", lw=1, label="Zhang et al. 2019: 45 %")
    ax.set_xscale("log")
    ax.set_xlabel("shaped link rate (Mbit/s)")
    ax.set_ylabel("time saved vs uncompressed (%)")
    ax.legend(fontsize=7)


def _plot_ratechange(axes: Any, t: dict[str, np.ndarray], w: np.ndarray, wl: str, colour: dict[str, str],
                     run_dir: Path) -> None:
    """(e): migration time per selector; the adaptive selectors' bandwidth estimate and level around the rate
    change (median run); the link's byte counter of every repeat."""
    sels = list(np.unique(t["selector"][w]))
    vals = [t["total_s"][w & (t["selector"] == s)].astype(float).mean() for s in sels]
    errs = [t["total_s"][w & (t["selector"] == s)].astype(float).std() for s in sels]
    axes[0].barh(range(len(sels)), vals, xerr=errs, color=[colour[s] for s in sels])
    for i, v in enumerate(vals):
        axes[0].text(v, i, f" {v:.1f} s", va="center", fontsize=7)
    axes[0].set_yticks(range(len(sels)), sels)
    axes[0].set_xlabel("migration time (s)")
    axes[0].set_title(f"{wl}: link rate changed mid-migration")
    traced, adaptive_rows = _plot_link_traces(axes[2], wl, colour, run_dir)
    change_s = _plot_estimates(axes[1], adaptive_rows, colour)
    if traced:
        _finish_link_traces(axes[2], change_s)
    else:
        axes[2].set_axis_off()


def _plot_link_traces(ax: Any, wl: str, colour: dict[str, str],
                      run_dir: Path) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
    """The link byte counter of every repeat of ``wl`` (labelled once per selector); returns the selectors
    traced and the rows of the adaptive selectors (``rule``, ``model...``) by selector."""
    import json

    traced: set[str] = set()
    adaptive_rows: dict[str, list[dict[str, Any]]] = {}
    with (run_dir / "runs.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            if row["workload"] != wl:
                continue
            tl = row.pop("link_timeline", None)
            if tl and tl["t_s"]:
                sel = row["selector"]
                ax.plot(tl["t_s"], tl["mb"], color=colour[sel], lw=1, alpha=0.7,
                        label=sel if sel not in traced else None)
                traced.add(sel)
            if row["selector"] == "rule" or row["selector"].startswith("model"):
                adaptive_rows.setdefault(row["selector"], []).append(row)
    return traced, adaptive_rows


def _plot_estimates(ax: Any, adaptive_rows: dict[str, list[dict[str, Any]]], colour: dict[str, str]) -> float | None:
    """Bandwidth estimate (steps) and chosen level (dotted, right axis) of each adaptive selector's median run;
    returns when the shaper's rate changed (``None`` if no run says)."""
    ax2 = ax.twinx()
    change_s = None
    for rows_of in adaptive_rows.values():
        row = sorted(rows_of, key=lambda r: r["total_s"])[(len(rows_of) - 1) // 2]  # the median repeat
        change_s = row.get("rate_changed_at_s", change_s)
        samples = [s for r in row["stats"]["rounds"] for s in r["wire"]["samples"]]
        if samples:
            ts = [s["t_s"] for s in samples]
            c = colour[row["selector"]]
            mbit = [_sample_bandwidth_bytes_per_s(s) * 8 / 1e6 for s in samples]
            ax.step(ts, mbit, where="post", color=c, label=f"{row['selector']}: bandwidth estimate (median run)")
            ax2.step(ts, [s["level"] for s in samples], where="post", ls=":", color=c,
                     label=f"{row['selector']}: level")
    if change_s is not None:
        ax.axvline(float(change_s), color="grey", ls="--", lw=1, label="shaper rate changed")
        ax.set_xlim(max(0.0, float(change_s) - 1.0), float(change_s) + 5.0)  # the adaptation
    ax2.set_ylabel("chosen level (dotted)")
    ax.set_xlabel("time since migration start (s)")
    ax.set_ylabel("bandwidth estimate (Mbit/s)")
    ax.legend(fontsize=7, loc="upper right")
    return None if change_s is None else float(change_s)


def _finish_link_traces(ax: Any, change_s: float | None) -> None:
    if change_s is not None:  # zoom on the fast phase: what crossed before the drop decides the rest
        ax.axvline(change_s, color="grey", ls="--", lw=1)
        ax.set_xlim(max(0.0, change_s - 1.5), change_s + 1.5)
        top = max((max(ln.get_ydata()[np.asarray(ln.get_xdata()) <= change_s + 1.5], default=0)
                   for ln in ax.get_lines()[:-1]), default=0)
        ax.set_ylim(0, 1.1 * top if top > 0 else None)
    ax.set_xlabel("time since migration start (s)")
    ax.set_ylabel("MB across the shaped link")
    ax.set_title("link byte counter around the rate change, every repeat (20 ms samples)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def _plot_pipeline(plt: Any, t: dict[str, np.ndarray], w: np.ndarray, wl: str, run_dir: Path) -> Path:
    """(c): one panel per link rate with pipelined/serial bars per selector, eqs. 3-7 predictions as black
    ticks and the gain written above each pair; a last panel with the pipelined runs' link utilisation
    (end to end, and while the link carried the image when measured)."""
    rates = np.unique(t["rate_mbit"][w].astype(float))
    sels = list(np.unique(t["selector"][w]))
    fig, axes = plt.subplots(1, len(rates) + 1, figsize=(4.5 * (len(rates) + 1), 4.5), squeeze=False)
    axes = axes[0]
    x, bw = np.arange(len(sels)), 0.38
    util_e2e, util_busy = np.full((len(rates), len(sels)), np.nan), np.full((len(rates), len(sels)), np.nan)
    for ri, r in enumerate(rates):
        ax = axes[ri]
        pipe: list[float] = []
        for pi, p in enumerate(("pipelined", "serial")):
            vals, errs, preds = [], [], []
            for si, sel in enumerate(sels):
                mm = w & (t["selector"] == sel) & (t["pipeline"] == p) & (t["rate_mbit"].astype(float) == r)
                v = t["total_s"][mm].astype(float)
                vals.append(v.mean() if len(v) else np.nan)
                errs.append(v.std() if len(v) > 1 else 0.0)
                key = f"pred_{p}_s"
                preds.append(t[key][mm].astype(float).mean() if key in t and len(v) else np.nan)
                if p == "pipelined" and len(v):
                    util_e2e[ri, si] = t["utilisation"][mm].astype(float).mean()
                    if "link_util" in t:
                        busy = [float(u) for u in t["link_util"][mm] if has_number(u)]
                        util_busy[ri, si] = np.mean(busy) if busy else np.nan
            xs = x + (pi - 0.5) * bw
            ax.bar(xs, vals, bw, yerr=errs, color="C0" if p == "pipelined" else "C1", label=p)
            ax.plot(xs, preds, "k_", ms=16, mew=2, label="Zhang et al. 2019 eqs. 3-7" if pi == 0 else None)
            if p == "pipelined":
                pipe = vals
            else:
                for si, (a, b) in enumerate(zip(pipe, vals, strict=True)):
                    if np.isfinite(a) and np.isfinite(b) and b > 0:
                        ax.annotate(f"-{100 * (1 - a / b):.0f} %", (x[si], max(a, b) + 0.3), ha="center",
                                    fontsize=9, fontweight="bold")
        ax.set_xticks(x, [s.replace("fixed:", "") for s in sels])
        ax.set_ylabel("migration time (s)")
        ax.set_title(f"{wl}, {r:g} Mbit/s: pipelined vs serial")
        ax.set_ylim(0, None)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    n = len(rates)
    for ri, r in enumerate(rates):
        xs = x + (ri - (n - 1) / 2) * (0.8 / n)
        ax.bar(xs, util_e2e[ri], 0.8 / n, color=f"C{2 + ri}", alpha=0.45, label=f"{r:g} Mbit/s, end to end")
        if np.isfinite(util_busy[ri]).any():
            ax.plot(xs, util_busy[ri], "o", color=f"C{2 + ri}", label=f"{r:g} Mbit/s, while the link carried the image")
    ax.axhline(0.9, color="grey", ls="--", lw=1)
    ax.set_xticks(x, [s.replace("fixed:", "") for s in sels])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("link utilisation (pipelined runs)")
    ax.set_title("link utilisation; dashed = 90 % target")
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    path = run_dir / f"pipeline_{wl}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _web_rows(run_dir: Path) -> list[dict[str, Any]]:
    import json

    rows = [json.loads(line) for line in (run_dir / "runs.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("load")]


def plot_web_all(run_dir: Path) -> list[Path]:
    """One :func:`plot_web` figure per edge-to-edge rate (``web_timeline.png`` if there is only one rate)."""
    rates = sorted({float(r["rate_mbit"]) for r in _web_rows(run_dir)})
    if len(rates) <= 1:
        return [plot_web(run_dir)]
    return [plot_web(run_dir, rate, f"web_timeline_{rate:g}mbit.png") for rate in rates]


def plot_web(run_dir: Path, rate_mbit: float | None = None, name: str = "web_timeline.png") -> Path:
    """(d) Throughput (top) and QPS (bottom) per second while the web service migrates, one line per selector,
    time aligned at each migration's start; bars: migration / frozen window (Zhang et al. 2019, section VI-C, figs. 6-7).
    ``rate_mbit``: only the runs at that edge-to-edge rate (default: all)."""
    rows = [r for r in _web_rows(run_dir) if rate_mbit is None or float(r["rate_mbit"]) == rate_mbit]
    plt = _plt()
    fig, (ax_t, ax_q) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    sels = sorted({r["selector"] for r in rows}, key=lambda s: (s != "none", s))
    colour = {s: f"C{i}" for i, s in enumerate(sels)}
    labelled: set[str] = set()
    for r in rows:
        load, sel = r["load"], r["selector"]
        mk, tl = load["marks"], load["timeline"]
        t = np.asarray(tl["t_s"], dtype=float) - mk["start_s"] + 0.5  # bin centres, 0 = migration start
        c = colour[sel]
        first = sel not in labelled
        labelled.add(sel)
        same = [x for x in rows if x["selector"] == sel]
        label = (f"{sel}: migration {np.mean([x['total_s'] for x in same]):.1f} s, frozen "
                 f"{np.mean([x['frozen_window_s'] for x in same]):.1f} s, "
                 f"{np.mean([x['bytes_on_wire'] for x in same]) / 1e6:.0f} MB on the wire, longest gap "
                 f"{np.mean([x['load']['longest_gap_s'] for x in same]):.1f} s"
                 + (f" (mean of {len(same)} runs, thin lines: repeats)" if len(same) > 1 else "")) if first else None
        ax_t.plot(t, tl["mbit_s"], "-", color=c, lw=1.8 if first else 0.8, label=label)
        ax_q.plot(t, tl["qps"], "-", color=c, lw=1.8 if first else 0.8)
        k = sels.index(sel)
        for ax in (ax_t, ax_q):  # one strip per selector at the top: migration (light), frozen (dark)
            strip = ax.get_xaxis_transform()
            y0 = 0.97 - 0.06 * (k + 1)
            ax.broken_barh([(0.0, mk["end_s"] - mk["start_s"])], (y0, 0.05), transform=strip, color=c, alpha=0.25)
            ax.broken_barh([(mk["freeze_s"] - mk["start_s"], mk["resume_s"] - mk["freeze_s"])], (y0, 0.05),
                           transform=strip, color=c, alpha=0.8)
            ax.axvline(mk["resume_s"] - mk["start_s"], color=c, lw=0.8, ls=":")
    if rows:
        r0 = rows[0]
        ax_t.set_title(f"web (lighttpd, {r0.get('page_kib', 512)} KiB page, ab -c {r0.get('load_concurrency', 100)})"
                       f" migrated over {r0['rate_mbit']:g} Mbit/s / {r0['rtt_ms']:g} ms; client link "
                       f"{r0.get('client_mbit', 0):g} Mbit/s", fontsize=10)
    ax_t.set_ylabel("throughput at the client (Mbit/s)")
    ax_q.set_ylabel("requests completed per second")
    ax_q.set_xlabel("time since the migration started (s); bars at the top: migration (light) and frozen window "
                    "(dark) per selector, dotted: resumed on the destination")
    for ax in (ax_t, ax_q):
        ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, ax.get_ylim()[1] * (1.1 + 0.08 * len(sels)))  # room for the strips
        ax.grid(alpha=0.3)
    fig.legend(fontsize=8, loc="lower center", ncol=1, frameon=False)
    fig.tight_layout(rect=(0, 0.035 * (len(sels) + 1), 1, 1))  # the legend goes below the panels
    path = run_dir / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
