"""The component schemas of the OpenAPI document (openapi.py): the JSON shape of every resource
core/views.py projects, and of the errors."""

from __future__ import annotations

from ..core.model import Condition, DependencyCondition, RunStatus, TaskType, Trigger
from ..core.retry import RetryCondition

_INT_OR_NULL = {"type": ["integer", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_STREAM = {"type": "string", "enum": ["stdout", "stderr"]}
_LINE = [_STREAM, {"type": "string"}]  # [stream, text]
WHOLE = {"type": "integer", "minimum": 1}


def _obj(required: dict, optional: dict | None = None) -> dict:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": sorted(required), "properties": props}


def _enum_or_null(enum) -> dict:
    return {"type": ["string", "null"], "enum": [*(member.value for member in enum), None]}


_SCHEDULER_STATE = {"type": "string", "enum": ["running", "paused", "stopped"]}
_RUN_STATUS = {"type": "string", "enum": [status.value for status in RunStatus]}
_TRIGGER = {"type": "string", "enum": [trigger.value for trigger in Trigger]}


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
                ],
            },
        }
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
            "schedule_words": _STR_OR_NULL,
            "timezone": {"type": "string"},
            "next_run_at": _INT_OR_NULL,
            "paused": {"type": "boolean"},
            "task_count": {"type": "integer"},
            "max_concurrency": _INT_OR_NULL,
            "depends_on": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/JobDependency"},
            },
            "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/JobTask"}},
            "last_run_id": _STR_OR_NULL,
            "last_run_status": _STR_OR_NULL,
            "last_success_at": _INT_OR_NULL,
        },
        {"recent_runs": {"type": "array", "items": {"$ref": "#/components/schemas/RecentRun"}}},
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
                    }
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
    "Triggered": _obj(
        {"run_id": {"type": "string"}, "job_id": {"type": "string"}, "message": {"type": "string"}}
    ),
    "Run": _obj(
        {
            "id": {"type": "string"},
            "job_id": {"type": "string"},
            "status": _RUN_STATUS,
            "trigger": _TRIGGER,
            "created_at": {"type": "integer"},
            "scheduled_at": _INT_OR_NULL,
            "started_at": _INT_OR_NULL,
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
            "error": _STR_OR_NULL,
            "task_count": {"type": "integer"},
        }
    ),
    "RunList": _obj(
        {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "count": {"type": "integer"},
            "next_before": _STR_OR_NULL,
        }
    ),
    "TaskState": _obj(
        {
            "task_id": {"type": "string"},
            "run_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["pending", "running", "completed", "failed", "skipped"],
            },
            "attempts": {"type": "integer"},
            "exit_code": _INT_OR_NULL,
            "timed_out": {"type": "boolean"},
            "started_at": _INT_OR_NULL,
            "ended_at": _INT_OR_NULL,
            "duration_ms": _INT_OR_NULL,
            "error": _STR_OR_NULL,
            "attempt_history": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Attempt"},
            },
        }
    ),
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
}
