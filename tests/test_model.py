"""Run and task state transitions: every legal edge does what it says, every other raises
InvalidTransition; old records read back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from petit.core.model import CANCELLED, INTERRUPTED, Run, RunStatus, TaskRun, TaskStatus
from petit.errors import InvalidTransition

T0 = 1_700_000_000_000


@dataclass
class Result:
    exit_code: int | None = 0
    error: str | None = None
    timed_out: bool = False
    ended_at: int = T0 + 500


FAILED = Result(exit_code=2, error="exited with code 2", ended_at=T0 + 300)


def running_task(attempts: int = 1) -> TaskRun:
    state = TaskRun("t", "job-1")
    for _ in range(attempts - 1):
        state.start_attempt(T0)
        state.wait_for_retry(FAILED, T0 + 300, 1000)
    state.start_attempt(T0 + 100)
    return state


def run_of(*states: TaskRun) -> Run:
    return Run("job-1", "job", 1, created_at=T0 - 50, tasks=list(states))


# -- tasks: legal edges -------------------------------------------------------------------------


def test_start_attempt_counts_and_keeps_the_first_start():
    state = running_task()
    assert (state.status, state.attempts, state.started_at) == (TaskStatus.RUNNING, 1, T0 + 100)
    state.attach({"runner": "local", "pid": 7, "created": 1.5})
    state.wait_for_retry(FAILED, T0 + 300, 1000)
    assert (state.status, state.exit_code, state.error) == (TaskStatus.PENDING, 2, FAILED.error)
    assert state.handle is None  # recovery must not aim at a finished attempt
    state.start_attempt(T0 + 900)
    assert (state.attempts, state.started_at) == (2, T0 + 100)
    # a retry is running again: the previous attempt's end no longer describes the task
    assert (state.ended_at, state.duration_ms, state.exit_code, state.error) == (None,) * 4


@pytest.mark.parametrize(
    "result, status",
    [(Result(), TaskStatus.COMPLETED), (FAILED, TaskStatus.FAILED)],
    ids=["completed", "failed"],
)
def test_finish_records_the_attempt(result, status):
    state = running_task()
    state.attach({"runner": "local", "pid": 7, "created": 1.5})
    state.finish(result)
    assert (state.status, state.exit_code, state.error) == (status, result.exit_code, result.error)
    assert (state.ended_at, state.duration_ms) == (result.ended_at, result.ended_at - T0 - 100)
    assert state.handle is None


def test_skip_and_abandon():
    never = TaskRun("t", "job-1")
    never.skip("condition not met")
    assert (never.status, never.error, never.ended_at) == (
        TaskStatus.SKIPPED,
        "condition not met",
        None,
    )
    cut = running_task()
    cut.abandon("cancelled", T0 + 400)
    assert (cut.status, cut.error, cut.ended_at, cut.duration_ms) == (
        TaskStatus.FAILED,
        "cancelled",
        T0 + 400,
        300,
    )
    waiting = running_task()
    waiting.wait_for_retry(FAILED, T0 + 300, 1000)
    waiting.abandon("cancelled", T0 + 400)  # PENDING, awaiting a retry
    assert waiting.status is TaskStatus.FAILED


@pytest.mark.parametrize(
    "attempts, reason, status, error",
    [
        (0, INTERRUPTED, TaskStatus.SKIPPED, INTERRUPTED),
        (1, INTERRUPTED, TaskStatus.FAILED, INTERRUPTED),
        (0, None, TaskStatus.SKIPPED, "not reached"),
        (1, None, TaskStatus.FAILED, "did not finish"),
    ],
    ids=["never-started", "running", "never-started-bug", "running-bug"],
)
def test_interrupt_skips_or_abandons(attempts, reason, status, error):
    state = running_task() if attempts else TaskRun("t", "job-1")
    state.interrupt(reason, T0 + 1000)
    assert (state.status, state.error) == (status, error)


def test_interrupt_while_awaiting_a_retry_keeps_the_last_error_without_a_reason():
    state = running_task()
    state.wait_for_retry(FAILED, T0 + 300, 1000)
    state.interrupt(None, T0 + 1000)
    assert (state.status, state.error) == (TaskStatus.FAILED, FAILED.error)


# -- tasks: illegal edges -----------------------------------------------------------------------


def finished_task(status: TaskStatus) -> TaskRun:
    if status is TaskStatus.SKIPPED:
        state = TaskRun("t", "job-1")
        state.skip("condition not met")
        return state
    state = running_task()
    state.finish(Result() if status is TaskStatus.COMPLETED else FAILED)
    return state


ILLEGAL_TASK_EDGES = [
    ("pending", "finish", lambda s: s.finish(Result())),
    ("pending", "wait_for_retry", lambda s: s.wait_for_retry(FAILED, T0 + 300, 1000)),
    ("pending", "abandon", lambda s: s.abandon("x", T0)),  # never started: skip it instead
    ("running", "start_attempt", lambda s: s.start_attempt(T0)),
    ("running", "skip", lambda s: s.skip("x")),
    ("retrying", "skip", lambda s: s.skip("x")),  # it ran: it cannot be skipped
    *[
        (status.value, name, edge)
        for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED)
        for name, edge in [
            ("start_attempt", lambda s: s.start_attempt(T0)),
            ("finish", lambda s: s.finish(Result())),
            ("wait_for_retry", lambda s: s.wait_for_retry(FAILED, T0 + 300, 1000)),
            ("skip", lambda s: s.skip("x")),
            ("abandon", lambda s: s.abandon("x", T0)),
        ]
    ],
]


@pytest.mark.parametrize(
    "start, name, edge", ILLEGAL_TASK_EDGES, ids=[f"{s}-{n}" for s, n, _ in ILLEGAL_TASK_EDGES]
)
def test_illegal_task_edges_raise_and_change_nothing(start, name, edge):
    if start == "pending":
        state = TaskRun("t", "job-1")
    elif start == "running":
        state = running_task()
    elif start == "retrying":
        state = running_task()
        state.wait_for_retry(FAILED, T0 + 300, 1000)
    else:
        state = finished_task(TaskStatus(start))
    before = state.to_dict()
    with pytest.raises(InvalidTransition) as raised:
        edge(state)
    assert state.to_dict() == before
    assert "task 't' of run 'job-1': illegal transition" in str(raised.value)
    assert raised.value.http_status == 500


# -- runs ---------------------------------------------------------------------------------------


def test_run_start_and_finish_completed():
    done = finished_task(TaskStatus.COMPLETED)
    run = run_of(done)
    run.start(T0)
    assert (run.status, run.started_at) == (RunStatus.RUNNING, T0)
    run.finish(T0 + 700)
    assert (run.status, run.error, run.ended_at, run.duration_ms) == (
        RunStatus.COMPLETED,
        None,
        T0 + 700,
        700,
    )


def test_run_finish_names_the_failed_tasks_or_the_bug():
    run = run_of(finished_task(TaskStatus.FAILED), finished_task(TaskStatus.SKIPPED))
    run.start(T0)
    run.finish(T0 + 700)
    assert (run.status, run.error) == (RunStatus.FAILED, "failed tasks: t")
    cut = run_of(running_task(), TaskRun("u", "job-1"))
    cut.start(T0)
    cut.finish(T0 + 700, error="internal error: boom")
    assert (cut.status, cut.error) == (RunStatus.FAILED, "internal error: boom")
    assert [t.status for t in cut.tasks] == [TaskStatus.FAILED, TaskStatus.SKIPPED]


def test_run_cancel_and_interrupt_end_the_unfinished_tasks():
    run = run_of(running_task(), TaskRun("u", "job-1"), finished_task(TaskStatus.COMPLETED))
    run.start(T0)
    run.cancel(T0 + 800)
    assert (run.status, run.error) == (RunStatus.CANCELLED, CANCELLED)
    assert [(t.status.value, t.error) for t in run.tasks] == [
        ("failed", CANCELLED),
        ("skipped", CANCELLED),
        ("completed", None),
    ]
    found = run_of(running_task())  # left pending by a crash, never started
    found.interrupt(INTERRUPTED, T0 + 900)
    assert (found.status, found.error, found.duration_ms) == (
        RunStatus.INTERRUPTED,
        INTERRUPTED,
        950,
    )


def test_a_queued_run_starts_through_dequeue_or_ends_cancelled_without_a_duration():
    waiting = run_of(TaskRun("t", "job-1"), TaskRun("u", "job-1"))
    waiting.status = RunStatus.QUEUED
    assert not waiting.status.is_terminal
    waiting.dequeue()
    waiting.start(T0 + 300)
    assert (waiting.status, waiting.started_at) == (RunStatus.RUNNING, T0 + 300)
    dropped = run_of(TaskRun("t", "job-1"))
    dropped.status = RunStatus.QUEUED
    dropped.cancel(T0 + 500, "cancelled: replaced by a newer fire (overlap: replace)")
    assert (dropped.status, dropped.duration_ms) == (RunStatus.CANCELLED, None)
    assert [(t.status.value, t.error) for t in dropped.tasks] == [
        ("skipped", "cancelled: replaced by a newer fire (overlap: replace)")
    ]


def test_a_run_past_its_timeout_fails_its_running_tasks_and_skips_the_rest():
    run = run_of(running_task(), TaskRun("u", "job-1"), finished_task(TaskStatus.COMPLETED))
    run.start(T0)
    run.time_out(T0 + 1000, "run timed out after 1s")
    assert (run.status, run.error) == (RunStatus.FAILED, "run timed out after 1s")
    assert [(t.status.value, t.error) for t in run.tasks] == [
        ("failed", "run timed out after 1s"),
        ("skipped", "run timed out after 1s"),
        ("completed", None),
    ]


ILLEGAL_RUN_EDGES = [
    ("pending", "finish", lambda r: r.finish(T0)),
    ("pending", "cancel", lambda r: r.cancel(T0)),
    ("pending", "dequeue", lambda r: r.dequeue()),
    ("pending", "time_out", lambda r: r.time_out(T0, "late")),
    ("running", "start", lambda r: r.start(T0)),
    ("running", "dequeue", lambda r: r.dequeue()),
    *[
        (status, name, edge)
        for status in ("completed", "cancelled", "interrupted")
        for name, edge in [
            ("start", lambda r: r.start(T0)),
            ("finish", lambda r: r.finish(T0)),
            ("cancel", lambda r: r.cancel(T0)),
            ("interrupt", lambda r: r.interrupt(INTERRUPTED, T0)),
        ]
    ],
]


@pytest.mark.parametrize(
    "start, name, edge", ILLEGAL_RUN_EDGES, ids=[f"{s}-{n}" for s, n, _ in ILLEGAL_RUN_EDGES]
)
def test_illegal_run_edges_raise_and_change_nothing(start, name, edge):
    run = run_of(TaskRun("t", "job-1"))
    if start != "pending":
        run.start(T0)
    {"completed": run.finish, "cancelled": run.cancel}.get(start, lambda now: None)(T0 + 1)
    if start == "interrupted":
        run.interrupt(INTERRUPTED, T0 + 1)
    before = run.to_dict()
    with pytest.raises(InvalidTransition, match=r"run 'job-1': illegal transition"):
        edge(run)
    assert run.to_dict() == before


# -- records ------------------------------------------------------------------------------------


def test_a_record_from_before_handles_reads_as_a_local_handle():
    old = {
        "task_id": "t",
        "run_id": "job-1",
        "status": "running",
        "attempts": 1,
        "pid": 4242,
        "pid_created": 1700000000.25,
    }
    state = TaskRun.from_dict(old)
    assert state.handle == {"runner": "local", "pid": 4242, "created": 1700000000.25}
    assert "pid" not in state.to_dict()
    assert TaskRun.from_dict({**old, "pid": None}).handle is None


def test_a_handle_round_trips():
    state = running_task()
    state.attach({"runner": "fake", "id": "x"})
    assert TaskRun.from_dict(state.to_dict()) == state


# -- attempt history ----------------------------------------------------------------------------


def _ends(state: TaskRun) -> list[tuple]:
    return [
        (e["attempt"], e["started_at"], e["ended_at"], e["exit_code"], e["error"])
        for e in state.attempt_history
    ]


def test_every_attempt_is_kept_with_its_own_times_and_outcome():
    state = running_task(attempts=2)  # attempt 1 from T0 failed at T0+300; attempt 2 at T0+100
    assert _ends(state) == [
        (1, T0, T0 + 300, 2, "exited with code 2"),
        (2, T0 + 100, None, None, None),  # in flight
    ]
    state.finish(Result())
    assert _ends(state)[1] == (2, T0 + 100, T0 + 500, 0, None)
    assert state.attempt_history[1]["duration_ms"] == 400
    assert state.attempt_history[0]["duration_ms"] == 300


def test_an_abandoned_attempt_ends_with_the_reason_and_a_waiting_retry_adds_none():
    cut = running_task()
    cut.abandon(CANCELLED, T0 + 400)
    assert _ends(cut) == [(1, T0 + 100, T0 + 400, None, CANCELLED)]
    waiting = running_task()
    waiting.wait_for_retry(FAILED, T0 + 300, 1000)
    waiting.interrupt(INTERRUPTED, T0 + 900)  # no attempt in flight: the failed one stays as it was
    assert _ends(waiting) == [(1, T0 + 100, T0 + 300, 2, "exited with code 2")]
    skipped = TaskRun("t", "job-1")
    skipped.skip("not reached")
    assert skipped.attempt_history == []


def test_a_waiting_retry_records_its_delay_on_the_failed_attempt_and_when_it_starts():
    state = running_task()
    state.wait_for_retry(FAILED, T0 + 310, 2500)
    assert state.next_attempt_at == T0 + 2810
    assert [e["retry_delay_ms"] for e in state.attempt_history] == [2500]
    state.start_attempt(T0 + 2810)  # the retry starts: nothing is awaited any more
    assert state.next_attempt_at is None
    assert [e["retry_delay_ms"] for e in state.attempt_history] == [2500, None]
    state.finish(Result())
    assert state.attempt_history[1]["retry_delay_ms"] is None  # no retry followed
    waiting = running_task()
    waiting.wait_for_retry(FAILED, T0 + 310, 60_000)
    waiting.abandon(CANCELLED, T0 + 400)  # a run cancelled during the delay: no retry comes
    assert waiting.next_attempt_at is None
    assert TaskRun.from_dict(waiting.to_dict()) == waiting


def test_an_attempt_stored_before_retry_delays_were_kept_reads_as_none():
    old = {"task_id": "t", "run_id": "job-1", "attempts": 1, "status": "failed"}
    entry = {"attempt": 1, "started_at": T0, "ended_at": T0 + 5, "exit_code": 1, "error": "x"}
    state = TaskRun.from_dict({**old, "attempt_history": [entry]})
    assert state.attempt_history[0]["retry_delay_ms"] is None
    assert state.attempt_history[0]["ended_at"] == T0 + 5
    assert state.next_attempt_at is None


def test_attempt_history_round_trips_as_a_snapshot():
    state = running_task(attempts=2)
    data = state.to_dict()
    state.finish(Result())  # the live task moves on; the written snapshot does not
    assert data["attempt_history"][1]["ended_at"] is None
    assert TaskRun.from_dict(state.to_dict()) == state


@pytest.mark.parametrize(
    "old, history",
    [
        ({"status": "pending", "attempts": 0}, []),
        (
            {
                "status": "failed",
                "attempts": 3,
                "started_at": T0,
                "ended_at": T0 + 900,
                "duration_ms": 900,
                "exit_code": 1,
                "timed_out": False,
                "error": "exited with code 1",
            },
            [(3, T0, T0 + 900, 1, "exited with code 1")],
        ),
        ({"status": "running", "attempts": 1, "started_at": T0}, [(1, T0, None, None, None)]),
    ],
    ids=["never-started", "finished", "running"],
)
def test_a_record_from_before_attempt_history_reads_as_one_attempt_over_its_span(old, history):
    state = TaskRun.from_dict({"task_id": "t", "run_id": "job-1", **old})
    assert _ends(state) == history


@pytest.mark.parametrize("bad", [None, "x", [1], {"attempt": 1}], ids=repr)
def test_a_malformed_attempt_history_is_refused(bad):
    with pytest.raises(ValueError, match="attempt_history"):
        TaskRun.from_dict({"task_id": "t", "run_id": "job-1", "attempt_history": bad})
