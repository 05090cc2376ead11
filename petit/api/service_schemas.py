"""The component schemas of the service's own answers (openapi.py): the errors, health and
status, the scheduler's state, a reload, who a key is, and the audit log."""

from __future__ import annotations

from ..ipc.access import Role
from ..ipc.audit import CTL, HTTP, SOCKET, TRIGGER
from ..ipc.commands import COMMANDS
from .schema_types import INT_OR_NULL, STR_OR_NULL, enum_of, obj

_SCHEDULER_STATE = {"type": "string", "enum": ["running", "paused", "stopped"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}

SERVICE_SCHEMAS = {
    "Error": obj(
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
                    "AUDIT_UNAVAILABLE",
                    "INTERNAL_ERROR",
                    "STORAGE_ERROR",
                    "UNSUPPORTED_MEDIA_TYPE",
                    "INVALID_PARAMS",
                    "INVALID_CONFIG",
                ],
            },
        },
        {
            # INVALID_PARAMS: every problem with the trigger's params, one line each
            "problems": _STRINGS,
            # INVALID_CONFIG (a reload): every problem with the job files or keys
            "errors": _STRINGS,
            # FORBIDDEN for a key whose role is too small: the role the request needs
            "needed_role": enum_of(Role),
        },
    ),
    "Health": obj(
        {
            "status": {"type": "string"},
            "version": {"type": "string"},
            "uptime_secs": {"type": "number"},
        }
    ),
    "Status": obj(
        {
            "version": {"type": "string"},
            "scheduler": obj({"state": _SCHEDULER_STATE}),
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Child"}},
        }
    ),
    "Child": obj(
        {
            "name": {"type": "string"},
            "state": {"type": "string"},
            "pid": INT_OR_NULL,
            "uptime_secs": {"type": ["number", "null"]},
            "restarts": {"type": "integer"},
        }
    ),
    "SchedulerState": obj(
        {
            "state": _SCHEDULER_STATE,
            "is_running": {"type": "boolean"},
            "is_paused": {"type": "boolean"},
        }
    ),
    "Message": obj({"message": {"type": "string"}}),
    "Reloaded": obj({"jobs": {"type": "integer"}, "added": _STRINGS, "removed": _STRINGS}),
    # key null: the API asks for no key (every request may do everything: role admin)
    "WhoAmI": obj(
        {"key": STR_OR_NULL, "role": enum_of(Role), "keys_required": {"type": "boolean"}}
    ),
    # one line of <db>.audit.jsonl (docs/http-api.md, Audit log)
    "AuditEntry": obj(
        {
            "time": {"type": "string"},
            "at": {"type": "integer"},
            "door": {"type": "string", "enum": [HTTP, SOCKET, CTL, TRIGGER]},
            "who": STR_OR_NULL,
            "remote": STR_OR_NULL,
            "pid": INT_OR_NULL,
            "op": {
                "type": "string",
                "enum": [verb for verb, command in COMMANDS.items() if command.changes_state],
            },
            "args": {"type": "object"},
            "outcome": {"type": "string"},
            "http_status": INT_OR_NULL,
            "run_id": STR_OR_NULL,
        }
    ),
    "AuditPage": obj(
        {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "count": {"type": "integer"},
            "more": {"type": "boolean"},
            "warnings": _STRINGS,
        }
    ),
}
