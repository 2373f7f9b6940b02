from __future__ import annotations

import calendar
import gzip
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import DataFormatError, ValidationError
from edgemigrate.mobility import parse_time, read_cabspotting, read_csv, read_roma
from edgemigrate.mobility import readers as readers_mod


def _parse_cab_file(path: Path) -> list[tuple[float, float, float]]:
    """Independent reading of one cab file: (t, lat, lon) in file order."""
    out = []
    for line in path.read_text().splitlines():
        lat, lon, _occ, t = line.split()
        out.append((float(t), float(lat), float(lon)))
    return out


# ------------------------------------------------------------------------------------------------ cabspotting


def test_cabspotting_sample_reads_every_fix_oldest_first(shared_data: Path) -> None:
    folder = shared_data / "traces" / "cabspotting_format_sample"
    raw = read_cabspotting(folder)
    assert raw.ids == ("synthaa", "synthab", "synthac")
    for cab, t, lat, lon in zip(raw.ids, raw.t_s, raw.lat, raw.lon, strict=True):
        rows = _parse_cab_file(folder / f"new_{cab}.txt")
        assert rows[0][0] > rows[-1][0], "sample files are newest first"
        expect = np.array(sorted(rows))
        assert np.all(np.diff(t) > 0)
        np.testing.assert_array_equal(t, expect[:, 0])
        np.testing.assert_array_equal(lat, expect[:, 1])
        np.testing.assert_array_equal(lon, expect[:, 2])
    assert raw.n_fixes == raw.lines_read == 360
    assert raw.skipped_lines == 0 and raw.reader == "cabspotting"
    assert len(raw.sha256) == 64


def test_cabspotting_selects_cabs_and_time_window(shared_data: Path) -> None:
    folder = shared_data / "traces" / "cabspotting_format_sample"
    full = read_cabspotting(folder, cab_ids=["synthab"])
    assert full.ids == ("synthab",)
    t_mid = float(np.median(full.t_s[0]))
    cut = read_cabspotting(folder, cab_ids=["synthab"], start=t_mid, end=t_mid + 600)
    assert cut.n_fixes > 0
    assert cut.t_s[0].min() >= t_mid and cut.t_s[0].max() < t_mid + 600
    assert cut.n_fixes == int(((full.t_s[0] >= t_mid) & (full.t_s[0] < t_mid + 600)).sum())


def test_cabspotting_unknown_cab_suggests(shared_data: Path) -> None:
    with pytest.raises(ValidationError, match="did you mean 'synthab'"):
        read_cabspotting(shared_data / "traces" / "cabspotting_format_sample", cab_ids=["synthabb"])


def _write_cab(folder: Path, cab: str, lines: list[str]) -> None:
    (folder / f"new_{cab}.txt").write_text("\n".join(lines) + "\n")


def test_cabspotting_index_and_malformed_lines(tmp_path: Path) -> None:
    _write_cab(tmp_path, "a", ["37.70000 -122.40000 0 1000", "37.60000 -122.40000 1 940"])
    _write_cab(tmp_path, "b", ["37.70000 -122.40000 0 1000", "37.70000 -122.40000 2 990", "bogus line", "1 2 0 900"])
    (tmp_path / "_cabs.txt").write_text('<cab id="a" updates="2"/>\n<cab id="b" updates="4"/>\n<cab id="c" updates="1"/>\n')
    with pytest.raises(DataFormatError) as exc:
        read_cabspotting(tmp_path)
    assert "_cabs.txt" in str(exc.value) and "new_c.txt is missing" in str(exc.value)
    (tmp_path / "_cabs.txt").write_text('<cab id="a" updates="2"/>\n<cab id="b" updates="4"/>\n')
    with pytest.raises(DataFormatError) as exc:
        read_cabspotting(tmp_path)
    assert exc.value.path.endswith("new_b.txt") and exc.value.line == 2 and "occupancy" in exc.value.reason
    raw = read_cabspotting(tmp_path, lenient=True)
    assert raw.skipped_lines == 2
    assert any("new_b.txt:3" in r and "4 fields" in r for r in raw.skip_reasons)
    assert raw.ids == ("a", "b")
    np.testing.assert_array_equal(raw.t_s[0], [940.0, 1000.0])
    np.testing.assert_array_equal(raw.t_s[1], [900.0, 1000.0])


def test_cabspotting_reads_gzipped_cab_files(shared_data: Path, tmp_path: Path) -> None:
    sample = shared_data / "traces" / "cabspotting_format_sample"
    plain = read_cabspotting(sample)
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in sorted(sample.glob("new_*.txt")):  # as people keep the set: every file gzipped
        (gz / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    seen: list[int] = []
    raw = read_cabspotting(gz, progress=seen.append)
    assert raw.ids == plain.ids and raw.n_fixes == plain.n_fixes and raw.lines_read == plain.lines_read
    for a, b in zip(raw.t_s + raw.lat + raw.lon, plain.t_s + plain.lat + plain.lon, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum(seen) == sum(p.stat().st_size for p in gz.iterdir())  # progress counts the bytes on disk
    assert raw.options == plain.options
    # beside the plain files, a gzipped copy is not read twice; an index may be gzipped too
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in sorted(sample.glob("new_*.txt")):
        (mixed / f.name).write_bytes(f.read_bytes())
    (mixed / "new_synthaa.txt.gz").write_bytes(gzip.compress((sample / "new_synthaa.txt").read_bytes()))
    (mixed / "new_extra.txt.gz").write_bytes(gzip.compress(b"37.70000 -122.40000 0 1213000000\n"))
    (mixed / "_cabs.txt.gz").write_bytes(gzip.compress(b'<cab id="synthaa" updates="1"/>\n<cab id="extra" updates="1"/>\n'))
    raw = read_cabspotting(mixed)
    assert raw.ids == ("synthaa", "extra") and raw.n_fixes == plain.t_s[0].size + 1


def test_cabspotting_damaged_gzip_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers_mod, "CHUNK_BYTES", 4096)  # a real file is read in many chunks before the damage
    data = gzip.compress(b"".join(b"37.70000 -122.40000 0 %d\n" % (1213000000 - 60 * i) for i in range(2000)))
    (tmp_path / "new_cut.txt.gz").write_bytes(data[: len(data) // 2])  # a cut-off download
    with pytest.raises(DataFormatError, match=r"new_cut.txt.gz: not a readable gzip file after line \d+ \("):
        read_cabspotting(tmp_path)
    raw = read_cabspotting(tmp_path, lenient=True)  # keeps what was read before the damage
    assert raw.skipped_lines == 1 and 0 < raw.n_fixes < 2000
    (tmp_path / "new_cut.txt.gz").write_bytes(b"plain text, not gzip")
    with pytest.raises(DataFormatError, match=r"new_cut.txt.gz: not a readable gzip file"):
        read_cabspotting(tmp_path)


def test_cabspotting_missing_folder_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a directory"):
        read_cabspotting(tmp_path / "nope")
    with pytest.raises(DataFormatError, match="no cab files"):
        read_cabspotting(tmp_path)


# ------------------------------------------------------------------------------------------------------ roma


def test_roma_sample_times_and_latitude_first(shared_data: Path) -> None:
    path = shared_data / "traces" / "roma_format_sample.txt"
    raw = read_roma(path)
    assert set(raw.ids) == {"17", "156", "233", "301"}
    assert raw.n_fixes == raw.lines_read == 800
    # first line: 17;2014-02-01 08:00:00.511373+01;POINT(41.8854697065950 12.4748194861490)
    i17 = raw.ids.index("17")
    t_expect = calendar.timegm((2014, 2, 1, 7, 0, 0)) + 0.511373
    assert raw.t_s[i17][0] == pytest.approx(t_expect, abs=1e-6)
    assert raw.lat[i17][0] == pytest.approx(41.8854697065950)
    assert raw.lon[i17][0] == pytest.approx(12.4748194861490)
    for lat, lon in zip(raw.lat, raw.lon, strict=True):
        assert (lat > 41.0).all() and (lat < 42.5).all() and (lon > 12.0).all() and (lon < 13.0).all()
    # the whole file was read, so the digest is the file's
    assert raw.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert raw.options["complete"] is True


def test_roma_line_without_microseconds(shared_data: Path) -> None:
    path = shared_data / "traces" / "roma_format_sample.txt"
    # 17;2014-02-01 08:00:43+01;POINT(41.8860828387432 12.4789315334992)
    raw = read_roma(path, taxi_ids=[17])
    t = calendar.timegm((2014, 2, 1, 7, 0, 43))
    k = int(np.flatnonzero(raw.t_s[0] == t)[0])
    assert raw.lat[0][k] == pytest.approx(41.8860828387432)


def test_roma_id_and_window_cut_stops_early(shared_data: Path) -> None:
    path = shared_data / "traces" / "roma_format_sample.txt"
    start, end = "2014-02-01T08:05:00+01:00", "2014-02-01 08:06:00+01:00"
    raw = read_roma(path, taxi_ids=["17", "156"], start=start, end=end)
    full = read_roma(path)
    s, e = parse_time(start), parse_time(end)
    for cab, t in zip(raw.ids, raw.t_s, strict=True):
        ref = full.t_s[full.ids.index(cab)]
        np.testing.assert_array_equal(t, ref[(ref >= s) & (ref < e)])
    assert raw.options["complete"] is False and raw.lines_read < full.lines_read
    whole = read_roma(path, taxi_ids=["17", "156"], start=start, end=end, stop_after_end=False)
    assert whole.options["complete"] is True
    np.testing.assert_array_equal(whole.t_s[0], raw.t_s[0])


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_roma_chunk_boundaries_do_not_matter(shared_data: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared_data / "traces" / "roma_format_sample.txt"
    ref = read_roma(path)
    monkeypatch.setattr(readers_mod, "CHUNK_BYTES", chunk)
    raw = read_roma(path)
    assert raw.ids == ref.ids and raw.sha256 == ref.sha256
    for a, b in zip(raw.t_s + raw.lat + raw.lon, ref.t_s + ref.lat + ref.lon, strict=True):
        np.testing.assert_array_equal(a, b)


BAD_ROMA = [
    ("5;2014-02-01 08:00:01+01;POINT(41.9 12.5)", None),
    ("5;2014-02-01 08:00:02+01", "3 ';'-separated fields"),
    ("5;2014-02-30 08:00:03+01;POINT(41.9 12.5)", "invalid date"),
    ("5;2014-02-01 25:00:04+01;POINT(41.9 12.5)", "invalid time of day"),
    ("5;2014-02-01 08:00:05+01;POINT(41.9 abc)", "non-numeric"),
    ("5;2014/02/01 08:00:06+01;POINT(41.9 12.5)", "YYYY-MM-DD"),
    ("5;2014-02-01 08:00:07+01;POINT(91.9 12.5)", "LATITUDE first"),
    ("5;2014-02-01 08:00:08.25+01;POINT(41.9 12.6)", None),
]


def test_roma_malformed_lines_strict_and_lenient(tmp_path: Path) -> None:
    path = tmp_path / "taxi.txt"
    path.write_text("\n".join(line for line, _ in BAD_ROMA) + "\n")
    with pytest.raises(DataFormatError) as exc:
        read_roma(path)
    assert exc.value.line == 2 and str(exc.value).startswith(f"{path}:2: ")
    for i, (line, reason) in enumerate(BAD_ROMA, 1):
        if reason is None:
            continue
        one = tmp_path / f"one{i}.txt"
        one.write_text(BAD_ROMA[0][0] + "\n" + line + "\n")
        with pytest.raises(DataFormatError, match=reason) as exc:
            read_roma(one)
        assert exc.value.line == 2
    raw = read_roma(path, lenient=True)
    assert raw.skipped_lines == 6 and len(raw.skip_reasons) == 5
    np.testing.assert_allclose(raw.t_s[0] - calendar.timegm((2014, 2, 1, 7, 0, 0)), [1.0, 8.25])


def test_roma_utc_offsets_other_than_plus_one(tmp_path: Path) -> None:
    path = tmp_path / "tz.txt"
    path.write_text("1;2014-02-01 08:00:00+01;POINT(41.9 12.5)\n1;2014-02-01 08:00:10-02:30;POINT(41.9 12.5)\n")
    raw = read_roma(path)
    base = calendar.timegm((2014, 2, 1, 7, 0, 0))
    np.testing.assert_allclose(raw.t_s[0], [base, base + 3600 + 2.5 * 3600 + 10])


def test_roma_gzipped_reads_the_same_and_a_cut_gzip_is_one_error(tmp_path: Path) -> None:
    lines = "".join(f"{i % 3};2014-02-01 08:00:{i:02d}+01;POINT(41.9 12.{i})\n" for i in range(40))
    plain, packed = tmp_path / "taxi.txt", tmp_path / "taxi.txt.gz"
    plain.write_text(lines)
    packed.write_bytes(gzip.compress(lines.encode()))
    ref, raw = read_roma(plain), read_roma(packed)
    assert raw.ids == ref.ids and raw.sha256 == ref.sha256 and raw.n_fixes == 40
    for a, b in zip(raw.t_s + raw.lat + raw.lon, ref.t_s + ref.lat + ref.lon, strict=True):
        np.testing.assert_array_equal(a, b)
    assert raw.options["bytes_read"] == packed.stat().st_size  # progress counts what is on disk
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(packed.read_bytes()[:-12])
    with pytest.raises(DataFormatError, match="not a readable gzip file") as exc:
        read_roma(cut)
    assert str(exc.value).startswith(str(cut))


def test_roma_unknown_taxi_is_an_error(shared_data: Path) -> None:
    with pytest.raises(ValidationError, match="18 have no fix"):
        read_roma(shared_data / "traces" / "roma_format_sample.txt", taxi_ids=["18"])


# ------------------------------------------------------------------------------------------------------- csv


def test_csv_any_column_order_iso_and_unix_times(tmp_path: Path) -> None:
    path = tmp_path / "fixes.csv"
    path.write_text(
        "lat,extra,id,lon,t\n"
        "37.70,x,u1,-122.40,1000\n"
        "37.71,y,u1,-122.41,1970-01-01T00:15:00+00:00\n"
        '37.72,"a, b",u2,-122.42,1970-01-01T00:20:00\n'
    )
    raw = read_csv(path)
    assert raw.ids == ("u1", "u2")
    np.testing.assert_array_equal(raw.t_s[0], [900.0, 1000.0])
    np.testing.assert_array_equal(raw.lat[0], [37.71, 37.70])
    np.testing.assert_array_equal(raw.t_s[1], [1200.0])
    assert read_csv(path, ids=["u2"]).ids == ("u2",)


def test_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,time,lat,lon\nu,1,2,3\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:1: header lacks column\(s\) t"):
        read_csv(path)
    path.write_text("id,t,lat,lon\nu,1,37,-122\nu,later,37,-122\nu,3,95,-122\nu,4,37\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:3: t: 'later'"):
        read_csv(path)
    raw = read_csv(path, lenient=True)
    assert raw.skipped_lines == 3 and raw.n_fixes == 1
    assert "latitude 95.0" in raw.skip_reasons[1]
    with pytest.raises(ValidationError, match="have no fix"):
        read_csv(path, ids=["v"], lenient=True)


# ------------------------------------------------------------------------------------------------ parse_time


def test_parse_time_forms() -> None:
    assert parse_time(None) is None
    assert parse_time(12) == 12.0
    assert parse_time(" 1213084687 ") == 1213084687.0
    assert parse_time("2008-06-10T07:58:07+00:00") == 1213084687.0
    assert parse_time("2008-06-10 07:58:07") == 1213084687.0  # naive = UTC
    assert parse_time("2008-06-10T00:58:07-07:00") == 1213084687.0
    assert parse_time(datetime(2008, 6, 10, 7, 58, 7, tzinfo=UTC)) == 1213084687.0
    for bad in ("yesterday", float("nan"), True, [1]):
        with pytest.raises(ValidationError):
            parse_time(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="empty"):
        read_roma(Path(__file__), start=10, end=5)
