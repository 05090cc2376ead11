"""Run management in-process, with a real Store in tmp_path and jobs built in code: the admission
checks and their order, the runs in flight, cancel with its deferred reply, stop at shutdown; and
the scheduler's dropped fires as events on its bus. No task process is started: admission comes
before any, and the runs held in flight here stand in for an engine."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import wait_until

from petit.core.events import EventBus, FireDropped, RunCreated, SchedulerPaused, SchedulerResumed
from petit.core.model import (
    DependencyCondition,
    Job,
    JobDependency,
    Run,
    RunStatus,
    Task,
    Trigger,
    now_ms,
)
from petit.core.timing import DropReason, OverlapPolicy, ScheduleSpec
from petit.errors import Conflict, JobNotFound, RunFinished, RunNotFound, TooManyRuns
from petit.service.runs import Refusal, RunManager, unmet_dependency
from petit.service.scheduler import Scheduler
from petit.storage.store import Store


def job(
    job_id: str,
    max_concurrency: int | None = None,
    depends_on: tuple[JobDependency, ...] = (),
    schedule: str | None = None,
) -> Job:
    return Job(
        id=job_id,
        name=job_id,
        tasks=(Task(id="t", name="t", command="true"),),
        schedules=(ScheduleSpec(schedule),) if schedule else (),
        max_concurrency=max_concurrency,
        depends_on=depends_on,
    )


class HeldEngine:
    """Stands in for a RunEngine: the run stays in flight until it is cancelled or interrupted."""

    def __init__(self, job: Job, run: Run, extra_env: dict[str, str]) -> None:
        self.job, self.run, self.extra_env = job, run, extra_env
        self._released = threading.Event()

    def execute(self) -> Run:
        self._released.wait(30)
        return self.run

    def cancel(self) -> None:
        self._end(RunStatus.CANCELLED)

    def interrupt(self) -> None:
        self._end(RunStatus.INTERRUPTED)

    def _end(self, status: RunStatus) -> None:
        self.run.status = status
        self._released.set()


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(str(tmp_path / "petit.db"), fsync=False)


@pytest.fixture
def replies() -> list[dict]:
    """What a RunManager sent back (cancel replies), in order."""
    return []


@pytest.fixture
def make_manager(store, replies):
    """A RunManager over `jobs`; its runs are held until stopped, and stopped after the test."""
    managers: list[RunManager] = []

    def make(jobs: list[Job], max_jobs: int = 0) -> RunManager:
        manager = RunManager({j.id: j for j in jobs}, store, HeldEngine, max_jobs, replies.append)
        managers.append(manager)
        return manager

    yield make
    hurry = threading.Event()
    hurry.set()
    for manager in managers:
        manager.stop_runs(0, hurry)
        assert manager.running() == []


def finish(store: Store, job_id: str, status: RunStatus) -> None:
    """Record one ended run of `job_id`, as the engine would."""
    run = store.create_run(job_id, ["t"], Trigger.MANUAL)
    run.status, run.ended_at = status, now_ms()
    store.save_runs([run])


UPSTREAM = JobDependency("up", DependencyCondition.LAST_SUCCESS)


def refused_check(manager: RunManager, job_id: str, now: int) -> Refusal | None:
    """The first admission check that fails for a run that would start now (overlap skip)."""
    decision = manager.admit(job_id, now, OverlapPolicy.SKIP)
    return decision if isinstance(decision, Refusal) else None


def check_can_start(manager: RunManager, job_id: str, now: int) -> Job:
    """The job, if it may start now; raises the failed check's error (a manual trigger's)."""
    refused = refused_check(manager, job_id, now)
    if refused is not None:
        raise refused.error
    return manager.jobs[job_id]


# --- admission: order and messages ---------------------------------------------------------------

ORDER_CASES = [
    # (id, jobs, max_jobs, runs held first, job triggered, error, reason, message)
    (
        "unknown-job-before-everything",
        [job("busy", max_concurrency=1)],
        1,
        ["busy"],
        "nope",
        JobNotFound,
        DropReason.UNKNOWN_JOB,
        "job 'nope' not found",
    ),
    (
        "concurrency-before-dependency",
        [job("j", max_concurrency=1, depends_on=(UPSTREAM,)), job("up")],
        0,
        ["j"],
        "j",
        TooManyRuns,
        DropReason.MAX_CONCURRENCY,
        "job 'j' already has 1 run(s) in flight (max_concurrency 1)",
    ),
    (
        "concurrency-before-max-jobs",
        [job("j", max_concurrency=2)],
        2,
        ["j", "j"],
        "j",
        TooManyRuns,
        DropReason.MAX_CONCURRENCY,
        "job 'j' already has 2 run(s) in flight (max_concurrency 2)",
    ),
    (
        "max-jobs-before-dependency",
        [job("j", depends_on=(UPSTREAM,)), job("up"), job("other")],
        1,
        ["other"],
        "j",
        TooManyRuns,
        DropReason.MAX_JOBS,
        "1 runs in flight, the --max-jobs limit",
    ),
    (
        "dependency-last",
        [job("j", max_concurrency=1, depends_on=(UPSTREAM,)), job("up")],
        5,
        [],
        "j",
        Conflict,
        DropReason.DEPENDENCY,
        "job 'j' depends on 'up' (last_success): its last run is missing, not completed",
    ),
]


@pytest.mark.parametrize(
    "job_list, max_jobs, held, job_id, error, reason, message",
    [case[1:] for case in ORDER_CASES],
    ids=[case[0] for case in ORDER_CASES],
)
def test_admission_checks_come_in_order(
    make_manager, job_list, max_jobs, held, job_id, error, reason, message
):
    manager = make_manager(job_list, max_jobs)
    for held_job in held:  # in flight already (launched as admitted: this is the setup)
        manager.launch(manager.jobs[held_job], Trigger.MANUAL)
    refusal = refused_check(manager, job_id, now_ms())
    assert refusal is not None and refusal.reason is reason
    assert type(refusal.error) is error and refusal.error.message == message
    with pytest.raises(error) as raised:
        check_can_start(manager, job_id, now_ms())
    assert raised.value.message == message
    assert len(manager.running()) == len(held)  # a refused trigger starts nothing


def test_shutting_down_refuses_even_an_admissible_job(make_manager):
    manager = make_manager([job("j")])
    assert refused_check(manager, "j", now_ms()) is None
    hurry = threading.Event()
    manager.stop_runs(0, hurry)
    refusal = refused_check(manager, "j", now_ms())
    assert refusal is not None and refusal.reason is DropReason.SHUTTING_DOWN
    with pytest.raises(Conflict, match="petit is shutting down"):
        check_can_start(manager, "j", now_ms())


def test_a_satisfied_dependency_admits_the_job(make_manager, store):
    manager = make_manager([job("j", depends_on=(UPSTREAM,)), job("up")])
    finish(store, "up", RunStatus.COMPLETED)
    assert check_can_start(manager, "j", now_ms()).id == "j"


def test_the_last_slot_is_freed_when_a_run_ends(make_manager):
    manager = make_manager([job("j", max_concurrency=1)])
    run = manager.launch(check_can_start(manager, "j", now_ms()), Trigger.MANUAL)
    assert refused_check(manager, "j", now_ms()).reason is DropReason.MAX_CONCURRENCY
    manager.cancel(run.id, "req-1")
    wait_until(lambda: refused_check(manager, "j", now_ms()) is None, message="the slot to free")


NOW_MS = 1_700_000_000_000

DEPENDENCY_CASES = [
    # (id, condition, window secs, summary of the upstream job, reason or None when met)
    (
        "last-success-met",
        DependencyCondition.LAST_SUCCESS,
        None,
        {"last_status": "completed"},
        None,
    ),
    (
        "last-success-failed",
        DependencyCondition.LAST_SUCCESS,
        None,
        {"last_status": "failed"},
        "its last run is failed, not completed",
    ),
    (
        "last-success-never-ran",
        DependencyCondition.LAST_SUCCESS,
        None,
        {},
        "its last run is missing, not completed",
    ),
    (
        "last-complete-failed-is-met",
        DependencyCondition.LAST_COMPLETE,
        None,
        {"last_status": "failed"},
        None,
    ),
    (
        "last-complete-cancelled",
        DependencyCondition.LAST_COMPLETE,
        None,
        {"last_status": "cancelled"},
        "its last run is cancelled, not finished",
    ),
    (
        "within-window-met",
        DependencyCondition.WITHIN_WINDOW,
        3600,
        {"last_success_at": NOW_MS - 3_599_000},
        None,
    ),
    (
        "within-window-too-old",
        DependencyCondition.WITHIN_WINDOW,
        3600,
        {"last_success_at": NOW_MS - 3_601_000},
        "no successful run in the last 3600s",
    ),
    (
        "within-window-never-succeeded",
        DependencyCondition.WITHIN_WINDOW,
        90,
        {"last_status": "failed"},
        "no successful run in the last 90s",
    ),
]


@pytest.mark.parametrize(
    "condition, window, summary, reason",
    [case[1:] for case in DEPENDENCY_CASES],
    ids=[case[0] for case in DEPENDENCY_CASES],
)
def test_unmet_dependency(condition, window, summary, reason):
    assert unmet_dependency(JobDependency("up", condition, window), summary, NOW_MS) == reason


# --- runs in flight ------------------------------------------------------------------------------


def test_a_started_run_is_recorded_and_listed(make_manager, store):
    manager = make_manager([job("j")])
    run = manager.launch(
        check_can_start(manager, "j", now_ms()), Trigger.SCHEDULE, scheduled_at=123
    )
    assert store.get_run(run.id).status is RunStatus.PENDING
    assert manager.running() == [
        {
            "run_id": run.id,
            "job_id": "j",
            "status": "pending",
            "trigger": "schedule",
            "started_at": None,
        }
    ]


def test_cancel_replies_when_the_run_has_ended(make_manager, replies):
    manager = make_manager([job("j")])
    run = manager.launch(check_can_start(manager, "j", now_ms()), Trigger.MANUAL)
    assert manager.cancel(run.id, "req-1") is None  # no reply yet: it comes at the end
    reply = wait_until(lambda: replies, message="the cancel reply")[0]
    assert reply["id"] == "req-1" and reply["ok"] is True
    assert reply["result"]["run_id"] == run.id and reply["result"]["status"] == "cancelled"
    assert manager.running() == []


def test_cancel_of_an_unknown_run_is_not_found(make_manager):
    manager = make_manager([job("j")])
    with pytest.raises(RunNotFound, match="run 'j-99' not found"):
        manager.cancel("j-99", "req-1")


def test_cancel_of_a_finished_run_is_a_conflict(make_manager, store):
    manager = make_manager([job("j")])
    finish(store, "j", RunStatus.COMPLETED)
    (run,) = store.list_runs("j", 1)
    with pytest.raises(RunFinished, match=rf"run '{run.id}' already finished \(completed\)"):
        manager.cancel(run.id, "req-1")


def test_stop_runs_interrupts_what_is_left(make_manager):
    manager = make_manager([job("j")])
    runs = [manager.launch(check_can_start(manager, "j", now_ms()), Trigger.MANUAL) for _ in "ab"]
    manager.stop_runs(0.1, threading.Event())
    assert manager.running() == []
    assert [run.status for run in runs] == [RunStatus.INTERRUPTED, RunStatus.INTERRUPTED]


# --- the scheduler's dropped fires on the bus ----------------------------------------------------


@pytest.fixture
def scheduler_with_events(store):
    """A Scheduler over `jobs` and the events its bus delivered; stopped after the test."""
    made: list[Scheduler] = []

    def make(jobs: list[Job]) -> tuple[Scheduler, list]:
        bus = EventBus()
        events: list = []
        bus.subscribe(events.append)
        scheduler = Scheduler({j.id: j for j in jobs}, store, bus=bus)
        made.append(scheduler)
        return scheduler, events

    yield make
    for scheduler in made:
        scheduler.stop_runs(0, threading.Event())


def a_minute_later() -> datetime:
    # the Scheduler arms its timetable from the clock: a minute on, an `@every 1m` job is due once
    return datetime.now(UTC) + timedelta(seconds=61)


def test_pause_and_resume_are_published_and_paused_fires_dropped(scheduler_with_events, store):
    scheduler, events = scheduler_with_events([job("j", schedule="@every 1m")])
    now = a_minute_later()
    scheduler.set_paused(True, now)
    scheduler.fire(now)
    scheduler.set_paused(False, now)
    dropped = [e for e in events if isinstance(e, FireDropped)]
    assert [type(e) for e in events] == [SchedulerPaused, FireDropped, SchedulerResumed]
    assert dropped[0].job_id == "j" and dropped[0].reason == "paused"
    assert dropped[0].scheduled_at < int(now.timestamp() * 1000)
    assert store.list_runs("j", 10) == []


def test_a_fire_with_an_unmet_dependency_is_dropped_with_its_reason(scheduler_with_events, store):
    scheduler, events = scheduler_with_events(
        [job("j", schedule="@every 1m", depends_on=(UPSTREAM,)), job("up")]
    )
    scheduler.fire(a_minute_later())
    assert [(e.job_id, e.reason) for e in events] == [("j", "dependency")]
    assert store.list_runs("j", 10) == []
    assert store.job_summaries()["j"]["next_run_at"] is not None  # the new next fire is shown


def test_a_fire_after_shutdown_is_dropped(scheduler_with_events, store):
    scheduler, events = scheduler_with_events([job("j", schedule="@every 1m")])
    scheduler.stop_runs(0, threading.Event())
    scheduler.fire(a_minute_later())
    assert [(e.job_id, e.reason) for e in events] == [("j", "shutting_down")]
    assert store.list_runs("j", 10) == []


def test_a_long_catchup_is_handed_out_a_turn_at_a_time_and_each_fire_once(
    scheduler_with_events, store
):
    """250 missed seconds of a job at max_concurrency 1 (overlap skip): each a run or a recorded
    drop; at most MAX_PER_TURN of them per turn of the worker loop, which reads its
    commands in between (next_wakeup says 0 while some wait)."""
    from dataclasses import replace as with_fields

    from petit.core.timing import CatchupPolicy
    from petit.service.scheduler import MAX_PER_TURN

    now = datetime.now(UTC).replace(microsecond=0)
    ledger = int(now.timestamp() * 1000) - 250_000
    store.drops.append("j", [{"scheduled_at": ledger, "reason": "paused", "count": 1}])
    every_second = with_fields(
        job("j", max_concurrency=1, schedule="* * * * * *"),
        catchup=CatchupPolicy.ALL,
        catchup_window_secs=3600.0,
    )
    scheduler, events = scheduler_with_events([every_second])
    turns = 0
    while True:
        scheduler.fire(now)
        turns += 1
        handed = [e for e in events if isinstance(e, (FireDropped, RunCreated))]
        assert len(handed) <= turns * MAX_PER_TURN
        if scheduler.next_wakeup(now) > 0:
            break
    assert turns == 3  # 250 fires: 100, 100, 50
    runs = store.list_runs("j", 1000)
    drops = store.drops.read("j", 1000)
    seconds = [run.scheduled_at for run in runs] + [d["scheduled_at"] for d in drops]
    expected = [ledger + 1000 * n for n in range(251)]  # the stored one, then 250 missed
    assert sorted(seconds) == expected
    # a run ends in milliseconds, so some later fires find the slot free again
    assert runs and {d["reason"] for d in drops[:-1]} <= {"max_concurrency"}
