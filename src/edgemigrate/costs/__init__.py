"""Cost models, one module per paper, as pure vectorised functions (no state, no I/O)."""

from __future__ import annotations
