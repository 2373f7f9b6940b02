"""Training log: one CSV row per PPO update and the loss/reward plot of Liu et al. 2024, fig. 7."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

COLUMNS = (
    "update",
    "global_step",
    "policy_loss",
    "value_loss",
    "entropy",
    "rollout_entropy",
    "rollout_cloud_share",
    "approx_kl",
    "clip_fraction",
    "bc_loss",
    "demo_share",
    "learning_rate",
    "episodes",
    "mean_episode_reward",
    "wall_s",
)


class TrainLog:
    """Append-only CSV (flushed every row, so a killed run keeps its log) plus :meth:`plot`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=COLUMNS)
        self._writer.writeheader()
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        missing = set(COLUMNS) - set(row)
        if missing:
            raise KeyError(f"log row lacks {sorted(missing)}")
        clean = {k: row[k] for k in COLUMNS}
        self.rows.append(clean)
        self._writer.writerow(clean)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def plot(self, png: Path, title: str = "") -> Path:
        """Policy loss, value loss and mean episode reward per update (Liu et al. 2024, fig. 7)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = [r["global_step"] for r in self.rows]
        panels = (
            ("policy_loss", "policy loss"),
            ("value_loss", "value loss"),
            ("mean_episode_reward", "mean episode reward"),
        )
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        fig.subplots_adjust(
            left=0.06, right=0.99, bottom=0.16, top=0.84, wspace=0.25
        )  # constrained layout: ~1.5 s
        for ax, (key, label) in zip(axes, panels, strict=True):
            pts = [
                (xi, float(r[key]))
                for xi, r in zip(x, self.rows, strict=True)
                if not math.isnan(float(r[key]))
            ]
            if pts:
                ax.plot(*zip(*pts, strict=True), lw=1.2)
            ax.set_xlabel("environment steps")
            ax.set_title(label)
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.savefig(png, dpi=110)
        plt.close(fig)
        return png
