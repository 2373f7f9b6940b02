"""Tables, Markdown and PNG figures of the Mobile-Kube experiments.

Means with 95 % Student-t half-widths over the test episodes (``core/stats.py``). The gap to the optimum is
paired per episode: ``(cost_agent - cost_optimum) / cost_optimum`` of eq. 2's normalised cost, in percent
(0 = optimal; the optimum sees the same stations, so no agent can go below 0). ``vs best-fit`` compares mean
latencies with best-fit's (the paper's headline: -43 % for IMPALA at best-fit's number of empty servers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.stats import mean_ci95

BEST_FIT = "best-fit"


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


@dataclass(frozen=True, slots=True)
class Summary:
    table: dict[str, NDArray]

    def markdown(self, source: str) -> str:
        t = self.table
        rows = [[str(int(t["users"][i])), str(t["agent"][i]),
                 f"{t['latency_ms'][i]:.2f} +- {t['latency_ms_ci'][i]:.2f}",
                 f"{t['empty_servers'][i]:.2f} +- {t['empty_servers_ci'][i]:.2f}",
                 f"{t['gap_pct'][i]:.1f} +- {t['gap_pct_ci'][i]:.1f}",
                 "" if np.isnan(t["latency_vs_best_fit_pct"][i]) else f"{t['latency_vs_best_fit_pct'][i]:+.1f} %",
                 f"{t['migrations'][i]:.1f}", f"{t['illegal_steps'][i]:.1f}"]
                for i in range(len(t["users"]))]
        head = ["users", "agent", "latency (ms)", "empty servers", "gap to optimum (%)", "latency vs best-fit",
                "migrations / episode", "illegal steps / episode"]
        return "\n".join([
            "# Mobile-Kube test: agents vs users (Ghafouri et al. 2022, figs. 7-8)", "",
            f"Test movements: {source}. Means +- 95 % CI over {int(t['episodes'][0])} episodes.",
            "Gap: eq. 2's normalised cost against the exact per-step MILP optimum, paired by episode.", "",
            *_table(head, rows), ""])


def summarise(columns: Mapping[str, NDArray], reference: str) -> Summary:
    """Per (users, agent): means and CIs of the episode columns, the gap to ``reference``, vs best-fit."""
    users, agent = columns["users"].astype(int), columns["agent"].astype(str)
    out: dict[str, list[float | str]] = {k: [] for k in (
        "users", "agent", "episodes", "latency_ms", "latency_ms_ci", "empty_servers", "empty_servers_ci", "cost",
        "gap_pct", "gap_pct_ci", "latency_vs_best_fit_pct", "migrations", "illegal_steps")}
    for u in dict.fromkeys(users.tolist()):
        ref = (users == u) & (agent == reference)
        ref_cost = columns["cost"][ref].astype(float)
        bf = (users == u) & (agent == BEST_FIT)
        bf_lat = float(columns["latency_ms"][bf].astype(float).mean()) if bf.any() else np.nan
        for a in dict.fromkeys(agent[users == u].tolist()):
            m = (users == u) & (agent == a)
            lat, lat_ci = mean_ci95(columns["latency_ms"][m].astype(float))
            emp, emp_ci = mean_ci95(columns["empty_servers"][m].astype(float))
            gap, gap_ci = mean_ci95(100.0 * (columns["cost"][m].astype(float) - ref_cost) / ref_cost)
            for k, v in (("users", u), ("agent", a), ("episodes", int(m.sum())), ("latency_ms", lat),
                         ("latency_ms_ci", lat_ci), ("empty_servers", emp), ("empty_servers_ci", emp_ci),
                         ("cost", float(columns["cost"][m].astype(float).mean())), ("gap_pct", gap),
                         ("gap_pct_ci", gap_ci), ("latency_vs_best_fit_pct", 100.0 * (lat - bf_lat) / bf_lat),
                         ("migrations", float(columns["migrations"][m].astype(float).mean())),
                         ("illegal_steps", float(columns["illegal_steps"][m].astype(float).mean()))):
                out[k].append(v)
    return Summary({k: np.asarray(v) for k, v in out.items()})


def plot_vs_users(t: Mapping[str, NDArray], run_dir: Path) -> list[Path]:
    """Fig. 7 (latency vs users) and fig. 8 (empty servers vs users), error bars = 95 % CI."""
    plt = _plt()
    paths = []
    for key, ylabel, name in (("latency_ms", "mean latency (ms)", "fig7_latency_vs_users.png"),
                              ("empty_servers", "mean empty servers", "fig8_empty_servers_vs_users.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for a in dict.fromkeys(t["agent"].tolist()):
            m = t["agent"] == a
            ax.errorbar(t["users"][m].astype(int), t[key][m].astype(float), yerr=t[key + "_ci"][m].astype(float),
                        marker="o", capsize=3, label=a)
        ax.set_xlabel("users")
        ax.set_ylabel(ylabel)
        ax.legend()
        fig.tight_layout()
        paths.append(run_dir / name)
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def plot_timeline(c: Mapping[str, NDArray], run_dir: Path, users: int) -> list[Path]:
    """Fig. 9 (empty servers per step) and fig. 10 (latency per step) of one test episode."""
    plt = _plt()
    paths = []
    for key, ylabel, name in (("empty_servers", "empty servers", "fig9_empty_servers_timeline.png"),
                              ("latency_ms", "mean latency (ms)", "fig10_latency_timeline.png")):
        fig, ax = plt.subplots(figsize=(8, 4))
        for a in dict.fromkeys(c["agent"].tolist()):
            m = c["agent"] == a
            ax.plot(c["step"][m].astype(int), c[key][m].astype(float), label=a, lw=1)
        ax.set_xlabel(f"step (5 min), {users} users")
        ax.set_ylabel(ylabel)
        ax.legend()
        fig.tight_layout()
        paths.append(run_dir / name)
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def timeline_markdown(c: Mapping[str, NDArray], users: int, source: str) -> str:
    rows = []
    for a in dict.fromkeys(c["agent"].tolist()):
        m = c["agent"] == a
        rows.append([a, str(int(m.sum())), f"{c['latency_ms'][m].astype(float).mean():.2f}",
                     f"{c['empty_servers'][m].astype(float).mean():.2f}", f"{c['cost'][m].astype(float).mean():.4f}"])
    return "\n".join([f"# Mobile-Kube sample episode, {users} users (Ghafouri et al. 2022, figs. 9-10)", "",
                      f"Test movements: {source}.", "",
                      *_table(["agent", "steps", "mean latency (ms)", "mean empty servers", "mean eq. 2 cost"], rows),
                      ""])
