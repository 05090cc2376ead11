"""Commands between processes: the command table and the request/reply envelopes."""

from __future__ import annotations

import uuid

from ..errors import BadRequest, PetitError, from_wire

# verb -> required string arguments
COMMANDS: dict[str, tuple[str, ...]] = {
    "status": (),
    "pause": (),
    "resume": (),
    "reload": (),
    "shutdown": (),
    "trigger": ("job_id",),
    "cancel": ("run_id",),
}


def request(cmd: str, args: dict | None = None, request_id: str | None = None) -> dict:
    return {"id": request_id or uuid.uuid4().hex, "cmd": cmd, "args": args or {}}


def ok_reply(request_id: str | None, result: dict) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: str | None, exc: PetitError) -> dict:
    # Echo only an id a client could match: an object or a float (NaN, Infinity) taken from a
    # malformed request would make the reply itself invalid JSON for strict parsers.
    if not isinstance(request_id, (str, int)):
        request_id = None
    return {"id": request_id, "ok": False, **exc.to_wire()}


def validate_request(message) -> dict:
    """Check the envelope and the verb's arguments; raise BadRequest with what was expected."""
    if not isinstance(message, dict):
        raise BadRequest('expected a JSON object like {"id": "1", "cmd": "status", "args": {}}')
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:  # a list or object is unhashable
        raise BadRequest(f"unknown command {cmd!r:.60}: expected one of {', '.join(COMMANDS)}")
    args = message.get("args") or {}
    if not isinstance(args, dict):
        raise BadRequest("'args' must be a JSON object")
    for name in COMMANDS[cmd]:
        if not isinstance(args.get(name), str) or not args[name]:
            raise BadRequest(f"command {cmd!r} needs a string argument {name!r}")
    request_id = message.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        raise BadRequest("'id' must be a string")
    # Only the declared arguments go on to the scheduler: anything else a client sent is unused,
    # and could be nested too deeply to pickle across the process boundary.
    return {"id": request_id, "cmd": cmd, "args": {name: args[name] for name in COMMANDS[cmd]}}


def unwrap(reply: dict) -> dict:
    """A reply's result, or the exception it carries."""
    if reply.get("ok"):
        return reply.get("result") or {}
    raise from_wire(reply)
