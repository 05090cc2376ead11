"""The JSON projections of core/views.py, from model objects built here: no files, no processes.
The API tests check the same shapes end to end; these pin every field and value."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from petit.core.hooks import Hook, HookEvent, NotifyOn, Webhook
from petit.core.model import (
    Condition,
    DependencyCondition,
    Job,
    JobDependency,
    Run,
    RunStatus,
    Task,
    TaskRun,
    TaskStatus,
    TaskType,
    Trigger,
)
from petit.core.params import ParamSpec, ParamType
from petit.core.retry import RetryCondition, RetryPolicy
from petit.core.timing import CatchupPolicy, OverlapPolicy, ScheduleSpec
from petit.core.views import job_definition, job_json, job_summary, run_json, task_json

PIPELINE = Job(
    id="pipeline",
    name="Pipeline",
    description="extract then load",
    schedules=(ScheduleSpec("0 3 * * *", "Europe/Paris"),),
    max_concurrency=2,
    catchup=CatchupPolicy.LATEST,
    catchup_window_secs=7200.0,
    overlap=OverlapPolicy.QUEUE,
    max_queued=3,
    jitter_secs=30.0,
    timeout_secs=3600.0,
    source="/jobs/pipeline.yaml",
    params=(ParamSpec("mode", ParamType.CHOICE, "full", ("full", "delta"), description="what"),),
    depends_on=(
        JobDependency("upstream"),
        JobDependency("feed", DependencyCondition.WITHIN_WINDOW, window_secs=3600.0),
    ),
    hooks=(Hook(HookEvent.ON_FAILURE, Task("@on_failure", "@on_failure", TaskType.SHELL)),),
    notify=(
        Webhook(
            "https://user:secret@hooks.example.com:8443/in?token=secret",
            (NotifyOn.FAILURE, NotifyOn.FINISH),
            headers={"Authorization": "Bearer ${HOOK_TOKEN}"},
        ),
    ),
    tasks=(
        Task(id="extract", name="Extract", type=TaskType.SHELL, timeout_secs=30.0),
        Task(
            id="load",
            name="load",
            depends_on=("extract",),
            condition=Condition.ALL_DONE,
            retry=RetryPolicy(2, 1.5, RetryCondition.TRANSIENT_ONLY, backoff=2, max_delay_secs=4),
        ),
    ),
)
EXTRACT = {
    "id": "extract",
    "depends_on": [],
    "name": "Extract",
    "type": "shell",
    "condition": "all_success",
    "timeout_secs": 30.0,
    "retry": None,  # no retries is null, not a policy of zero attempts
}
LOAD = {
    "id": "load",
    "depends_on": ["extract"],
    "name": "load",
    "type": "command",
    "condition": "all_done",
    "timeout_secs": None,
    "retry": {
        "max_attempts": 2,
        "delay_secs": 1.5,
        "condition": "transient_only",
        "backoff": 2,
        "max_delay_secs": 4,
        "jitter": False,
        "on_exit_codes": None,  # any exit code, as far as the condition goes
        "retry_on_timeout": True,
        "words": "retry 2 times, after 1.5s then x2 up to 4.0s, on a timeout only",
    },
}
MANUAL = Job(id="manual", name="Manual", tasks=(Task(id="only", name="only"),), enabled=False)


def test_job_definition_has_every_field_of_the_job_file():
    assert job_definition(PIPELINE) == {
        "id": "pipeline",
        "name": "Pipeline",
        "description": "extract then load",
        "enabled": True,
        "schedule": "0 3 * * *",
        "timezone": "Europe/Paris",
        "schedules": [{"cron": "0 3 * * *", "timezone": "Europe/Paris"}],
        "task_count": 2,
        "max_concurrency": 2,
        "catchup": "latest",
        "catchup_window_secs": 7200.0,
        "overlap": "queue",
        "max_queued": 3,
        "jitter_secs": 30.0,
        "timeout_secs": 3600.0,
        "source": "/jobs/pipeline.yaml",
        "depends_on": [
            {"job": "upstream", "condition": "last_success"},
            {"job": "feed", "condition": "within_window"},
        ],
        "params": [
            {
                "name": "mode",
                "type": "choice",
                "default": "full",
                "choices": ["full", "delta"],
                "required": False,
                "description": "what",
                "secret": False,
            }
        ],
        "tasks": [EXTRACT, LOAD],
        "hooks": [{"hook": "on_failure", "type": "shell", "timeout_secs": None}],
        # no credentials, no query, no header values: any of them may be a secret
        "notify": [
            {
                "url": "https://hooks.example.com:8443/in",
                "on": ["failure", "finish"],
                "format": "json",
                "headers": ["Authorization"],
                "timeout_secs": 10.0,
                "retries": 3,
            }
        ],
    }


def test_job_definition_defaults_and_plain_json():
    definition = job_definition(MANUAL)
    assert definition["enabled"] is False and definition["schedule"] is None
    assert definition["description"] == "" and definition["max_concurrency"] is None
    assert definition["depends_on"] == [] and definition["timezone"] == "UTC"
    assert definition["schedules"] == [] and definition["catchup"] == "none"
    assert (definition["overlap"], definition["max_queued"]) == ("skip", 10)
    assert definition["jitter_secs"] is None and definition["timeout_secs"] is None
    # plain JSON types only: the store and `list --json` serialise it as it is
    assert json.loads(json.dumps(definition)) == definition


@pytest.mark.parametrize("next_run_at", [1_700_000_000_000, None], ids=["scheduled", "no-fire"])
def test_job_summary_is_the_definition_and_the_next_fire(next_run_at):
    assert job_summary(PIPELINE, next_run_at) == {
        **job_definition(PIPELINE),
        "next_run_at": next_run_at,
    }


def test_job_json_from_a_stored_summary():
    # what the store holds: the worker's summary plus the run counters it keeps itself
    stored = {
        **job_summary(PIPELINE, 1_700_000_000_000),
        "next_seq": 4,
        "active": ["pipeline-4", "pipeline-5"],
        "queued": ["pipeline-5"],
        "defined": True,
        "last_run_id": "pipeline-3",
        "last_status": "completed",
        "last_success_at": 1_699_999_000_000,
    }
    assert job_json(stored, paused=False) == {
        "id": "pipeline",
        "name": "Pipeline",
        "description": "extract then load",
        "enabled": True,
        "scheduled": True,
        "schedule": "0 3 * * *",
        "schedules": [
            {
                "cron": "0 3 * * *",
                "timezone": "Europe/Paris",
                "words": "every day at 03:00 (Europe/Paris)",
            }
        ],
        "schedule_words": "every day at 03:00 (Europe/Paris)",
        "timezone": "Europe/Paris",
        "next_run_at": 1_700_000_000_000,
        "paused": False,
        "task_count": 2,
        "max_concurrency": 2,
        "catchup": "latest",
        "catchup_window_secs": 7200.0,
        "overlap": "queue",
        "max_queued": 3,
        "jitter_secs": 30.0,
        "timeout_secs": 3600.0,
        "queued_runs": 1,
        "depends_on": stored["depends_on"],
        "params": stored["params"],
        "tasks": stored["tasks"],
        "hooks": stored["hooks"],
        "notify": stored["notify"],
        "last_run_id": "pipeline-3",
        "last_run_status": "completed",
        "last_success_at": 1_699_999_000_000,
    }
    assert "source" not in job_json(stored, paused=False)  # a path on the server's disk


def test_job_json_puts_each_schedule_of_a_list_in_words():
    job = Job(
        "twice",
        "twice",
        (Task("t", "t"),),
        schedules=(ScheduleSpec("30 7 * * 1-5", "Europe/Paris"), ScheduleSpec("0 18 * * *")),
    )
    shown = job_json(job_summary(job, None), paused=False)
    assert shown["schedules"] == [
        {
            "cron": "30 7 * * 1-5",
            "timezone": "Europe/Paris",
            "words": "at 07:30 on Monday to Friday (Europe/Paris)",
        },
        {"cron": "0 18 * * *", "timezone": "UTC", "words": "every day at 18:00"},
    ]
    assert shown["schedule_words"] == (
        "at 07:30 on Monday to Friday (Europe/Paris); every day at 18:00"
    )
    assert (shown["schedule"], shown["timezone"]) == ("30 7 * * 1-5", "Europe/Paris")


def test_job_json_of_a_sparse_doc_has_every_field():
    """A doc the store made for a job before any definition reached it: absent values are None
    (or empty lists), never missing."""
    job = job_json({"id": "ghost", "next_seq": 1, "active": []}, paused=True)
    assert job == {
        "id": "ghost",
        "name": None,
        "description": None,
        "enabled": True,
        "scheduled": False,
        "schedule": None,
        "schedules": [],
        "schedule_words": None,
        "timezone": None,
        "next_run_at": None,
        "paused": True,
        "task_count": None,
        "max_concurrency": None,
        "catchup": "none",
        "catchup_window_secs": None,
        "overlap": "skip",
        "max_queued": 10,
        "jitter_secs": None,
        "timeout_secs": None,
        "queued_runs": 0,
        "depends_on": [],
        "params": [],
        "tasks": [],
        "hooks": [],
        "notify": [],
        "last_run_id": None,
        "last_run_status": None,
        "last_success_at": None,
    }


def test_job_json_of_a_summary_from_before_task_details_fills_them_with_null():
    stored = {"id": "old", "tasks": [{"id": "a", "depends_on": []}]}
    assert job_json(stored, paused=False)["tasks"] == [
        {
            "id": "a",
            "depends_on": [],
            "name": None,
            "type": None,
            "condition": None,
            "timeout_secs": None,
            "retry": None,
        }
    ]


def test_job_json_with_recent_runs_lists_their_outcomes_only():
    newest, older = _run(), Run(id="pipeline-2", job_id="pipeline", seq=2, created_at=7)
    job = job_json(job_summary(PIPELINE, None), paused=False, recent=[newest, older])
    assert job["recent_runs"] == [
        {
            "id": "pipeline-3",
            "status": "failed",
            "trigger": "schedule",
            "created_at": 1000,
            "started_at": 1001,
            "ended_at": 3001,
            "duration_ms": 2000,
        },
        {
            "id": "pipeline-2",
            "status": "pending",
            "trigger": "manual",
            "created_at": 7,
            "started_at": None,
            "ended_at": None,
            "duration_ms": None,
        },
    ]
    assert "recent_runs" not in job_json(job_summary(PIPELINE, None), paused=False)


def test_job_json_shows_an_empty_description_as_null():
    stored = {**job_summary(MANUAL, None), "id": "manual"}
    job = job_json(stored, paused=False)
    assert job["description"] is None
    assert job["enabled"] is False and job["scheduled"] is False and job["next_run_at"] is None


def _run() -> Run:
    return Run(
        id="pipeline-3",
        job_id="pipeline",
        seq=3,
        trigger=Trigger.SCHEDULE,
        status=RunStatus.FAILED,
        created_at=1000,
        scheduled_at=900,
        params={"mode": "delta", "count": 5},
        started_at=1001,
        ended_at=3001,
        duration_ms=2000,
        error="task 'load' failed",
        cpu_secs=1.25,
        max_rss_bytes=3 * 2**20,
        tasks=[
            TaskRun(
                task_id="extract",
                run_id="pipeline-3",
                status=TaskStatus.COMPLETED,
                attempts=1,
                exit_code=0,
                started_at=1001,
                ended_at=2001,
                duration_ms=1000,
                cpu_secs=0.5,
                max_rss_bytes=2**20,
                handle={"runner": "local", "pid": 4242, "created": 12.5},
                outputs={"version": "1.2"},
            ),
            TaskRun(
                task_id="load",
                run_id="pipeline-3",
                status=TaskStatus.FAILED,
                attempts=3,
                exit_code=None,
                timed_out=True,
                error="timed out after 1s",
                started_at=2001,
                ended_at=3001,
                duration_ms=1000,
            ),
        ],
    )


def test_run_json():
    assert run_json(_run()) == {
        "id": "pipeline-3",
        "job_id": "pipeline",
        "status": "failed",
        "trigger": "schedule",
        "created_at": 1000,
        "scheduled_at": 900,
        "jitter_ms": None,
        "params": {"mode": "delta", "count": 5},
        "started_at": 1001,
        "ended_at": 3001,
        "duration_ms": 2000,
        "error": "task 'load' failed",
        "cpu_secs": 1.25,
        "max_rss_bytes": 3 * 2**20,
        "task_count": 2,
        "hooks": [],
        "notifications": [],
    }


def test_run_json_of_a_new_run_has_nulls_not_gaps():
    run = run_json(Run(id="job-1", job_id="job", seq=1, created_at=5))
    assert run["status"] == "pending" and run["trigger"] == "manual" and run["task_count"] == 0
    assert run["started_at"] is run["ended_at"] is run["duration_ms"] is run["error"] is None


def test_task_json_leaves_the_process_identity_in_the_store():
    extract, load = _run().tasks
    assert task_json(extract) == {
        "task_id": "extract",
        "run_id": "pipeline-3",
        "status": "completed",
        "attempts": 1,
        "exit_code": 0,
        "timed_out": False,
        "next_attempt_at": None,
        "started_at": 1001,
        "ended_at": 2001,
        "duration_ms": 1000,
        "cpu_secs": 0.5,
        "max_rss_bytes": 2**20,
        "error": None,
        "outputs": {"version": "1.2"},
        "attempt_history": [],
    }
    assert task_json(load)["outputs"] is None  # failed: no outputs
    assert task_json(load)["timed_out"] is True and task_json(load)["status"] == "failed"
    assert task_json(load)["error"] == "timed out after 1s"


def test_task_json_lists_every_attempt_oldest_first():
    @dataclass
    class Outcome:
        exit_code: int | None
        error: str | None
        timed_out: bool
        ended_at: int

    state = TaskRun(task_id="t", run_id="job-1")
    state.start_attempt(100)
    state.wait_for_retry(Outcome(None, "timed out after 1s", True, 1100), 1100, 500)
    assert task_json(state)["next_attempt_at"] == 1600  # while the retry waits
    state.start_attempt(1600)
    assert task_json(state)["next_attempt_at"] is None
    history = task_json(state)["attempt_history"]
    assert history == [
        {
            "attempt": 1,
            "started_at": 100,
            "ended_at": 1100,
            "duration_ms": 1000,
            "exit_code": None,
            "timed_out": True,
            "error": "timed out after 1s",
            "cpu_secs": None,  # the outcome carried no usage: not measured
            "max_rss_bytes": None,
            "retry_delay_ms": 500,
        },
        {
            "attempt": 2,
            "started_at": 1600,
            "ended_at": None,  # in flight
            "duration_ms": None,
            "exit_code": None,
            "timed_out": False,
            "error": None,
            "cpu_secs": None,
            "max_rss_bytes": None,
            "retry_delay_ms": None,
        },
    ]
    history[0]["error"] = "changed by a reader"  # a copy: the projection shares nothing
    assert state.attempt_history[0]["error"] == "timed out after 1s"
