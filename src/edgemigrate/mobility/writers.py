"""Write trajectories in the published cabspotting format (the inverse of ``read_cabspotting``).

Used to hand synthetic, held-out movements to the same import path as real traces (so a test without the
real set still exercises reading, cleaning, 5-minute resampling and the area selection) and by the tests.
One ``new_<id>.txt`` (or ``.txt.gz``) per user, lines ``lat lon occupancy unix_time`` NEWEST FIRST, five
decimals as in the real files, occupancy 0; only fix-backed (active) rows are written.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from edgemigrate.core.errors import ValidationError
from edgemigrate.mobility.traces import Trajectories

_CAB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def write_cabspotting(folder: str | Path, trajectories: Trajectories, *, compress: bool = False) -> list[Path]:
    """Write one cab file per user of ``trajectories`` into ``folder`` (created); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    latlon = trajectories.projection.to_latlon(trajectories.xy_m)
    times = np.round(trajectories.times_s()).astype(np.int64)
    paths: list[Path] = []
    for u, ident in enumerate(trajectories.ids):
        if not _CAB_ID.match(ident):  # the id becomes a file name
            raise ValidationError(f"cab id {ident!r} is not a safe file name ([A-Za-z0-9_-], at most 64)")
        rows = np.flatnonzero(trajectories.active[:, u])[::-1]
        text = "".join(f"{latlon[k, u, 0]:.5f} {latlon[k, u, 1]:.5f} 0 {times[k]}\n" for k in rows)
        path = folder / (f"new_{ident}.txt.gz" if compress else f"new_{ident}.txt")
        if compress:
            with gzip.open(path, "wt", encoding="ascii") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="ascii")
        paths.append(path)
    return paths
