"""The engine's logic over the in-memory FakeRunner (no processes, milliseconds per test):
retries, conditions and skip propagation, cancel, interrupt, bugs inside petit, the events it
publishes and the recorder that subscribes to them. tests/test_engine_local.py runs the same
engine over real processes."""

from __future__ import annotations

import threading

import pytest
from conftest import wait_until
from fake_runner import FAIL, HANG, OK, TIMEOUT, FakeRunner, Outcome

from petit.core.events import (
    EventBus,
    RunEnded,
    RunStarted,
    TaskEnded,
    TaskOutput,
    TaskRetrying,
    TaskStarted,
)
from petit.core.model import Condition, Job, Run, RunStatus, Task, TaskStatus, Trigger
from petit.core.retry import RetryCondition, RetryPolicy
from petit.errors import StorageError
from petit.execution.engine import RunEngine
from petit.execution.recorder import RunRecorder
from petit.storage.store import Store

pytestmark = pytest.mark.timeout(10)


def task(task_id: str, *after: str, condition=Condition.ALL_SUCCESS, **kw) -> Task:
    return Task(
        id=task_id, name=task_id, command="fake", depends_on=after, condition=condition, **kw
    )


def retry(max_attempts: int, delay_secs: float = 0.0, condition=RetryCondition.ALWAYS):
    return RetryPolicy(max_attempts, delay_secs, condition)


class Harness:
    """A store in tmp_path, a bus whose events are kept, a fake runner and one engine."""

    def __init__(self, tmp_path, script: dict | None = None) -> None:
        self.store = Store(str(tmp_path / "petit.db"), fsync=False)
        self.bus = EventBus()
        self.events: list = []
        self.bus.subscribe(self.events.append)
        self.runner = FakeRunner(script)

    def engine(self, *tasks: Task, max_tasks: int = 4) -> RunEngine:
        job = Job(id="job", name="job", tasks=tasks)
        run = self.store.create_run(job.id, [t.id for t in tasks], Trigger.MANUAL)
        return RunEngine(job, run, self.store, self.bus, self.runner, max_tasks=max_tasks)

    def execute(self, *tasks: Task, max_tasks: int = 4) -> Run:
        return self.engine(*tasks, max_tasks=max_tasks).execute()

    def of(self, kind: type, task_id: str | None = None) -> list:
        return [e for e in self.events if isinstance(e, kind) and task_id in (None, e.task_id)]


def in_background(engine: RunEngine) -> threading.Thread:
    thread = threading.Thread(target=engine.execute, name="test-engine")
    thread.start()
    return thread


def statuses(run: Run) -> dict[str, str]:
    return {t.task_id: t.status.value for t in run.tasks}


# -- retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition, outcome, attempts",
    [
        (RetryCondition.ALWAYS, FAIL, 3),
        (RetryCondition.ALWAYS, Outcome(exit_code=None, error="command not found: 'x'"), 3),
        (RetryCondition.TRANSIENT_ONLY, FAIL, 1),
        (RetryCondition.TRANSIENT_ONLY, TIMEOUT, 3),
        (RetryCondition.NEVER, TIMEOUT, 1),
        (RetryCondition.NEVER, FAIL, 1),
    ],
    ids=[
        "always-exit",
        "always-start",
        "transient-exit",
        "transient-timeout",
        "never-timeout",
        "never-exit",
    ],
)
def test_retry_conditions_and_counts(tmp_path, condition, outcome, attempts):
    h = Harness(tmp_path, {"t": [outcome]})
    run = h.execute(task("t", retry=retry(2, condition=condition)))
    state = run.task("t")
    assert (state.status, state.attempts) == (TaskStatus.FAILED, attempts)
    assert h.runner.attempts("t") == list(range(1, attempts + 1))
    assert [e.attempt for e in h.of(TaskRetrying)] == list(range(1, attempts))
    assert run.status is RunStatus.FAILED and run.error == "failed tasks: t"


def test_a_success_after_failures_completes_and_clears_the_error(tmp_path):
    h = Harness(tmp_path, {"t": [FAIL, FAIL, OK]})
    run = h.execute(task("t", retry=retry(5)))
    state = run.task("t")
    assert (state.status, state.attempts, state.error, state.exit_code) == (
        TaskStatus.COMPLETED,
        3,
        None,
        0,
    )
    assert run.status is RunStatus.COMPLETED and run.error is None


def test_retry_waits_its_delay_and_says_so(tmp_path):
    h = Harness(tmp_path, {"t": [FAIL, OK]})
    run = h.execute(task("t", retry=retry(1, delay_secs=0.05)))
    assert run.task("t").status is TaskStatus.COMPLETED
    (first, second) = [at for task_id, _, at in h.runner.start_times if task_id == "t"]
    assert second - first >= 0.05
    (retrying,) = h.of(TaskRetrying)
    assert (retrying.attempt, retrying.delay_secs, retrying.exit_code) == (1, 0.05, 1)
    assert retrying.error == "exited with code 1"


def test_a_jittered_backoff_is_drawn_once_and_waited_recorded_and_published_alike(
    tmp_path, monkeypatch
):
    draws = iter([0.5, 0.25])
    monkeypatch.setattr("petit.execution.engine.random.random", lambda: next(draws))
    h = Harness(tmp_path, {"t": [FAIL, FAIL, OK]})
    policy = RetryPolicy(2, 0.2, backoff=2, jitter=True)  # 0.2 s then 0.4 s, jittered
    run = h.execute(task("t", retry=policy))
    state = run.task("t")
    assert state.status is TaskStatus.COMPLETED and state.next_attempt_at is None
    assert [e["retry_delay_ms"] for e in state.attempt_history] == [100, 100, None]
    retries = h.of(TaskRetrying)
    assert [r.delay_secs for r in retries] == [0.1, 0.1]
    for retrying in retries:  # the delay from when it was chosen, just before it was told
        assert 0 < retrying.next_attempt_at - retrying.at <= 100
    starts = [at for task_id, _, at in h.runner.start_times if task_id == "t"]
    assert starts[1] - starts[0] >= 0.1 and starts[2] - starts[1] >= 0.1


def test_a_retry_delay_holds_no_slot(tmp_path):
    h = Harness(tmp_path, {"flaky": [FAIL, OK]})
    run = h.execute(task("flaky", retry=retry(1, delay_secs=0.2)), task("other"), max_tasks=1)
    assert run.status is RunStatus.COMPLETED
    assert [(t, a) for t, a, _ in h.runner.start_times] == [
        ("flaky", 1),
        ("other", 1),
        ("flaky", 2),
    ]


# -- conditions and skip propagation ------------------------------------------------------------


def test_conditions_and_skip_propagation(tmp_path):
    h = Harness(tmp_path, {"broken": [FAIL]})
    run = h.execute(
        task("prepare"),
        task("broken", "prepare"),
        task("never", "broken"),
        task("never_either", "never"),
        task("after_never", "never", condition=Condition.ALL_DONE),
        task("cleanup", "broken", condition=Condition.ALL_DONE),
        task("alert", "broken", condition=Condition.ON_FAILURE),
        task("no_alert", "prepare", condition=Condition.ON_FAILURE),
    )
    assert statuses(run) == {
        "prepare": "completed",
        "broken": "failed",
        "never": "skipped",
        "never_either": "skipped",
        "after_never": "completed",
        "cleanup": "completed",
        "alert": "completed",
        "no_alert": "skipped",
    }
    assert run.status is RunStatus.FAILED and run.error == "failed tasks: broken"
    assert sorted(h.runner.attempts("never") + h.runner.attempts("no_alert")) == []
    skips = {e.task_id: (e.attempt, e.error) for e in h.of(TaskEnded) if e.status == "skipped"}
    assert skips == {t: (0, "condition not met") for t in ("never", "never_either", "no_alert")}
    assert h.runner.sweeps == []  # sweeps are for stops only


# -- cancel, interrupt ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop, status, reason",
    [
        ("cancel", RunStatus.CANCELLED, "cancelled"),
        ("interrupt", RunStatus.INTERRUPTED, "run was interrupted"),
    ],
)
def test_a_stop_ends_running_attempts_and_skips_the_rest(tmp_path, stop, status, reason):
    h = Harness(tmp_path, {"slow_a": [HANG], "slow_b": [HANG]})
    engine = h.engine(
        task("slow_a"),
        task("slow_b"),
        task("after_a", "slow_a"),
        task("finally", "slow_a", condition=Condition.ALL_DONE),
    )
    thread = in_background(engine)
    h.runner.wait_hanging(2)
    getattr(engine, stop)()
    thread.join(timeout=5)
    assert not thread.is_alive()
    run = engine.run
    assert (run.status, run.error) == (status, reason)
    assert statuses(run) == {
        "slow_a": "failed",
        "slow_b": "failed",
        "after_a": "skipped",
        "finally": "skipped",
    }
    assert {t.task_id: t.error for t in run.tasks} == dict.fromkeys(statuses(run), reason)
    assert all(t.handle is None for t in run.tasks)
    assert h.runner.sweeps == [(run.id, h.store.db_path)]
    ended = {e.task_id: e.status for e in h.of(TaskEnded)}
    assert ended == statuses(run)  # skips by the stop are announced too


def test_cancel_during_a_retry_delay_is_prompt(tmp_path):
    h = Harness(tmp_path, {"flaky": [FAIL]})
    engine = h.engine(task("flaky", retry=retry(5, delay_secs=30)))
    thread = in_background(engine)
    wait_until(lambda: h.of(TaskRetrying), timeout=5, message="the first attempt to fail")
    engine.cancel()
    thread.join(timeout=5)
    assert not thread.is_alive()
    state = engine.run.task("flaky")
    assert (state.status, state.attempts, state.error) == (TaskStatus.FAILED, 1, "cancelled")
    assert engine.run.status is RunStatus.CANCELLED


def test_cancel_before_execute_starts_nothing(tmp_path):
    h = Harness(tmp_path)
    engine = h.engine(task("a"), task("b", "a"))
    engine.cancel()
    run = engine.execute()
    assert run.status is RunStatus.CANCELLED
    assert statuses(run) == {"a": "skipped", "b": "skipped"}
    assert h.runner.specs == []


# -- a bug inside petit -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["start", "collect"])
def test_a_bug_during_an_attempt_is_an_internal_error_never_retried(tmp_path, where):
    h = Harness(tmp_path, {"t": [Outcome(raises=where)]})
    run = h.execute(task("t", retry=retry(3)), task("report", "t", condition=Condition.ALL_DONE))
    state = run.task("t")
    assert (state.status, state.attempts) == (TaskStatus.FAILED, 1)
    assert state.error.startswith("internal error (RuntimeError)")
    assert "fake runner broke" not in state.error  # the details go to the log, not the record
    assert h.of(TaskRetrying) == []
    assert run.task("report").status is TaskStatus.COMPLETED
    assert run.status is RunStatus.FAILED


# -- events -------------------------------------------------------------------------------------


def assert_causal(events: list, run: Run) -> None:
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunEnded)
    assert [type(e) for e in events].count(RunEnded) == 1
    assert events[-1].status == run.status.value
    started = {}
    for index, event in enumerate(events):
        if isinstance(event, TaskStarted):
            assert (event.task_id, event.attempt) not in started
            started[(event.task_id, event.attempt)] = index
        elif isinstance(event, TaskOutput | TaskRetrying) or (
            isinstance(event, TaskEnded) and event.attempt
        ):
            assert started.get((event.task_id, event.attempt), index) < index, event
    ended = [e.task_id for e in events if isinstance(e, TaskEnded)]
    assert sorted(ended) == sorted(t.task_id for t in run.tasks)  # once each


def test_events_are_causal_within_a_run(tmp_path):
    h = Harness(
        tmp_path,
        {
            "a": [
                Outcome(exit_code=1, stdout=("try 1",)),
                Outcome(stdout=("try 2",), stderr=("w",)),
            ],
            "b": [FAIL],
        },
    )
    run = h.execute(
        task("a", retry=retry(1)),
        task("b", "a"),
        task("c", "b"),
        task("d", "b", condition=Condition.ON_FAILURE),
        max_tasks=2,
    )
    assert statuses(run) == {"a": "completed", "b": "failed", "c": "skipped", "d": "completed"}
    assert_causal(h.events, run)
    lines = [(e.attempt, e.stream, line) for e in h.of(TaskOutput, "a") for line in e.lines]
    assert lines == [(1, "stdout", "try 1"), (2, "stdout", "try 2"), (2, "stderr", "w")]
    assert [(e.task_id, e.attempt) for e in h.of(TaskStarted)][:2] == [("a", 1), ("a", 2)]
    assert all(e.run_id == run.id and e.job_id == "job" for e in h.events)


def test_events_are_causal_when_cancelled(tmp_path):
    h = Harness(tmp_path, {"slow": [HANG]})
    engine = h.engine(task("slow"), task("next", "slow"))
    thread = in_background(engine)
    h.runner.wait_hanging()
    engine.cancel()
    thread.join(timeout=5)
    assert_causal(h.events, engine.run)


# -- the recorder as a subscriber ---------------------------------------------------------------


def test_the_recorder_writes_a_run_at_its_end_at_once_and_persists_handles(tmp_path):
    """A run's start costs no write of its own (the pending record is durable and recovery
    treats it like a running one); its handles follow within the coalescing interval, its end
    is on disk before anyone hears of it."""
    h = Harness(tmp_path, {"slow": [HANG]})
    recorder = RunRecorder(h.store, h.bus)
    seen: dict[str, str] = {}  # subscribed after the recorder: it sees what the recorder wrote

    def probe(event) -> None:
        if isinstance(event, RunStarted | RunEnded):
            seen[event.kind] = Store(h.store.db_path).get_run(event.run_id).status.value

    h.bus.subscribe(probe)
    engine = h.engine(task("slow"))
    recorder.track(engine.run)
    thread = in_background(engine)
    try:
        handle = wait_until(
            lambda: Store(h.store.db_path).get_run(engine.run.id).task("slow").handle,
            timeout=5,
            message="the attempt's handle recorded",
        )
        assert handle == {"runner": "fake", "task_id": "slow", "attempt": 1}
    finally:
        engine.cancel()
        thread.join(timeout=5)
        recorder.close()
    assert seen == {"run_started": "pending", "run_ended": "cancelled"}
    stored = Store(h.store.db_path).get_run(engine.run.id)
    assert stored.status is RunStatus.CANCELLED and stored.task("slow").handle is None


def test_the_recorder_ignores_runs_it_does_not_track(tmp_path):
    h = Harness(tmp_path)
    recorder = RunRecorder(h.store, h.bus)
    try:
        run = h.execute(task("a"))
    finally:
        recorder.close()
    assert run.status is RunStatus.COMPLETED
    assert Store(h.store.db_path).get_run(run.id).status is RunStatus.PENDING


def test_a_run_end_the_disk_refused_is_written_later_by_the_recorder(tmp_path):
    class RefusesOnce(Store):
        refused = 0

        def save_runs(self, runs) -> None:
            runs = list(runs)
            if any(r.status.is_terminal for r in runs) and not self.refused:
                self.refused += 1
                raise StorageError(f"{self.db_path}: cannot write: No space left on device")
            super().save_runs(runs)

    h = Harness(tmp_path)
    h.store = RefusesOnce(str(tmp_path / "full.db"), fsync=False)
    recorder = RunRecorder(h.store, h.bus, interval_secs=0.01)
    engine = h.engine(task("a"))
    recorder.track(engine.run)
    try:
        run = engine.execute()  # the end's flush fails inside the bus: the run still ends
        assert run.status is RunStatus.COMPLETED and h.store.refused == 1
        wait_until(
            lambda: Store(h.store.db_path).get_run(run.id).status is RunStatus.COMPLETED,
            timeout=5,
            message="the refused end to be written again",
        )
    finally:
        recorder.close()
