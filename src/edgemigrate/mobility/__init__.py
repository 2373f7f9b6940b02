"""Mobility: real trace readers, cleaning/resampling, trajectories and synthetic generators.

Imports only :mod:`edgemigrate.core`; knows nothing about nodes or policies.

- :mod:`~edgemigrate.mobility.readers`: ``read_cabspotting``, ``read_roma`` (streamed), ``read_csv`` -> :class:`RawTraces`
- :mod:`~edgemigrate.mobility.cleaning`: ``to_trajectories`` (glitches, gaps, resampling, projection, area clip)
- :mod:`~edgemigrate.mobility.traces`: :class:`RawTraces`, :class:`Trajectories` (``.npz`` save/load)
- :mod:`~edgemigrate.mobility.models`: the :class:`MobilityModel` protocol, :class:`TraceMobility`,
  :class:`RandomWaypoint`, :class:`ManhattanGrid`; :mod:`~edgemigrate.mobility.taxi`: :class:`TaxiLike`
"""

from __future__ import annotations

from edgemigrate.mobility.cleaning import (
    DEFAULT_MAX_GAP_S,
    MAX_PLAUSIBLE_SPEED_MPS,
    clean_track,
    to_trajectories,
)
from edgemigrate.mobility.models import ManhattanGrid, MobilityModel, RandomWaypoint, TraceMobility
from edgemigrate.mobility.readers import read_cabspotting, read_csv, read_roma
from edgemigrate.mobility.taxi import TaxiLike, fix_interval_speeds
from edgemigrate.mobility.traces import RawTraces, Trajectories, parse_time

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "MAX_PLAUSIBLE_SPEED_MPS",
    "ManhattanGrid",
    "MobilityModel",
    "RandomWaypoint",
    "RawTraces",
    "TaxiLike",
    "TraceMobility",
    "Trajectories",
    "clean_track",
    "fix_interval_speeds",
    "parse_time",
    "read_cabspotting",
    "read_csv",
    "read_roma",
    "to_trajectories",
]
