"""The rebuild benchmark's own check: every rebuild it times (the gather baseline, runs, runs into a spare)
reproduces the final dump byte for byte (it exits 1 otherwise) and it prints one JSON line per step."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_rebuild.py"


def test_bench_rebuild_small_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_rebuild", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--mb", "2", "--inserted", "5", "--changed", "40", "--repeats", "1", "--dir", str(tmp_path)]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [x["step"] for x in lines] == ["diff", "rebuild_gather", "rebuild_runs", "rebuild_runs_spare"]
    assert all(x["changed"] == 45 for x in lines)  # 5 inserted + 40 rewritten pages
    assert list(tmp_path.iterdir()) == []  # its dumps are removed
