"""Plots of one simulation run (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

COMPONENTS = (("migration_s", "migration S"), ("computation_s", "computation C"),
              ("deployment_s", "deployment P"), ("backhaul_s", "backhaul B"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_decision(steps: Mapping[str, NDArray], key: str) -> NDArray:
    d = np.maximum(steps["decisions"], 1)
    return np.where(steps["decisions"] > 0, steps[key] / d, np.nan)


def plot_run(steps: Mapping[str, NDArray], out_dir: Path, title: str) -> list[Path]:
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    t_min = np.asarray(steps["time_s"]) / 60.0
    paths = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    bottom = np.zeros(len(t_min))
    for key, label in COMPONENTS:
        y = np.nan_to_num(_per_decision(steps, key))
        ax.fill_between(t_min, bottom, bottom + y, step="mid", alpha=0.8, label=label)
        bottom = bottom + y
    ax.set(xlabel="simulated time [min]", ylabel="mean delay per decision [s]",
           title=f"{title}: latency components (Liu et al. 2024, eq. 10)")
    ax.legend(loc="upper left", ncol=4, fontsize="small")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "latency_components.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(t_min, np.cumsum(steps["migrations_passive"]), label="passive (user left coverage)")
    ax.plot(t_min, np.cumsum(steps["migrations_proactive"]), label="proactive (node over threshold)")
    ax.plot(t_min, np.cumsum(steps["fallbacks_to_cloud"]), label="fallbacks to the cloud", ls="--")
    ax.plot(t_min, np.cumsum(steps["handovers"]), label="radio handovers", ls=":")
    ax.set(xlabel="simulated time [min]", ylabel="cumulative count", title=f"{title}: migrations")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "migrations.png"))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(t_min, 100 * np.asarray(steps["cpu_util_mean"]), label="mean")
    ax1.plot(t_min, 100 * np.asarray(steps["cpu_util_max"]), label="max")
    ax1.set(ylabel="node CPU use [%]", title=f"{title}: node load")
    ax1.legend(fontsize="small")
    ax1.grid(alpha=0.3)
    ax2.plot(t_min, steps["tasks_edge"], label="tasks on edge nodes")
    ax2.plot(t_min, steps["tasks_cloud"], label="tasks in the cloud")
    ax2.set(xlabel="simulated time [min]", ylabel="running tasks")
    ax2.legend(fontsize="small")
    ax2.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "node_load.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path
