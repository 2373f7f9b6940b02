from __future__ import annotations

import pytest

from edgemigrate.experiments.compression.model import predict_s, stage_times_s


def _stats(compress_cpu_s: float, wire_bytes: int) -> dict:
    rnd = {"dump_s": 0.4, "plan_s": 0.1, "rebuild_s": 0.2, "wire_bytes": wire_bytes,
           "wire": {"compress_cpu_s": compress_cpu_s}}
    return {"rounds": [rnd], "restore_s": 0.3}


def test_stage_times_follow_eq_4_for_the_transfer() -> None:
    st = stage_times_s(_stats(2.0, 25_000_000), rate_mbit=100.0)
    assert st == pytest.approx({"checkpoint": 0.5, "compress": 2.0, "transfer": 2.0, "rebuild_restore": 0.5})


def test_serial_adds_the_stages_and_pipelined_overlaps_compression_with_the_transfer() -> None:
    # 4 s of compression on 2 cores = 2 s, overlapped with a 2 s transfer (25 MB at 100 Mbit/s)
    p = predict_s(_stats(4.0, 25_000_000), rate_mbit=100.0, workers=2)
    assert p["pred_serial_s"] == pytest.approx(1.0 + 4.0 + 2.0)
    assert p["pred_pipelined_s"] == pytest.approx(1.0 + 2.0)
    # a fast codec: the transfer dominates, pipelining saves only the compression time
    q = predict_s(_stats(0.2, 25_000_000), rate_mbit=100.0, workers=2)
    assert q["pred_serial_s"] - q["pred_pipelined_s"] == pytest.approx(0.2)


def test_rounds_are_summed() -> None:
    s = _stats(1.0, 12_500_000)
    s["rounds"] = s["rounds"] * 3
    st = stage_times_s(s, rate_mbit=100.0)
    assert st["transfer"] == pytest.approx(3.0) and st["compress"] == pytest.approx(3.0)
    assert st["rebuild_restore"] == pytest.approx(3 * 0.2 + 0.3)
