"""The component schemas of the OpenAPI document (openapi.py): the JSON shape of every resource
core/views.py projects (the service's own answers and the errors: service_schemas.py)."""

from __future__ import annotations

from ..core.hooks import HookEvent, NotifyOn, WebhookFormat
from ..core.model import Condition, DependencyCondition, RunStatus, TaskType, Trigger
from ..core.params import MAX_NAME_CHARS, MAX_PARAMS, MAX_VALUE_CHARS, ParamType
from ..core.retry import RetryCondition
from ..core.timing import CatchupPolicy, DropReason, OverlapPolicy
from .schema_types import INT_OR_NULL, NUM_OR_NULL, STR_OR_NULL, WHOLE, enum_of, enum_or_null, obj
from .service_schemas import SERVICE_SCHEMAS

_STREAM = {"type": "string", "enum": ["stdout", "stderr"]}
_LINE = [_STREAM, {"type": "string"}]  # [stream, text]
# what attempts used (CPU seconds, user + system; peak resident bytes); null: not measured
_USAGE = {"cpu_secs": NUM_OR_NULL, "max_rss_bytes": INT_OR_NULL}


_RUN_STATUS = enum_of(RunStatus)
_TRIGGER = enum_of(Trigger)
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
    "reason": enum_of(DropReason),
    "until": INT_OR_NULL,
    "count": INT_OR_NULL,
    "error": STR_OR_NULL,
}
_TASK_STATE = {
    "task_id": {"type": "string"},
    "run_id": {"type": "string"},
    "status": {
        "type": "string",
        "enum": ["pending", "running", "completed", "failed", "skipped"],
    },
    "attempts": {"type": "integer"},
    "exit_code": INT_OR_NULL,
    "timed_out": {"type": "boolean"},
    # while a retry waits its delay: when the next attempt starts; else null
    "next_attempt_at": INT_OR_NULL,
    "started_at": INT_OR_NULL,
    "ended_at": INT_OR_NULL,
    "duration_ms": INT_OR_NULL,
    **_USAGE,
    "error": STR_OR_NULL,
    # what it wrote to PETIT_OUTPUT; null until it completed (docs/jobs.md "Task outputs")
    "outputs": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    "attempt_history": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Attempt"},
    },
}

SCHEMAS = {
    **SERVICE_SCHEMAS,
    "Job": obj(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": STR_OR_NULL,
            "enabled": {"type": "boolean"},
            "scheduled": {"type": "boolean"},
            "schedule": STR_OR_NULL,
            "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}},
            "schedule_words": STR_OR_NULL,
            "timezone": {"type": "string"},
            "next_run_at": INT_OR_NULL,
            "paused": {"type": "boolean"},
            "task_count": {"type": "integer"},
            "max_concurrency": INT_OR_NULL,
            "catchup": enum_of(CatchupPolicy),
            "catchup_window_secs": NUM_OR_NULL,
            "overlap": enum_of(OverlapPolicy),
            "max_queued": {"type": "integer", "minimum": 0},
            "jitter_secs": NUM_OR_NULL,
            "timeout_secs": NUM_OR_NULL,
            "queued_runs": {"type": "integer", "minimum": 0},
            "depends_on": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/JobDependency"},
            },
            "params": {"type": "array", "items": {"$ref": "#/components/schemas/Param"}},
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/JobTask"}},
            "last_run_id": STR_OR_NULL,
            "last_run_status": STR_OR_NULL,
            "last_success_at": INT_OR_NULL,
            "hooks": {"type": "array", "items": {"$ref": "#/components/schemas/JobHook"}},
            "notify": {"type": "array", "items": {"$ref": "#/components/schemas/JobWebhook"}},
        },
        {"recent_runs": {"type": "array", "items": {"$ref": "#/components/schemas/RecentRun"}}},
    ),
    # a param the job declares for its manual triggers (docs/jobs.md "Params")
    "Param": obj(
        {
            "name": {"type": "string"},
            "type": enum_of(ParamType),
            "default": {"type": [*_PARAM_VALUE["type"], "null"]},
            "choices": {"type": "array", "items": {"type": "string"}},
            "required": {"type": "boolean"},
            "description": {"type": "string"},
        },
        # true: its value is "***" in the audit log (absent from a summary stored before)
        {"secret": {"type": "boolean"}},
    ),
    # the optional body of POST /api/jobs/{job_id}/trigger
    "TriggerRequest": {
        **obj({}, {"params": _TRIGGER_PARAMS}),
        "additionalProperties": False,
    },
    "Schedule": obj(
        {"cron": {"type": "string"}, "timezone": {"type": "string"}, "words": {"type": "string"}}
    ),
    "JobTask": obj(
        {
            "id": {"type": "string"},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            # null in a summary stored by an older petit, until the worker stores it again
            "name": STR_OR_NULL,
            "type": enum_or_null(TaskType),
            "condition": enum_or_null(Condition),
            "timeout_secs": {"type": ["number", "null"]},
            # an object, or null for no retries
            "retry": {
                **obj(
                    {
                        "max_attempts": WHOLE,
                        "delay_secs": {"type": "number"},
                        "condition": {"type": "string", "enum": [c.value for c in RetryCondition]},
                    },
                    # absent from a summary stored before backoff (it had none of these)
                    {
                        "backoff": {"type": "number", "minimum": 1},
                        "max_delay_secs": NUM_OR_NULL,
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
    "RecentRun": obj(
        {
            "id": {"type": "string"},
            "status": _RUN_STATUS,
            "trigger": _TRIGGER,
            "created_at": {"type": "integer"},
            "started_at": INT_OR_NULL,
            "ended_at": INT_OR_NULL,
            "duration_ms": INT_OR_NULL,
        }
    ),
    "JobDependency": obj(
        {
            "job": {"type": "string"},
            "condition": {"type": "string", "enum": [c.value for c in DependencyCondition]},
        }
    ),
    "JobList": obj(
        {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "count": {"type": "integer"},
        }
    ),
    # status: queued (answered 202) when the run waits for a slot; else the run started, as
    # far as it got when the answer was made (pending, running, or even ended already)
    "Triggered": obj(
        {
            "run_id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": _RUN_STATUS,
            "message": {"type": "string"},
        }
    ),
    "Run": obj(
        {
            "id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": _RUN_STATUS,
            "trigger": _TRIGGER,
            "created_at": {"type": "integer"},
            "scheduled_at": INT_OR_NULL,
            "jitter_ms": INT_OR_NULL,
            "params": _PARAMS,
            "started_at": INT_OR_NULL,
            "ended_at": INT_OR_NULL,
            "duration_ms": INT_OR_NULL,
            "error": STR_OR_NULL,
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
    "JobHook": obj(
        {"hook": enum_of(HookEvent), "type": enum_of(TaskType), "timeout_secs": NUM_OR_NULL}
    ),
    # a webhook the job declares: its url without credentials or query, its header names only
    "JobWebhook": obj(
        {
            "url": {"type": "string"},
            "on": {"type": "array", "items": enum_of(NotifyOn)},
            "format": enum_of(WebhookFormat),
            "headers": {"type": "array", "items": {"type": "string"}},
            "timeout_secs": {"type": "number"},
            "retries": {"type": "integer", "minimum": 0},
        }
    ),
    # a hook that runs or ran after the run ended; its status never changes the run's
    "HookOutcome": obj(
        {
            "hook": enum_of(HookEvent),
            "status": {"type": "string", "enum": ["running", "completed", "failed"]},
            "exit_code": INT_OR_NULL,
            "error": STR_OR_NULL,
            "started_at": {"type": "integer"},
            "ended_at": INT_OR_NULL,
            "duration_ms": INT_OR_NULL,
        }
    ),
    # one webhook told of the run's end, with each delivery attempt
    "Notification": obj(
        {
            "url": {"type": "string"},
            "event": enum_of(NotifyOn),
            "delivered": {"type": "boolean"},
            "abandoned": {"type": "boolean"},
            "attempts": {
                "type": "array",
                "items": obj(
                    {
                        "at": {"type": "integer"},
                        "status_code": INT_OR_NULL,
                        "error": STR_OR_NULL,
                        "duration_ms": {"type": "integer"},
                    }
                ),
            },
        }
    ),
    "RunList": obj(
        {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "count": {"type": "integer"},
            "next_before": STR_OR_NULL,
        }
    ),
    "Drop": obj({**_DROP, "at": {"type": "integer"}}),
    "DropList": obj(
        {
            "drops": {"type": "array", "items": {"$ref": "#/components/schemas/Drop"}},
            "count": {"type": "integer"},
            "next_before": INT_OR_NULL,
        }
    ),
    "TaskState": obj(_TASK_STATE),
    # one attempt of a task, oldest first; the one in flight has ended_at null
    "Attempt": obj(
        {
            "attempt": WHOLE,
            "started_at": INT_OR_NULL,
            "ended_at": INT_OR_NULL,
            "duration_ms": INT_OR_NULL,
            "exit_code": INT_OR_NULL,
            "timed_out": {"type": "boolean"},
            "error": STR_OR_NULL,
            **_USAGE,
            # the delay chosen after this attempt failed; null when no retry followed it
            "retry_delay_ms": INT_OR_NULL,
        }
    ),
    "TaskList": obj(
        {
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskState"}},
            "count": {"type": "integer"},
        }
    ),
    "TaskLogs": obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "status": {"type": "string"},
            "attempt": {"type": "integer"},
            "attempts": {"type": "integer"},
            "exit_code": INT_OR_NULL,
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "truncated": {"type": "boolean"},
            "lines": {"type": "array", "items": {"type": "array", "prefixItems": _LINE}},
        }
    ),
    # the data of the `log` and `end` messages of ?follow=true (text/event-stream)
    "LogLines": obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "attempt": {"type": "integer"},
            "stream": _STREAM,
            "lines": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "LogEnd": obj(
        {"status": STR_OR_NULL, "exit_code": INT_OR_NULL, "attempts": {"type": "integer"}}
    ),
    "Cancelled": obj(
        {"run_id": {"type": "string"}, "status": STR_OR_NULL, "message": {"type": "string"}}
    ),
    # the data of GET /api/events' messages besides `run` (a Run)
    "LiveTask": obj(
        {**_TASK_STATE, "job_id": {"type": "string"}},
        {"retry_delay_secs": {"type": "number"}},  # a retry: pending again, for this long
    ),
    "LiveLog": obj(
        {
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "attempt": {"type": "integer"},
            "stream": _STREAM,
            "lines": {"type": "array", "items": {"type": "string"}},
        },
        {"dropped": WHOLE},  # lines past the live cap, counted instead of sent
    ),
    "SchedulerChanged": obj({"state": {"type": "string", "enum": ["running", "paused"]}}),
    "FireDropped": obj({"job_id": {"type": "string"}, **_DROP}),
    "ChildRestarted": obj(
        {"child": {"type": "string"}, "exit_code": INT_OR_NULL, "restarts": {"type": "integer"}}
    ),
    "Reset": obj({"reason": {"type": "string"}}),
}
