"""The live stream's parts, unit by unit: the forwarder turning bus events into stream messages
(views of the live run, output grouped and capped), the replay buffer and its resume rules, and
the supervisor's hub (numbering, epochs, the replay a new API process gets). End to end, through
a running petit: tests/test_stream.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from processes import wait_until

from petit.core.events import (
    FireDropped,
    RunCreated,
    RunStarted,
    SchedulerPaused,
    TaskEnded,
    TaskOutput,
    TaskRetrying,
    TaskStarted,
)
from petit.core.model import Run, TaskRun
from petit.ipc.stream import EVENT_BATCH, EventRing, Message, matches, parse_event_id
from petit.service.forwarder import MAX_LIVE_LINE_CHARS, EventForwarder
from petit.service.hub import EventHub, new_epoch

IDS = {"run_id": "pair-1", "job_id": "pair"}


def a_run() -> Run:
    tasks = [TaskRun(task_id=t, run_id="pair-1") for t in ("a", "b")]
    return Run(id="pair-1", job_id="pair", seq=1, created_at=1, tasks=tasks)


def output(task_id: str, number: int, stream: str = "stdout") -> TaskOutput:
    return TaskOutput(
        at=100, **IDS, task_id=task_id, attempt=1, stream=stream, lines=(f"l{number}",)
    )


class Sent:
    def __init__(self) -> None:
        self.batches: list[dict] = []

    def __call__(self, batch: dict) -> None:
        assert batch["event"] == EVENT_BATCH
        self.batches.append(batch)

    def messages(self) -> list[tuple[str, dict]]:
        return [
            (name, json.loads(data)) for b in self.batches for name, _, _, data in b["messages"]
        ]


def test_messages_are_views_of_the_live_run_at_the_instant_of_each_event():
    sent, run = Sent(), a_run()
    forwarder = EventForwarder(sent)
    forwarder.track(run)
    forwarder.publish(RunCreated(at=1, **IDS, trigger="manual"))
    run.start(2)
    forwarder.publish(RunStarted(at=2, **IDS))
    run.task("a").start_attempt(3)
    forwarder.publish(TaskStarted(at=3, **IDS, task_id="a", attempt=1))
    run.task("a").wait_for_retry(
        SimpleNamespace(exit_code=1, error="exited with code 1", timed_out=False, ended_at=4),
        4,
        2500,
    )
    forwarder.publish(
        TaskRetrying(at=4, **IDS, task_id="a", attempt=1, error="x", exit_code=1, delay_secs=2.5)
    )
    forwarder.publish(FireDropped(at=5, job_id="pair", scheduled_at=5, reason="busy"))
    forwarder.publish(SchedulerPaused(at=6))
    forwarder.flush()
    got = sent.messages()
    assert [name for name, _ in got] == ["run", "run", "task", "task", "fire_dropped", "scheduler"]
    assert [got[0][1]["status"], got[1][1]["status"]] == ["pending", "running"]
    assert got[2][1] | {"job_id": "pair"} == got[2][1] and got[2][1]["status"] == "running"
    assert (got[3][1]["status"], got[3][1]["attempts"], got[3][1]["retry_delay_secs"]) == (
        "pending",
        1,
        2.5,
    )
    assert got[4][1] == {
        "job_id": "pair",
        "scheduled_at": 5,
        "reason": "busy",
        "until": None,
        "count": 1,
        "error": None,
    }
    assert got[5][1] == {"state": "paused"}
    assert [b["messages"][0][1:3] for b in sent.batches] == [("pair", "pair-1")]  # filter keys


def test_output_is_grouped_by_stream_capped_per_batch_and_long_lines_are_cut():
    sent, run = Sent(), a_run()
    forwarder = EventForwarder(sent, max_output_lines=5)
    forwarder.track(run)
    for event in [output("a", 1), output("a", 2), output("a", 3, "stderr"), output("b", 4)]:
        forwarder.publish(event)
    for number in range(5, 12):  # one line more fits, then both tasks' lines are only counted
        forwarder.publish(output("a" if number % 2 else "b", number))
    forwarder.publish(TaskEnded(at=200, **IDS, task_id="a", attempt=1, status="completed"))
    forwarder.flush()
    forwarder.publish(
        TaskOutput(at=300, **IDS, task_id="a", attempt=1, stream="stdout", lines=("y" * 5000,))
    )
    forwarder.close()
    got = [
        (name, data.get("task_id"), data.get("stream"), data.get("lines"), data.get("dropped"))
        for name, data in sent.messages()
    ]
    assert got == [
        ("log", "a", "stdout", ["l1", "l2"], None),
        ("log", "a", "stderr", ["l3"], None),
        ("log", "b", "stdout", ["l4"], None),
        ("log", "a", "stdout", ["l5"], None),  # the fifth line: the cap is reached
        ("log", "b", "stdout", [], 3),  # l6, l8, l10, counted where the first was dropped
        ("log", "a", "stdout", [], 3),  # l7, l9, l11
        ("task", "a", None, None, None),
        ("log", "a", "stdout", ["y" * MAX_LIVE_LINE_CHARS + "... [904 more characters]"], None),
    ]


def test_one_event_of_many_lines_is_split_by_the_same_caps_as_many_events():
    sent = Sent()
    forwarder = EventForwarder(sent, max_output_lines=40)
    lines = ("l1", "l2", *["y" * 5000] * 32, "short", *[f"n{i}" for i in range(10)])
    forwarder.publish(TaskOutput(at=1, **IDS, task_id="a", attempt=1, stream="stdout", lines=lines))
    forwarder.close()
    got = [
        (len(data["lines"]), data["lines"][-1][:2] if data["lines"] else None, data.get("dropped"))
        for _, data in sent.messages()
    ]
    # a line cut to 4,121 characters: 15 fill a 64 Ki message and 31 the 128 Ki of a batch, so
    # the 32nd is dropped while "short" still fits; then the line cap (40) drops n6 to n9
    assert got == [
        (17, "yy", None),
        (15, "yy", None),
        (1, "yy", None),
        (0, None, 5),
        (7, "n5", None),
    ]


def test_the_first_event_after_a_quiet_spell_goes_at_once_and_the_next_ones_wait_their_turn():
    sent = Sent()
    forwarder = EventForwarder(sent, interval_secs=30)
    forwarder.start()
    forwarder.publish(SchedulerPaused(at=1))
    wait_until(lambda: sent.batches, timeout=5, message="the first event, without the 30 s wait")
    forwarder.publish(SchedulerPaused(at=2))
    forwarder.publish(SchedulerPaused(at=3))
    assert len(sent.batches) == 1  # the next batch is 30 s away
    forwarder.close()  # sends what is left, at once
    assert [len(b["messages"]) for b in sent.batches] == [1, 2]


def test_a_run_nobody_tracked_is_not_streamed_and_the_forwarder_survives_a_closed_queue(caplog):
    def closed(batch):
        raise ValueError("Queue is closed")

    forwarder = EventForwarder(closed)
    forwarder.publish(RunStarted(at=2, **IDS))
    forwarder.publish(SchedulerPaused(at=3))
    forwarder.flush()
    assert "run_started of untracked run pair-1" in caplog.text
    assert "1 event(s) could not be forwarded" in caplog.text


def test_the_ring_keeps_the_newest_by_count_and_bytes_and_says_when_a_reader_has_a_gap():
    ring = EventRing(capacity=3, max_bytes=10)
    ring.start_epoch("e1")
    for number in range(1, 6):
        assert ring.append("log", "j", "j-1", f'"{number}"').seq == number

    def seqs(after: int, max_bytes: int | None = None) -> tuple[str, list[int], bool]:
        epoch, messages, lost = ring.since(after, max_bytes)
        return epoch, [m.seq for m in messages], lost

    assert seqs(0) == ("e1", [3, 4, 5], True)  # 1 and 2 are gone
    assert seqs(2) == ("e1", [3, 4, 5], False)
    assert seqs(3) == ("e1", [4, 5], False)
    assert seqs(5) == ("e1", [], False)
    assert seqs(2, max_bytes=6) == ("e1", [3, 4], False)  # three bytes each
    assert seqs(2, max_bytes=1) == ("e1", [3], False)  # at least one, whatever its size
    ring.append("log", "j", "j-1", '"' + "x" * 20 + '"')  # over the byte budget: alone
    assert seqs(0) == ("e1", [6], True)


@pytest.mark.parametrize(
    ("last_id", "expected"),
    [
        (None, 5),  # no id: from now on
        ("e1-5", 5),
        ("e1-3", 3),
        ("e1-2", 2),  # 3 is the oldest held: nothing after 2 is missing
        ("e1-1", None),  # 2 is gone
        ("e1-6", None),  # never sent
        ("e0-4", None),  # an earlier epoch
        ("garbage", None),
        ("e1-", None),
        ("-3", None),
        ("e1-99999999999999999999", None),
        ("e1-\u00b2", None),  # a digit to str.isdigit, not to int()
    ],
)
def test_where_a_client_resumes(last_id, expected):
    ring = EventRing(capacity=3)
    ring.start_epoch("e1")
    for _ in range(5):
        ring.append("log", None, None, "{}")
    assert ring.resume_from(last_id) == expected


def test_filters_and_ids():
    message = Message(1, "task", "etl", "etl-3", "{}")
    quiet = Message(2, "scheduler", None, None, "{}")
    assert matches(message, frozenset(), frozenset()) and matches(quiet, frozenset(), frozenset())
    assert matches(message, frozenset({"etl"}), frozenset()) and not matches(
        quiet, frozenset({"etl"}), frozenset()
    )
    assert not matches(message, frozenset({"etl"}), frozenset({"etl-4"}))
    assert parse_event_id("mx1x2-17") == ("mx1x2", 17) and parse_event_id("17") is None
    assert new_epoch(36**3, 2) == "1000x2" and new_epoch(0, 1) == "0x1"


def test_the_hub_numbers_messages_starts_epochs_and_replays_to_a_new_api_process():
    to_api: list[dict] = []
    hub = EventHub(to_api.append)
    hub.scheduler_started()
    first = hub.ring.epoch
    hub.publish([("run", "j", "j-1", "{}"), ("task", "j", "j-1", "{}")])
    hub.own("child", {"child": "api", "exit_code": -9, "restarts": 1})
    hub.api_started()
    assert [b["epoch"] for b in to_api] == [first] * 4
    assert [len(b["messages"]) for b in to_api] == [0, 2, 1, 3]  # the last: the whole replay
    assert [m[0] for m in to_api[-1]["messages"]] == [1, 2, 3]
    assert to_api[-1]["messages"][2][1:] == (
        "child",
        None,
        None,
        '{"child":"api","exit_code":-9,"restarts":1}',
    )
    hub.scheduler_started()
    assert hub.ring.epoch != first and to_api[-1] == {
        "event": EVENT_BATCH,
        "epoch": hub.ring.epoch,
        "messages": [],
    }
    hub.publish([("run", "j", "j-2", "{}")])
    assert to_api[-1]["messages"][0][0] == 1  # numbered afresh in the new epoch


def test_a_mirror_keeps_what_is_new_and_starts_afresh_with_a_new_epoch():
    mirror = EventRing()
    batch = [(1, "run", "j", "j-1", "{}"), (2, "run", "j", "j-1", "{}")]
    assert [m.seq for m in mirror.extend("e1", batch)] == [1, 2]
    assert mirror.extend("e1", batch + [(3, "run", "j", "j-1", "{}")])[0].seq == 3  # a replay
    assert [m.seq for m in mirror.extend("e2", [(1, "run", "j", "j-2", "{}")])] == [1]
    assert mirror.epoch == "e2" and mirror.last_seq == 1
