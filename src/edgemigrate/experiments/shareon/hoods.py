"""Why neighbourhoods saturate (``docs/shareon.md``, load 0.8): how often a node's 8-neighbourhood has no room.

ShareOn moves a container only to one of its node's nearest neighbours (Maheshwari et al. 2018, sec. III-C),
so where a whole neighbourhood is hot local migration cannot shed the load, whatever the policy. This runs
the city with nearest placement (where every migrating policy starts) and no migration, and measures per
tick after the warm-up the mean utilisation of each node together with its ``n_neighbours`` nearest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgemigrate.experiments.shareon.design import WorldConfig, mobility, node_positions, point_config
from edgemigrate.sim.shareon import ShareOnSim


class _Recording(ShareOnSim):
    """The simulator, keeping every tick's per-node utilisation."""

    def _reset(self) -> None:
        super()._reset()
        self.utils: list[NDArray[np.float64]] = []

    def _load(self, active: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        out = super()._load(active)
        self.utils.append(self.util.copy())
        return out


def saturation(load: float, seed: int, world: WorldConfig, room: float = 0.85) -> dict[str, Any]:
    """One run's fractions of node-ticks whose node is over 1, whose neighbourhood's mean is over ``room``
    (no room under the admission bound) and over 1 (saturated), and the worst neighbourhood's mean."""
    cfg = dataclasses.replace(point_config("load", load), duration_s=world.duration_s, warmup_s=world.warmup_s)
    s = _Recording(cfg, node_positions(world, seed), mobility(world), seed=seed)
    s.run()
    u = np.array(s.utils[s.warmup_steps:])
    hood = np.concatenate([np.arange(s.n_nodes)[:, None], s.neighbours], axis=1)
    mean = u[:, hood].mean(axis=2)
    return {"load": load, "seed": seed, "nodes_over_1": float((u > 1).mean()),
            "hoods_over_room": float((mean > room).mean()), "hoods_over_1": float((mean > 1).mean()),
            "max_hood_mean": float(mean.max()), "city_mean": float(u.mean())}
