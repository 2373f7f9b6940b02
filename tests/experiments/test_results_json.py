"""Results files are strict JSON: a mean over no values or a ratio to zero is written as null, never as the
NaN/Infinity tokens that ``jq``, JavaScript and most JSON parsers reject."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.experiments.results import json_line, strict_json, write_json


def _strict_load(text: str) -> object:
    def refuse(token: str) -> float:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_are_written_as_null(tmp_path: Path) -> None:
    data = {"mean_proc_s": math.nan, "ratio": np.float64(np.inf), "rows": [{"x": -math.inf, "y": 1.25}],
            "pair": (np.float32(0.5), math.nan), "ok": True, "n": np.int64(3), "name": "counter",
            "series": np.array([[1.0, np.nan], [np.inf, 2.0]])}
    write_json(tmp_path / "summary.json", data)
    back = _strict_load((tmp_path / "summary.json").read_text())
    assert back == {"mean_proc_s": None, "ratio": None, "rows": [{"x": None, "y": 1.25}], "pair": [0.5, None],
                    "ok": True, "n": 3, "name": "counter", "series": [[1.0, None], [None, 2.0]]}
    assert _strict_load(json_line(data)) == back


@pytest.mark.parametrize("value", [0.0, -0.0, 1e308, -1e-300, 7])
def test_finite_values_pass_unchanged(value: float) -> None:
    assert strict_json({"v": value}) == {"v": value}


def test_the_experiments_progress_lines_are_strict_json(tmp_path: Path) -> None:
    """A compression run whose link was never sampled and a backend summary with no moves print null."""
    from edgemigrate.experiments.compression import json_line as compression_line
    from edgemigrate.experiments.mobilekube.apply import ApplyResult, json_lines

    row = {"workload": "counter", "selector": "model", "page_codec": "zstd:3", "pipeline": True, "rate_mbit": 100,
           "change_to_mbit": None, "total_s": np.float64(2.5), "bytes_on_wire": 10, "raw_bytes": 20,
           "utilisation": math.nan, "link_util": math.inf, "choices": "zstd:3:4"}
    line = _strict_load(compression_line(row))
    assert line["utilisation"] is None and line["link_util"] is None and line["total_s"] == 2.5
    res = ApplyResult(tmp_path, (), (), {"testbed/live": {"moves": 0, "interruption_mean_s": math.nan}})
    (only,) = json_lines(res)
    assert _strict_load(only) == {"experiment": "mobilekube-apply", "run": "testbed/live", "moves": 0,
                                  "interruption_mean_s": None}
