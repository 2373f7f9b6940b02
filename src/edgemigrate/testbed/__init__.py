"""Emulated edge testbed: hosts as network namespaces, shaped links, a user-space delay/loss emulator.

Imports only :mod:`edgemigrate.core`. See :mod:`edgemigrate.testbed.testbed` for the topology and the API.
"""

from __future__ import annotations

from edgemigrate.testbed.config import (
    BaseStationsConfig,
    Emulator,
    HostKind,
    LinkSpec,
    TestbedConfig,
    config_from_mapping,
    load_config,
)
from edgemigrate.testbed.testbed import Testbed, free_subnet

__all__ = ["BaseStationsConfig", "Emulator", "HostKind", "LinkSpec", "Testbed", "TestbedConfig", "config_from_mapping", "free_subnet", "load_config"]
