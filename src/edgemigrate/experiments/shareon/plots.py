"""Plots of the ShareOn sweep (matplotlib, Agg backend, PNG): response time per axis (fig. 9 analogue) and
migration cost against load (fig. 8 analogue), error bars = 95 % CIs over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABELS = {"load": "offered load (system utilisation at 4 cores)", "cores": "cores per node",
          "bandwidth_mbit": "inter-edge bandwidth (Mbit/s)", "user_latency_ms": "user access latency (ms)"}


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(summary: list[dict[str, Any]], axis: str, policy: str, metric: str, scale: float
            ) -> tuple[list[float], list[float], list[float]]:
    rs = sorted((r for r in summary if r["axis"] == axis and r["policy"] == policy), key=lambda r: r["value"])
    return ([r["value"] for r in rs], [scale * r[f"{metric}_mean"] for r in rs],
            [scale * r[f"{metric}_ci95"] for r in rs])


def plot_sweep(summary: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(r["policy"] for r in summary))
    paths = []
    for axis in dict.fromkeys(r["axis"] for r in summary):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for p in policies:
            x, y, e = _series(summary, axis, p, "mean_response_s", 1e3)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=p)
        ax.set_xlabel(LABELS.get(axis, axis))
        ax.set_ylabel("mean system response time (ms)")
        ax.set_yscale("log")
        ax.set_title(f"Average system response vs {axis} (fig. 9 analogue)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"response_vs_{axis}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    if any(r["axis"] == "load" for r in summary):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for p in ("shareon", "bandwidth_only", "processing_only"):
            if p in policies:
                x, y, e = _series(summary, "load", p, "migrated_gb", 1.0)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=p)
        ax.set_xlabel(LABELS["load"])
        ax.set_ylabel("data migrated after warm-up (GB)")
        ax.set_title("Migration cost vs load (fig. 8 analogue)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / "migration_cost_vs_load.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
