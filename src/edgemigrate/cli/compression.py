"""``edgemigrate experiment compression ...``: the Zhang et al. 2019 experiments on the real engine (root)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgemigrate.core.errors import ConfigError


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r}: expected comma-separated numbers") from None
    if not vals or any(v <= 0 for v in vals):
        raise ConfigError(f"{what} {text!r}: expected positive numbers")
    return vals


def _names(text: str, what: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    if not vals:
        raise ConfigError(f"{what}: empty list")
    return vals


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--workloads", default="kvstore,redis", show_default=True,
                     help="Comma-separated: counter, kvstore, redis, web."),
        click.option("--resident-mb", type=float, default=64.0, show_default=True,
                     help="Resident memory of counter/kvstore; data filled into redis (MiB)."),
        click.option("--rtt-ms", type=float, default=20.0, show_default=True, help="Link RTT."),
        click.option("--strategy", type=click.Choice(["stop-and-copy", "precopy"]), default="stop-and-copy",
                     show_default=True),
        click.option("--page-codec", default="none", show_default=True, help="Codec for pages-*.img (e.g. wkdm)."),
        click.option("--repeats", type=int, default=1, show_default=True),
        click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("results"),
                     show_default=True),
        click.option("--no-plots", is_flag=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _base(resident_mb: float, rtt_ms: float, strategy: str, page_codec: str) -> Any:
    from edgemigrate.experiments.compression import RunConfig

    return RunConfig(resident_mb=resident_mb, rtt_ms=rtt_ms, strategy=strategy, page_codec=page_codec)


def _go(name: str, plan: list[Any], out_root: Path, repeats: int, no_plots: bool) -> None:
    from edgemigrate.experiments.compression import sweep

    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    out = sweep(name, plan, out_root, repeats, echo=click.echo, plot=not no_plots, command=sys.argv)
    click.echo(f"results: {out}", err=True)


@click.group()
def compression() -> None:
    """Zhang et al. 2019: compressed, adaptive, pipelined migration of real containers over a shaped link (root)."""


@compression.command()
@_common
@click.option("--rates", default="5,10,20,50,100,1000", show_default=True, help="Link rates (Mbit/s).")
@click.option("--selectors", default="none,model,rule", show_default=True,
              help="none, model, rule or fixed:CODEC:LEVEL, comma-separated.")
def rates(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
          out_root: Path, no_plots: bool, rates: str, selectors: str) -> None:
    """(a) Migration time, compressed vs uncompressed, at every link rate."""
    from edgemigrate.experiments.compression import plan_rates

    base = _base(resident_mb, rtt_ms, strategy, page_codec)
    plan = plan_rates(base, _names(workloads, "--workloads"), _floats(rates, "--rates"),
                      _names(selectors, "--selectors"))
    _go("rates", plan, out_root, repeats, no_plots)


@compression.command()
@_common
@click.option("--rates", default="10,100,1000", show_default=True, help="Link rates (Mbit/s).")
@click.option("--codec", default="zstd", show_default=True, help="Codec of the fixed levels.")
@click.option("--levels", default="1,2,3,4,5,6,7,8,9", show_default=True)
def levels(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
           out_root: Path, no_plots: bool, rates: str, codec: str, levels: str) -> None:
    """(b) Every fixed level 1..9 with the model and rule selectors overlaid."""
    from edgemigrate.experiments.compression import plan_levels

    lv = [int(x) for x in _floats(levels, "--levels")]
    plan = plan_levels(_base(resident_mb, rtt_ms, strategy, page_codec), _names(workloads, "--workloads"),
                       _floats(rates, "--rates"), codec, lv)
    _go("levels", plan, out_root, repeats, no_plots)


@compression.command()
@_common
@click.option("--rates", default="100,1000", show_default=True, help="Link rates (Mbit/s).")
@click.option("--selectors", default="model,fixed:zstd:3,fixed:zstd:9", show_default=True)
def pipeline(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
             out_root: Path, no_plots: bool, rates: str, selectors: str) -> None:
    """(c) Pipelined (compress while sending) vs serial."""
    from edgemigrate.experiments.compression import plan_pipeline

    plan = plan_pipeline(_base(resident_mb, rtt_ms, strategy, page_codec), _names(workloads, "--workloads"),
                         _floats(rates, "--rates"), _names(selectors, "--selectors"))
    _go("pipeline", plan, out_root, repeats, no_plots)


@compression.command()
@_common
@click.option("--from-mbit", type=float, default=1000.0, show_default=True)
@click.option("--to-mbit", type=float, default=20.0, show_default=True)
@click.option("--after-s", type=float, default=0.5, show_default=True,
              help="Change the shaper's rate this long after the first image bytes crossed the link.")
@click.option("--codec", default="zstd", show_default=True)
@click.option("--levels", default="1,3,6,9,12", show_default=True)
@click.option("--also", default="fixed:lz4:1", show_default=True,
              help="More selectors to compare, comma-separated (e.g. fixed:lz4:1,model:lz4; 'none' for no more).")
@click.option("--without", default="", metavar="SELECTORS",
              help="Leave out these of the always-run none, model and rule (e.g. none,rule: the slowest on a "
                   "large image).")
def ratechange(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
               out_root: Path, no_plots: bool, from_mbit: float, to_mbit: float, after_s: float, codec: str,
               levels: str, also: str, without: str) -> None:
    """(e) The link rate changes while the image is in flight: adaptive selectors vs every fixed level."""
    from edgemigrate.experiments.compression import plan_ratechange

    lv = [int(x) for x in _floats(levels, "--levels")]
    extra = [] if also.strip() == "none" else _names(also, "--also")
    drop = _names(without, "--without") if without.strip() else []
    plan = plan_ratechange(_base(resident_mb, rtt_ms, strategy, page_codec), _names(workloads, "--workloads"),
                           from_mbit, to_mbit, after_s, codec, lv, extra, drop)
    _go("ratechange", plan, out_root, repeats, no_plots)


@compression.command()
@_common
@click.option("--rates", default="100", show_default=True, help="Edge-to-edge link rates (Mbit/s).")
@click.option("--selectors", default="none,model,rule", show_default=True)
@click.option("--page-kib", type=int, default=512, show_default=True, help="Size of the static page (KiB).")
@click.option("--concurrency", type=int, default=100, show_default=True, help="ab -c: concurrent requests.")
@click.option("--client-mbit", type=float, default=100.0, show_default=True,
              help="Rate of the client's links to the edges (the pages' path).")
def web(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
        out_root: Path, no_plots: bool, rates: str, selectors: str, page_kib: int, concurrency: int,
        client_mbit: float) -> None:
    """(d) lighttpd serving a static page under ab load while it migrates: throughput and QPS per second.

    --workloads and --resident-mb do not apply (the workload is the web server)."""
    from dataclasses import replace

    from edgemigrate.experiments.compression import plan_web

    base = replace(_base(resident_mb, rtt_ms, strategy, page_codec), page_kib=page_kib,
                   load_concurrency=concurrency, client_mbit=client_mbit)
    plan = plan_web(base, _floats(rates, "--rates"), _names(selectors, "--selectors"))
    _go("web", plan, out_root, repeats, no_plots)


@compression.command()
@_common
@click.option("--selector", default="model", show_default=True,
              help="none, fixed:CODEC:LEVEL, rule, model or model:CODEC (e.g. model:lz4).")
@click.option("--pipeline", "pipeline_mode", type=click.Choice(["pipelined", "serial"]), default="pipelined")
@click.option("--rate-mbit", type=float, default=100.0, show_default=True)
@click.option("--change-to-mbit", type=float, help="Change the shaper's rate to this while the image is in flight.")
@click.option("--change-after-s", type=float, default=0.5, show_default=True,
              help="With --change-to-mbit: this long after the first image bytes crossed the link.")
def single(workloads: str, resident_mb: float, rtt_ms: float, strategy: str, page_codec: str, repeats: int,
           out_root: Path, no_plots: bool, selector: str, pipeline_mode: str, rate_mbit: float,
           change_to_mbit: float | None, change_after_s: float) -> None:
    """One configuration (first workload of --workloads), --repeats times."""
    from dataclasses import replace

    base = _base(resident_mb, rtt_ms, strategy, page_codec)
    cfg = replace(base, workload=_names(workloads, "--workloads")[0], selector=selector, pipeline=pipeline_mode,
                  rate_mbit=rate_mbit, change_to_mbit=change_to_mbit,
                  change_after_s=None if change_to_mbit is None else change_after_s)
    _go("single", [cfg], out_root, repeats, True)  # one configuration: the JSON lines and CSV are the result
