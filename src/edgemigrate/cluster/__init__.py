"""A local cluster of real host agents on the emulated testbed (tests, benchmarks, experiments).

It sits above ``control`` and ``testbed`` (it starts one agent process per testbed host) and below
``experiments``, ``benchmarks`` and ``cli``; nothing in ``control``, ``engine``, ``testbed`` or ``core``
imports it.
"""

from __future__ import annotations

from edgemigrate.cluster.local import AgentProc, LocalCluster, real_engine_skip_reason

__all__ = ["AgentProc", "LocalCluster", "real_engine_skip_reason"]
