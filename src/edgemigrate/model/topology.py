"""Backhaul topologies between edge nodes: hop counts (N, N) and distances.

Three builders, one per paper: a Manhattan grid (Liu et al. 2024, sec. VI-A: hop distance between grid
cells is the Manhattan distance), a minimum spanning tree over tower sites (Ghafouri et al. 2022), and a
3-tier edge/regional/cloud layout (Ngo et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path
from scipy.spatial.distance import cdist

from edgemigrate.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Backhaul:
    """Hop counts and straight-line distances between every pair of edge nodes."""

    hops: NDArray[np.int32]
    distance_m: NDArray[np.float64]
    kind: str

    def __post_init__(self) -> None:
        h = np.asarray(self.hops)
        if h.ndim != 2 or h.shape[0] != h.shape[1]:
            raise ValidationError(f"backhaul.hops must be square, got {h.shape}")
        if (h < 0).any():
            raise ValidationError("backhaul graph is disconnected (negative hop count)")
        if (np.diag(h) != 0).any():
            raise ValidationError("backhaul.hops must have a zero diagonal")


def _distances(xy: NDArray[np.float64]) -> NDArray[np.float64]:
    return cdist(xy, xy)


def manhattan_grid(xy_m: NDArray[np.float64], cell_m: float) -> Backhaul:
    """Liu et al. 2024: nodes sit in grid cells of ``cell_m``; hops = |di| + |dj| between their cells."""
    ij = np.floor(np.asarray(xy_m) / cell_m).astype(np.int64)
    hops = (np.abs(ij[:, None, 0] - ij[None, :, 0]) + np.abs(ij[:, None, 1] - ij[None, :, 1])).astype(np.int32)
    return Backhaul(hops=hops, distance_m=_distances(xy_m), kind="manhattan")


def mst(xy_m: NDArray[np.float64]) -> Backhaul:
    """Ghafouri et al. 2022: the backhaul is the Euclidean minimum spanning tree over the sites; hops along
    the tree."""
    d = _distances(xy_m)
    n = len(d)
    if n == 1:
        return Backhaul(hops=np.zeros((1, 1), np.int32), distance_m=d, kind="mst")
    tree = minimum_spanning_tree(csr_matrix(d + 1e-9 * (d == 0)))  # keep co-located sites connected
    adj = (tree + tree.T) > 0
    hops = shortest_path(adj.astype(np.float64), unweighted=True, directed=False)
    return Backhaul(hops=hops.astype(np.int32), distance_m=d, kind="mst")


def three_tier(xy_m: NDArray[np.float64], n_regions: int) -> Backhaul:
    """Ngo et al. 2020: edge nodes hang off regional aggregation nodes, which hang off the core.

    Regions are the ``n_regions`` groups of a deterministic k-means split (Lloyd from evenly spaced seeds).
    Same region: 2 hops (edge - regional - edge); different regions: 4 hops (via the core).
    """
    xy = np.asarray(xy_m, dtype=np.float64)
    k = max(1, min(n_regions, len(xy)))
    centres = xy[np.linspace(0, len(xy) - 1, k).astype(int)]
    for _ in range(20):
        label = np.argmin(cdist(xy, centres), axis=1)
        centres = np.stack([xy[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
    label = np.argmin(cdist(xy, centres), axis=1)
    same = label[:, None] == label[None, :]
    hops = np.where(same, 2, 4).astype(np.int32)
    np.fill_diagonal(hops, 0)
    return Backhaul(hops=hops, distance_m=_distances(xy), kind="three_tier")
