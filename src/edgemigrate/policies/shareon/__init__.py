"""ShareOn (Maheshwari et al. 2018): one pure decision agent per edge node and the migrating baselines.

``view`` holds what a node knows (its report, its containers, neighbours' possibly stale reports) and the
validation of reports that arrive from peers; ``agent`` holds Algorithm 2 and the bandwidth-only and
processing-only baselines of sec. VI. The pure cost functions are in :mod:`edgemigrate.costs.shareon`.
"""

from __future__ import annotations

from edgemigrate.policies.shareon.agent import (
    AGENTS,
    BandwidthOnlyAgent,
    ProcessingOnlyAgent,
    ShareOnAgent,
    ShareOnParams,
)
from edgemigrate.policies.shareon.view import (
    ContainerState,
    MigrationDecision,
    Neighbour,
    NodeReport,
    NodeView,
    parse_reports,
    report_from_wire,
)

__all__ = [
    "AGENTS", "BandwidthOnlyAgent", "ContainerState", "MigrationDecision", "Neighbour", "NodeReport", "NodeView",
    "ProcessingOnlyAgent", "ShareOnAgent", "ShareOnParams", "parse_reports", "report_from_wire",
]
