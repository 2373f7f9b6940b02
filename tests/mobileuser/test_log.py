from __future__ import annotations

from pathlib import Path

import pytest

from edgemigrate.core.errors import DataFormatError
from edgemigrate.mobileuser import RequestRecord, check_counter, parse_line, read_log
from edgemigrate.mobileuser.log import write_record


def rec(seq: int, reply: int | None) -> RequestRecord:
    t = float(seq)
    return RequestRecord(seq, t, None if reply is None else t + 0.01, "edge1" if reply else None, "bs1", reply,
                         None if reply else "TimeoutError: timed out")


def test_line_round_trip_and_fields() -> None:
    r = RequestRecord(7, 1.5, 1.52, "edge2", "bs3", 42)
    line = r.to_line()
    assert "\n" not in line
    assert parse_line(line) == r
    assert r.delay_s == pytest.approx(0.02) and r.answered
    lost = RequestRecord(8, 2.0, None, None, "bs3", None, "OSError: no route")
    assert parse_line(lost.to_line()) == lost and lost.delay_s is None


def test_read_log_file(tmp_path: Path) -> None:
    path = tmp_path / "mu.jsonl"
    with path.open("w") as fh:
        for i in range(1, 4):
            write_record(fh, rec(i, i))
    assert [r.reply for r in read_log(path)] == [1, 2, 3]
    path.write_text(path.read_text() + '{"seq": 4, "send_s": "x"}\n')
    with pytest.raises(DataFormatError, match=r"mu.jsonl:4: 'send_s' must be a non-negative number"):
        list(read_log(path))


@pytest.mark.parametrize(("line", "match"), [
    ("not json", "not JSON"),
    ("[1]", "expected an object"),
    ('{"seq": 1, "send_s": 0, "extra": 1}', "unknown key 'extra'"),
    ('{"seq": -1, "send_s": 0}', "'seq' must be"),
    ('{"seq": 1, "send_s": 2, "recv_s": 1}', "'recv_s' 1.0 is before 'send_s' 2.0"),
    ('{"seq": 1, "send_s": 0, "reply": "7"}', "'reply' must be an integer"),
    ('{"seq": 1, "send_s": 0, "server": "Edge 1"}', "'server'"),
    ('{"seq": 1, "send_s": 0, "error": "' + "x" * 300 + '"}', "'error' must be a string"),
    ("{" + " " * 5000 + "}", "at most 4096"),
    ('{"seq": 1, "send_s": 0, "recv_s": 1, "proc_s": -0.1}', "'proc_s' must be"),
    ('{"seq": 1, "send_s": 0, "recv_s": 1, "proc_s": 2}', "'proc_s' 2.0 exceeds the request's delay"),
    ('{"seq": 1, "send_s": 0, "proc_s": 0.1}', "'proc_s' 0.1 exceeds"),
])
def test_hostile_lines_are_rejected_naming_the_key(line: str, match: str) -> None:
    with pytest.raises(DataFormatError, match=match) as info:
        parse_line(line)
    assert "\n" not in str(info.value)


def test_continuous_counter_is_ok() -> None:
    c = check_counter([rec(i, 10 + i) for i in range(1, 50)])
    assert c.ok and (c.answered, c.unanswered, c.first, c.last) == (49, 0, 11, 59)


def test_a_skip_is_explained_only_by_unanswered_requests_in_between() -> None:
    # request 3 got no reply; the server may or may not have counted it
    assert check_counter([rec(1, 1), rec(2, 2), rec(3, None), rec(4, 4)]).ok
    assert check_counter([rec(1, 1), rec(2, 2), rec(3, None), rec(4, 3)]).ok
    bad = check_counter([rec(1, 1), rec(2, 2), rec(3, 4)])
    assert not bad.ok and "skipped: 2 -> 4 with 0 unanswered" in bad.violations[0]


def test_state_lost_or_replayed_is_a_violation() -> None:
    lost = check_counter([rec(1, 5), rec(2, 6), rec(3, 1)])  # a migration restarted the service fresh
    assert not lost.ok and "went backwards: 6 -> 1" in lost.violations[0]
    again = check_counter([rec(1, 5), rec(2, 5)])
    assert not again.ok and "repeated" in again.violations[0]
    order = check_counter([rec(2, 1), rec(1, 2)])
    assert not order.ok and "out of order" in order.violations[0]


def test_violations_are_bounded() -> None:
    c = check_counter([rec(i, 1) for i in range(1, 1000)], max_violations=5)
    assert len(c.violations) == 5 and c.answered == 999
