"""edgemigrate: mobility-aware container migration at the network edge.

Two halves meet through data: a fast trace-driven simulator with decision policies
(``model`` ... ``experiments``) and a real CRIU-based migration data plane (``engine``,
``control``). See docs/ARCHITECTURE.md for the layer rules.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
