"""The HTTP API process (Tornado). Reads go straight to the store under the shared lock (cached by
file identity, so an unchanged file is not parsed again); mutations go to the scheduler through
the supervisor as commands with a deadline. Never writes the store."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import signal
import threading
import time

import tornado.httpserver
import tornado.web

from . import __version__
from .binding import is_loopback_host
from .errors import (BadRequest, Conflict, Forbidden, MethodNotAllowed, NotFound, PayloadTooLarge,
                     PetitError, Unauthorized, Unavailable)
from .ipc import ReplyMatcher, request, unwrap
from .model import Run, TaskRun
from .storage import Store, split_run_id

log = logging.getLogger("petit.api")
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_PATH_CHARS = 1024
MAX_BODY_BYTES = 64 * 1024     # no endpoint reads a body; bigger ones get a JSON 413, unread
# tornado's own cap, far above ours: it answers a bare, non-JSON 400 to a chunked body over its cap,
# so the handlers enforce MAX_BODY_BYTES themselves (every one streams, none buffers a body)
TORNADO_BODY_CAP = 1 << 40
# a little above the supervisor's own deadlines towards the scheduler (5 s, 20 s for a cancel)
REPLY_DEADLINE_SECS = 6.0
CANCEL_REPLY_DEADLINE_SECS = 21.0
EXIT_CANNOT_BIND = 78


# -- JSON shapes (field names match the older tool; extra fields are additions) ------------------

def job_json(doc: dict, paused: bool) -> dict:
    return {
        "id": doc["id"], "name": doc.get("name"), "description": doc.get("description") or None,
        "enabled": doc.get("enabled", True), "scheduled": doc.get("schedule") is not None,
        "schedule": doc.get("schedule"), "timezone": doc.get("timezone"),
        "next_run_at": doc.get("next_run_at"), "paused": paused,
        "task_count": doc.get("task_count"), "max_concurrency": doc.get("max_concurrency"),
        "depends_on": doc.get("depends_on", []), "tasks": doc.get("tasks", []),
        "last_run_id": doc.get("last_run_id"), "last_run_status": doc.get("last_status"),
        "last_success_at": doc.get("last_success_at"),
    }


def run_json(run: Run) -> dict:
    return {
        "id": run.id, "job_id": run.job_id, "status": run.status.value, "trigger": run.trigger.value,
        "created_at": run.created_at, "scheduled_at": run.scheduled_at, "started_at": run.started_at,
        "ended_at": run.ended_at, "duration_ms": run.duration_ms, "error": run.error,
        "task_count": len(run.tasks),
    }


def task_json(state: TaskRun) -> dict:
    return {
        "task_id": state.task_id, "run_id": state.run_id, "status": state.status.value,
        "attempts": state.attempts, "exit_code": state.exit_code, "timed_out": state.timed_out,
        "started_at": state.started_at, "ended_at": state.ended_at, "duration_ms": state.duration_ms,
        "error": state.error,
    }


# -- commands to the scheduler --------------------------------------------------------------------

class CommandChannel:
    """Request/reply with the supervisor over the two queues this process was given."""

    def __init__(self, replies, requests) -> None:
        self._replies, self._requests = replies, requests
        self._matcher = ReplyMatcher()
        self._requests.cancel_join_thread()
        threading.Thread(target=self._read, daemon=True, name="petit-api-replies").start()

    def _read(self) -> None:
        while True:
            reply = self._replies.get()
            if reply is None:
                return
            self._matcher.resolve(reply)   # safe from this thread: a late reply is dropped

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        message = request(cmd, args)
        future = self._matcher.expect(message["id"])
        self._requests.put(message)
        deadline = CANCEL_REPLY_DEADLINE_SECS if cmd == "cancel" else REPLY_DEADLINE_SECS
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(future), deadline)
        except asyncio.TimeoutError:
            self._matcher.discard(message["id"])
            raise Unavailable(f"the scheduler did not answer within {deadline:g}s") from None
        return unwrap(reply)


# -- handlers -------------------------------------------------------------------------------------

@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON in and out, the error mapping, and the security checks every route shares.

    Bodies are streamed and dropped (no endpoint reads one): a body is never held in memory. One
    declared too large gets a JSON 413 from prepare(), a chunked one from data_received() as soon
    as it goes over, instead of tornado's bare 400; tornado then closes the connection rather than
    read the rest, and never runs the handler's method."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
    body_bytes = 0     # of this request's body, counted by data_received()

    @property
    def store(self) -> Store:
        return self.application.settings["store"]

    @property
    def commands(self) -> CommandChannel:
        return self.application.settings["commands"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.clear_header("Server")

    def compute_etag(self):
        return None

    def prepare(self) -> None:
        settings = self.application.settings
        if len(self.request.path) > MAX_PATH_CHARS:
            raise NotFound("path too long")
        _check_body_size(self.request.headers.get("Content-Length", "0"))
        if settings["loopback_only"] and not is_loopback_host(self.request.host):
            raise Forbidden(f"Host header {self.request.host[:100]!r} is not a loopback name; this API "
                            "only answers requests addressed to localhost (DNS-rebinding protection)")
        origin = self.request.headers.get("Origin")
        if self.request.method not in ("GET", "HEAD") and origin is not None:
            if origin != f"{self.request.protocol}://{self.request.host}":
                raise Forbidden(f"cross-origin request from {origin[:100]!r} refused")
        token = settings["token"]
        if token and not getattr(self, "public", False):
            header = self.request.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Unauthorized("missing or wrong bearer token (Authorization: Bearer TOKEN)")

    def data_received(self, chunk: bytes) -> None:
        """Bodies are ignored, only counted: a chunked one declares no size for prepare() to check."""
        self.body_bytes += len(chunk)
        if self.body_bytes > MAX_BODY_BYTES and not self._finished:
            self.send_error(PayloadTooLarge.http_status)

    def reply(self, body: dict) -> None:
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, (PetitError, tornado.web.HTTPError)):
            log.error("%s %s failed", self.request.method, self.request.path[:200], exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PetitError):
            error = exc
        elif status_code == 405:
            error = MethodNotAllowed(f"method {self.request.method} not allowed")
        elif status_code == 404:
            error = NotFound("not found")
        elif status_code == PayloadTooLarge.http_status:
            error = _too_large()
        elif 400 <= status_code < 500:
            error = BadRequest(self._reason or "bad request")
        else:
            error = PetitError("internal error")
        self.set_status(error.http_status)
        self.set_default_headers()
        if isinstance(error, Unauthorized):   # send_error() cleared the one set in prepare()
            self.set_header("WWW-Authenticate", 'Bearer realm="petit"')
        self.finish(json.dumps(error.to_wire()))


def _check_body_size(declared: str) -> None:
    """Runs before the body is read (streamed handlers), so the refusal is a JSON answer."""
    if not (declared.isascii() and declared.isdigit()):
        raise BadRequest(f"malformed Content-Length {declared[:40]!r}")
    if len(declared.lstrip("0")) > 12 or int(declared) > MAX_BODY_BYTES:
        raise _too_large()


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes (and ignored)")


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.reply({"status": "ok", "version": __version__,
                    "uptime_secs": round(time.monotonic() - self.application.settings["started"], 3)})


class SchedulerStateHandler(BaseHandler):
    async def get(self) -> None:
        try:
            status = await self.commands.call("status")
            state = status["scheduler"]["state"] if status.get("scheduler") else "stopped"
        except Unavailable:
            state = "stopped"
        self.reply({"state": state, "is_running": state == "running", "is_paused": state == "paused"})


class PauseHandler(BaseHandler):
    async def post(self) -> None:
        await self.commands.call("pause")
        self.reply({"message": "scheduler paused"})


class ResumeHandler(BaseHandler):
    async def post(self) -> None:
        await self.commands.call("resume")
        self.reply({"message": "scheduler resumed"})


def _known_job(store: Store, job_id: str) -> dict:
    doc = store.job_summaries().get(job_id)
    if doc is None or not doc.get("defined", True):
        raise NotFound(f"job '{job_id[:200]}' not found")
    return doc


class JobsHandler(BaseHandler):
    def get(self) -> None:
        paused = self.store.is_paused()
        jobs = [job_json(doc, paused) for doc in sorted(self.store.job_summaries().values(),
                                                        key=lambda d: d["id"]) if doc.get("defined", True)]
        self.reply({"jobs": jobs, "count": len(jobs)})


class JobHandler(BaseHandler):
    def get(self, job_id: str) -> None:
        self.reply(job_json(_known_job(self.store, job_id), self.store.is_paused()))


class TriggerHandler(BaseHandler):
    async def post(self, job_id: str) -> None:
        _known_job(self.store, job_id)   # an unknown job is a 404 even while the scheduler is down
        result = await self.commands.call("trigger", {"job_id": job_id})
        self.reply({"run_id": result["run_id"], "job_id": result["job_id"],
                    "message": f"job '{result['job_id']}' triggered"})


class JobRunsHandler(BaseHandler):
    def get(self, job_id: str) -> None:
        _known_job(self.store, job_id)
        limit = _parse_limit(self.get_query_argument("limit", str(DEFAULT_LIMIT)))
        runs = self.store.list_runs(job_id, limit)
        self.reply({"runs": [run_json(run) for run in runs], "count": len(runs)})


def _parse_limit(raw: str) -> int:
    """ASCII digits only: str.isdigit() alone also accepts '²' (which int() refuses: a 500) and
    other scripts' digits. Past MAX_LIMIT the value is capped, never converted whole, since int()
    refuses strings of more than 4300 digits."""
    if not (raw.isascii() and raw.isdigit()) or not raw.strip("0"):
        raise BadRequest(f"limit must be a whole number >= 1, got {raw[:40]!r}")
    digits = raw.lstrip("0")
    return MAX_LIMIT if len(digits) > len(str(MAX_LIMIT)) else min(int(digits), MAX_LIMIT)


def _known_run(store: Store, run_id: str) -> Run:
    run = store.get_run(run_id) if split_run_id(run_id) else None
    if run is None:
        raise NotFound(f"run '{run_id[:200]}' not found")
    return run


class RunHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        self.reply(run_json(_known_run(self.store, run_id)))


class RunTasksHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        run = _known_run(self.store, run_id)
        self.reply({"tasks": [task_json(t) for t in run.tasks], "count": len(run.tasks)})


class TaskLogsHandler(BaseHandler):
    def get(self, run_id: str, task_id: str) -> None:
        run = _known_run(self.store, run_id)
        state = next((t for t in run.tasks if t.task_id == task_id), None)
        if state is None:
            raise NotFound(f"task '{task_id[:200]}' not found in run '{run_id}'")
        record = self.store.read_log(run_id, task_id) or {}
        self.reply({"run_id": run_id, "task_id": task_id, "status": state.status.value,
                    "attempt": record.get("attempt", state.attempts), "exit_code": state.exit_code,
                    "stdout": record.get("stdout", ""), "stderr": record.get("stderr", ""),
                    "truncated": record.get("truncated", False)})


class CancelHandler(BaseHandler):
    async def post(self, run_id: str) -> None:
        run = _known_run(self.store, run_id)
        if run.status.is_terminal:   # a 409 needs no scheduler, so it holds while it is down too
            raise Conflict(f"run '{run_id}' already finished ({run.status.value})")
        result = await self.commands.call("cancel", {"run_id": run_id})
        status = result.get("status")
        # the run may have ended on its own between the check and the cancel: say what it became
        self.reply({"run_id": run_id, "status": status, "message": f"run '{run_id}' {status or 'cancelled'}"})


class OpenAPIHandler(BaseHandler):
    def get(self) -> None:
        from .openapi import document
        self.reply(document(__version__))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no route for {self.request.path[:200]}")


# Named groups, passed to the handlers as keyword arguments, so route_templates() can turn each
# route into its OpenAPI path without a second, hand-kept list.
_JOB = r"(?P<job_id>[A-Za-z0-9_.-]{1,128})"
_RUN = r"(?P<run_id>[A-Za-z0-9_.-]{1,160})"
_TASK = r"(?P<task_id>[A-Za-z0-9_.-]{1,128})"
ROUTES = [
    (r"/api/health", HealthHandler),
    (r"/api/scheduler/state", SchedulerStateHandler),
    (r"/api/scheduler/pause", PauseHandler),
    (r"/api/scheduler/resume", ResumeHandler),
    (r"/api/jobs", JobsHandler),
    (rf"/api/jobs/{_JOB}", JobHandler),
    (rf"/api/jobs/{_JOB}/trigger", TriggerHandler),
    (rf"/api/jobs/{_JOB}/runs", JobRunsHandler),
    (rf"/api/runs/{_RUN}", RunHandler),
    (rf"/api/runs/{_RUN}/tasks", RunTasksHandler),
    (rf"/api/runs/{_RUN}/tasks/{_TASK}/logs", TaskLogsHandler),
    (rf"/api/runs/{_RUN}/cancel", CancelHandler),
    (r"/api/openapi\.json", OpenAPIHandler),
]
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def route_templates() -> dict[str, list[str]]:
    """OpenAPI path template -> the methods its handler implements (lower case), read from ROUTES
    itself, so a test can hold the OpenAPI document against what the app really serves."""
    table = {}
    for pattern, handler in ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("\\.", ".")
        table[path] = [m for m in _METHODS
                       if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)]
    return table


def make_app(store: Store, commands: CommandChannel | None, token: str | None,
             loopback_only: bool) -> tornado.web.Application:
    return tornado.web.Application(ROUTES, default_handler_class=NotFoundHandler, store=store,
                                   commands=commands, token=token or None, loopback_only=loopback_only,
                                   started=time.monotonic(), compress_response=False)


# -- the process ----------------------------------------------------------------------------------

def api_main(settings: dict, replies, requests) -> None:
    """Entry point of the spawned API process."""
    from .logconf import configure_logging
    configure_logging("api", settings.get("log_level", "info"))
    # one line per request would drown the lifecycle events (and cost throughput): debug only
    logging.getLogger("tornado.access").setLevel(
        logging.DEBUG if settings.get("log_level") == "debug" else logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(settings, replies, requests))


async def _serve(settings: dict, replies, requests) -> None:
    store = Store(settings["db"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    app = make_app(store, CommandChannel(replies, requests), settings.get("api_token"),
                   settings["api_loopback_only"])
    server = tornado.httpserver.HTTPServer(app, xheaders=False, max_header_size=16 * 1024,
                                           max_body_size=TORNADO_BODY_CAP, idle_connection_timeout=60)
    try:
        server.listen(settings["api_port"], address=settings["api_host"], reuse_port=False)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings["api_host"], settings["api_port"], exc.strerror)
        raise SystemExit(EXIT_CANNOT_BIND)
    log.info("API listening on http://%s:%s", settings["api_host"], settings["api_port"])
    requests.put({"event": "ready", "pid": os.getpid()})
    while not stop.is_set():
        if os.getppid() != parent:       # children never outlive the supervisor
            log.error("supervisor is gone: exiting")
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    server.stop()
    log.info("API stopped")
