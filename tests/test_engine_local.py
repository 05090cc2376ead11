"""One run of one job, end to end through the local runner's real task processes, a real Store
in tmp_path and the RunRecorder: chains, failures and conditions, retries, slots, no wave
barrier, cancellation. (tests/test_engine.py covers the engine's logic with a fake runner.)"""

from __future__ import annotations

import os
import time

import pytest
from conftest import MARK, assert_none_left, marked_alive, wait_until, write_job
from test_engine import in_background, statuses

from petit.core.events import EventBus
from petit.core.model import (
    Condition,
    Job,
    Run,
    RunStatus,
    Task,
    TaskStatus,
    TaskType,
    Trigger,
)
from petit.core.retry import RetryCondition, RetryPolicy
from petit.execution.engine import RunEngine
from petit.execution.recorder import RunRecorder
from petit.jobs.loader import load_jobs
from petit.storage.store import Store

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "petit.db"))


@pytest.fixture
def stamps(tmp_path) -> str:
    path = tmp_path / "stamps"
    path.mkdir()
    return str(path)


def sh(task_id: str, script: str, **kw) -> Task:
    return Task(id=task_id, name=task_id, type=TaskType.SHELL, script=script, **kw)


def make_job(marker: str, stamps: str, *tasks: Task, job_id: str = "job") -> Job:
    return Job(id=job_id, name=job_id, tasks=tasks, environment={MARK: marker, "STAMPS": stamps})


# Each task can note when it began and ended (epoch ns) in "$STAMPS/<task>.start" / ".end".
START = 'date +%s%N >> "$STAMPS/$PETIT_TASK_ID.start"; '
END = '; date +%s%N >> "$STAMPS/$PETIT_TASK_ID.end"'


def stamp_values(stamps: str, task_id: str, kind: str) -> list[int]:
    try:
        with open(os.path.join(stamps, f"{task_id}.{kind}")) as handle:
            return [int(line) for line in handle.read().split()]
    except FileNotFoundError:
        return []


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    edges = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda edge: (edge[0], edge[1]),
    )  # an end sorts before a start at the same ns
    best = current = 0
    for _, delta in edges:
        current += delta
        best = max(best, current)
    return best


def start_run(store: Store, job: Job, max_tasks: int = 4) -> tuple[RunEngine, RunRecorder]:
    run = store.create_run(job.id, [t.id for t in job.tasks], Trigger.MANUAL)
    bus = EventBus()
    recorder = RunRecorder(store, bus)
    recorder.track(run)
    return RunEngine(job, run, store, bus, max_tasks=max_tasks), recorder


def execute(store: Store, job: Job, max_tasks: int = 4) -> Run:
    engine, recorder = start_run(store, job, max_tasks)
    try:
        return engine.execute()
    finally:
        recorder.close()


def assert_timed(run: Run) -> None:
    assert run.started_at and run.ended_at and run.duration_ms is not None
    assert run.duration_ms == run.ended_at - run.started_at >= 0


# -- chains, failures, conditions ---------------------------------------------------------------

PIPELINE = """
id: pipe
name: Pipeline
environment:
  WORK: {work}
  {mark}: {marker}
tasks:
  - id: notify
    depends_on: [load]
    condition: all_done
    type: shell
    script: echo "done $PETIT_RUN_ID" > "$WORK/notified"
  - id: load
    depends_on: [validate]
    type: shell
    script: awk -F, '{{ s += $2 }} END {{ print s }}' "$WORK/clean.csv" > "$WORK/total"
  - id: extract
    type: shell
    script: printf '1,10\\n2,20\\n3,30\\n' > "$WORK/raw.csv"; echo extracted
  - id: transform
    depends_on: [extract]
    type: shell
    script: awk -F, '{{ print $1 "," $2 * 2 }}' "$WORK/raw.csv" > "$WORK/clean.csv"
  - id: validate
    depends_on: [transform]
    type: shell
    script: test -s "$WORK/clean.csv"
"""


def test_pipeline_chain_completes_and_reads_back_from_the_store(tmp_path, store, marker):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    write_job(jobs_dir, "pipe.yaml", PIPELINE.format(work=tmp_path, mark=MARK, marker=marker))
    job = load_jobs(str(jobs_dir))["pipe"]  # forward references, declared out of order
    run = execute(store, job)
    assert run.status is RunStatus.COMPLETED and run.error is None
    assert (tmp_path / "total").read_text() == "120\n"
    assert (tmp_path / "notified").read_text() == f"done {run.id}\n"
    stored = Store(store.db_path).get_run(run.id)  # a fresh Store: nothing served from memory
    assert stored.status is RunStatus.COMPLETED
    assert_timed(stored)
    assert [t.task_id for t in stored.tasks] == [
        "extract",
        "transform",
        "validate",
        "load",
        "notify",
    ]
    for task in stored.tasks:
        assert (task.status, task.attempts, task.exit_code, task.error) == (
            TaskStatus.COMPLETED,
            1,
            0,
            None,
        )
        assert (
            task.started_at
            and task.ended_at
            and task.duration_ms == task.ended_at - task.started_at
        )
        assert task.handle is None
    assert stored.started_at <= stored.task("extract").started_at
    assert stored.task("notify").ended_at <= stored.ended_at
    assert store.logs.read(run.id, "extract")["stdout"] == "extracted\n"
    assert [r.id for r in store.active_runs()] == []
    assert_none_left(marker)


def test_failure_fails_the_run_and_runs_cleanup_and_handlers(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        sh("prepare", "echo preparing"),
        sh("broken", "echo about to fail >&2; exit 3", depends_on=("prepare",)),
        sh("never", "echo never", depends_on=("broken",)),
        sh("after_never", "echo never either", depends_on=("never",), condition=Condition.ALL_DONE),
        sh("cleanup", "echo cleanup", depends_on=("broken",), condition=Condition.ALL_DONE),
        sh("alert", "echo alert", depends_on=("broken",), condition=Condition.ON_FAILURE),
        sh(
            "no_alert",
            "echo nothing failed",
            depends_on=("prepare",),
            condition=Condition.ON_FAILURE,
        ),
    )
    run = execute(store, job)
    assert run.status is RunStatus.FAILED
    assert "broken" in run.error
    assert "prepare" not in run.error and "cleanup" not in run.error
    stored = store.get_run(run.id)
    assert statuses(stored) == {
        "prepare": "completed",
        "broken": "failed",
        "never": "skipped",
        "after_never": "completed",
        "cleanup": "completed",
        "alert": "completed",
        "no_alert": "skipped",
    }
    broken = stored.task("broken")
    assert (broken.exit_code, broken.error, broken.attempts) == (3, "exited with code 3", 1)
    assert stored.task("never").attempts == 0
    assert store.logs.read(run.id, "broken")["stderr"] == "about to fail\n"
    assert store.logs.read(run.id, "never") is None
    assert_timed(stored)
    assert_none_left(marker)


# -- retries ------------------------------------------------------------------------------------


def test_attempts_count_real_attempts(store, stamps, marker):
    retry = RetryPolicy(max_attempts=2, delay_secs=0.05)
    job = make_job(
        marker,
        stamps,
        sh(
            "always_fails",
            'echo "$PETIT_ATTEMPT" >> "$STAMPS/always_fails.attempts"; exit 1',
            retry=retry,
        ),
        sh(
            "second_time",
            'echo "$PETIT_ATTEMPT" >> "$STAMPS/second_time.attempts"; [ "$PETIT_ATTEMPT" -ge 2 ]',
            retry=retry,
        ),
    )
    run = execute(store, job)
    stored = store.get_run(run.id)
    assert stamp_values(stamps, "always_fails", "attempts") == [1, 2, 3]
    assert stamp_values(stamps, "second_time", "attempts") == [1, 2]
    always, second = stored.task("always_fails"), stored.task("second_time")
    assert (always.status, always.attempts) == (TaskStatus.FAILED, 3)
    assert (second.status, second.attempts) == (TaskStatus.COMPLETED, 2)
    assert stored.task("second_time").error is None  # a success clears the earlier attempt's error
    assert stored.status is RunStatus.FAILED and "always_fails" in stored.error
    assert_none_left(marker)


def test_retry_delay_does_not_hold_a_slot(store, stamps, marker):
    delay = 1.0
    job = make_job(
        marker,
        stamps,
        sh(
            "flaky",
            START + '[ "$PETIT_ATTEMPT" -ge 2 ]',
            retry=RetryPolicy(max_attempts=1, delay_secs=delay),
        ),
        sh("other", START + "true" + END),
    )
    run = execute(store, job, max_tasks=1)
    assert run.status is RunStatus.COMPLETED
    flaky_starts = stamp_values(stamps, "flaky", "start")
    (other_start,) = stamp_values(stamps, "other", "start")
    assert len(flaky_starts) == 2
    assert flaky_starts[1] - flaky_starts[0] >= delay * 1e9 * 0.9
    # the only slot was free during flaky's retry delay, and `other` used it
    assert flaky_starts[0] < other_start < flaky_starts[1]
    assert other_start - flaky_starts[0] < delay * 1e9 / 2
    assert_none_left(marker)


def test_a_running_retry_does_not_show_the_previous_attempts_end(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        sh(
            "flaky",
            START + 'if [ "$PETIT_ATTEMPT" = 1 ]; then echo first; exit 1; fi; sleep 30',
            retry=RetryPolicy(max_attempts=1, delay_secs=0),
        ),
    )
    engine, recorder = start_run(store, job)
    thread = in_background(engine)
    try:
        state = wait_until(
            lambda: (lambda t: t if t.attempts == 2 and t.handle else None)(
                store.get_run(engine.run.id).task("flaky")
            ),
            timeout=10,
            message="second attempt recorded",
        )
        assert state.status is TaskStatus.RUNNING
        assert (state.ended_at, state.duration_ms, state.exit_code) == (None, None, None)
    finally:
        engine.cancel()
        thread.join(timeout=10)
        recorder.close()
    # each attempt has its own log: the second printed nothing, the first's is kept
    assert store.logs.attempts(engine.run.id, "flaky") == [1]
    assert store.logs.read(engine.run.id, "flaky", 1)["stdout"] == "first\n"
    assert store.logs.read(engine.run.id, "flaky", 2) is None
    assert_none_left(marker)


@pytest.mark.parametrize(
    "condition, script, timeout, expected_attempts",
    [
        (RetryCondition.TRANSIENT_ONLY, "exit 1", None, 1),
        (RetryCondition.TRANSIENT_ONLY, "sleep 30", 0.3, 3),
        (RetryCondition.NEVER, "sleep 30", 0.3, 1),
        (RetryCondition.NEVER, "exit 1", None, 1),
        (RetryCondition.ALWAYS, "exit 1", None, 3),
    ],
    ids=["transient-exit", "transient-timeout", "never-timeout", "never-exit", "always-exit"],
)
def test_retry_conditions(store, stamps, marker, condition, script, timeout, expected_attempts):
    task = sh(
        "t",
        'echo x >> "$STAMPS/t.attempts"; ' + script,
        timeout_secs=timeout,
        retry=RetryPolicy(max_attempts=2, delay_secs=0, condition=condition),
    )
    run = execute(store, make_job(marker, stamps, task))
    state = store.get_run(run.id).task("t")
    assert state.status is TaskStatus.FAILED
    assert state.attempts == expected_attempts == len(stamp_values_raw(stamps, "t.attempts"))
    assert state.timed_out is (timeout is not None)
    assert_none_left(marker)


def stamp_values_raw(stamps: str, name: str) -> list[str]:
    with open(os.path.join(stamps, name)) as handle:
        return handle.read().split()


# -- scheduling within a run --------------------------------------------------------------------


def test_no_wave_barrier(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        sh("a1", "true"),
        sh("b1", "sleep 1" + END),
        sh("a2", START + "true", depends_on=("a1",)),
        sh("b2", "true", depends_on=("b1",)),
    )
    run = execute(store, job)
    assert run.status is RunStatus.COMPLETED
    (a2_start,) = stamp_values(stamps, "a2", "start")
    (b1_end,) = stamp_values(stamps, "b1", "end")
    assert a2_start < b1_end  # a2 did not wait for the slow task of the "first wave"
    assert_none_left(marker)


@pytest.mark.parametrize("max_tasks", [1, 2, 3])
def test_max_tasks_caps_concurrency(store, stamps, marker, max_tasks):
    ids = [f"t{i}" for i in range(6)]
    job = make_job(marker, stamps, *(sh(task_id, START + "sleep 0.2" + END) for task_id in ids))
    run = execute(store, job, max_tasks=max_tasks)
    assert run.status is RunStatus.COMPLETED
    intervals = [
        (stamp_values(stamps, t, "start")[0], stamp_values(stamps, t, "end")[0]) for t in ids
    ]
    # the recorded intervals lie inside the slots, so their overlap can only under-count
    assert max_overlap(intervals) == max_tasks
    assert_none_left(marker)


# -- cancel and interrupt -----------------------------------------------------------------------


def test_cancel_kills_running_groups_and_skips_pending_tasks(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        sh("slow_a", START + "sleep 30 & sleep 31"),
        sh("slow_b", START + "sleep 32"),
        sh("after_a", "echo unreachable", depends_on=("slow_a",)),
        sh("finally", "echo unreachable", depends_on=("slow_a",), condition=Condition.ALL_DONE),
    )
    engine, recorder = start_run(store, job)
    thread = in_background(engine)
    try:
        wait_until(
            lambda: all(stamp_values(stamps, t, "start") for t in ("slow_a", "slow_b")),
            timeout=10,
            message="both slow tasks running",
        )
        wait_until(lambda: len(marked_alive(marker)) >= 4, timeout=5, message="both process groups")
        began = time.monotonic()
        engine.cancel()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert time.monotonic() - began < 5
    finally:
        engine.cancel()
        thread.join(timeout=10)
        recorder.close()
    assert_none_left(marker)
    stored = Store(store.db_path).get_run(engine.run.id)
    assert stored.status is RunStatus.CANCELLED and stored.error == "cancelled"
    assert statuses(stored) == {
        "slow_a": "failed",
        "slow_b": "failed",
        "after_a": "skipped",
        "finally": "skipped",
    }
    assert stored.task("slow_a").error == "cancelled"
    assert all(t.handle is None for t in stored.tasks)
    assert_timed(stored)
    assert [r.id for r in store.active_runs()] == []


def test_cancel_during_a_retry_delay_is_prompt(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        sh("flaky", START + "exit 1", retry=RetryPolicy(max_attempts=5, delay_secs=30)),
    )
    engine, recorder = start_run(store, job)
    thread = in_background(engine)
    try:
        # waiting for the retry: pending, holding no handle a recovery could aim at
        wait_until(
            lambda: (lambda t: t.status is TaskStatus.PENDING and t.error and t.handle is None)(
                store.get_run(engine.run.id).task("flaky")
            ),
            timeout=5,
            message="first attempt settled",
        )
        began = time.monotonic()
        engine.cancel()
        thread.join(timeout=10)
        assert time.monotonic() - began < 3
    finally:
        engine.cancel()
        thread.join(timeout=10)
        recorder.close()
    stored = store.get_run(engine.run.id)
    assert stored.status is RunStatus.CANCELLED
    assert (stored.task("flaky").status, stored.task("flaky").attempts) == (TaskStatus.FAILED, 1)
    assert_none_left(marker)


def test_interrupt_marks_the_run_interrupted(store, stamps, marker):
    job = make_job(
        marker, stamps, sh("slow", START + "sleep 30"), sh("next", "true", depends_on=("slow",))
    )
    engine, recorder = start_run(store, job)
    thread = in_background(engine)
    try:
        wait_until(
            lambda: stamp_values(stamps, "slow", "start"), timeout=10, message="slow running"
        )
        engine.interrupt()
        thread.join(timeout=10)
    finally:
        engine.cancel()
        thread.join(timeout=10)
        recorder.close()
    stored = store.get_run(engine.run.id)
    assert stored.status is RunStatus.INTERRUPTED and stored.error == "run was interrupted"
    assert statuses(stored) == {"slow": "failed", "next": "skipped"}
    assert stored.task("slow").error == "run was interrupted"
    assert_none_left(marker)


def test_no_attempt_outlives_execute_even_when_cancelled_at_once(tmp_path, stamps, marker):
    """A cancel racing with the start of attempts: when execute() returns, every attempt it
    started has been reaped, so not even a leader spawned late may still be running."""
    store = Store(str(tmp_path / "race.db"), fsync=False)
    job = make_job(
        marker,
        stamps,
        *(Task(id=f"s{i}", name="s", command="sleep", args=("30",)) for i in range(4)),
    )
    for _ in range(25):
        engine, recorder = start_run(store, job)
        thread = in_background(engine)
        engine.cancel()
        thread.join(timeout=15)
        recorder.close()
        assert not thread.is_alive()
        # `sleep` has no children and collect() reaps the leader: nothing may be alive now
        assert marked_alive(marker) == []
        assert engine.run.status is RunStatus.CANCELLED
        assert all(t.status.is_terminal and t.handle is None for t in engine.run.tasks)


def test_cancel_before_execute_skips_everything(store, stamps, marker):
    job = make_job(marker, stamps, sh("a", START + "true"))
    engine, recorder = start_run(store, job)
    engine.cancel()
    run = engine.execute()
    recorder.close()
    assert run.status is RunStatus.CANCELLED
    assert statuses(store.get_run(run.id)) == {"a": "skipped"}
    assert stamp_values(stamps, "a", "start") == []


def test_start_failure_is_a_failed_task_not_a_crash(store, stamps, marker):
    job = make_job(
        marker,
        stamps,
        Task(id="missing", name="missing", command="petit-no-such-program-77"),
        sh("report", "true", depends_on=("missing",), condition=Condition.ALL_DONE),
    )
    run = execute(store, job)
    stored = store.get_run(run.id)
    assert stored.status is RunStatus.FAILED and "missing" in stored.error
    assert "command not found" in stored.task("missing").error
    assert stored.task("report").status is TaskStatus.COMPLETED
