"""The one command table: every verb with its arguments, the process that answers it, its
deadline and how `petit ctl` prints its reply; and the request/reply envelopes. The supervisor,
the scheduler worker, the API and `petit ctl` all read verbs and deadlines from here, so they
cannot disagree about a verb."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..core.params import MAX_PARAMS, MAX_VALUE_CHARS, check_given
from ..core.text import duration_words, wall_clock
from ..errors import BadRequest, PetitError, from_wire

SUPERVISOR = "supervisor"
SCHEDULER = "scheduler"
MAX_SECONDS = 86400.0
_REQUIRED = object()


MAX_ITEMS = MAX_PARAMS  # of a list argument (a trigger's `--param` words)
MAX_TEXT_CHARS = MAX_VALUE_CHARS


@dataclass(frozen=True)
class Arg:
    """One argument of a verb. `placeholder` is its name on the `petit ctl` command line (an
    argument without one is for other callers only, like shutdown's timeout); `option` makes a
    list argument a repeatable `petit ctl` option (`--param NAME=VALUE`), one item each."""

    name: str
    type: type = str
    default: object = _REQUIRED
    placeholder: str | None = None
    option: str | None = None

    @property
    def is_required(self) -> bool:
        return self.default is _REQUIRED

    def check(self, verb: str, args: dict) -> object:
        """The argument's value from a request's `args`; raises BadRequest naming what was
        expected."""
        if self.name not in args and not self.is_required:
            return self.default
        value = args.get(self.name)
        if self.type is bool:
            if not isinstance(value, bool):
                raise BadRequest(f"command {verb!r}: {self.name!r} must be true or false")
            return value
        if self.type is str:
            if not isinstance(value, str) or not value:
                raise BadRequest(f"command {verb!r} needs a string argument {self.name!r}")
            return value
        if self.type in (list, dict):
            return self._check_items(verb, value)
        number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number_ok or not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
            raise BadRequest(
                f"command {verb!r}: {self.name!r} must be a number of seconds from 0 to "
                f"{MAX_SECONDS:g}"
            )
        return float(value)

    def _check_items(self, verb: str, value) -> list | dict:
        """A list of strings, or a trigger's params (core/params.py check_given): flat and
        bounded, so it pickles across the process boundary whatever a client sent."""
        if self.type is dict:
            return check_given(value)
        if (
            not isinstance(value, list)
            or len(value) > MAX_ITEMS
            or not all(isinstance(item, str) and len(item) <= MAX_TEXT_CHARS for item in value)
        ):
            raise BadRequest(
                f"command {verb!r}: {self.name!r} must be a list of strings (at most "
                f"{MAX_ITEMS}, each at most {MAX_TEXT_CHARS} characters)"
            )
        return list(value)


@dataclass(frozen=True)
class Caller:
    """How long one caller waits for a verb, from the verb's deadline (the supervisor's wait
    on the scheduler): the API a second longer, so the supervisor's own 503, which says which
    hop failed, arrives first; `petit ctl` half as long again, since a human's call also covers
    a busy supervisor. Neither waits less than its floor (a status probes the scheduler for only
    3 s but still gets the caller's usual wait)."""

    name: str
    scale: float = 1.0
    margin_secs: float = 0.0
    floor_secs: float = 0.0

    def wait_secs(self, deadline_secs: float) -> float:
        return max(self.floor_secs, deadline_secs * self.scale + self.margin_secs)


FROM_SUPERVISOR = Caller(SUPERVISOR)
FROM_API = Caller("api", margin_secs=1.0, floor_secs=6.0)
FROM_CTL = Caller("ctl", scale=1.5, floor_secs=10.0)


@dataclass(frozen=True)
class Command:
    verb: str
    handled_by: str  # SUPERVISOR or SCHEDULER: who answers the request
    deadline_secs: float
    render: Callable[[dict], str]
    args: tuple[Arg, ...] = ()
    # The reply is followed by a stream of events, one line each, until the client hangs up
    # (`petit watch` and `logs -f` use it; `petit ctl` does not offer it).
    streams: bool = False
    # Asked through a door (the API, the control socket), it goes in the audit log.
    changes_state: bool = False

    def wait_secs(self, caller: Caller) -> float:
        return caller.wait_secs(self.deadline_secs)

    def check_args(self, args: dict) -> dict:
        """Only the declared arguments: anything else a client sent is unused, and could be
        nested too deeply to pickle across the process boundary."""
        return {arg.name: arg.check(self.verb, args) for arg in self.args}


# -- how `petit ctl` prints each reply -------------------------------------------------------------


def _message(result: dict) -> str:
    return result.get("message", "ok")


def _triggered(result: dict) -> str:
    queued = " (queued)" if result.get("status") == "queued" else ""
    return f"triggered job {result['job_id']}: run {result['run_id']}{queued}"


def _cancelled(result: dict) -> str:
    return f"run {result['run_id']} {result['status']}"


def _reloaded(result: dict) -> str:
    return (
        f"reloaded {result['jobs']} job(s); added: {', '.join(result['added']) or 'none'}; "
        f"removed: {', '.join(result['removed']) or 'none'}"
    )


def status_text(status: dict, now_ms: float | None = None) -> str:
    """`petit ctl status` for a human; `now_ms` places the next fires (default: the clock)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    sup = status["supervisor"]
    lines = [
        f"petit supervisor pid {sup['pid']}, up {duration_words(sup['uptime_secs'])}, "
        f"db {sup['db']}",
        f"jobs from {sup['jobs_dir']}" + ("  (shutting down)" if sup["shutting_down"] else ""),
    ]
    for child in status["children"]:
        up = (
            "down" if child["uptime_secs"] is None else f"up {duration_words(child['uptime_secs'])}"
        )
        lines.append(
            f"  {child['name']:<10} {child['state']:<9} pid {child['pid'] or '-'}  {up}, "
            f"{child['restarts']} restart(s)"
        )
    scheduler = status.get("scheduler")
    if scheduler is None:
        lines.append("scheduler: not answering")
        return "\n".join(lines)
    lines.append(
        f"scheduler: {scheduler['state']}, {scheduler['jobs']} job(s), "
        f"{len(scheduler['running_runs'])} run(s) in flight, "
        f"{len(scheduler.get('queued_runs', []))} queued"
    )
    for run in scheduler["running_runs"]:
        lines.append(f"  running {run['run_id']} ({run['trigger']})")
    for run in scheduler.get("queued_runs", []):
        lines.append(f"  queued  {run['run_id']} ({run['trigger']})")
    for job_id, due in scheduler["next_fires"].items():
        zone = scheduler["next_fire_timezones"][job_id]
        lines.append(
            f"  next {job_id} in {duration_words((due - now_ms) / 1000)} "
            f"({wall_clock(due, zone, seconds=False)} {zone})"
        )
    return "\n".join(lines)


def metrics_text(snapshot: dict) -> str:
    """`petit ctl metrics` for a human: per job, the runs ended since the worker started, how
    many failed, the runs in flight and queued, the dropped fires and the last success (local
    time). The full counts are in `--json` and GET /metrics."""

    def total(family: str, job_id: str, **match: str) -> int:
        return sum(
            s["value"]
            for s in snapshot[family]
            if s["job_id"] == job_id and all(s[k] == v for k, v in match.items())
        )

    width = max([len("job"), *(len(job_id) for job_id in snapshot["jobs"])])
    lines = [
        f"{'job':<{width}}  {'runs':>5}  {'failed':>6}  {'active':>6}  {'queued':>6}  "
        f"{'dropped':>7}  last success"
    ]
    for job_id in snapshot["jobs"]:
        success = snapshot["last_success_at"].get(job_id)
        when = (
            datetime.fromtimestamp(success / 1000).strftime("%Y-%m-%d %H:%M:%S")
            if success
            else "never"
        )
        lines.append(
            f"{job_id:<{width}}  {total('runs_total', job_id):>5}  "
            f"{total('runs_total', job_id, status='failed'):>6}  "
            f"{snapshot['runs_active'].get(job_id, 0):>6}  "
            f"{snapshot['runs_queued'].get(job_id, 0):>6}  "
            f"{total('fires_dropped_total', job_id):>7}  {when}"
        )
    lines.append(f"scheduler {'paused' if snapshot['paused'] else 'running'}")
    return "\n".join(lines)


# A cancel answers once the run stopped: kill grace, drain, sweep, write. A status waits only
# briefly for the scheduler: the supervisor's half of the answer is worth having on its own. So
# do metrics: a scrape that waits long is cut off by Prometheus's own timeout (10 s).
COMMANDS: dict[str, Command] = {
    command.verb: command
    for command in (
        Command("status", SUPERVISOR, 3.0, status_text),
        Command("pause", SCHEDULER, 5.0, _message, changes_state=True),
        Command("resume", SCHEDULER, 5.0, _message, changes_state=True),
        Command("reload", SCHEDULER, 5.0, _reloaded, changes_state=True),
        # timeout: how long running runs get to finish; absent, the service's --shutdown-timeout
        Command(
            "shutdown",
            SUPERVISOR,
            5.0,
            _message,
            (Arg("timeout", float, default=None),),
            changes_state=True,
        ),
        # queue: at the job's limits, wait as a queued run instead of being refused (429);
        # params: name -> JSON value (the API); param_words: NAME=VALUE text, parsed by the
        # job's declared types (`--param` on a command line)
        Command(
            "trigger",
            SCHEDULER,
            5.0,
            _triggered,
            (
                Arg("job_id", placeholder="JOB_ID"),
                Arg("queue", bool, default=False),
                Arg("params", dict, default=None),
                Arg("param_words", list, default=None, option="--param NAME=VALUE"),
            ),
            changes_state=True,
        ),
        Command(
            "cancel",
            SCHEDULER,
            20.0,
            _cancelled,
            (Arg("run_id", placeholder="RUN_ID"),),
            changes_state=True,
        ),
        Command("metrics", SCHEDULER, 3.0, metrics_text),
        Command(
            "watch",
            SUPERVISOR,
            5.0,
            _message,
            (Arg("job_id", default=None), Arg("run_id", default=None)),
            streams=True,
        ),
    )
}


# -- envelopes -----------------------------------------------------------------------------------


MAX_CLIENT_CHARS = 32
# The supervisor's message to the API process, on the queue of its replies, after a reload read
# the API keys again: {"event": API_KEYS_EVENT, "keys": [ApiKey.as_wire(), ...] or None}.
API_KEYS_EVENT = "api_keys"


def request(
    cmd: str, args: dict | None = None, request_id: str | None = None, client: str | None = None
) -> dict:
    """A request line. `client` names the program that sends it (`petit ctl` says "ctl"): the
    audit log tells its requests from those of other socket clients."""
    message = {"id": request_id or uuid.uuid4().hex, "cmd": cmd, "args": args or {}}
    if client is not None:
        message["client"] = client
    return message


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
    checked = COMMANDS[cmd].check_args(args)
    request_id = message.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        raise BadRequest("'id' must be a string")
    checked_message = {"id": request_id, "cmd": cmd, "args": checked}
    client = message.get("client")
    if client is not None:
        if not isinstance(client, str) or not 0 < len(client) <= MAX_CLIENT_CHARS:
            raise BadRequest(f"'client' must be a string of 1 to {MAX_CLIENT_CHARS} characters")
        checked_message["client"] = client
    return checked_message


def unwrap(reply: dict) -> dict:
    """A reply's result, or the exception it carries."""
    if reply.get("ok"):
        return reply.get("result") or {}
    raise from_wire(reply)
