from __future__ import annotations

from pathlib import Path

from edgemigrate.control.source import _profile_sample


def test_profile_sample_spreads_over_the_largest_image(tmp_path: Path) -> None:
    (tmp_path / "core-1.img").write_bytes(b"c" * 1000)
    pages = b"".join(bytes([q]) * (256 << 10) for q in (1, 2, 3, 4))
    (tmp_path / "pages-1.img").write_bytes(pages)
    sample = _profile_sample(tmp_path, size_bytes=64 << 10, pieces=4)
    assert len(sample) == 64 << 10
    # one 16 KiB slice from the middle of each quarter of the file
    assert [sample[i * (16 << 10)] for i in range(4)] == [1, 2, 3, 4]
    (tmp_path / "empty").mkdir()
    assert _profile_sample(tmp_path / "empty") == b""


def test_profile_sample_of_a_small_file_is_the_file(tmp_path: Path) -> None:
    (tmp_path / "pages-1.img").write_bytes(b"x" * 100)
    assert set(_profile_sample(tmp_path, size_bytes=64 << 10)) == {ord("x")}
