"""PNG plots of the issue 4 compression experiments (read ``runs.csv`` of a results folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemigrate.experiments.results import read_table


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_by(t: dict[str, np.ndarray], mask: np.ndarray, key: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    xs = np.unique(t[key][mask])
    ys = np.array([t[value][mask & (t[key] == x)].astype(float).mean() for x in xs])
    return xs.astype(float), ys


def plot_experiment(experiment: str, run_dir: Path) -> list[Path]:
    """Draw the plots of ``experiment`` from ``run_dir/runs.csv``; returns the PNG paths."""
    t = read_table(run_dir / "runs.csv")
    t = {k: (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in t.items()}
    plt = _plt()
    from matplotlib.ticker import FormatStrFormatter

    colour = {sel: f"C{i}" for i, sel in enumerate(np.unique(t["selector"]))}  # same colour in every panel
    out: list[Path] = []
    for wl in np.unique(t["workload"]):
        w = t["workload"] == wl
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        if experiment == "levels":
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
        elif experiment == "rates":
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
            ax.axhline(45, color="grey", ls="--", lw=1, label="issue target 45 %")
            ax.set_xscale("log")
            ax.set_xlabel("shaped link rate (Mbit/s)")
            ax.set_ylabel("time saved vs uncompressed (%)")
            ax.legend(fontsize=7)
        elif experiment == "pipeline":
            labels, vals, errs, utils = [], [], [], []
            for sel in np.unique(t["selector"][w]):
                for p in ("pipelined", "serial"):
                    m = w & (t["selector"] == sel) & (t["pipeline"] == p)
                    for r in np.unique(t["rate_mbit"][m]):
                        mm = m & (t["rate_mbit"] == r)
                        labels.append(f"{sel}\n{p}\n{r:g} Mbit/s")
                        vals.append(t["total_s"][mm].astype(float).mean())
                        errs.append(t["total_s"][mm].astype(float).std())
                        utils.append(t["utilisation"][mm].astype(float).mean())
            axes[0].bar(range(len(vals)), vals, yerr=errs, color=["C0" if "\npipelined" in lab else "C1" for lab in labels])
            axes[0].set_xticks(range(len(vals)), labels, fontsize=7)
            axes[0].set_ylabel("migration time (s)")
            axes[0].set_title(f"{wl}: pipelined vs serial")
            axes[1].bar(range(len(utils)), utils, color="C2")
            axes[1].set_xticks(range(len(vals)), labels, fontsize=7)
            axes[1].axhline(0.9, color="grey", ls="--", lw=1)
            axes[1].set_ylabel("link utilisation while sending")
        else:  # ratechange
            sels = list(np.unique(t["selector"][w]))
            vals = [t["total_s"][w & (t["selector"] == s)].astype(float).mean() for s in sels]
            axes[0].barh(range(len(sels)), vals, color=[colour[s] for s in sels])
            axes[0].set_yticks(range(len(sels)), sels)
            axes[0].set_xlabel("migration time (s)")
            axes[0].set_title(f"{wl}: link rate changed mid-migration")
            import json

            ax2 = axes[1].twinx()
            change_s = None
            with (run_dir / "runs.jsonl").open() as fh:
                for line in fh:
                    row = json.loads(line)
                    if row["workload"] != wl or row["selector"] not in ("model", "rule"):
                        continue
                    change_s = row.get("change_after_s")
                    samples = [s for r in row["stats"]["rounds"] for s in r["wire"]["samples"]]
                    if samples:
                        ts = [s["t_s"] for s in samples]
                        c = colour[row["selector"]]
                        axes[1].step(ts, [s["bandwidth_Bps"] * 8 / 1e6 for s in samples], where="post", color=c,
                                     label=f"{row['selector']}: bandwidth estimate")
                        ax2.step(ts, [s["level"] for s in samples], where="post", ls=":", color=c,
                                 label=f"{row['selector']}: level")
            if change_s is not None:
                axes[1].axvline(float(change_s), color="grey", ls="--", lw=1, label="shaper rate changed")
            ax2.set_ylabel("chosen level (dotted)")
            axes[1].set_xlabel("time since migration start (s)")
            axes[1].set_ylabel("bandwidth estimate (Mbit/s)")
            axes[1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = run_dir / f"{experiment}_{wl}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
