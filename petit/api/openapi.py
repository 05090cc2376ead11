"""The OpenAPI 3 document of the HTTP API. A test compares it with the app's real routes and
checks real responses against the documented fields, so it cannot drift silently."""

from __future__ import annotations

from ..ipc.stream import EVENT_NAMES
from .openapi_params import (
    AUDIT_LIMIT,
    BEFORE,
    DROPS_BEFORE,
    DROPS_LIMIT,
    JOB_ID,
    LIMIT,
    QUEUE,
    RECENT,
    RUN_ID,
    SINCE,
    STATUS,
    TASK_ID,
)
from .schemas import SCHEMAS, WHOLE

_ERROR_TEXT = {
    "400": "bad request (a malformed Content-Length on any route; recent=abc on the jobs; "
    "limit=abc, status=done or a before= of another job on a job's runs; limit=0 or "
    "before=abc on a job's drops; queue=yes, a body that is not a JSON object like "
    "{'params': {...}}, or params the job does not declare or of the wrong type "
    "(INVALID_PARAMS: `problems` lists each) on a trigger; attempt=0, follow=maybe or a "
    "foreign Last-Event-ID on a task's logs; since=abc or limit=0 on the audit log; job files "
    "or API keys that do not load on a reload (INVALID_CONFIG: `errors` lists each))",
    "401": "missing or unknown API key, when keys are required (petit.toml [[api_keys]], or "
    "--api-token); with WWW-Authenticate: Bearer",
    "403": "a valid key whose role is below the one the operation needs (`needed_role` names "
    "it); a foreign Origin on a state-changing request; or a Host header that is neither a "
    "loopback name nor the host of --public-url",
    "404": "unknown job, run, task or route",
    "405": "method not allowed (the Allow header lists the ones the route implements)",
    "409": "conflict (dependency not satisfied, or the run already finished)",
    "413": "a request body over 64 KiB (only a trigger reads its body; others ignore it)",
    "415": "a trigger's request body that is not application/json",
    "429": "the job's max_concurrency or --max-jobs reached (without ?queue=true), or the "
    "job's queue is full (max_queued)",
    "500": "internal error",
    "503": "the scheduler worker is down or did not answer in time; or, on a state-changing "
    "operation, the audit log cannot be written (AUDIT_UNAVAILABLE: nothing was done, unless "
    "the message says what was)",
}


# what any route may answer, from the checks BaseHandler.prepare() makes before routing on
_ANY_ROUTE = ("400", "401", "403", "405", "413", "500")


_ALLOW = {
    "description": "the methods the route implements (RFC 9110), such as 'GET, HEAD'",
    "schema": {"type": "string"},
}


def _error(status: str) -> dict:
    response = {
        "description": _ERROR_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == "405":
        response["headers"] = {"Allow": _ALLOW}
    return response


def _op(summary: str, schema: str, errors: tuple[str, ...], params: tuple[dict, ...] = ()) -> dict:
    responses = {
        "200": {
            "description": "success",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }
    for status in (*_ANY_ROUTE, *errors):
        responses[status] = _error(status)
    return {"summary": summary, "parameters": list(params), "responses": responses}


def _head(get: dict) -> dict:
    """HEAD of a GET route: the same statuses and headers, never a body (RFC 9110 9.3.2)."""
    responses = {
        status: {k: v for k, v in response.items() if k != "content"}
        for status, response in get["responses"].items()
    }
    return {**get, "summary": f"{get['summary']} (headers only)", "responses": responses}


def _with_head(paths: dict) -> dict:
    return {
        path: {**operations, "head": _head(operations["get"])}
        if "get" in operations
        else operations
        for path, operations in paths.items()
    }


def _query(name: str, description: str, schema: dict, repeat: bool = False) -> dict:
    param = {"name": name, "in": "query", "required": False, "description": description}
    return {**param, "schema": {"type": "array", "items": schema} if repeat else schema}


def _event_stream(summary: str, description: str, errors: tuple[str, ...], params) -> dict:
    """An operation answering Server-Sent Events (text/event-stream) for as long as it lasts."""
    operation = _op(summary, "Message", errors, params)
    operation["responses"]["200"] = {
        "description": description,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    return operation


def _logs_op() -> dict:
    """JSON, or with ?follow=true a Server-Sent Events stream whose messages' data are
    LogLines, LogEnd and Error (the `x-events` extension names them)."""
    op = _op(
        "A task attempt's output so far (the latest attempt unless ?attempt=N), or followed live",
        "TaskLogs",
        ("404",),
        (
            RUN_ID,
            TASK_ID,
            _query("attempt", "which attempt (default: the latest)", WHOLE),
            _query("follow", "true: an event stream, live", {"type": "boolean", "default": False}),
            {
                **_query("Last-Event-ID", "with follow: resume after it", {"type": "string"}),
                "in": "header",
            },
        ),
    )
    op["responses"]["200"]["content"]["text/event-stream"] = {
        "schema": {"type": "string"},
        "x-events": {
            name: {"$ref": f"#/components/schemas/{schema}"}
            for name, schema in (("log", "LogLines"), ("end", "LogEnd"), ("error", "Error"))
        },
    }
    return op


# the data of each message of GET /api/events (docs/events.md), by its `event:` name
_EVENT_DATA = {
    "run": "Run",
    "task": "LiveTask",
    "log": "LiveLog",
    "scheduler": "SchedulerChanged",
    "fire_dropped": "FireDropped",
    "child": "ChildRestarted",
    "reset": "Reset",
}


def _trigger_op() -> dict:
    """200 when the run starts now; 202 when, with ?queue=true, it waits as a queued run."""
    op = _op(
        "Start a run now (or with ?queue=true queue it at the job's limits); returns once the "
        "run is recorded",
        "Triggered",
        ("400", "404", "409", "429", "503"),
        (JOB_ID, QUEUE),
    )
    op["requestBody"] = {
        "required": False,
        "description": "values for the job's declared params; each one left out takes its "
        "default (see docs/jobs.md)",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/TriggerRequest"}}
        },
    }
    op["responses"]["415"] = _error("415")
    op["responses"]["202"] = {
        **op["responses"]["200"],
        "description": "queued: the run waits for a free slot (status queued)",
    }
    return op


EVENTS = _event_stream(
    "The live event stream (Server-Sent Events)",
    "messages `id:`, `event:` (run, task, log, scheduler, fire_dropped, child, reset) and one "
    "line of JSON `data:`, and a comment at least every 5 s; see docs/events.md",
    ("400", "404", "503"),
    (
        _query("job_id", "only the events of these jobs", {"type": "string"}, repeat=True),
        _query("run_id", "only the events of these runs", {"type": "string"}, repeat=True),
        _query(
            "event",
            "only the events of these names (reset is always sent)",
            {"type": "string", "enum": list(EVENT_NAMES)},
            repeat=True,
        ),
        _query(
            "last_event_id",
            "resume after this id (or the Last-Event-ID header)",
            {"type": "string"},
        ),
    ),
)
EVENTS["responses"]["200"]["content"]["text/event-stream"]["x-events"] = {
    name: {"$ref": f"#/components/schemas/{schema}"} for name, schema in _EVENT_DATA.items()
}

PATHS = _with_head(
    {
        "/api/health": {"get": _op("Liveness of the API process", "Health", ())},
        "/api/status": {
            "get": _op(
                "The version, the scheduler's state and the service's children", "Status", ()
            )
        },
        "/api/scheduler/state": {"get": _op("Scheduler state", "SchedulerState", ())},
        "/api/scheduler/pause": {
            "post": _op("Pause scheduled fires (manual triggers still run)", "Message", ("503",))
        },
        "/api/scheduler/resume": {"post": _op("Resume scheduled fires", "Message", ("503",))},
        "/api/scheduler/reload": {
            "post": _op(
                "Read JOBS_DIR (and the API keys) again; the old ones stay if they do not load",
                "Reloaded",
                ("400", "503"),
            )
        },
        "/api/whoami": {"get": _op("The key this request came with, and its role", "WhoAmI", ())},
        "/api/audit": {
            "get": _op(
                "The newest entries of the audit log, oldest first",
                "AuditPage",
                ("400",),
                (SINCE, AUDIT_LIMIT),
            )
        },
        "/api/jobs": {"get": _op("All jobs, sorted by id", "JobList", ("400",), (RECENT,))},
        "/api/jobs/{job_id}": {"get": _op("One job", "Job", ("404",), (JOB_ID,))},
        "/api/jobs/{job_id}/trigger": {"post": _trigger_op()},
        "/api/jobs/{job_id}/runs": {
            "get": _op(
                "Runs of a job, newest first, a page at a time",
                "RunList",
                ("400", "404"),
                (JOB_ID, LIMIT, BEFORE, STATUS),
            )
        },
        "/api/jobs/{job_id}/drops": {
            "get": _op(
                "Scheduled fires of a job that did not become a run, newest first, a page at a "
                "time",
                "DropList",
                ("400", "404"),
                (JOB_ID, DROPS_LIMIT, DROPS_BEFORE),
            )
        },
        "/api/runs/{run_id}": {"get": _op("One run", "Run", ("404",), (RUN_ID,))},
        "/api/runs/{run_id}/tasks": {
            "get": _op("Task states of a run, in DAG order", "TaskList", ("404",), (RUN_ID,))
        },
        "/api/runs/{run_id}/tasks/{task_id}/logs": {"get": _logs_op()},
        "/api/runs/{run_id}/cancel": {
            "post": _op(
                "Cancel a running run; answers when it has stopped",
                "Cancelled",
                ("404", "409", "503"),
                (RUN_ID,),
            )
        },
        "/api/events": {"get": EVENTS},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format; see docs/metrics.md)",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "the Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **{s: _error(s) for s in _ANY_ROUTE},
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "parameters": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **{s: _error(s) for s in _ANY_ROUTE},
                },
            }
        },
    }
)


def _secured(paths: dict, roles: dict[str, str | None]) -> dict:
    """Each operation's `security`: the bearer key with the role its route needs (OpenAPI 3.1
    lists roles there for an http scheme), or none for a public route."""
    return {
        path: {
            method: {
                **operation,
                "security": [{"bearer": [roles[path]]}] if roles[path] is not None else [],
            }
            for method, operation in operations.items()
        }
        for path, operations in paths.items()
    }


def document(version: str, roles: dict[str, str | None]) -> dict:
    """`roles`: path template -> the role its route needs, None when public (app.route_roles)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "petit",
            "version": version,
            "description": "HTTP API of petit, a small job orchestrator for one machine. Every "
            'error body is {"error": message, "code": CODE}. Times are epoch ms. Keys are '
            "asked for when petit.toml declares [[api_keys]] or --api-token is set; each has "
            "a role, read < operate < admin, and each operation's security names the one it "
            "needs (see docs/http-api.md, Roles).",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key (or --api-token, an admin key): read, operate "
                    "or admin",
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": _secured(PATHS, roles),
    }
