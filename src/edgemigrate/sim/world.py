"""The static world a simulation runs in: infrastructure, images and workload (no mutable state)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgemigrate.core.errors import ValidationError
from edgemigrate.model.images import ImageCatalog
from edgemigrate.model.nodes import BaseStations, CloudNode, EdgeNodes
from edgemigrate.model.topology import Backhaul
from edgemigrate.model.workload import WorkloadSpec
from edgemigrate.radio.association import HandoverConfig
from edgemigrate.radio.pathloss import LogDistancePathLoss
from edgemigrate.radio.uplink import PAPER_UPLINK_MBIT


@dataclass(frozen=True, slots=True)
class World:
    nodes: EdgeNodes
    stations: BaseStations
    cloud: CloudNode
    backhaul: Backhaul
    catalog: ImageCatalog
    workload: WorkloadSpec
    image_probs: NDArray[np.float64]
    pathloss: LogDistancePathLoss = field(default_factory=LogDistancePathLoss)
    handover: HandoverConfig = field(default_factory=HandoverConfig)
    uplink_mbit: tuple[float, ...] = PAPER_UPLINK_MBIT

    def __post_init__(self) -> None:
        n = self.nodes.n
        if self.backhaul.hops.shape != (n, n):
            raise ValidationError(f"backhaul has {self.backhaul.hops.shape[0]} nodes, the world has {n}")
        if self.stations.node.max() >= n:
            raise ValidationError("a base station references an edge node that does not exist")
        p = np.asarray(self.image_probs, dtype=np.float64)
        if p.shape != (self.catalog.n_images,) or (p < 0).any() or not np.isclose(p.sum(), 1.0):
            raise ValidationError("image_probs must be a probability vector over the catalog's images")
        object.__setattr__(self, "image_probs", p)
        if not self.uplink_mbit or min(self.uplink_mbit) <= 0:
            raise ValidationError("radio.uplink_mbit must be a non-empty list of positive rates")

    @property
    def n_nodes(self) -> int:
        return self.nodes.n

    @property
    def cloud_index(self) -> int:
        """Actions index edge nodes 0..N-1; N is the cloud (Liu et al. 2024, eq. 18)."""
        return self.nodes.n


def zipf_probs(n: int, s: float, rng: np.random.Generator | None = None) -> NDArray[np.float64]:
    """Zipf-like popularity p_i ~ 1 / rank_i^s; ranks are shuffled by ``rng`` when given."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    if rng is not None:
        w = w[rng.permutation(n)]
    return w / w.sum()
