"""Markdown summary (``summary.md``) of a compression experiment, from its ``runs.csv``.

Means with 95 % Student-t confidence half-widths over the repeats of each configuration, and the comparison
each experiment exists for: (a) ``rates`` time saved versus uncompressed; (b) ``levels`` each adaptive
selector versus the best fixed level at the same rate; (c) ``pipeline`` pipelined versus serial, measured
and as Zhang et al. 2019's eqs. 3-7 predict it from the *serial* runs' stage times (in a pipelined run the stages
overlap and share the CPU, so its own per-chunk compression times are inflated); (e) ``ratechange`` every
selector versus the best fixed level. Utilisation is given end to end (each round from its first chunk to the
destination's confirmation) and, where measured, while the link carried the image (``link_util``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemigrate.core.stats import ci95
from edgemigrate.experiments.results import read_table


def _fmt(v: np.ndarray) -> str:
    return f"{v.mean():.2f} +- {ci95(v):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


UTIL_HEADER = "link util. (e2e / busy)"


def has_number(x: object) -> bool:
    """A CSV cell that holds a number (columns added later are empty or NaN in older rows)."""
    return str(x) not in ("", "nan", "None")


def _util(t: dict[str, np.ndarray], m: np.ndarray) -> str:
    """Mean end-to-end utilisation and, when measured (``link_util``, runs since the link meter), the mean
    utilisation while the link carried the image."""
    e2e = f"{t['utilisation'][m].astype(float).mean():.2f}"
    if "link_util" not in t:
        return e2e
    busy = [float(x) for x in t["link_util"][m] if has_number(x)]
    return f"{e2e} / {np.mean(busy):.2f}" if busy else e2e


def _fast_phase(t: dict[str, np.ndarray], m: np.ndarray) -> str:
    """Per repeat, the MB that crossed the link before its rate changed (``fast_phase_mb``, when recorded)."""
    if "fast_phase_mb" not in t:
        return ""
    return " / ".join(f"{float(x):.1f}" if has_number(x) else "-" for x in t["fast_phase_mb"][m])


def _paired(t: dict[str, np.ndarray], w: np.ndarray) -> list[str]:
    """(e) each adaptive selector against each fixed level, paired by repeat: the runs of one repeat follow
    each other, so drift of the machine over the experiment (measured: ~2 s between the first and the last
    repeats of a 10 s migration) cancels out of the difference. Mean difference (adaptive - fixed, negative
    = adaptive faster) with its 95 % CI, and in how many repeats the adaptive selector was faster."""
    total, rep = t["total_s"].astype(float), t["repeat"].astype(int)
    sels = list(np.unique(t["selector"][w]))
    fixed = [s for s in sels if s.startswith("fixed:")]
    adaptive = [s for s in sels if not s.startswith("fixed:") and s != "none"]
    rows = []
    for a in adaptive:
        ta = {int(r): x for r, x in zip(rep[w & (t["selector"] == a)], total[w & (t["selector"] == a)], strict=True)}
        for f in fixed:
            tf = {int(r): x for r, x in zip(rep[w & (t["selector"] == f)], total[w & (t["selector"] == f)],
                                            strict=True)}
            common = sorted(set(ta) & set(tf))
            if not common:
                continue
            d = np.array([ta[r] - tf[r] for r in common])
            wins = int((d < 0).sum())
            verdict = "faster" if len(d) > 1 and d.mean() + ci95(d) < 0 else (
                "slower" if len(d) > 1 and d.mean() - ci95(d) > 0 else "tie (CI spans 0)")
            rows.append([a, f, _fmt(d), f"{wins} / {len(d)}", verdict])
    if not rows:
        return []
    return ["Paired by repeat (adaptive - fixed, s; negative: the adaptive selector was faster):", "",
            *_table(["adaptive", "fixed", "difference (s)", "faster in", "verdict"], rows)]


def summarise(experiment: str, run_dir: Path) -> str:
    """The summary text; also written to ``run_dir/summary.md``."""
    t = read_table(run_dir / "runs.csv")
    t = {k: (v.astype(str) if v.dtype.kind in "OU" else v) for k, v in t.items()}
    total = t["total_s"].astype(float)
    n_rep = len(np.unique(t["repeat"])) if "repeat" in t else 1
    lines = [f"# compression experiment `{experiment}`", "",
             f"Migration time in seconds, mean +- 95 % CI over {n_rep} repeat(s) (`runs.csv` has every run).", ""]
    for wl in np.unique(t["workload"]):
        w = t["workload"] == wl
        lines += [f"## {wl}", ""]
        rows: list[list[str]] = []
        if experiment == "rates":
            for r in np.unique(t["rate_mbit"][w].astype(float)):
                m = w & (t["rate_mbit"].astype(float) == r)
                none = total[m & (t["selector"] == "none")]
                for sel in np.unique(t["selector"][m]):
                    v = total[m & (t["selector"] == sel)]
                    saved = f"{100 * (1 - v.mean() / none.mean()):.1f} %" if len(none) and sel != "none" else ""
                    mb = t["bytes_on_wire"][m & (t["selector"] == sel)].astype(float).mean() / 1e6
                    util = _util(t, m & (t["selector"] == sel))
                    rows.append([f"{r:g}", sel, _fmt(v), f"{mb:.1f}", util, saved])
            lines += _table(["Mbit/s", "selector", "time (s)", "MB on wire", UTIL_HEADER, "saved vs none"], rows)
        elif experiment in ("levels", "ratechange"):
            key = "rate_mbit"
            for r in np.unique(t[key][w].astype(float)):
                m = w & (t[key].astype(float) == r)
                sels = list(np.unique(t["selector"][m]))
                means = {s: total[m & (t["selector"] == s)].mean() for s in sels}
                fixed = {s: v for s, v in means.items() if s.startswith("fixed:")}
                best = min(fixed, key=fixed.get) if fixed else None
                for sel in sorted(sels, key=lambda s: means[s]):
                    v = total[m & (t["selector"] == sel)]
                    vs = f"{100 * (v.mean() / fixed[best] - 1):+.1f} %" if best else ""
                    rows.append([f"{r:g}", sel, _fmt(v), vs, "best fixed" if sel == best else ""])
                    if experiment == "ratechange":  # every repeat, and how much crossed before the change
                        rows[-1] += [" / ".join(f"{x:.1f}" for x in v), _fast_phase(t, m & (t["selector"] == sel))]
            what = "from Mbit/s" if experiment == "ratechange" else "Mbit/s"
            extra = ["per repeat (s)", "MB before the change"] if experiment == "ratechange" else []
            lines += _table([what, "selector", "time (s)", "vs best fixed", "", *extra], rows)
            if experiment == "ratechange" and "change_to_mbit" in t:
                to = np.unique(t["change_to_mbit"][w])
                lines += ["", f"The shaper's rate changed to {', '.join(map(str, to))} Mbit/s "
                          f"{np.unique(t['change_after_s'][w])[0]} s after the first image bytes crossed the link."]
            if experiment == "ratechange" and "repeat" in t:
                lines += ["", *_paired(t, w)]
        elif experiment == "pipeline":
            has_pred = "pred_serial_s" in t
            for r in np.unique(t["rate_mbit"][w].astype(float)):
                m = w & (t["rate_mbit"].astype(float) == r)
                for sel in np.unique(t["selector"][m]):
                    p = total[m & (t["selector"] == sel) & (t["pipeline"] == "pipelined")]
                    s = total[m & (t["selector"] == sel) & (t["pipeline"] == "serial")]
                    if not len(p) or not len(s):
                        continue
                    gain = f"{100 * (1 - p.mean() / s.mean()):.1f} %"
                    pred = ""
                    if has_pred:  # from the serial runs' stages: in a pipelined run the stages share the CPU
                        mm = m & (t["selector"] == sel) & (t["pipeline"] == "serial")
                        ps = t["pred_serial_s"][mm].astype(float).mean()
                        pp = t["pred_pipelined_s"][mm].astype(float).mean()
                        pred = f"{pp:.2f} / {ps:.2f} ({100 * (1 - pp / ps):.0f} %)"
                    util = _util(t, m & (t["selector"] == sel) & (t["pipeline"] == "pipelined"))
                    rows.append([f"{r:g}", sel, _fmt(p), _fmt(s), gain, pred, util])
            lines += _table(["Mbit/s", "selector", "pipelined (s)", "serial (s)", "faster by",
                             "eqs. 3-7: pipelined / serial (faster by)", "pipelined link util. (e2e / busy)"], rows)
        else:
            for sel in np.unique(t["selector"][w]):
                rows.append([sel, _fmt(total[w & (t["selector"] == sel)])])
            lines += _table(["selector", "time (s)"], rows)
        lines.append("")
    text = "\n".join(lines)
    (run_dir / "summary.md").write_text(text)
    return text
