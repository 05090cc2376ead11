"""What a run's end sets off, decided on plain values: which hooks it fires and which webhooks it
tells, the environment a hook sees, the body a webhook is sent, and the retry rules of a
delivery (the declarations are in core/hooks.py)."""

from __future__ import annotations

from .hooks import Hook, HookEvent, NotifyOn, Webhook, WebhookFormat
from .model import Run, RunStatus, TaskRun, TaskStatus
from .params import param_environment

MAX_RETRY_DELAY_SECS = 30.0
SHUTDOWN = "interrupted by shutdown"
STOPPED = "interrupted: petit stopped"  # what recovery records of a hook a dead petit left running

# completed -> on_success, on_finish; failed (a job timeout too) -> on_failure, on_finish;
# cancelled -> on_finish. An interrupted run (petit stopping) and a queued run cancelled before it
# started fire nothing: petit is going away, or nothing ran.
_FIRED = {
    RunStatus.COMPLETED: (HookEvent.ON_SUCCESS, HookEvent.ON_FINISH),
    RunStatus.FAILED: (HookEvent.ON_FAILURE, HookEvent.ON_FINISH),
    RunStatus.CANCELLED: (HookEvent.ON_FINISH,),
}
_NOTIFIED = {
    RunStatus.COMPLETED: NotifyOn.SUCCESS,
    RunStatus.FAILED: NotifyOn.FAILURE,
    RunStatus.CANCELLED: NotifyOn.FINISH,
}


def never_started(run: Run) -> bool:
    return run.started_at is None


def hooks_fired(hooks: tuple[Hook, ...], run: Run) -> list[Hook]:
    """The hooks a run's end fires, in the order they run (on_success / on_failure first)."""
    if never_started(run):
        return []
    events = _FIRED.get(run.status, ())
    return sorted((h for h in hooks if h.event in events), key=lambda h: events.index(h.event))


def notify_event(webhook: Webhook, run: Run) -> NotifyOn | None:
    """The event a webhook is told of for this run's end (success or failure when it asked for
    it, else finish), or None when it is not told at all."""
    event = None if never_started(run) else _NOTIFIED.get(run.status)
    if event is None:
        return None
    if event in webhook.on:
        return event
    return NotifyOn.FINISH if NotifyOn.FINISH in webhook.on else None


def failed_tasks(run: Run) -> list[str]:
    return [t.task_id for t in run.tasks if t.status is TaskStatus.FAILED]


def hook_environment(run: Run, event: HookEvent) -> dict[str, str]:
    """What a hook learns of the run it follows, on top of the job's and its own environment."""
    env = {
        "PETIT_RUN_ID": run.id,
        "PETIT_RUN_STATUS": run.status.value,
        "PETIT_RUN_ERROR": run.error or "",
        "PETIT_JOB_ID": run.job_id,
        "PETIT_FAILED_TASKS": ",".join(failed_tasks(run)),
        "PETIT_HOOK": event.value,
    }
    env.update(param_environment(run.params))  # as the run's tasks saw them
    return env


def is_retryable_status(status_code: int) -> bool:
    """5xx and 429 may pass if tried later; any other refusal will not."""
    return status_code >= 500 or status_code == 429


def retry_delay(attempt: int) -> float:
    """Seconds before the attempt after failed attempt number `attempt` (1 s, 2 s, 4 s ...)."""
    return min(2.0 ** (attempt - 1), MAX_RETRY_DELAY_SECS)


def run_link(public_url: str | None, run: Run) -> str | None:
    """The dashboard's page of the run (its /runs/{run_id} route), when petit knows its origin."""
    return f"{public_url.rstrip('/')}/runs/{run.id}" if public_url else None


def webhook_body(
    webhook: Webhook, run: Run, event: NotifyOn, public_url: str | None, version: str
) -> dict:
    link = run_link(public_url, run)
    if webhook.format is WebhookFormat.SLACK:
        took = f" in {run.duration_ms / 1000:.1f}s" if run.duration_ms is not None else ""
        error = f": {run.error}" if run.error else ""
        text = f"petit: run {run.id} of job {run.job_id} {run.status.value}{took}{error}"
        return {"text": f"{text} <{link}|open>" if link else text}
    return {
        "event": event.value,
        "job_id": run.job_id,
        "run_id": run.id,
        "status": run.status.value,
        "error": run.error,
        "trigger": run.trigger.value,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_ms": run.duration_ms,
        "failed_tasks": failed_tasks(run),
        "url": link,
        "version": version,
    }


def hook_outcome(
    event: HookEvent,
    exit_code: int | None,
    error: str | None,
    started_at: int,
    ended_at: int,
) -> dict:
    """One entry of Run.hooks."""
    return {
        "hook": event.value,
        "status": "failed" if error else "completed",
        "exit_code": exit_code,
        "error": error,
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_ms": ended_at - started_at,
    }


def hook_running(event: HookEvent, handle: dict | None, started_at: int) -> dict:
    """The entry of Run.hooks while the hook runs; its handle (what recovery needs to kill it,
    kept out of the API) goes when its outcome replaces it."""
    return {
        "hook": event.value,
        "status": "running",
        "exit_code": None,
        "error": None,
        "started_at": started_at,
        "ended_at": None,
        "duration_ms": None,
        "handle": handle,
    }


def running_hooks_stopped(hooks: list[dict], now: int) -> list[dict]:
    """Run.hooks after recovery: each hook still recorded running is failed, `STOPPED`."""
    return [
        hook_outcome(HookEvent(h["hook"]), None, STOPPED, h["started_at"], now)
        if h["status"] == "running"
        else h
        for h in hooks
    ]


def log_sources(run: Run) -> list[TaskRun]:
    """What of a run has a log: its tasks, then the hooks that ran, each as a one-attempt task
    named as it is logged (`@on_failure`)."""
    hooks = [
        TaskRun(HookEvent(h["hook"]).log_name, run.id, TaskStatus(h["status"]), attempts=1)
        for h in run.hooks
    ]
    return [*run.tasks, *hooks]
