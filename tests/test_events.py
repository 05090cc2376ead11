"""Events on their way from the scheduler worker to the API process: the forwarder's batches
and output cap, the supervisor's fan-out, the API's EventLog, and, end to end, a run's whole
sequence arriving in the API process in order."""

from __future__ import annotations

import json
import multiprocessing

import pytest
from processes import wait_until

from petit.api.channel import CommandChannel
from petit.api.events import EventLog
from petit.core.events import (
    EventBus,
    RunCreated,
    RunEnded,
    RunStarted,
    TaskEnded,
    TaskOutput,
    TaskStarted,
    from_wire,
)
from petit.ipc.batches import EVENT_BATCH, child_restarted
from petit.service.child import Child, ChildState
from petit.service.forwarder import MAX_LIVE_LINE_CHARS, EventForwarder
from petit.service.settings import Settings
from petit.service.supervisor import Supervisor

RUN = {"run_id": "pair-1", "job_id": "pair"}


def output(task_id: str, number: int) -> TaskOutput:
    return TaskOutput(
        at=100 + number, **RUN, task_id=task_id, attempt=1, stream="stdout", line=f"l{number}"
    )


def a_run_with_chatty_output() -> list:
    return [
        RunCreated(at=1, **RUN, trigger="manual"),
        RunStarted(at=2, **RUN),
        TaskStarted(at=3, **RUN, task_id="a", attempt=1),
        TaskStarted(at=4, **RUN, task_id="b", attempt=1),
        *[output("a" if n % 2 else "b", n) for n in range(1, 9)],  # 8 lines, a and b in turn
        TaskEnded(at=200, **RUN, task_id="a", attempt=1, status="completed", exit_code=0),
        TaskEnded(at=201, **RUN, task_id="b", attempt=1, status="completed", exit_code=0),
        RunEnded(at=202, **RUN, status="completed"),
    ]


class FanOut:
    """The real path past the worker: a multiprocessing queue to the supervisor's fan-out, a
    second queue to the API's channel, and its EventLog."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.from_worker, self.to_api, self.from_api = ctx.Queue(), ctx.Queue(), ctx.Queue()
        settings = Settings(jobs_dir="/j", db="/d", socket="/s")
        self.supervisor = Supervisor(settings)
        api = Child("api", "unused:unused", settings, self.supervisor.on_events)
        api.outbox, api.state = self.to_api, ChildState.RUNNING  # as once it reported ready
        self.supervisor.children["api"] = api
        self.scheduler = Child("scheduler", "unused:unused", settings, self.supervisor.on_events)
        self.log = EventLog()
        self.channel = CommandChannel(self.to_api, self.from_api, self.log)

    def relay(self) -> dict:
        """One message from the worker's queue, handed to the supervisor as Child does."""
        message = self.from_worker.get(timeout=5)
        assert message["event"] == EVENT_BATCH, message
        self.supervisor.on_events(self.scheduler, message["events"])
        return message

    def close(self) -> None:
        self.to_api.put(None)  # stops the channel's reader thread, before its queue closes
        self.channel.reader.join(timeout=5)
        for channel in (self.from_worker, self.to_api, self.from_api):
            channel.close()
            channel.join_thread()


@pytest.fixture
def fan_out():
    path = FanOut()
    yield path
    path.close()


def test_a_batch_goes_from_the_bus_to_the_api_in_order_with_output_capped(fan_out):
    bus = EventBus()
    forwarder = EventForwarder(fan_out.from_worker.put, interval_secs=60, max_output_lines=3)
    bus.subscribe(forwarder.publish)
    events = a_run_with_chatty_output()
    for event in events:
        bus.publish(event)
    forwarder.start()
    forwarder.close()  # the final flush: one batch, long before the 60 s tick
    fan_out.relay()
    arrived = wait_until(
        lambda: since(fan_out.log) if fan_out.log.last_seq >= 12 else None,
        timeout=5,
        message="the batch in the API's EventLog",
    )
    assert [seq for seq, _ in arrived] == list(range(1, 13))
    kinds = [(e["kind"], e.get("task_id"), e.get("line") or e.get("lines")) for _, e in arrived]
    assert kinds == [
        ("run_created", None, None),
        ("run_started", None, None),
        ("task_started", "a", None),
        ("task_started", "b", None),
        ("task_output", "a", "l1"),
        ("task_output", "b", "l2"),
        ("task_output", "a", "l3"),
        ("output_dropped", "b", 3),  # l4, l6, l8: in the place of the first one dropped
        ("output_dropped", "a", 2),  # l5, l7
        ("task_ended", "a", None),
        ("task_ended", "b", None),
        ("run_ended", None, None),
    ]
    assert [from_wire(e).kind for _, e in arrived] == [k for k, _, _ in kinds]  # valid events


def test_a_line_too_long_to_forward_live_is_cut_and_says_how_much(fan_out):
    forwarder = EventForwarder(fan_out.from_worker.put)
    long_line = "x" * (MAX_LIVE_LINE_CHARS + 10)
    forwarder.publish(TaskOutput(at=1, **RUN, task_id="a", attempt=1, stream="stdout", line="ok"))
    forwarder.publish(
        TaskOutput(at=2, **RUN, task_id="a", attempt=1, stream="stdout", line=long_line)
    )
    forwarder.close()
    fan_out.relay()
    arrived = wait_until(
        lambda: since(fan_out.log) if fan_out.log.last_seq >= 2 else None,
        timeout=5,
        message="both lines in the API's EventLog",
    )
    assert [e["line"] for _, e in arrived] == [
        "ok",
        "x" * MAX_LIVE_LINE_CHARS + "... [10 more characters]",
    ]


def test_the_forwarder_flushes_on_its_own_and_the_api_keeps_arrival_order(fan_out):
    forwarder = EventForwarder(fan_out.from_worker.put, interval_secs=0.05)
    forwarder.start()
    try:
        forwarder.publish(RunCreated(at=1, **RUN, trigger="manual"))
        fan_out.relay()  # arrives with no close: the periodic flush
        forwarder.publish(RunStarted(at=2, **RUN))
        fan_out.relay()
    finally:
        forwarder.close()
    fan_out.supervisor.fan_out(child_restarted("scheduler", -9, 1, at=3))
    arrived = wait_until(
        lambda: since(fan_out.log) if fan_out.log.last_seq >= 3 else None,
        timeout=5,
        message="three events in the API's EventLog",
    )
    assert [e["kind"] for _, e in arrived] == ["run_created", "run_started", "child_restarted"]
    assert from_wire(arrived[-1][1]).restarts == 1


def test_events_for_an_api_that_is_not_running_are_dropped(fan_out):
    fan_out.supervisor.children["api"].state = ChildState.BACKOFF
    fan_out.supervisor.on_events(fan_out.scheduler, [RunStarted(at=2, **RUN).to_wire()])
    fan_out.supervisor.children["api"].state = ChildState.RUNNING
    fan_out.supervisor.on_events(fan_out.scheduler, [RunEnded(at=3, **RUN, status="x").to_wire()])
    wait_until(lambda: fan_out.log.last_seq >= 1, timeout=5, message="the second event")
    assert [e["kind"] for _, e in since(fan_out.log)] == ["run_ended"]


def since(log: EventLog, seq: int = 0) -> list[tuple[int, dict]]:
    """The log's events after `seq`, decoded."""
    return [(number, json.loads(text)) for number, text in log.since(seq)]


def test_the_event_log_keeps_the_newest_and_answers_since_a_sequence_number():
    log = EventLog(capacity=3)
    assert log.since(0) == [] and log.last_seq == 0
    for number in range(1, 6):
        assert log.append(json.dumps({"kind": "k", "n": number})) == number
    assert [seq for seq, _ in since(log)] == [3, 4, 5]  # 1 and 2 were forgotten
    assert [event["n"] for _, event in since(log, 3)] == [4, 5]
    assert log.since(5) == []


# -- end to end -----------------------------------------------------------------------------------

PAIR = """id: pair
name: pair job
tasks:
  - id: talk
    type: shell
    script: |
      echo line-1
      echo line-2
      echo line-3
  - id: flaky
    depends_on: [talk]
    type: shell
    retry:
      max_attempts: 1
      delay: 0s
    script: |
      if [ "$PETIT_ATTEMPT" = 1 ]; then echo "first attempt fails" >&2; exit 1; fi
      echo recovered
"""
MARK = " petit[api] DEBUG event "


def api_events(log: str, run_id: str) -> list[dict]:
    """The events the API process logged for `run_id`, in the order it received them."""
    events = []
    for line in log.splitlines():
        if MARK in line:
            event = json.loads(line.split(MARK, 1)[1].split(" ", 1)[1])
            if event.get("run_id") == run_id:
                events.append(event)
    return events


def test_a_runs_whole_event_sequence_reaches_the_api_process_in_order(service):
    svc = service({"pair": PAIR}, "--log-level", "debug", api=True)
    wait_until(
        lambda: svc.child("api")["state"] == "running", timeout=20, message="the API to be up"
    )
    run_id = svc.trigger("pair")
    assert svc.wait_run(run_id, "completed")["status"] == "completed"

    def ended() -> list[dict] | None:
        found = api_events(svc.log(), run_id)
        return found if found and found[-1]["kind"] == "run_ended" else None

    events = wait_until(ended, timeout=10, message=f"run {run_id}'s run_ended in the API's log")
    steps = [
        (e["kind"], e.get("task_id"), e.get("attempt"), e.get("line") or e.get("status"))
        for e in events
    ]
    expected = [
        ("run_created", None, None, None),
        ("run_started", None, None, None),
        ("task_started", "talk", 1, None),
        ("task_output", "talk", 1, "line-1"),
        ("task_output", "talk", 1, "line-2"),
        ("task_output", "talk", 1, "line-3"),
        ("task_ended", "talk", 1, "completed"),
        ("task_started", "flaky", 1, None),
        ("task_retrying", "flaky", 1, None),
        ("task_started", "flaky", 2, None),
        ("task_output", "flaky", 2, "recovered"),
        ("task_ended", "flaky", 2, "completed"),
        ("run_ended", None, None, "completed"),
    ]
    remaining = iter(steps)  # in this order, whatever else the engine also reports in between
    missing = [step for step in expected if step not in remaining]
    assert not missing, f"missing or out of order: {missing}\nreceived: {steps}"
    assert steps[0][0] == "run_created" and steps[-1][0] == "run_ended"
