"""The one JSON projection of each resource: a job's definition (stored by the worker for the API,
printed by `petit list --json`), and the API's Job, Run and TaskState. Field names match the older
tool; fields are only ever added. Pure: values in, dicts out."""

from __future__ import annotations

from .model import Job, Run, Task, TaskRun
from .params import param_definition
from .schedule_words import schedule_words
from .timing import DEFAULT_MAX_QUEUED

# what a job's `recent_runs` holds of each run: enough for a row of coloured squares
RECENT_RUN_FIELDS = (
    "id",
    "status",
    "trigger",
    "created_at",
    "started_at",
    "ended_at",
    "duration_ms",
)
# what the definition says of each task; a summary stored by an older petit lacks all but the
# first two, so job_json() fills the rest with None
_TASK_FIELDS = ("id", "depends_on", "name", "type", "condition", "timeout_secs", "retry")


def job_definition(job: Job) -> dict:
    """What a job file defines, with its tasks in DAG order and its cross-job dependencies."""
    return {
        "id": job.id,
        "name": job.name,
        "description": job.description,
        "enabled": job.enabled,
        # the first schedule, as before lists of them; `schedules` holds them all
        "schedule": job.schedules[0].cron if job.schedules else None,
        "timezone": job.schedules[0].timezone if job.schedules else "UTC",
        "schedules": [{"cron": s.cron, "timezone": s.timezone} for s in job.schedules],
        "task_count": len(job.tasks),
        "max_concurrency": job.max_concurrency,
        "catchup": job.catchup.value,
        "catchup_window_secs": job.catchup_window_secs,
        "overlap": job.overlap.value,
        "max_queued": job.max_queued,
        "jitter_secs": job.jitter_secs,
        "timeout_secs": job.timeout_secs,
        "source": job.source,
        "depends_on": [{"job": d.job_id, "condition": d.condition.value} for d in job.depends_on],
        "params": [param_definition(p) for p in job.params],
        "tasks": [_task_definition(t) for t in job.tasks],
        "hooks": [
            {
                "hook": h.event.value,
                "type": h.command.type.value,
                "timeout_secs": h.command.timeout_secs,
            }
            for h in job.hooks
        ],
        # the url without credentials or query, and header names only: either may be a secret
        "notify": [
            {
                "url": w.safe_url,
                "on": [event.value for event in w.on],
                "format": w.format.value,
                "headers": sorted(w.headers),
                "timeout_secs": w.timeout_secs,
                "retries": w.retries,
            }
            for w in job.notify
        ],
    }


def _task_definition(task: Task) -> dict:
    retry = task.retry
    return {
        "id": task.id,
        "depends_on": list(task.depends_on),
        "name": task.name,
        "type": task.type.value,
        "condition": task.condition.value,
        "timeout_secs": task.timeout_secs,
        # no retries at all reads as null, not as a policy of zero attempts
        "retry": {
            "max_attempts": retry.max_attempts,
            "delay_secs": retry.delay_secs,
            "condition": retry.condition.value,
            "backoff": retry.backoff,
            "max_delay_secs": retry.max_delay_secs,
            "jitter": retry.jitter,
            "on_exit_codes": sorted(retry.on_exit_codes) or None,  # null: any exit code
            "retry_on_timeout": retry.retry_on_timeout,
            "words": retry.describe(),
        }
        if retry.max_attempts
        else None,
    }


def job_summary(job: Job, next_run_at: int | None) -> dict:
    """The doc the scheduler worker stores for the API: the definition and the next fire it will
    act on (None when the job is disabled, unscheduled or paused)."""
    return {**job_definition(job), "next_run_at": next_run_at}


def job_json(summary: dict, paused: bool, recent: list[Run] | None = None) -> dict:
    """The API's Job, from a stored summary (which the store completes with the last run's
    outcome). Every field is present; absent values are None. With `recent` (its newest runs,
    newest first) it gains `recent_runs`."""
    schedules = summary.get("schedules")
    if schedules is None:  # stored before lists of schedules
        schedules = (
            []
            if summary.get("schedule") is None
            else [{"cron": summary["schedule"], "timezone": summary.get("timezone") or "UTC"}]
        )
    # each schedule in words too: a list of them reads as one line joined by "; "
    schedules = [
        {"cron": s["cron"], "timezone": s["timezone"], "words": _words(s)} for s in schedules
    ]
    job = {
        "id": summary["id"],
        "name": summary.get("name"),
        "description": summary.get("description") or None,
        "enabled": summary.get("enabled", True),
        "scheduled": summary.get("schedule") is not None,
        "schedule": summary.get("schedule"),
        "schedules": schedules,
        "schedule_words": "; ".join(s["words"] for s in schedules) or None,
        "timezone": summary.get("timezone"),
        "next_run_at": summary.get("next_run_at"),
        "paused": paused,
        "task_count": summary.get("task_count"),
        "max_concurrency": summary.get("max_concurrency"),
        # a summary stored by an older petit has no policies: it ran with these defaults
        "catchup": summary.get("catchup", "none"),
        "catchup_window_secs": summary.get("catchup_window_secs"),
        "overlap": summary.get("overlap", "skip"),
        "max_queued": summary.get("max_queued", DEFAULT_MAX_QUEUED),
        "jitter_secs": summary.get("jitter_secs"),
        "timeout_secs": summary.get("timeout_secs"),
        "queued_runs": len(summary.get("queued", [])),
        "depends_on": summary.get("depends_on", []),
        "params": summary.get("params", []),
        "tasks": [{name: t.get(name) for name in _TASK_FIELDS} for t in summary.get("tasks", [])],
        "hooks": summary.get("hooks", []),
        "notify": summary.get("notify", []),
        "last_run_id": summary.get("last_run_id"),
        "last_run_status": summary.get("last_status"),
        "last_success_at": summary.get("last_success_at"),
    }
    if recent is not None:
        job["recent_runs"] = [recent_run_json(run) for run in recent]
    return job


def _words(schedule: dict) -> str:
    return schedule_words(schedule["cron"], schedule["timezone"]) or schedule["cron"]


def recent_run_json(run: Run) -> dict:
    """A run as a job's `recent_runs` lists it: its outcome and timings only."""
    full = run_json(run)
    return {name: full[name] for name in RECENT_RUN_FIELDS}


def run_json(run: Run) -> dict:
    """The API's Run: its outcome and timings, without its tasks (see task_json)."""
    return {
        "id": run.id,
        "job_id": run.job_id,
        "status": run.status.value,
        "trigger": run.trigger.value,
        "created_at": run.created_at,
        "scheduled_at": run.scheduled_at,
        "jitter_ms": run.jitter_ms,
        "params": run.shown_params,  # a secret param's value masked; the tasks had it
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_ms": run.duration_ms,
        "error": run.error,
        "cpu_secs": run.cpu_secs,
        "max_rss_bytes": run.max_rss_bytes,
        "task_count": len(run.tasks),
        # a running hook's process handle stays in the store, as a task's does
        "hooks": [{k: v for k, v in entry.items() if k != "handle"} for entry in run.hooks],
        "notifications": [dict(entry) for entry in run.notifications],
    }


def task_json(state: TaskRun) -> dict:
    """The API's TaskState. The pid a recovery needs stays in the store."""
    return {
        "task_id": state.task_id,
        "run_id": state.run_id,
        "status": state.status.value,
        "attempts": state.attempts,
        "exit_code": state.exit_code,
        "timed_out": state.timed_out,
        "next_attempt_at": state.next_attempt_at,
        "started_at": state.started_at,
        "ended_at": state.ended_at,
        "duration_ms": state.duration_ms,
        "cpu_secs": state.cpu_secs,
        "max_rss_bytes": state.max_rss_bytes,
        "error": state.error,
        "outputs": None if state.outputs is None else dict(state.outputs),
        "attempt_history": [dict(entry) for entry in state.attempt_history],
    }


def run_brief(run: Run) -> dict:
    """A run in flight, as `ctl status` lists it and a cancel answers."""
    return {
        "run_id": run.id,
        "job_id": run.job_id,
        "status": run.status.value,
        "trigger": run.trigger.value,
        "started_at": run.started_at,
    }
