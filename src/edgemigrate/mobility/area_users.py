"""Pick the trace users who live inside a study area (Ghafouri et al. 2022, sec. VI-VII).

Mobile-Kube tests on San Francisco cabspotting taxis resampled every five minutes, with gaps interpolated,
and keeps the cabs that move inside the towers' box (lat 37.72-37.78, lon -122.45 to -122.38, sec. VII).
:func:`load_area_users` does that for a cabspotting folder (plain or ``.txt.gz`` files, interleaved
vehicles split - all done by :func:`~edgemigrate.mobility.readers.read_cabspotting` and
:func:`~edgemigrate.mobility.cleaning.to_trajectories`), a generic ``id,t,lat,lon`` CSV or a saved
:class:`Trajectories` ``.npz``:

- a user qualifies when at least ``min_inside_fraction`` of its fix-backed steps lie inside the area; the
  ``n_users`` with the largest share are kept (ties by id, so the choice is deterministic);
- positions outside the area are clipped to its border (the cab waits at the edge of the studied network
  rather than vanishing, so every step has all ``n_users``);
- a requested cab whose trace never enters the area, or too few qualifying users, is a one-line
  :class:`DataFormatError` naming the file(s).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgemigrate.core.errors import DataFormatError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.mobility.cleaning import to_trajectories
from edgemigrate.mobility.readers import cabspotting_files, read_cabspotting, read_csv
from edgemigrate.mobility.traces import Trajectories

MAX_NAMED = 5
"""At most this many offending files are named in an error (the rest are counted)."""


def _base_id(ident: str) -> str:
    return ident.split("#", 1)[0]  # "<cab>#1"/"<cab>#2": the two vehicles split from one interleaved id


def _describe(area: Area, projection: LocalProjection) -> str:
    lo = projection.to_latlon(np.array([area.xmin_m, area.ymin_m]))
    hi = projection.to_latlon(np.array([area.xmax_m, area.ymax_m]))
    return f"the towers' area (lat {lo[0]:.4f}..{hi[0]:.4f}, lon {lo[1]:.4f}..{hi[1]:.4f})"


def _read(path: Path, projection: LocalProjection, dt_s: float,
          cab_ids: Iterable[str] | None) -> tuple[Trajectories, dict[str, Path]]:
    if path.is_dir():
        files = cabspotting_files(path)
        raw = read_cabspotting(path, cab_ids=cab_ids)
        return to_trajectories(raw, dt_s=dt_s, projection=projection), files
    if not path.is_file():
        raise DataFormatError(path, None, "no such trace file or folder")
    if path.suffix == ".npz":
        traj = Trajectories.load(path)
        if abs(traj.dt_s - dt_s) > 1e-9:
            raise DataFormatError(path, None, f"trajectories are sampled every {traj.dt_s:g} s, expected {dt_s:g} s")
        xy = projection.to_xy(*traj.projection.to_latlon(traj.xy_m).transpose(2, 0, 1))
        traj = Trajectories(traj.ids, traj.t0_s, traj.dt_s, xy, traj.active, projection, traj.metadata)
        return traj, {}
    raw = read_csv(path, ids=cab_ids)
    return to_trajectories(raw, dt_s=dt_s, projection=projection), {}


def load_area_users(path: str | Path, projection: LocalProjection, area: Area, n_users: int, *,
                    dt_s: float = 300.0, cab_ids: Iterable[str] | None = None,
                    min_inside_fraction: float = 0.5) -> Trajectories:
    """``n_users`` trace users inside ``area`` on a ``dt_s`` grid, projected with ``projection`` (module doc)."""
    path = Path(path)
    wanted = None if cab_ids is None else [str(c) for c in cab_ids]
    traj, files = _read(path, projection, dt_s, wanted)
    inside = area.contains(traj.xy_m) & traj.active
    backed = np.maximum(traj.active.sum(axis=0), 1)
    share = inside.sum(axis=0) / backed
    never = [i for i in range(traj.n_users) if not inside[:, i].any()]

    def where(i: int) -> str:
        return str(files.get(_base_id(traj.ids[i]), path))

    if wanted is not None and never:
        named = sorted({where(i) for i in never})
        raise DataFormatError(named[0], None, f"trace lies entirely outside {_describe(area, projection)}"
                              + (f" (and {len(named) - 1} more)" if len(named) > 1 else ""))
    ok = [i for i in range(traj.n_users) if share[i] >= min_inside_fraction]
    if len(ok) < n_users:
        outside = sorted({where(i) for i in range(traj.n_users) if share[i] < min_inside_fraction})
        shown = ", ".join(Path(p).name for p in outside[:MAX_NAMED])
        more = f" and {len(outside) - MAX_NAMED} more" if len(outside) > MAX_NAMED else ""
        raise DataFormatError(path, None, f"only {len(ok)} of {traj.n_users} traces spend >= "
                              f"{min_inside_fraction:.0%} of their time inside {_describe(area, projection)}, "
                              f"{n_users} users needed; outside: {shown or 'none'}{more}")
    ok.sort(key=lambda i: (-share[i], traj.ids[i]))
    keep = np.asarray(sorted(ok[:n_users]), dtype=np.int64)
    xy = area.clip(traj.xy_m[:, keep])
    metadata = dict(traj.metadata)
    metadata["area_users"] = {"min_inside_fraction": min_inside_fraction,
                              "inside_share": {traj.ids[i]: float(share[i]) for i in keep}}
    return Trajectories(tuple(traj.ids[i] for i in keep), traj.t0_s, traj.dt_s, xy,
                        np.ones((traj.n_steps, keep.size), dtype=bool), projection, metadata)
