"""Task logs: the per-attempt files (writer, reader, rotation, the follower's tail, an older
petit's JSON logs)."""

from __future__ import annotations

import json
import os
import time

import pytest
from processes import wait_until

from petit.storage.logs import FLUSH_BYTES, FLUSH_INTERVAL_SECS
from petit.storage.store import Store

RUN, TASK = "job-1", "t"


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "petit.db"), fsync=False)


def write(store: Store, lines, attempt: int = 1, limit: int = 1 << 20, run_id: str = RUN) -> None:
    writer = store.logs.writer(run_id, TASK, attempt, limit)
    for stream, text in lines:
        writer.append(stream, text)
    writer.close()


def numbered(count: int, start: int = 0) -> list[tuple[str, str]]:
    return [("stdout" if i % 3 else "stderr", f"line {i:04d}") for i in range(start, count)]


def files(store: Store, attempt: int = 1) -> dict[str, bytes]:
    folder = os.path.dirname(store.logs.attempt_path(RUN, TASK, attempt))
    return {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}


# -- the files ------------------------------------------------------------------------------------


def test_round_trip_keeps_the_order_of_both_streams(store):
    write(store, [("stdout", "one"), ("stderr", "two"), ("stdout", "thr\ree é"), ("stdout", "")])
    log = store.logs.read(RUN, TASK)
    assert log == {
        "attempt": 1,
        "lines": [["stdout", "one"], ["stderr", "two"], ["stdout", "thr\ree é"], ["stdout", ""]],
        "stdout": "one\nthr\ree é\n\n",
        "stderr": "two\n",
        "truncated": False,
    }
    assert files(store) == {"1.log": "o one\ne two\no thr\ree é\no \n".encode()}  # tail -f reads it
    assert store.logs.attempts(RUN, TASK) == [1]
    assert store.logs.read(RUN, TASK, 2) is None and store.logs.read(RUN, "other") is None


def test_an_attempt_that_prints_nothing_costs_no_file(store):
    write(store, [])
    assert not os.path.exists(store.logs.root)
    assert store.logs.attempts(RUN, TASK) == [] and store.logs.read(RUN, TASK) is None


def test_every_attempt_keeps_its_own_log_and_none_is_the_latest(store):
    write(store, [("stdout", "first")], attempt=1)
    write(store, [("stderr", "third")], attempt=3)
    assert store.logs.attempts(RUN, TASK) == [1, 3]
    assert store.logs.read(RUN, TASK)["attempt"] == 3
    assert store.logs.read(RUN, TASK, 1)["stdout"] == "first\n"
    assert store.logs.read(RUN, TASK, 2) is None


def test_lines_reach_the_file_within_the_flush_interval_or_at_once_when_big(store):
    writer = store.logs.writer(RUN, TASK, 1, 1 << 20)
    try:
        writer.append("stdout", "soon")
        began = time.monotonic()
        wait_until(lambda: store.logs.read(RUN, TASK), timeout=5, message="the flusher's write")
        assert time.monotonic() - began < FLUSH_INTERVAL_SECS + 0.5
        big = "x" * FLUSH_BYTES
        writer.append("stderr", big)  # no wait: a big buffer is written by append itself
        assert store.logs.read(RUN, TASK)["lines"] == [["stdout", "soon"], ["stderr", big]]
    finally:
        writer.close()
    writer.append("stdout", "after close")  # dropped, not an error
    assert len(store.logs.read(RUN, TASK)["lines"]) == 2


def test_rotation_keeps_two_segments_and_says_what_was_dropped(store):
    lines = numbered(100)  # "o line 0000\n" is 12 bytes: 5 records per 60-byte segment
    write(store, lines[:10], limit=60)  # exactly two full segments: nothing dropped yet
    once = store.logs.read(RUN, TASK)
    assert once["lines"] == [list(line) for line in lines[:10]] and once["truncated"] is False
    write(store, lines, limit=60)
    on_disk = files(store)
    assert set(on_disk) == {"1.log", "1.log.1"}
    assert on_disk["1.log"].startswith(b"# rotated: 95 lines, 1140 bytes before this segment\n")
    assert on_disk["1.log.1"].startswith(b"# rotated: 90 lines, 1080 bytes before this segment\n")
    assert all(len(raw) <= 60 + 60 for raw in on_disk.values())  # a segment, plus its marker
    log = store.logs.read(RUN, TASK)
    assert log["lines"] == [list(line) for line in lines[90:]] and log["truncated"] is True


def test_a_line_longer_than_the_limit_gets_a_segment_of_its_own(store):
    write(store, [("stdout", "a"), ("stdout", "b" * 100), ("stdout", "c")], limit=20)
    assert store.logs.read(RUN, TASK)["lines"] == [["stdout", "b" * 100], ["stdout", "c"]]


def test_a_crash_between_the_two_steps_of_a_rotation_leaves_a_readable_log(store):
    write(store, numbered(10), limit=60)
    path = store.logs.attempt_path(RUN, TASK, 1)
    os.unlink(path)  # as if killed after the rename, before the new segment
    assert store.logs.read(RUN, TASK)["lines"] == [list(line) for line in numbered(5)]
    assert store.logs.attempts(RUN, TASK) == [1]


# -- the follower's tail --------------------------------------------------------------------------


def test_tail_follows_across_rotations_and_tells_a_gap(store):
    lines = numbered(40)
    writer = store.logs.writer(RUN, TASK, 1, 60)
    tail = store.logs.tail(RUN, TASK, 1)
    try:
        assert tail.read_new() == []  # nothing written yet
        for line in lines[:3]:
            writer.append(*line)
        writer.flush()
        assert tail.read_new() == lines[:3]
        for line in lines[3:8]:  # one rotation between two reads: nothing lost
            writer.append(*line)
        writer.flush()
        got = []
        while batch := tail.read_new():
            got += batch
        assert got == lines[3:8] and tail.position == 8
        # four rotations between two reads: the tail ends the file it held, then goes to the
        # newest segment, and its position says how many lines it could not see
        for line in lines[8:30]:
            writer.append(*line)
        writer.flush()
        assert tail.read_new() == lines[8:10] and tail.position == 10
        assert tail.read_new() == lines[25:30] and tail.position == 30
    finally:
        writer.close()
        tail.close()
    resumed = store.logs.tail(RUN, TASK, 1, start_line=27)
    assert resumed.read_new() == lines[27:30] and resumed.position == 30
    resumed.close()


# -- an older petit's logs ------------------------------------------------------------------------


def test_a_log_of_an_older_petit_is_the_log_of_the_attempt_it_names(store):
    legacy = store.logs.legacy_path(RUN, TASK)
    os.makedirs(os.path.dirname(legacy))
    record = {
        "task_id": TASK,
        "run_id": RUN,
        "attempt": 2,
        "exit_code": 1,
        "stdout": "[... 10 bytes truncated ...]\nout 1\nout 2\n",
        "stderr": "err",  # the last line had no newline
        "truncated": True,
        "error": "exited with code 1",
    }
    with open(legacy, "w") as handle:
        json.dump(record, handle)
    assert store.logs.attempts(RUN, TASK) == [2]
    log = store.logs.read(RUN, TASK)
    assert log == store.logs.read(RUN, TASK, 2)
    assert log["lines"] == [
        ["stdout", "[... 10 bytes truncated ...]"],
        ["stdout", "out 1"],
        ["stdout", "out 2"],
        ["stderr", "err"],
    ]
    assert (log["stdout"], log["stderr"], log["truncated"]) == (record["stdout"], "err", True)
    assert store.logs.read(RUN, TASK, 1) is None
    tail = store.logs.tail(RUN, TASK, 2)
    assert tail.read_new() == [tuple(line) for line in log["lines"]] and tail.read_new() == []
    tail.close()
