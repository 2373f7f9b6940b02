"""Real data sets turned into scenario inputs: OpenCelliD towers -> edge-node sites, Docker Hub layer lists ->
image catalogues. May import :mod:`edgemigrate.core`, :mod:`edgemigrate.model` and :mod:`edgemigrate.mobility`."""

from __future__ import annotations

from edgemigrate.datasets.layers import bundled_catalog, read_dockerhub, sample_services, zipf_weights
from edgemigrate.datasets.towers import (
    CellTable,
    TowerSites,
    bundled_towers,
    cluster_sites,
    pick_sites,
    read_opencellid,
)

__all__ = [
    "CellTable",
    "TowerSites",
    "bundled_catalog",
    "bundled_towers",
    "cluster_sites",
    "pick_sites",
    "read_dockerhub",
    "read_opencellid",
    "sample_services",
    "zipf_weights",
]
