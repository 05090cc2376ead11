"""Task logs: the per-attempt files (writer, reader, rotation, the follower's tail, an older
petit's JSON logs), the follow stream without HTTP (LogFollow, with `now` passed in), and end to
end through `bin/petit run`: a running task's output over HTTP, followed live over SSE, every
attempt's log kept, and what a SIGKILLed worker's task printed still there after the restart."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import psutil
import pytest
from api_client import request
from harness import Service
from jobfiles import job_yaml
from processes import wait_until
from sse_client import SseStream
from test_api import schema_problems

from petit.api.logs import HEARTBEAT_SECS, MAX_LINES_PER_MESSAGE, LogFollow
from petit.core.model import Trigger
from petit.execution.runners.base import AttemptResult
from petit.storage.logs import FLUSH_BYTES
from petit.storage.store import Store

RUN, TASK = "job-1", "t"


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "petit.db"), fsync=False)


def write(store: Store, lines, attempt: int = 1, limit: int = 1 << 20, run_id: str = RUN) -> None:
    writer = store.logs.writer(run_id, TASK, attempt, limit)
    append(writer, lines)
    writer.close()


def append(writer, lines) -> None:
    """`(stream, text)` pairs, each run of one stream in one batch, as the runner hands them."""
    for stream, run in itertools.groupby(lines, key=lambda line: line[0]):
        writer.append_lines(stream, [text for _, text in run])


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
        writer.append_lines(
            "stdout", ["soon"]
        )  # the flusher writes it, with no close and no more lines
        wait_until(lambda: store.logs.read(RUN, TASK), timeout=5, message="the flusher's write")
        big = "x" * FLUSH_BYTES
        writer.append_lines("stderr", [big])  # no wait: a big buffer is written by append itself
        assert store.logs.read(RUN, TASK)["lines"] == [["stdout", "soon"], ["stderr", big]]
    finally:
        writer.close()
    writer.append_lines("stdout", ["after close"])  # dropped, not an error
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


def test_one_batch_rotates_where_its_records_cross_the_limit_and_a_newline_splits_a_line(store):
    lines = [text for _, text in numbered(12)]  # 12 bytes a record: 5 per 60-byte segment
    writer = store.logs.writer(RUN, TASK, 1, 60)
    writer.append_lines("stdout", lines[:3])
    writer.flush()
    writer.append_lines("stdout", lines[3:])  # crosses the limit twice: two rotations
    writer.append_lines("stderr", ["two\nrecords"])  # never from the runner, still two lines
    with pytest.raises(TypeError, match="not a str"):
        writer.append_lines("stdout", "a str would be a line per character")
    writer.close()
    on_disk = files(store)
    assert on_disk["1.log.1"] == b"# rotated: 5 lines, 60 bytes before this segment\n" + b"".join(
        f"o {text}\n".encode() for text in lines[5:10]
    )
    assert on_disk["1.log"].startswith(b"# rotated: 10 lines, 120 bytes before this segment\n")
    log = store.logs.read(RUN, TASK)
    expected = [["stdout", t] for t in lines[5:]] + [["stderr", "two"], ["stderr", "records"]]
    assert log["lines"] == expected and log["truncated"] is True


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
        append(writer, lines[:3])
        writer.flush()
        assert tail.read_new() == lines[:3]
        append(writer, lines[3:8])  # one rotation between two reads: nothing lost
        writer.flush()
        got = []
        while batch := tail.read_new():
            got += batch
        assert got == lines[3:8] and tail.position == 8
        # four rotations between two reads: the tail ends the file it held, then goes to the
        # newest segment, and its position says how many lines it could not see
        append(writer, lines[8:30])
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


# -- the follow stream, without HTTP --------------------------------------------------------------


def parse(text: str) -> list[dict]:
    """SSE text as messages: {"comment"} or {"event", "id", "data"}."""
    messages = []
    for block in text.split("\n\n")[:-1]:
        if block.startswith(":"):
            messages.append({"comment": block[1:].strip()})
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        messages.append({**fields, "data": json.loads(fields["data"])})
    return messages


def outcome(exit_code: int) -> AttemptResult:
    error = f"exited with code {exit_code}" if exit_code else None
    return AttemptResult(exit_code, error, False, False, started_at=1, ended_at=2)


def test_follow_goes_from_attempt_to_attempt_then_ends_with_the_task(store):
    run = store.create_run("job", [TASK], Trigger.MANUAL)
    state = run.task(TASK)
    run.start(1)
    state.start_attempt(1)
    store.save_runs([run])
    write(store, [("stdout", "a"), ("stdout", "b"), ("stderr", "c")], run_id=run.id)
    follow = LogFollow(store, run.id, TASK, 1, pinned=False, now=0.0)
    pinned = LogFollow(store, run.id, TASK, 1, pinned=True, start_line=1, now=0.0)
    try:
        first = parse(follow.step(0.0))
        assert [(m["event"], m["id"], m["data"]["stream"], m["data"]["lines"]) for m in first] == [
            ("log", "1:2", "stdout", ["a", "b"]),
            ("log", "1:3", "stderr", ["c"]),
        ]
        assert first[0]["data"] | {"lines": None} == {
            "run_id": run.id,
            "task_id": TASK,
            "attempt": 1,
            "stream": "stdout",
            "lines": None,
        }
        assert follow.step(HEARTBEAT_SECS - 1) == ""
        assert parse(follow.step(HEARTBEAT_SECS)) == [{"comment": "keepalive"}]

        state.wait_for_retry(outcome(1), 2, 1000)
        store.save_runs([run])
        assert follow.step(HEARTBEAT_SECS + 0.5) == "" and not follow.ended  # a retry is due
        # pinned to attempt 1 (resumed after its first line): over while its retry waits
        assert [m["data"] for m in parse(pinned.step(0.0))] == [
            {"run_id": run.id, "task_id": TASK, "attempt": 1, "stream": "stdout", "lines": ["b"]},
            {"run_id": run.id, "task_id": TASK, "attempt": 1, "stream": "stderr", "lines": ["c"]},
            {"status": "pending", "exit_code": 1, "attempts": 1},
        ]
        assert pinned.ended

        state.start_attempt(3)
        store.save_runs([run])
        many = numbered(MAX_LINES_PER_MESSAGE + 10, start=0)
        write(store, [("stdout", text) for _, text in many], attempt=2, run_id=run.id)
        second = parse(follow.step(20.0))
        assert [(m["id"], m["data"]["attempt"], len(m["data"]["lines"])) for m in second] == [
            ("2:500", 2, MAX_LINES_PER_MESSAGE),
            ("2:510", 2, 10),
        ]
        assert not follow.ended

        state.finish(outcome(0))
        run.finish(4)
        store.save_runs([run])
        assert parse(follow.step(20.1)) == []  # the state is read every few hundred ms
        end = parse(follow.step(21.0))
        assert end == [
            {"event": "end", "data": {"status": "completed", "exit_code": 0, "attempts": 2}}
        ]
        assert follow.ended
    finally:
        follow.close()
        pinned.close()


# -- end to end -----------------------------------------------------------------------------------

LIVE = """\
echo hello-live
echo warn >&2
while [ ! -e "$TMPDIR/go-$PETIT_RUN_ID" ]; do sleep 0.02; done
echo after
"""
FLAKY = """\
if [ "$PETIT_ATTEMPT" = 1 ]; then echo first; exit 1; fi
echo second
"""
# each line printed, then its number and time in a file of its own: what the task printed and when
TICKER = """\
i=0
while [ $i -lt 100000 ]; do
  echo "tick $i" && echo "$i $(date +%s.%N)" >> "$TMPDIR/ticks-$PETIT_RUN_ID"
  i=$((i+1)); sleep 0.02
done
"""
RETRY_ONCE = "retry:\n      max_attempts: 1\n"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    jobs = {
        "live": job_yaml("live", LIVE),
        "flaky": job_yaml("flaky", FLAKY).replace(
            "    type: shell\n", "    type: shell\n    " + RETRY_ONCE
        ),
        "ticker": job_yaml("ticker", TICKER),
    }
    with Service(str(tmp_path_factory.mktemp("logs")), jobs=jobs).running() as service:
        yield service


def follow(svc: Service, run_id: str, query: str = "", headers: dict | None = None) -> SseStream:
    stream = SseStream(svc.port, f"/api/runs/{run_id}/tasks/t/logs?follow=true{query}", headers)
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    return stream


def message(stream: SseStream) -> tuple[str, str | None, dict]:
    """The next message, heartbeats skipped: (event, id, data)."""
    while (event := stream.next(10)).event is None:
        pass
    return event.event, event.id, event.json()


def assert_ended(stream: SseStream) -> None:
    """The server ends the response after `end`."""
    with pytest.raises(EOFError):
        message(stream)


def logs(svc: Service, run_id: str, query: str = "", **kwargs):
    return svc.get(f"/api/runs/{run_id}/tasks/t/logs{query}", **kwargs)


def log_fds(pid: int, run_id: str) -> list[str]:
    return [f.path for f in psutil.Process(pid).open_files() if f"/logs/{run_id}/" in f.path]


def test_a_running_task_is_read_and_followed_live(svc):
    run_id = svc.trigger("live")
    running = wait_until(
        lambda: (lambda body: body if len(body["lines"]) == 2 else None)(logs(svc, run_id).json()),
        timeout=10,
        message="the running task's first lines over HTTP",
    )
    assert running["status"] == "running" and (running["attempt"], running["attempts"]) == (1, 1)
    assert running["lines"] == [["stdout", "hello-live"], ["stderr", "warn"]]
    assert (running["stdout"], running["stderr"]) == ("hello-live\n", "warn\n")

    api = svc.child("api")["pid"]
    follower, leaver = follow(svc, run_id), follow(svc, run_id)
    try:
        first = [message(follower), message(follower)]
        assert [(name, at, data["stream"], data["lines"]) for name, at, data in first] == [
            ("log", "1:1", "stdout", ["hello-live"]),
            ("log", "1:2", "stderr", ["warn"]),
        ]
        assert first[0][2] == {
            "run_id": run_id,
            "task_id": "t",
            "attempt": 1,
            "stream": "stdout",
            "lines": ["hello-live"],
        }
        assert message(leaver)[0] == "log"
        wait_until(lambda: len(log_fds(api, run_id)) == 2, timeout=5, message="two tails open")
        leaver.close()  # a client that leaves stops its loop: the tail's file is closed
        wait_until(lambda: len(log_fds(api, run_id)) == 1, timeout=5, message="one tail left")

        open(os.path.join(svc.root, f"go-{run_id}"), "w").close()
        after = message(follower)  # how fast it comes is measured by make bench
        assert (after[0], after[1], after[2]["lines"]) == ("log", "1:3", ["after"])
        assert message(follower) == (
            "end",
            None,
            {"status": "completed", "exit_code": 0, "attempts": 1},
        )
        assert_ended(follower)
    finally:
        follower.close()
        leaver.close()
    wait_until(lambda: not log_fds(api, run_id), timeout=5, message="no tail left open")

    # a reconnecting client resumes after the last id it got; a finished task: the rest, then end
    resumed = follow(svc, run_id, headers={"Last-Event-ID": "1:1"})
    try:
        assert message(resumed)[2]["lines"] == ["warn"]
        assert message(resumed)[2]["lines"] == ["after"]
        assert message(resumed)[0] == "end"
        assert_ended(resumed)
    finally:
        resumed.close()


def test_every_attempt_keeps_its_log(svc):
    run_id = svc.trigger("flaky")
    assert svc.wait_run(run_id)["status"] == "completed"
    latest = logs(svc, run_id).json()
    assert (latest["attempt"], latest["attempts"], latest["stdout"]) == (2, 2, "second\n")
    assert logs(svc, run_id, "?attempt=1").json()["lines"] == [["stdout", "first"]]
    assert logs(svc, run_id, "?attempt=2").json()["lines"] == [["stdout", "second"]]
    for query, status in [
        ("?attempt=3", 404),
        ("?attempt=0", 400),
        ("?attempt=x", 400),
        ("?follow=maybe", 400),
    ]:
        response = logs(svc, run_id, query)
        assert response.status == status and query[1:].split("=")[1] in response.json()["error"]
    foreign = logs(svc, run_id, "?follow=true&attempt=1", headers={"Last-Event-ID": "2:1"})
    assert foreign.status == 400 and "Last-Event-ID" in foreign.json()["error"]
    head = request(svc.port, "HEAD", f"/api/runs/{run_id}/tasks/t/logs?follow=true")
    assert head.status == 200 and head.content_type.startswith("text/event-stream")
    assert head.body == b""

    doc = svc.get("/api/openapi.json").json()
    media = doc["paths"]["/api/runs/{run_id}/tasks/{task_id}/logs"]["get"]["responses"]["200"]
    documented = media["content"]["text/event-stream"]["x-events"]
    assert not schema_problems(doc, media["content"]["application/json"]["schema"], latest)
    pinned = follow(svc, run_id, "&attempt=1")
    try:
        name, at, data = message(pinned)
        assert (name, at, data["attempt"], data["lines"]) == ("log", "1:1", 1, ["first"])
        assert not schema_problems(doc, documented[name], data)
        name, _, data = message(pinned)
        assert (name, data) == ("end", {"status": "completed", "exit_code": 0, "attempts": 2})
        assert not schema_problems(doc, documented[name], data)
    finally:
        pinned.close()
    latest = follow(svc, run_id)  # without attempt=N: from the latest
    try:
        assert message(latest)[2]["lines"] == ["second"] and message(latest)[0] == "end"
        assert_ended(latest)
    finally:
        latest.close()


def test_what_a_killed_workers_task_printed_is_kept(svc):
    run_id = svc.trigger("ticker")
    ticks = os.path.join(svc.root, f"ticks-{run_id}")

    def printed() -> list[tuple[str, float]]:
        try:
            with open(ticks) as handle:
                return [(f"tick {n}", float(at)) for n, at in map(str.split, handle)]
        except FileNotFoundError:
            return []

    def due(before: float) -> list[str]:
        return [line for line, at in printed() if at <= before]

    wait_until(lambda: len(due(time.time() - 1.0)) >= 20, timeout=15, message="20 ticks, 1 s old")
    killed_at = time.time()
    os.kill(svc.worker_pid(), signal.SIGKILL)
    assert svc.wait_run(run_id)["status"] == "interrupted"  # the restarted worker's recovery
    expected = due(killed_at - 1.0)
    kept = [text for _, text in logs(svc, run_id).json()["lines"]]
    assert kept[: len(expected)] == expected, (len(expected), kept[-3:])
