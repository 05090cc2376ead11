"""The parameters of the OpenAPI document's operations (openapi.py): the path ids, bounded like
the routes' patterns, and the query arguments."""

from __future__ import annotations

from ..core.model import RunStatus
from ..ipc.audit import MAX_READ_LIMIT
from .audit import DEFAULT_AUDIT_LIMIT
from .base import ID_CHARS, ID_MAX_CHARS


def _path_param(name: str, description: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {
            "type": "string",
            "pattern": f"^[{ID_CHARS}]+$",
            "minLength": 1,
            "maxLength": ID_MAX_CHARS[name],
        },
    }


JOB_ID = _path_param("job_id", "job id")
RUN_ID = _path_param("run_id", "run id, '<job_id>-<n>'")
TASK_ID = _path_param("task_id", "task id, or a hook's log name such as @on_failure")
TASK_ID["schema"]["pattern"] = f"^@?[{ID_CHARS}]+$"
LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "most runs to return, newest first (default 20, capped at 1000)",
    "schema": {"type": "integer", "minimum": 1, "default": 20},
}
RECENT = {
    "name": "recent",
    "in": "query",
    "required": False,
    "description": "give every job `recent_runs`: its newest N runs, newest first (default 0: "
    "none; capped at 100)",
    "schema": {"type": "integer", "minimum": 0, "default": 0},
}
BEFORE = {
    "name": "before",
    "in": "query",
    "required": False,
    "description": "only runs older than this run id of the job (the `next_before` of the "
    "previous page)",
    "schema": {"type": "string"},
}
STATUS = {
    "name": "status",
    "in": "query",
    "required": False,
    "description": "only runs with this status (the page reads back through the history "
    "until it is full)",
    "schema": {"type": "string", "enum": [status.value for status in RunStatus]},
}
QUEUE = {
    "name": "queue",
    "in": "query",
    "required": False,
    "description": "at the job's max_concurrency or --max-jobs, wait as a queued run (202) "
    "instead of a 429: true or 1, false or 0 (default false)",
    "schema": {"type": "boolean", "default": False},
}
DROPS_LIMIT = {
    **LIMIT,
    "description": "most drops to return, newest first (default 20, capped at 1000)",
}
SINCE = {
    "name": "since",
    "in": "query",
    "required": False,
    "description": "only entries at or after this time, epoch ms",
    "schema": {"type": "integer", "minimum": 0},
}
AUDIT_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "most entries to return, the newest ones, oldest first (default 100, at "
    "most 1000)",
    "schema": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_READ_LIMIT,
        "default": DEFAULT_AUDIT_LIMIT,
    },
}
DROPS_BEFORE = {
    "name": "before",
    "in": "query",
    "required": False,
    "description": "only drops of fires scheduled before this time, epoch ms (the "
    "`next_before` of the previous page)",
    "schema": {"type": "integer", "minimum": 1},
}
