"""The HTTP API process (Tornado): its routes and its main loop. Reads go straight to the store
under the shared lock (cached by file identity, so an unchanged file is not parsed again);
mutations go to the scheduler through the supervisor as commands with a deadline. Never writes
the store."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time

import tornado.httpserver
import tornado.web

from ..ipc.audit import AuditLog, audit_path
from ..ipc.binding import public_hosts
from ..logconf import configure_logging
from ..storage.store import Store
from .access import Access
from .audit import AuditHandler
from .base import ID_CHARS, ID_MAX_CHARS
from .channel import CommandChannel
from .dashboard import PageHandler, StaticHandler
from .events import LiveEvents
from .handlers import (
    CancelHandler,
    HealthHandler,
    JobDropsHandler,
    JobHandler,
    JobRunsHandler,
    JobsHandler,
    NotFoundHandler,
    OpenAPIHandler,
    PauseHandler,
    ReloadHandler,
    ResumeHandler,
    RunHandler,
    RunTasksHandler,
    SchedulerStateHandler,
    StatusHandler,
    TriggerHandler,
    WhoAmIHandler,
)
from .logs import TaskLogsHandler
from .metrics import MetricsHandler
from .stream import EventStreamHandler

log = logging.getLogger("petit.api")
# tornado's own cap, far above ours: it answers a bare, non-JSON 400 to a chunked body over its cap,
# so the handlers enforce MAX_BODY_BYTES themselves (every one streams; only the trigger keeps
# its body, bounded by that limit)
TORNADO_BODY_CAP = 1 << 40
EXIT_CANNOT_BIND = 78


# -- handlers -------------------------------------------------------------------------------------


def _id(name: str) -> str:
    # a named group, passed to the handler as a keyword argument, so route_templates() can turn
    # each route into its OpenAPI path without a second, hand-kept list
    return rf"(?P<{name}>[{ID_CHARS}]{{1,{ID_MAX_CHARS[name]}}})"


_JOB, _RUN = _id("job_id"), _id("run_id")
_TASK = _id("task_id").replace(">", ">@?", 1)  # or a hook's log: `@on_failure`
ROUTES = [
    (r"/api/health", HealthHandler),
    (r"/api/status", StatusHandler),
    (r"/api/scheduler/state", SchedulerStateHandler),
    (r"/api/scheduler/pause", PauseHandler),
    (r"/api/scheduler/resume", ResumeHandler),
    (r"/api/scheduler/reload", ReloadHandler),
    (r"/api/whoami", WhoAmIHandler),
    (r"/api/audit", AuditHandler),
    (r"/api/jobs", JobsHandler),
    (rf"/api/jobs/{_JOB}", JobHandler),
    (rf"/api/jobs/{_JOB}/trigger", TriggerHandler),
    (rf"/api/jobs/{_JOB}/runs", JobRunsHandler),
    (rf"/api/jobs/{_JOB}/drops", JobDropsHandler),
    (rf"/api/runs/{_RUN}", RunHandler),
    (rf"/api/runs/{_RUN}/tasks", RunTasksHandler),
    (rf"/api/runs/{_RUN}/tasks/{_TASK}/logs", TaskLogsHandler),
    (rf"/api/runs/{_RUN}/cancel", CancelHandler),
    (r"/api/events", EventStreamHandler),
    (r"/api/openapi\.json", OpenAPIHandler),
    (r"/metrics", MetricsHandler),
]
# The dashboard: one HTML shell for every page, and its files. Not API routes: the OpenAPI
# document, and route_templates() that a test holds it against, describe ROUTES only.
PAGE_ROUTES = [
    (r"/", PageHandler),
    (rf"/jobs/{_JOB}", PageHandler),
    (rf"/runs/{_RUN}", PageHandler),
    (r"/static/(?P<path>.*)", StaticHandler),
]


def _template(pattern: str) -> str:
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).replace("\\.", ".")


def route_templates() -> dict[str, list[str]]:
    """OpenAPI path template -> the methods its handler implements (lower case), read from ROUTES
    itself, so a test can hold the OpenAPI document against what the app really serves."""
    return {
        _template(pattern): [method.lower() for method in handler.allowed_methods()]
        for pattern, handler in ROUTES
    }


def route_roles() -> dict[str, str | None]:
    """OpenAPI path template -> the role its methods need (None: public), from the handlers,
    for the document's `security` of each operation."""
    return {
        _template(pattern): handler.role.value if handler.role is not None else None
        for pattern, handler in ROUTES
    }


def make_app(
    store: Store,
    commands: CommandChannel | None,
    access: Access,
    audit: AuditLog,
    loopback_only: bool,
    public_url: str | None = None,
) -> tornado.web.Application:
    """`public_url` is the origin Settings normalised (ipc/binding.public_origin)."""
    return tornado.web.Application(
        [*ROUTES, *PAGE_ROUTES],
        default_handler_class=NotFoundHandler,
        store=store,
        commands=commands,
        access=access,
        audit=audit,
        loopback_only=loopback_only,
        public_origin=public_url,
        public_hosts=public_hosts(public_url) if public_url else frozenset(),
        started=time.monotonic(),
        compress_response=False,
    )


# -- the process ----------------------------------------------------------------------------------


def api_main(settings, replies, requests) -> None:
    """Entry point of the spawned API process. `settings` is the service's frozen Settings
    (read by attribute: this side may not import the service package that defines it)."""
    configure_logging("api", settings.log_level)
    # one line per request would drown the lifecycle events (and cost throughput): debug only
    logging.getLogger("tornado.access").setLevel(
        logging.DEBUG if settings.log_level == "debug" else logging.WARNING
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(settings, replies, requests))


async def _serve(settings, replies, requests) -> None:
    store = Store(settings.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    parent = os.getppid()
    events = LiveEvents()
    events.bind(loop)  # before the channel's reader thread can receive the first batch
    access = Access(settings.api_keys, settings.api_token)
    access.bind(loop)  # likewise for the first keys a reload sends
    channel = CommandChannel(replies, requests, access, events)
    audit = AuditLog(audit_path(settings.db), settings.audit.max_bytes, settings.audit.keep)
    app = make_app(store, channel, access, audit, settings.api_loopback_only, settings.public_url)
    server = tornado.httpserver.HTTPServer(
        app,
        xheaders=False,
        max_header_size=16 * 1024,
        max_body_size=TORNADO_BODY_CAP,
        idle_connection_timeout=60,
    )
    host, port = settings.api_host, settings.api_port
    try:
        server.listen(port, address=host, reuse_port=False)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc.strerror)
        raise SystemExit(EXIT_CANNOT_BIND) from None
    log.info("API listening on http://%s:%s", host, port)
    requests.put({"event": "ready", "pid": os.getpid()})
    while not stop.is_set():
        if os.getppid() != parent:  # children never outlive the supervisor
            log.error("supervisor is gone: exiting")
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    server.stop()
    log.info("API stopped")
