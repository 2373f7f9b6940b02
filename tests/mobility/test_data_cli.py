"""Smoke tests of ``edgemigrate data`` (the CLI lives in edgemigrate.cli.data; it drives edgemigrate.mobility)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemigrate.cli import main
from edgemigrate.mobility import Trajectories, read_roma, to_trajectories
from tests.mobility import cabs


def test_import_roma_and_info(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_data / "traces" / "roma_format_sample.txt"
    out = tmp_path / "rome.npz"
    rc = main(["data", "import", "roma", str(src), "--out", str(out), "--ids", "17,156", "--dt-s", "2",
               "--start", "2014-02-01 08:00:00+01:00", "--end", "2014-02-01T08:15:00+01:00", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    line = captured.out.strip()
    assert line.startswith("imported 2 users, ") and "0 skipped" in line and "0 glitches dropped" in line
    assert line.endswith(f"-> {out}")
    tr = Trajectories.load(out)
    ref = to_trajectories(read_roma(src, taxi_ids=["17", "156"], start="2014-02-01 08:00:00+01:00",
                                    end="2014-02-01T08:15:00+01:00"),
                          dt_s=2.0, start="2014-02-01 08:00:00+01:00", end="2014-02-01T08:15:00+01:00")
    np.testing.assert_array_equal(tr.xy_m, ref.xy_m)
    assert tr.t0_s == 1391238000.0 and tr.n_steps == 451
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "users:       2 (17, 156)" in info and "2014-02-01T07:00:00+00:00" in info and "sha256:" in info


def test_import_cabspotting_with_origin_and_area(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    folder = shared_data / "traces" / "cabspotting_format_sample"
    rc = main(["data", "import", "cabspotting", str(folder), "--origin", "37.75,-122.42",
               "--area=-2000,-2000,2000,2000", "--dt-s", "10"])
    assert rc == 0, capsys.readouterr().err
    tr = Trajectories.load(tmp_path / "cabspotting_format_sample.npz")  # default output name
    assert tr.projection.origin_lat == 37.75 and tr.n_users == 3
    assert (np.abs(tr.xy_m[tr.active]) <= 2000).all()
    assert not tr.active.all()  # synthac drives around x ~ +2 km, partly outside


def test_import_gzipped_cabspotting_splits_two_vehicles_under_one_id(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "cabspottingdata"
    folder.mkdir()
    t, lat, lon, vehicle = cabs.interleaved(hours=4.0)
    cabs.write_cab(folder, "twins", t, lat, lon, gz=True)
    t1, lat1, lon1 = cabs.single(hours=4.0, seed=3)
    lat1[77] += 0.2  # one GPS glitch 22 km off
    cabs.write_cab(folder, "glitchy", t1, lat1, lon1, gz=True)
    t2, lat2, lon2 = cabs.single(hours=4.0, seed=4)
    cabs.write_cab(folder, "plain", t2, lat2, lon2)
    out = tmp_path / "sf.npz"
    rc = main(["data", "import", "cabspotting", str(folder), "--out", str(out), "--dt-s", "1", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    n_fixes = t.size + t1.size + t2.size
    n_steps = int(max(t[-1], t1[-1], t2[-1]) - min(t[0], t1[0], t2[0])) + 1
    assert captured.out.strip() == (f"imported 4 users, {n_fixes} fixes from {n_fixes} lines (0 skipped, 1 glitches "
                                    f"dropped, 1 cab files split into two vehicles), {n_steps} steps of 1 s -> {out}")
    tr = Trajectories.load(out)
    assert tr.ids == ("glitchy", "plain", "twins#1", "twins#2")
    for u, mine in ((2, vehicle == 0), (3, vehicle == 1)):  # no fix of either vehicle is lost
        rows = np.round(t[mine] - tr.t0_s).astype(int)
        np.testing.assert_allclose(tr.xy_m[rows, u], tr.projection.to_xy(lat[mine], lon[mine]), atol=1e-6)
        assert tr.active[rows, u].all()
    assert main(["data", "info", str(out)]) == 0
    assert "1 ids split in two" in capsys.readouterr().out


def test_import_csv_lenient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "fixes.csv"
    src.write_text("id,t,lat,lon\na,0,41.9,12.5\na,10,41.9001,12.5\na,x,41.9,12.5\n")
    assert main(["data", "import", "csv", str(src), "--out", str(tmp_path / "o.npz")]) == 2
    assert "fixes.csv:4: t: 'x'" in capsys.readouterr().err
    assert main(["data", "import", "csv", str(src), "--out", str(tmp_path / "o"), "--lenient"]) == 0
    captured = capsys.readouterr()
    assert "1 skipped" in captured.out and "skipped" in captured.err and (tmp_path / "o.npz").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--origin", "north"], "--origin: expected LAT,LON"),
        (["--origin", "37,-122", "--area", "1,2,3"], "--area: expected XMIN,YMIN,XMAX,YMAX"),
        (["--origin", "37,-122", "--area", "5,0,1,1"], "--area: '5,0,1,1' is empty"),
        (["--area", "0,0,1,1"], "--area needs --origin"),
        (["--dt-s", "0"], "--dt-s must be a positive"),
        (["--start", "soon"], "start: 'soon' is neither"),
        (["--ids", "99"], "taxi id(s) 99 have no fix"),
    ],
)
def test_user_mistakes_are_one_line_errors(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    src = shared_data / "traces" / "roma_format_sample.txt"
    rc = main(["data", "import", "roma", str(src), "--out", str(tmp_path / "x.npz"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import", "roma", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: no such file" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "nope.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["data"], ["data", "import"], ["data", "import", "roma"], ["data", "import", "cabspotting"],
                 ["data", "import", "csv"], ["data", "info"]):
        assert main([*args, "--help"]) == 0
        assert "Usage:" in capsys.readouterr().out
