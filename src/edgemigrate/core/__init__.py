"""Foundations shared by every layer: errors, seeding, registries, units. Imports nothing of ours."""

from __future__ import annotations

from edgemigrate.core.errors import (
    ConfigError,
    DataFormatError,
    EdgeMigrateError,
    EngineError,
    ValidationError,
)
from edgemigrate.core.registry import Registry, suggest
from edgemigrate.core.seeding import SeedTree

__all__ = [
    "ConfigError",
    "DataFormatError",
    "EdgeMigrateError",
    "EngineError",
    "Registry",
    "SeedTree",
    "ValidationError",
    "suggest",
]
