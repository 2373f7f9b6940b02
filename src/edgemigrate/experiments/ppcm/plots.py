"""Plots of the PPCM experiments: the sweeps, one panel per delay component plus the total (Liu et al. 2024,
figs. 3-6), training curves (fig. 7) and the controlled experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgemigrate.experiments.ppcm.design import ALGORITHMS, COMPONENT_TITLES, COMPONENTS
from edgemigrate.experiments.results import read_table


def plot_sweep(agg: list[dict[str, Any]], x_key: str, out_dir: Path, axis: str) -> Path:
    """Draw :func:`sweep_figure` to ``out_dir/sweep_{axis}.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig = sweep_figure(agg, x_key, axis)
    path = out_dir / f"sweep_{axis}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_figure(agg: list[dict[str, Any]], x_key: str, axis: str) -> Any:
    """The delay components of every algorithm: over the sweep's points, one panel per component; at a
    single point (the training run, or a sweep given one point) there is nothing to draw a line along, so
    grouped bars, one group per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = [a for a in ALGORITHMS if any(r["algo"] == a for r in agg)] + \
        sorted({r["algo"] for r in agg} - set(ALGORITHMS))
    points = sorted({r[x_key] for r in agg})
    if len(points) == 1:
        return _component_bars(agg, algos, points[0], axis)
    fig, axes = plt.subplots(1, len(COMPONENTS), figsize=(4.2 * len(COMPONENTS), 4.2))
    for ax, comp, title in zip(axes, COMPONENTS, COMPONENT_TITLES, strict=True):
        for algo in algos:
            rows = sorted((r for r in agg if r["algo"] == algo), key=lambda r: r[x_key])
            x = np.array([r[x_key] for r in rows], dtype=float)
            y = np.array([r[f"{comp}_mean"] for r in rows])
            e = np.array([r[f"{comp}_ci95"] for r in rows])
            style = {"lw": 2.6, "marker": "o"} if algo == "ppcm" else {"lw": 1.2, "marker": "."}
            ax.errorbar(x, y, yerr=e, label=algo, capsize=2, **style)
        ax.set(title=title, xlabel="edge nodes" if axis == "nodes" else "tasks per minute",
               ylabel="delay per task [s]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"PPCM {axis} sweep: delay components (Liu et al. 2024, eqs. 1-10), 95 % CI")
    fig.tight_layout()
    return fig


def _component_bars(agg: list[dict[str, Any]], algos: list[str], point: Any, axis: str) -> Any:
    """One group of bars per algorithm, one bar per delay component (the total hatched, since it is their sum),
    with the 95 % CIs as error bars when the episodes gave any."""
    import matplotlib.pyplot as plt

    by_algo = {r["algo"]: r for r in agg}
    x = np.arange(len(algos), dtype=float)
    width = 0.8 / len(COMPONENTS)
    has_ci = any(r.get(f"{c}_ci95", 0.0) > 0 for r in agg for c in COMPONENTS)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.15 * len(algos) + 3.0), 4.6))
    for j, (comp, title) in enumerate(zip(COMPONENTS, COMPONENT_TITLES, strict=True)):
        means = [by_algo[a][f"{comp}_mean"] for a in algos]
        cis = [by_algo[a].get(f"{comp}_ci95", 0.0) for a in algos] if has_ci else None
        total = comp == "per_task_total_s"
        ax.bar(x + (j - (len(COMPONENTS) - 1) / 2) * width, means, width, yerr=cis, label=title,
               color="0.85" if total else f"C{j}", edgecolor="0.35" if total else None, hatch="//" if total else None,
               error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "0.2"})
    ax.set_xticks(x, algos)
    for label in ax.get_xticklabels():
        if label.get_text() == "ppcm":
            label.set_fontweight("bold")
    ax.set_xlim(-0.6, len(algos) - 0.4)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_ylabel("delay per task [s]")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="component", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    where = {"nodes": f" at {point:g} edge nodes", "tasks": f" at {point:g} tasks per minute"}.get(axis, "")
    episodes = sorted({int(r["episodes"]) for r in agg if "episodes" in r})
    how = [f"mean of {episodes[0]} evaluation episodes"] if len(episodes) == 1 else ["mean"]
    how += ["95 % CI"] if has_ci else []
    ax.set_title(f"PPCM and the baselines{where}: delay per task by component ({', '.join(how)})")
    fig.tight_layout()
    return fig


def plot_training(agents_dir: Path, out_dir: Path) -> list[Path]:
    """Policy loss, value loss and episode reward per update for every trained agent (Liu et al. 2024, fig. 7)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = sorted(agents_dir.glob("*/*/train.csv"))
    if not logs:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for path in logs:
        t = read_table(path)
        if "global_step" not in t or len(t["global_step"]) == 0:
            continue
        label = path.parent.name.split("__")[1] if "__" in path.parent.name else path.parent.name
        for ax, key in zip(axes, ("policy_loss", "value_loss", "mean_episode_reward"), strict=True):
            ok = np.isfinite(t[key])  # updates that finished no episode log NaN reward
            ax.plot(t["global_step"][ok], t[key][ok], label=label, marker="." if key.startswith("mean") else None)
    for ax, title in zip(axes, ("policy loss", "value loss", "mean episode reward"), strict=True):
        ax.set(title=title, xlabel="environment steps")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize="small")
    fig.suptitle("Training (Liu et al. 2024, fig. 7)")
    fig.tight_layout()
    path = out_dir / "training.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def plot_controlled(agg: list[dict[str, Any]], rows: list[dict[str, Any]], logs: list[str], algos: list[str],
                    train_seeds: list[int], out_dir: Path, point: float) -> Path:
    """The controlled experiment (:mod:`.controlled`): total delay per variant with 95 % CIs and each training seed's mean;
    the acting policy's entropy and cloud share per PPO update for every trained agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [r["algo"] for r in agg]
    colours = {a: f"C{i}" for i, a in enumerate(names)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    ax = axes[0]
    x = np.arange(len(agg))
    ax.bar(x, [r["per_task_total_s_mean"] for r in agg], yerr=[r["per_task_total_s_ci95"] for r in agg],
           color=[colours[a] for a in names], alpha=0.75, capsize=4)
    for i, a in enumerate(names):
        seeds = sorted({int(r["train_seed"]) for r in rows if r["algo"] == a} - {-1})
        for s in seeds:
            v = np.mean([r["per_task_total_s"] for r in rows if r["algo"] == a and int(r["train_seed"]) == s])
            ax.plot(i, v, "k.", ms=8)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set(ylabel="delay per task [s]", title=f"total delay at {point:g} tasks/min (95 % CI; dots: training seeds)")
    ax.grid(axis="y", alpha=0.3)
    styles = ["-", "--", ":", "-."]
    for path, algo, seed in zip(logs, algos, train_seeds, strict=True):
        t = read_table(Path(path))
        if len(t["global_step"]) == 0:
            continue
        ls = styles[seed % len(styles)]
        axes[1].plot(t["global_step"], t["rollout_entropy"], ls, color=colours.get(algo, "k"), label=f"{algo} s{seed}")
        axes[2].plot(t["global_step"], t["rollout_cloud_share"], ls, color=colours.get(algo, "k"))
    axes[1].set(title="entropy of the acting policy [nats]", xlabel="environment steps")
    axes[2].set(title="share of rollout actions to the cloud", xlabel="environment steps", ylim=(-0.02, 1.02))
    for a in axes[1:]:
        a.grid(alpha=0.3)
    axes[1].legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    path = out_dir / "controlled.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
