"""The component schemas of the OpenAPI document (openapi.py): the JSON shape of every resource
core/views.py projects, and of the errors."""

from __future__ import annotations

from ..core.hooks import HookEvent, NotifyOn, WebhookFormat
from ..core.model import Condition, DependencyCondition, RunStatus, TaskType, Trigger
from ..core.params import MAX_NAME_CHARS, MAX_PARAMS, MAX_VALUE_CHARS, ParamType
from ..core.retry import RetryCondition
from ..core.timing import CatchupPolicy, DropReason, OverlapPolicy

_INT_OR_NULL = {"type": ["integer", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STREAM = {"type": "string", "enum": ["stdout", "stderr"]}
_LINE = [_STREAM, {"type": "string"}]  # [stream, text]
WHOLE = {"type": "integer", "minimum": 1}
# what attempts used (CPU seconds, user + system; peak resident bytes); null: not measured
_USAGE = {"cpu_secs": _NUM_OR_NULL, "max_rss_bytes": _INT_OR_NULL}


def _obj(required: dict, optional: dict | None = None) -> dict:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": sorted(required), "properties": props}


def _enum_or_null(enum) -> dict:
    return {"type": ["string", "null"], "enum": [*(member.value for member in enum), None]}


def _enum(enum) -> dict:
    return {"type": "string", "enum": [member.value for member in enum]}


_SCHEDULER_STATE = {"type": "string", "enum": ["running", "paused", "stopped"]}
_RUN_STATUS = _enum(RunStatus)
_TRIGGER = _enum(Trigger)
_PARAM_VALUE = {"type": ["string", "number", "boolean"]}
_PARAMS = {"type": "object", "additionalProperties": _PARAM_VALUE}  # name -> value
_TRIGGER_PARAMS = {
    **_PARAMS,
    "maxProperties": MAX_PARAMS,
    # a string value is at most MAX_VALUE_CHARS characters (maxLength applies to strings only)
    "additionalProperties": {**_PARAM_VALUE, "maxLength": MAX_VALUE_CHARS},
}
_TRIGGER_PARAMS["propertyNames"] = {"maxLength": MAX_NAME_CHARS}
# a dropped fire (or a span of them), as GET /api/jobs/{id}/drops and the fire_dropped event
# give it: every fire from scheduled_at up to (not including) until, `count` of them
_DROP = {
    "scheduled_at": {"type": "integer"},
    "reason": _enum(DropReason),
    "until": _INT_OR_NULL,
    "count": _INT_OR_NULL,
    "error": _STR_OR_NULL,
}
_TASK_STATE = {
    "task_id": {"type": "string"},
    "run_id": {"type": "string"},
    "status": {
        "type": "string",
        "enum": ["pending", "running", "completed", "failed", "skipped"],
    },
    "attempts": {"type": "integer"},
    "exit_code": _INT_OR_NULL,
    "timed_out": {"type": "boolean"},
    # while a retry waits its delay: when the next attempt starts; else null
    "next_attempt_at": _INT_OR_NULL,
    "started_at": _INT_OR_NULL,
    "ended_at": _INT_OR_NULL,
    "duration_ms": _INT_OR_NULL,
    **_USAGE,
    "error": _STR_OR_NULL,
    # what it wrote to PETIT_OUTPUT; null until it completed (docs/jobs.md "Task outputs")
    "outputs": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    "attempt_history": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Attempt"},
    },
}

SCHEMAS = {
    "Error": _obj(
        {
            "error": {"type": "string"},
            "code": {
                "type": "string",
                "enum": [
                    "BAD_REQUEST",
                    "UNAUTHORIZED",
                    "FORBIDDEN",
                    "NOT_FOUND",
                    "METHOD_NOT_ALLOWED",
                    "CONFLICT",
                    "PAYLOAD_TOO_LARGE",
                    "TOO_MANY_REQUESTS",
                    "SERVICE_UNAVAILABLE",
                    "INTERNAL_ERROR",
                    "STORAGE_ERROR",
                    "UNSUPPORTED_MEDIA_TYPE",
                    "INVALID_PARAMS",
                ],
            },
        },
        # INVALID_PARAMS: every problem with the trigger's params, one line each
        {"problems": {"type": "array", "items": {"type": "string"}}},
    ),
    "Health": _obj(
        {
            "status": {"type": "string"},
            "version": {"type": "string"},
            "uptime_secs": {"type": "number"},
        }
    ),
    "Status": _obj(
        {
            "version": {"type": "string"},
            "scheduler": _obj({"state": _SCHEDULER_STATE}),
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Child"}},
        }
    ),
    "Child": _obj(
        {
            "name": {"type": "string"},
            "state": {"type": "string"},
            "pid": _INT_OR_NULL,
            "uptime_secs": {"type": ["number", "null"]},
            "restarts": {"type": "integer"},
        }
    ),
    "SchedulerState": _obj(
        {
            "state": _SCHEDULER_STATE,
            "is_running": {"type": "boolean"},
            "is_paused": {"type": "boolean"},
        }
    ),
    "Message": _obj({"message": {"type": "string"}}),
    "Job": _obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": _STR_OR_NULL,
            "enabled": {"type": "boolean"},
            "scheduled": {"type": "boolean"},
            "schedule": _STR_OR_NULL,
            "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}},
            "schedule_words": _STR_OR_NULL,
            "timezone": {"type": "string"},
            "next_run_at": _INT_OR_NULL,
            "paused": {"type": "boolean"},
            "task_count": {"type": "integer"},
            "max_concurrency": _INT_OR_NULL,
            "catchup": _enum(CatchupPolicy),
            "catchup_window_secs": _NUM_OR_NULL,
            "overlap": _enum(OverlapPolicy),
            "max_queued": {"type": "integer", "minimum": 0},
            "jitter_secs": _NUM_OR_NULL,
            "timeout_secs": _NUM_OR_NULL,
            "queued_runs": {"type": "integer", "minimum": 0},
            "depends_on": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/JobDependency"},
            },
            "params": {"type": "array", "items": {"$ref": "#/components/schemas/Param"}},
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/JobTask"}},
            "last_run_id": _STR_OR_NULL,
            "last_run_status": _STR_OR_NULL,
            "last_success_at": _INT_OR_NULL,
            "hooks": {"type": "array", "items": {"$ref": "#/components/schemas/JobHook"}},
            "notify": {"type": "array", "items": {"$ref": "#/components/schemas/JobWebhook"}},
        },
        {"recent_runs": {"type": "array", "items": {"$ref": "#/components/schemas/RecentRun"}}},
    ),
    # a param the job declares for its manual triggers (docs/jobs.md "Params")
    "Param": _obj(
        {
            "name": {"type": "string"},
            "type": _enum(ParamType),
            "default": {"type": [*_PARAM_VALUE["type"], "null"]},
            "choices": {"type": "array", "items": {"type": "string"}},
            "required": {"type": "boolean"},
            "description": {"type": "string"},
        }
    ),
    # the optional body of POST /api/jobs/{job_id}/trigger
    "TriggerRequest": {
        **_obj({}, {"params": _TRIGGER_PARAMS}),
        "additionalProperties": False,
    },
    "Schedule": _obj(
        {"cron": {"type": "string"}, "timezone": {"type": "string"}, "words": {"type": "string"}}
    ),
    "JobTask": _obj(
        {
            "id": {"type": "string"},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            # null in a summary stored by an older petit, until the worker stores it again
            "name": _STR_OR_NULL,
            "type": _enum_or_null(TaskType),
            "condition": _enum_or_null(Condition),
            "timeout_secs": {"type": ["number", "null"]},
            # an object, or null for no retries
            "retry": {
                **_obj(
                    {
                        "max_attempts": WHOLE,
                        "delay_secs": {"type": "number"},
                        "condition": {"type": "string", "enum": [c.value for c in RetryCondition]},
                    },
                    # absent from a summary stored before backoff (it had none of these)
                    {
                        "backoff": {"type": "number", "minimum": 1},
                        "max_delay_secs": _NUM_OR_NULL,
                        "jitter": {"type": "boolean"},
                        "on_exit_codes": {
                            "type": ["array", "null"],
                            "items": {"type": "integer", "minimum": 0, "maximum": 255},
                        },
                        "retry_on_timeout": {"type": "boolean"},
                        "words": {"type": "string"},
                    },
                ),
                "type": ["object", "null"],
            },
        }
    ),
    "RecentRun": _obj(
        {
            "id": {"type": "string"},
            "status": _RUN_STATUS,
            "trigger": _TRIGGER,
            "created_at": {"type": "integer"},
            "started_at": _INT_OR_NULL,
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
        }
    ),
    "JobDependency": _obj(
        {
            "job": {"type": "string"},
            "condition": {"type": "string", "enum": [c.value for c in DependencyCondition]},
        }
    ),
    "JobList": _obj(
        {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "count": {"type": "integer"},
        }
    ),
    # status: queued (answered 202) when the run waits for a slot; else the run started, as
    # far as it got when the answer was made (pending, running, or even ended already)
    "Triggered": _obj(
        {
            "run_id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": _RUN_STATUS,
            "message": {"type": "string"},
        }
    ),
    "Run": _obj(
        {
            "id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": _RUN_STATUS,
            "trigger": _TRIGGER,
            "created_at": {"type": "integer"},
            "scheduled_at": _INT_OR_NULL,
            "jitter_ms": _INT_OR_NULL,
            "params": _PARAMS,
            "started_at": _INT_OR_NULL,
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
            "error": _STR_OR_NULL,
            **_USAGE,
            "task_count": {"type": "integer"},
            "hooks": {"type": "array", "items": {"$ref": "#/components/schemas/HookOutcome"}},
            "notifications": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Notification"},
            },
        }
    ),
    # a hook the job declares (job keys on_success, on_failure, on_finish)
    "JobHook": _obj(
        {"hook": _enum(HookEvent), "type": _enum(TaskType), "timeout_secs": _NUM_OR_NULL}
    ),
    # a webhook the job declares: its url without credentials or query, its header names only
    "JobWebhook": _obj(
        {
            "url": {"type": "string"},
            "on": {"type": "array", "items": _enum(NotifyOn)},
            "format": _enum(WebhookFormat),
            "headers": {"type": "array", "items": {"type": "string"}},
            "timeout_secs": {"type": "number"},
            "retries": {"type": "integer", "minimum": 0},
        }
    ),
    # a hook that runs or ran after the run ended; its status never changes the run's
    "HookOutcome": _obj(
        {
            "hook": _enum(HookEvent),
            "status": {"type": "string", "enum": ["running", "completed", "failed"]},
            "exit_code": _INT_OR_NULL,
            "error": _STR_OR_NULL,
            "started_at": {"type": "integer"},
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
        }
    ),
    # one webhook told of the run's end, with each delivery attempt
    "Notification": _obj(
        {
            "url": {"type": "string"},
            "event": _enum(NotifyOn),
            "delivered": {"type": "boolean"},
            "abandoned": {"type": "boolean"},
            "attempts": {
                "type": "array",
                "items": _obj(
                    {
                        "at": {"type": "integer"},
                        "status_code": _INT_OR_NULL,
                        "error": _STR_OR_NULL,
                        "duration_ms": {"type": "integer"},
                    }
                ),
            },
        }
    ),
    "RunList": _obj(
        {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "count": {"type": "integer"},
            "next_before": _STR_OR_NULL,
        }
    ),
    "Drop": _obj({**_DROP, "at": {"type": "integer"}}),
    "DropList": _obj(
        {
            "drops": {"type": "array", "items": {"$ref": "#/components/schemas/Drop"}},
            "count": {"type": "integer"},
            "next_before": _INT_OR_NULL,
        }
    ),
    "TaskState": _obj(_TASK_STATE),
    # one attempt of a task, oldest first; the one in flight has ended_at null
    "Attempt": _obj(
        {
            "attempt": WHOLE,
            "started_at": _INT_OR_NULL,
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
            "exit_code": _INT_OR_NULL,
            "timed_out": {"type": "boolean"},
            "error": _STR_OR_NULL,
            **_USAGE,
            # the delay chosen after this attempt failed; null when no retry followed it
            "retry_delay_ms": _INT_OR_NULL,
        }
    ),
    "TaskList": _obj(
        {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskState"}},
            "count": {"type": "integer"},
        }
    ),
    "TaskLogs": _obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "status": {"type": "string"},
            "attempt": {"type": "integer"},
            "attempts": {"type": "integer"},
            "exit_code": _INT_OR_NULL,
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "truncated": {"type": "boolean"},
            "lines": {"type": "array", "items": {"type": "array", "prefixItems": _LINE}},
        }
    ),
    # the data of the `log` and `end` messages of ?follow=true (text/event-stream)
    "LogLines": _obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "attempt": {"type": "integer"},
            "stream": _STREAM,
            "lines": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "LogEnd": _obj(
        {"status": _STR_OR_NULL, "exit_code": _INT_OR_NULL, "attempts": {"type": "integer"}}
    ),
    "Cancelled": _obj(
        {"run_id": {"type": "string"}, "status": _STR_OR_NULL, "message": {"type": "string"}}
    ),
    # the data of GET /api/events' messages besides `run` (a Run)
    "LiveTask": _obj(
        {**_TASK_STATE, "job_id": {"type": "string"}},
        {"retry_delay_secs": {"type": "number"}},  # a retry: pending again, for this long
    ),
    "LiveLog": _obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "attempt": {"type": "integer"},
            "stream": _STREAM,
            "lines": {"type": "array", "items": {"type": "string"}},
        },
        {"dropped": WHOLE},  # lines past the live cap, counted instead of sent
    ),
    "SchedulerChanged": _obj({"state": {"type": "string", "enum": ["running", "paused"]}}),
    "FireDropped": _obj({"job_id": {"type": "string"}, **_DROP}),
    "ChildRestarted": _obj(
        {"child": {"type": "string"}, "exit_code": _INT_OR_NULL, "restarts": {"type": "integer"}}
    ),
    "Reset": _obj({"reason": {"type": "string"}}),
}
