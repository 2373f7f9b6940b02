"""Training curves of the Mobile-Kube agents (Ghafouri et al. 2022, figs. 4-6) from a ``train`` results folder.

Fig. 4: mean empty servers per episode, fig. 5: mean latency, fig. 6: episode reward - each against sampled
env steps, one line per algorithm. A fourth plot shows trained vs sampled env steps (what the learner really
consumed). Reads only the CSVs, so figures can be redrawn without training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.experiments.results import read_table

FIGURES = (("fig4_empty_servers.png", "empty_servers", 1.0, "mean empty servers per episode", "Fig. 4"),
           ("fig5_latency.png", "latency_s", 1e3, "mean latency per episode [ms]", "Fig. 5"),
           ("fig6_reward.png", "episode_reward_mean", 1.0, "episode reward", "Fig. 6"))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training(run: Path, algos: list[str]) -> list[Path]:
    plt = _plt()
    tables = {a: read_table(run / a / "train.csv") for a in algos if (run / a / "train.csv").is_file()}
    out = run / "plots"
    out.mkdir(exist_ok=True)
    paths = []
    for filename, key, scale, ylabel, fig_no in FIGURES:
        fig, ax = plt.subplots(figsize=(7, 4))
        for algo, t in tables.items():
            if key in t and len(t[key]):
                ax.plot(t["env_steps_sampled"], scale * np.asarray(t[key], dtype=float), label=algo.upper())
        ax.set(xlabel="env steps sampled", ylabel=ylabel,
               title=f"{fig_no} of Ghafouri et al. 2022: {ylabel} during training")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)
        paths.append(out / filename)
    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, t in tables.items():
        ax.plot(t["env_steps_sampled"], t["env_steps_trained"], label=algo.upper())
    lim = max((float(np.nanmax(t["env_steps_sampled"])) for t in tables.values() if len(t["env_steps_sampled"])),
              default=1.0)
    ax.plot([0, lim], [0, lim], ls=":", c="grey", label="trained = sampled")
    ax.set(xlabel="env steps sampled", ylabel="env steps trained", title="What the learner consumed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "steps_consumed.png", dpi=120)
    plt.close(fig)
    paths.append(out / "steps_consumed.png")
    return paths
