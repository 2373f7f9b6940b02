"""The structure of the PPCM sweep plot (what is drawn, not how it looks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemigrate.experiments.ppcm.design import COMPONENT_TITLES, COMPONENTS
from edgemigrate.experiments.ppcm.plots import plot_sweep, sweep_figure

ALGOS = ("ppcm", "dep_soft", "kube")


def _agg(x_key: str, points: tuple[float, ...], ci: bool = True) -> list[dict[str, Any]]:
    rows = []
    for x in points:
        for i, algo in enumerate(ALGOS):
            row: dict[str, Any] = {x_key: x, "algo": algo, "episodes": 3}
            for j, comp in enumerate(COMPONENTS):
                row[f"{comp}_mean"] = 1.0 + i + 0.1 * j + 0.01 * x
                row[f"{comp}_ci95"] = 0.05 * (j + 1) if ci else 0.0
            rows.append(row)
    return rows


def _bars(ax: Any) -> list[Any]:
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


@pytest.fixture
def close_figures():  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


@pytest.mark.usefixtures("close_figures")
@pytest.mark.parametrize(("axis", "x_key", "point"), [("single", "point", 0), ("tasks", "tasks_per_min", 60)])
def test_one_point_is_drawn_as_bars_per_component_grouped_by_algorithm(axis: str, x_key: str, point: int) -> None:
    agg = _agg(x_key, (point,))
    fig = sweep_figure(agg, x_key, axis)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    bars = _bars(ax)
    # one bar container per component, labelled; each holds one bar per algorithm
    assert [c.get_label() for c in bars] == list(COMPONENT_TITLES)
    assert [len(c) for c in bars] == [len(ALGOS)] * len(COMPONENTS)
    for comp, c in zip(COMPONENTS, bars, strict=True):
        heights = [p.get_height() for p in c]
        assert heights == pytest.approx([r[f"{comp}_mean"] for r in agg])
        assert c.errorbar is not None
        segments = c.errorbar.lines[2][0].get_segments()
        assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([2 * r[f"{comp}_ci95"] for r in agg])
    # the groups sit at the algorithms' categorical positions: the bars of one algorithm lie within its slot
    assert ax.get_xticks() == pytest.approx(np.arange(len(ALGOS)))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ALGOS)
    for i in range(len(ALGOS)):
        centres = [c[i].get_x() + c[i].get_width() / 2 for c in bars]
        assert all(i - 0.5 < x < i + 0.5 for x in centres)
        assert centres == sorted(centres)
    # no sweep along a numeric x axis: no line joins points (error-bar caps are markers only; the one drawn
    # line is the zero baseline)
    joined = [ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]
    assert all(len(set(ln.get_ydata())) == 1 for ln in joined)
    assert ax.get_xlabel() == ""
    assert ax.get_legend() is not None
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(COMPONENT_TITLES)


@pytest.mark.usefixtures("close_figures")
def test_one_point_without_intervals_draws_no_error_bars() -> None:
    fig = sweep_figure(_agg("point", (0,), ci=False), "point", "single")
    bars = _bars(fig.axes[0])
    assert len(bars) == len(COMPONENTS) and all(c.errorbar is None for c in bars)
    assert "CI" not in fig.axes[0].get_title()


@pytest.mark.usefixtures("close_figures")
def test_several_points_stay_a_sweep_with_one_panel_per_component() -> None:
    fig = sweep_figure(_agg("nodes", (9, 18, 27)), "nodes", "nodes")
    assert len(fig.axes) == len(COMPONENTS)
    for ax, title in zip(fig.axes, COMPONENT_TITLES, strict=True):
        assert ax.get_title() == title and not _bars(ax)
        lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != "None"]
        assert len(lines) == len(ALGOS)
        assert all(list(ln.get_xdata()) == [9, 18, 27] for ln in lines)


def test_plot_sweep_writes_the_png(tmp_path: Path) -> None:
    path = plot_sweep(_agg("point", (0,)), "point", tmp_path / "plots", "single")
    assert path == tmp_path / "plots" / "sweep_single.png" and path.stat().st_size > 0
