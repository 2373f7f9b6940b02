"""ab under our control: real ab against real lighttpd on loopback, parsing of its -g and summary output,
per-second timelines, clean errors. (A real migration under ab load: ``tests/experiments/test_under_load.py``.)

The real runs wait for the load to have done something (pages read, failures reported), never for some time
to pass, and assert only what follows from it; what the timeline and phase statistics compute from the records is
checked on made-up records, where the right answer is known."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgemigrate.core.errors import DataFormatError, EngineError
from edgemigrate.workloads.httpd import lighttpd_skip_reason
from edgemigrate.workloads.loadgen import (
    AbSummary,
    LoadConfig,
    LoadGenerator,
    LoadResult,
    MigrationMarks,
    RequestRecords,
    ab_available,
    longest_gap_s,
    parse_gnuplot,
    parse_summary,
    phase_stats,
    timeline,
)
from tests.waiting import wait_until

PAGE_BYTES = 200_000
RUN_PAGES = 30  # the real run goes on until ab has read this many pages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadResult]:
    """ab -c 4 against lighttpd on 127.0.0.1 until ab has read RUN_PAGES pages and its interface was sampled
    5 times (stopped with SIGINT, as in an experiment)."""
    if lighttpd_skip_reason() or ab_available() is None:
        pytest.skip(lighttpd_skip_reason() or "ab not installed (apache2-utils)")
    tmp = tmp_path_factory.mktemp("ab")
    port = _free_port()
    srv = subprocess.Popen([sys.executable, "-m", "edgemigrate.workloads.httpd", "--host", "127.0.0.1",
                            "--port", str(port), "--page-bytes", str(PAGE_BYTES), "--workdir", str(tmp / "web")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        gen = LoadGenerator(f"http://127.0.0.1:{port}/", tmp / "load", LoadConfig(concurrency=4), iface="lo")
        gen.start()
        try:
            wait_until(lambda: gen.progress().nic_samples >= 5
                       and gen.progress().read_bytes >= RUN_PAGES * PAGE_BYTES, f"{RUN_PAGES} pages")
        except BaseException:
            gen.kill()
            raise
        yield gen.stop()
    finally:
        srv.terminate()
        srv.wait(10)


def test_real_ab_records_match_its_summary(ab_run: LoadResult) -> None:
    s, rec = ab_run.summary, ab_run.records
    # ab read RUN_PAGES pages (and their headers): at most 4, one per connection, were still incomplete
    assert s.complete >= RUN_PAGES - 4 - 1 and s.failed == 0
    assert s.document_bytes == PAGE_BYTES
    assert len(rec) == s.complete  # one -g line per finished request
    assert (rec.start_s >= int(ab_run.started_s)).all() and (rec.start_s <= ab_run.ended_s).all()
    assert (rec.total_ms >= rec.wait_ms).all()
    assert PAGE_BYTES < s.response_bytes < PAGE_BYTES + 1000  # the page plus its response header
    assert ab_run.nic_t_s.size >= 5 and np.all(np.diff(ab_run.nic_rx_bytes) >= 0)


def test_timeline_counts_every_completion_once(ab_run: LoadResult) -> None:
    t0 = ab_run.started_s - 1.0  # start a bin early: completions are estimated +-0.5 s
    tl = timeline(ab_run, t0, ab_run.ended_s + 2.0)
    assert tl.t_s[0] == 0.0 and np.allclose(np.diff(tl.t_s), 1.0)
    assert tl.qps.sum() == len(ab_run.records)
    assert tl.mbit_source == "interface" and tl.mbit_s.sum() > 0
    assert tl.failed.sum() == 0
    gap, at = longest_gap_s(ab_run, ab_run.started_s, ab_run.ended_s)
    assert 0 < gap <= ab_run.ended_s - ab_run.started_s and ab_run.started_s <= at < ab_run.ended_s


def test_phase_stats_split_the_run(ab_run: LoadResult) -> None:
    a, span = ab_run.started_s, ab_run.ended_s - ab_run.started_s
    marks = MigrationMarks(a + 0.3 * span, a + 0.4 * span, a + 0.5 * span, a + 0.6 * span)
    st = phase_stats(ab_run, marks)
    assert st["complete"] == ab_run.summary.complete and st["failed"] == 0
    n = st["before"]["requests"] + st["during"]["requests"] + st["after"]["requests"]
    done = ab_run.records.done_s()
    assert n == int(((done >= a) & (done < ab_run.ended_s)).sum())
    with pytest.raises(EngineError, match="out of order"):
        MigrationMarks(a + 1, a, a + 2, a + 3)


def test_gnuplot_parse_errors_name_the_file_and_line(ab_run: LoadResult, tmp_path: Path) -> None:
    lines = (ab_run.out_dir / "requests.tsv").read_text().splitlines()
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace("\t", " ", 1), *lines[3:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:3: expected 6 tab-separated fields"):
        parse_gnuplot(bad)
    fields = lines[1].split("\t")
    bad.write_text("\n".join([lines[0], "\t".join([*fields[:4], "x", fields[5]])]) + "\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:2: .*integers"):
        parse_gnuplot(bad)
    bad.write_text("when\tseconds\n")
    with pytest.raises(DataFormatError, match=r"bad\.tsv:1: expected the ab -g header"):
        parse_gnuplot(bad)
    with pytest.raises(DataFormatError, match="cannot read"):
        parse_gnuplot(tmp_path / "missing.tsv")


def test_summary_without_counters_is_refused(ab_run: LoadResult) -> None:
    text = (ab_run.out_dir / "ab.txt").read_text()
    assert parse_summary(text).complete == ab_run.summary.complete
    cut = "\n".join(x for x in text.splitlines() if not x.startswith("Complete requests"))
    with pytest.raises(DataFormatError, match="ab.txt: ab summary has no 'Complete requests:' line"):
        parse_summary(cut, "ab.txt")


def test_failed_requests_are_counted_in_the_second_they_fail(tmp_path: Path) -> None:
    """The server dies under load: ab (-r) goes on, reports each failed request, and the timeline puts the
    failures after the death and none before it."""
    if lighttpd_skip_reason() or ab_available() is None:
        pytest.skip(lighttpd_skip_reason() or "ab not installed (apache2-utils)")
    port = _free_port()
    page_bytes = 1_000_000
    srv = subprocess.Popen([sys.executable, "-m", "edgemigrate.workloads.httpd", "--host", "127.0.0.1",
                            "--port", str(port), "--page-bytes", str(page_bytes), "--workdir", str(tmp_path / "web")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        gen = LoadGenerator(f"http://127.0.0.1:{port}/", tmp_path / "load", LoadConfig(concurrency=2), iface="lo")
        gen.start()
        # ab read more than its 2 connections can hold incomplete: at least one request completed
        wait_until(lambda: gen.progress().read_bytes > 3 * page_bytes, "a completed request")
    finally:
        killed = time.time()  # no failure can be reported before this
        srv.kill()
        srv.wait(10)
    wait_until(lambda: gen.progress().errors_reported > 0, "ab to report a failed request")
    res = gen.stop()
    assert res.summary.complete > 0 and res.summary.failed > 0
    assert res.error_t_s.size > 0 and (res.error_t_s >= killed).all()
    tl = timeline(res, res.started_s, res.ended_s + 1.0)
    assert tl.failed.sum() == res.error_t_s.size
    assert tl.failed[tl.t_s + 1.0 <= killed - res.started_s].sum() == 0


def _made_up_result(nic: bool = True) -> LoadResult:
    """Five requests and two failures around epoch second 1000, with exactly known completion times: a request
    started in second ``s`` taking ``t`` ms is taken to finish at ``s + 0.5 + t / 1000``."""
    start_s = np.array([1000, 1000, 1001, 1001, 1003], dtype=np.int64)
    total_ms = np.array([100.0, 300.0, 200.0, 900.0, 50.0])  # done at 1000.6, 1000.8, 1001.7, 1002.4, 1003.55
    records = RequestRecords(start_s, np.zeros(5), total_ms, total_ms / 2)
    summary = AbSummary(complete=5, failed=2, failed_connect=0, failed_receive=2, failed_length=0,
                        failed_exceptions=0, non_2xx=0, document_bytes=1000, total_bytes=5 * 1200, html_bytes=5 * 1000,
                        time_taken_s=3.8)
    nic_t = np.array([1000.0, 1002.0, 1004.0]) if nic else np.zeros(0)
    nic_rx = np.array([0.0, 2e6, 2.5e6]) if nic else np.zeros(0)
    return LoadResult(records, summary, nic_t, nic_rx, np.array([1002.5, 1003.2]), 1000.2, 1004.0, Path("."))


def test_timeline_and_gaps_of_known_records() -> None:
    res = _made_up_result()
    tl = timeline(res, 1000.0)
    assert tl.t_s.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert tl.qps.tolist() == [2.0, 1.0, 1.0, 1.0]
    assert tl.failed.tolist() == [0, 0, 1, 1]
    assert tl.mbit_source == "interface" and tl.mbit_s == pytest.approx([8.0, 8.0, 2.0, 2.0])  # interpolated
    without = timeline(_made_up_result(nic=False), 1000.0)
    assert without.mbit_source == "requests"  # completions x (document + mean header bytes)
    assert without.mbit_s == pytest.approx([2 * 1200 * 8 / 1e6, *[1200 * 8 / 1e6] * 3])
    assert timeline(res, 1000.0, bin_s=2.0).qps.tolist() == [1.5, 1.0]  # per second of a 2 s bin
    gap, at = longest_gap_s(res, res.started_s, res.ended_s)
    assert (gap, at) == pytest.approx((1.15, 1002.4))
    assert longest_gap_s(res, 1003.6, 1004.0) == pytest.approx((0.4, 1003.6))  # no completion inside


def test_phase_stats_of_known_records() -> None:
    res = _made_up_result()
    st = phase_stats(res, MigrationMarks(1001.0, 1001.5, 1002.0, 1002.5))
    assert [st[k]["requests"] for k in ("before", "during", "frozen", "after")] == [2, 2, 1, 1]
    assert st["during"]["s"] == 1.5 and st["during"]["qps"] == pytest.approx(2 / 1.5, abs=1e-3)
    assert st["frozen"]["mbit_s"] == pytest.approx(8.0)  # 0.5 MB in 0.5 s by the interface counters
    assert (st["longest_gap_s"], st["longest_gap_from_s"]) == pytest.approx((1.1, 2.2))  # up to end + 1 s
    assert (st["complete"], st["failed"], st["failed_receive"], st["errors_reported"]) == (5, 2, 2, 2)


def test_missing_ab_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without apache2-utils
    gen = LoadGenerator("http://127.0.0.1:1/", tmp_path / "load")
    with pytest.raises(EngineError, match="apt-get install apache2-utils"):
        gen.start()
