"""``edgemigrate data``: import real GPS traces into the compact trajectory format, inspect imported files.

    edgemigrate data import cabspotting PATH/TO/cabspottingdata --start 2008-05-18T08:00:00 --end ... --out sf.npz
    edgemigrate data import roma taxi_february.txt --ids 2,17,156 --start "2014-02-01 08:00:00+01:00" --out rome.npz
    edgemigrate data import csv fixes.csv --dt-s 5
    edgemigrate data info sf.npz
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from edgemigrate.core.errors import ConfigError
from edgemigrate.core.geo import Area, LocalProjection
from edgemigrate.mobility.cleaning import DEFAULT_MAX_GAP_S, MAX_PLAUSIBLE_SPEED_MPS, to_trajectories
from edgemigrate.mobility.readers import cabspotting_files, read_cabspotting, read_csv, read_roma
from edgemigrate.mobility.traces import RawTraces, Trajectories


@click.group("data")
def data() -> None:
    """Import real mobility traces (cabspotting, Rome taxis, CSV) and inspect imported files.

    The real sets are not shipped; see docs/data.md for where to obtain them and how to cite them.
    """


@data.group("import")
def import_() -> None:
    """Convert a real trace into a compact .npz trajectory file that scenarios reference.

    Fixes are cleaned (GPS glitches above --max-speed-mps dropped, gaps over --max-gap-s not bridged),
    resampled every --dt-s seconds by linear interpolation, projected to local metres about --origin
    (default: the centroid of the fixes) and clipped to --area.
    """


def _floats(text: str, n: int, option: str, what: str) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{option}: expected {what}, got {text!r}")
    return values


def _projection(origin: str | None) -> LocalProjection | None:
    if origin is None:
        return None
    lat, lon = _floats(origin, 2, "--origin", "LAT,LON in degrees (e.g. 37.7749,-122.4194)")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ConfigError(f"--origin: {lat},{lon} is not a valid LAT,LON")
    return LocalProjection(lat, lon)


def _area(text: str | None) -> Area | None:
    if text is None:
        return None
    x0, y0, x1, y1 = _floats(text, 4, "--area", "XMIN,YMIN,XMAX,YMAX in metres about the origin")
    if not (x1 > x0 and y1 > y0):
        raise ConfigError(f"--area: {text!r} is empty (need XMIN < XMAX and YMIN < YMAX)")
    return Area(x0, y0, x1, y1)


def _ids(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [p.strip() for p in text.split(",") if p.strip()]
    if not ids:
        raise ConfigError("--ids: expected a comma-separated list of ids")
    return ids


def _common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Output .npz file [default: <input name>.npz in the current directory]."),
        click.option("--dt-s", "dt_s", type=float, default=1.0, show_default=True,
                     help="Simulation tick: resample positions every this many seconds."),
        click.option("--ids", "ids", default=None, help="Comma-separated user/cab/taxi ids to keep [default: all]."),
        click.option("--start", default=None,
                     help="Keep fixes at or after this time: UNIX seconds or ISO-8601 (no offset = UTC)."),
        click.option("--end", default=None, help="Keep fixes before this time (same forms as --start)."),
        click.option("--lenient", is_flag=True, help="Skip and count malformed lines instead of failing."),
        click.option("--origin", default=None, help="Projection origin LAT,LON [default: centroid of the fixes]."),
        click.option("--area", default=None,
                     help="Scenario area XMIN,YMIN,XMAX,YMAX in metres about the origin; outside = inactive."),
        click.option("--max-speed-mps", type=float, default=MAX_PLAUSIBLE_SPEED_MPS, show_default=True,
                     help="Fixes implying a faster move are GPS glitches and are dropped."),
        click.option("--max-gap-s", type=float, default=DEFAULT_MAX_GAP_S, show_default=True,
                     help="Do not interpolate across gaps between fixes longer than this."),
        click.option("--progress/--no-progress", default=None,
                     help="Show a progress bar [default: when stderr is a terminal]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_import(kind: str, path: Path, opts: dict[str, Any]) -> None:
    from tqdm import tqdm

    projection = _projection(opts["origin"])
    area = _area(opts["area"])
    if area is not None and projection is None:
        raise ConfigError("--area needs --origin (the area is in metres about that point)")
    if not (math.isfinite(opts["dt_s"]) and opts["dt_s"] > 0):
        raise ConfigError(f"--dt-s must be a positive number of seconds, got {opts['dt_s']}")
    ids = _ids(opts["ids"])
    if path.is_dir():
        found = cabspotting_files(path)
        files = [found[i] for i in ids if i in found] if ids else list(found.values())
        total = sum(p.stat().st_size for p in files)
    elif path.is_file():
        total = path.stat().st_size
    else:
        total = 0
    show = opts["progress"] if opts["progress"] is not None else sys.stderr.isatty()
    window = {"start": opts["start"], "end": opts["end"], "lenient": opts["lenient"]}
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"reading {path.name}", disable=not show,
              leave=False) as bar:
        raw: RawTraces
        if kind == "cabspotting":
            raw = read_cabspotting(path, cab_ids=ids, progress=bar.update, **window)
        elif kind == "roma":
            raw = read_roma(path, taxi_ids=ids, progress=bar.update, **window)
        else:
            raw = read_csv(path, ids=ids, progress=bar.update, **window)
    for reason in raw.skip_reasons:
        click.echo(f"edgemigrate: skipped {reason}", err=True)
    trajectories = to_trajectories(
        raw,
        dt_s=opts["dt_s"],
        projection=projection,
        area=area,
        max_speed_mps=opts["max_speed_mps"],
        max_gap_s=opts["max_gap_s"],
        start=opts["start"],
        end=opts["end"],
    )
    out = opts["out"] or Path.cwd() / f"{path.name.removesuffix('.txt').removesuffix('.csv')}.npz"
    if out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    try:
        trajectories.save(out)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    cleaning = trajectories.metadata["cleaning"]
    n_split = cleaning["ids_split"]
    what = "cab files" if kind == "cabspotting" else "ids"
    split = f", {n_split} {what} split into two vehicles" if n_split or kind == "cabspotting" else ""
    click.echo(
        f"imported {trajectories.n_users} users, {raw.n_fixes} fixes from {raw.lines_read} lines "
        f"({raw.skipped_lines} skipped, {cleaning['glitches_dropped']} glitches dropped{split}), "
        f"{trajectories.n_steps} steps of {trajectories.dt_s:g} s -> {out}"
    )


@import_.command("cabspotting")
@click.argument("path", type=click.Path(path_type=Path))
@_common_options
def import_cabspotting(path: Path, **opts: Any) -> None:
    """Import a San Francisco cabspotting folder (new_<cab>.txt or .txt.gz files, optional _cabs.txt).

    PATH is the folder of the CRAWDAD epfl/mobility set (doi:10.15783/C7J010); --ids selects cabs. A cab file
    in which two vehicles report under one id in turn becomes two users, <cab>#1 and <cab>#2.
    """
    _run_import("cabspotting", path, opts)


@import_.command("roma")
@click.argument("path", type=click.Path(path_type=Path))
@_common_options
def import_roma(path: Path, **opts: Any) -> None:
    """Import the Rome taxi file (CRAWDAD roma/taxi, doi:10.15783/C7QC7M; plain or .gz), streamed line by line.

    --ids selects taxis; --start/--end cut the time window (the file's times are CET, +01:00: write
    e.g. "2014-02-01 08:00:00+01:00"). Reading stops shortly after --end since the file is time-sorted.
    """
    _run_import("roma", path, opts)


@import_.command("csv")
@click.argument("path", type=click.Path(path_type=Path))
@_common_options
def import_csv(path: Path, **opts: Any) -> None:
    """Import a generic CSV with header id,t,lat,lon (t in UNIX seconds or ISO-8601)."""
    _run_import("csv", path, opts)


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=UTC).isoformat(timespec="seconds")


@data.command("info")
@click.argument("file", type=click.Path(path_type=Path))
def info(file: Path) -> None:
    """Describe an imported .npz trajectory file."""
    tr = Trajectories.load(file)
    meta = dict(tr.metadata)
    active = tr.active
    xy = tr.xy_m[active] if active.any() else tr.xy_m.reshape(-1, 2)
    lines = [
        f"file:        {file}",
        f"users:       {tr.n_users} ({', '.join(tr.ids[:8])}{', ...' if tr.n_users > 8 else ''})",
        f"steps:       {tr.n_steps} x {tr.dt_s:g} s = {tr.duration_s / 3600:.2f} h",
        f"time:        {_iso(tr.t0_s)} .. {_iso(tr.t0_s + tr.duration_s)}",
        f"origin:      {tr.projection.origin_lat:.6f}, {tr.projection.origin_lon:.6f}",
        f"active:      {100 * float(active.mean()) if active.size else 0.0:.1f} % of user-steps",
        f"extent:      x {xy[:, 0].min():.0f}..{xy[:, 0].max():.0f} m, y {xy[:, 1].min():.0f}..{xy[:, 1].max():.0f} m"
        if xy.size else "extent:      (empty)",
        f"source:      {meta.get('source', '?')} ({meta.get('reader', '?')})",
        f"sha256:      {meta.get('sha256', '?')}",
    ]
    cleaning = meta.get("cleaning")
    if isinstance(cleaning, dict):
        lines.append(
            f"cleaning:    {cleaning.get('fixes_in')} fixes in, {cleaning.get('glitches_dropped')} glitches dropped, "
            f"{cleaning.get('users_dropped')} users dropped, {cleaning.get('ids_split', 0)} ids split in two, "
            f"{meta.get('skipped_lines', 0)} lines skipped"
        )
    options = meta.get("reader_options")
    if isinstance(options, dict):
        shown = {k: v for k, v in options.items() if v is not None}
        lines.append(f"options:     {shown}")
    click.echo("\n".join(lines))
