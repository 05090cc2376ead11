"""One handler class per resource; the JSON shape of each is in core/views.py."""

from __future__ import annotations

import time

from .. import __version__
from ..core.model import Run, RunStatus
from ..core.params import check_given
from ..core.views import job_json, run_json, task_json
from ..errors import (
    BadRequest,
    JobNotFound,
    NotFound,
    RunFinished,
    RunNotFound,
    Unavailable,
)
from ..ipc.access import Role
from ..storage.pages import runs_page
from ..storage.store import Store, split_run_id
from .access import role_of
from .base import BaseHandler

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_RECENT = 100
MAX_EPOCH_MS = 1 << 53  # a `before` time past any real one (and exact as a JSON number)
_FLAGS = {"true": True, "1": True, "false": False, "0": False}
# a dropped fire as a drop record holds it (storage/drops.py)
DROP_FIELDS = ("scheduled_at", "reason", "at", "until", "count", "error")


class HealthHandler(BaseHandler):
    role = None  # public

    def get(self) -> None:
        self.reply(
            {
                "status": "ok",
                "version": __version__,
                "uptime_secs": round(time.monotonic() - self.application.settings["started"], 3),
            }
        )


async def service_status(commands) -> tuple[str, list[dict]]:
    """The scheduler's state and the supervisor's children, from the `status` command; a
    scheduler that does not answer is "stopped" (and no children are known without a reply)."""
    try:
        status = await commands.call("status")
    except Unavailable:
        return "stopped", []
    scheduler = status.get("scheduler")
    return (scheduler["state"] if scheduler else "stopped"), status.get("children", [])


class SchedulerStateHandler(BaseHandler):
    async def get(self) -> None:
        state, _ = await service_status(self.commands)
        self.reply(
            {"state": state, "is_running": state == "running", "is_paused": state == "paused"}
        )


_CHILD_FIELDS = ("name", "state", "pid", "uptime_secs", "restarts")


class StatusHandler(BaseHandler):
    """What the dashboard's health panel shows; the paths and pids of the supervisor itself
    stay with `petit ctl status`."""

    async def get(self) -> None:
        state, children = await service_status(self.commands)
        self.reply(
            {
                "version": __version__,
                "scheduler": {"state": state},
                "children": [{k: child.get(k) for k in _CHILD_FIELDS} for child in children],
            }
        )


class PauseHandler(BaseHandler):
    role, audited_op = Role.ADMIN, "pause"

    async def post(self) -> None:
        await self.carry_out("pause")
        self.reply({"message": "scheduler paused"})


class ResumeHandler(BaseHandler):
    role, audited_op = Role.ADMIN, "resume"

    async def post(self) -> None:
        await self.carry_out("resume")
        self.reply({"message": "scheduler resumed"})


class ReloadHandler(BaseHandler):
    """JOBS_DIR read again (and the API keys: the supervisor sends the new ones before it
    forwards the reload); the answer is `petit ctl reload --json`'s."""

    role, audited_op = Role.ADMIN, "reload"

    async def post(self) -> None:
        self.reply(await self.carry_out("reload"))


class WhoAmIHandler(BaseHandler):
    """The key the request came with and its role, so the dashboard shows only the buttons
    that role may use."""

    def get(self) -> None:
        key = self.api_key
        self.reply(
            {
                "key": key.name if key is not None else None,
                "role": role_of(key).value,
                "keys_required": self.access.table.required,
            }
        )


def known_job(store: Store, job_id: str) -> dict:
    doc = store.job_summaries().get(job_id)
    if doc is None or not doc.get("defined", True):
        raise JobNotFound(job_id)
    return doc


class JobsHandler(BaseHandler):
    def get(self) -> None:
        recent = parse_count("recent", self.get_query_argument("recent", "0"), 0, MAX_RECENT)
        paused = self.store.is_paused()
        jobs = [
            job_json(doc, paused, self._recent(doc["id"], recent))
            for doc in sorted(self.store.job_summaries().values(), key=lambda d: d["id"])
            if doc.get("defined", True)
        ]
        self.reply({"jobs": jobs, "count": len(jobs)})

    def _recent(self, job_id: str, count: int) -> list[Run] | None:
        return self.store.list_runs(job_id, count, with_tasks=False) if count else None


class JobHandler(BaseHandler):
    def get(self, job_id: str) -> None:
        self.reply(job_json(known_job(self.store, job_id), self.store.is_paused()))


class TriggerHandler(BaseHandler):
    role, audited_op = Role.OPERATE, "trigger"
    reads_body = True  # {"params": {...}}, optional

    async def post(self, job_id: str) -> None:
        """200 when the run starts now; with ?queue=true, 202 when it waits as a queued run.
        Params the job does not declare or of the wrong type: 400 naming each, and no run."""
        queue = parse_flag("queue", self.get_query_argument("queue", "false"))
        body = self.json_body() or {}
        unknown = sorted(set(body) - {"params"})
        if unknown:
            raise BadRequest(
                f"unknown key {unknown[0][:60]!r} in the request body: expected only 'params'"
            )
        params = check_given(body.get("params", {}))
        known_job(self.store, job_id)  # an unknown job is a 404 even while the scheduler is down
        result = await self.carry_out(
            "trigger", {"job_id": job_id, "queue": queue, "params": params}
        )
        status = result["status"]
        if status == RunStatus.QUEUED.value:
            self.set_status(202)
        self.reply(
            {
                "run_id": result["run_id"],
                "job_id": result["job_id"],
                "status": status,
                "message": result["message"],
            }
        )


class JobRunsHandler(BaseHandler):
    def get(self, job_id: str) -> None:
        known_job(self.store, job_id)
        limit = parse_count("limit", self.get_query_argument("limit", str(DEFAULT_LIMIT)))
        before = self.get_query_argument("before", None)
        before_seq = None if before is None else _seq_of(job_id, before)
        status = _parse_status(self.get_query_argument("status", None))
        # one more than the page: whether an older page exists, without a second read
        runs = runs_page(self.store, job_id, limit + 1, status, before_seq)
        page = runs[:limit]
        self.reply(
            {
                "runs": [run_json(run) for run in page],
                "count": len(page),
                "next_before": page[-1].id if len(runs) > limit else None,
            }
        )


class JobDropsHandler(BaseHandler):
    """The job's recorded dropped fires, newest first, paged by fire time like the runs."""

    def get(self, job_id: str) -> None:
        known_job(self.store, job_id)
        limit = parse_count("limit", self.get_query_argument("limit", str(DEFAULT_LIMIT)))
        before = self.get_query_argument("before", None)
        before_at = None if before is None else parse_count("before", before, 1, MAX_EPOCH_MS)
        records = self.store.drops.read(job_id, limit + 1, before_at)
        page = [{name: record.get(name) for name in DROP_FIELDS} for record in records[:limit]]
        self.reply(
            {
                "drops": page,
                "count": len(page),
                "next_before": page[-1]["scheduled_at"] if len(records) > limit else None,
            }
        )


def parse_flag(name: str, raw: str) -> bool:
    """A boolean query argument, spelled exactly true or 1, false or 0; BadRequest otherwise."""
    if raw not in _FLAGS:
        raise BadRequest(f"{name} must be true, false, 1 or 0, got {raw[:40]!r}")
    return _FLAGS[raw]


def _parse_status(raw: str | None) -> RunStatus | None:
    if raw is None:
        return None
    try:
        return RunStatus.named(raw)
    except ValueError as exc:
        raise BadRequest(f"status {exc}") from None


def parse_count(name: str, raw: str, minimum: int = 1, cap: int = MAX_LIMIT) -> int:
    """ASCII digits only: str.isdigit() alone also accepts '²' (which int() refuses: a 500) and
    other scripts' digits. Past `cap` the value is capped, never converted whole, since int()
    refuses strings of more than 4300 digits."""
    is_zero = not raw.strip("0")
    if not (raw.isascii() and raw.isdigit()) or (is_zero and minimum > 0):
        raise BadRequest(f"{name} must be a whole number >= {minimum}, got {raw[:40]!r}")
    digits = raw.lstrip("0") or "0"
    return cap if len(digits) > len(str(cap)) else min(int(digits), cap)


def _seq_of(job_id: str, run_id: str) -> int:
    parts = split_run_id(run_id)
    if parts is None or parts[0] != job_id:
        raise BadRequest(f"before must be a run id of job {job_id!r}, got {run_id[:100]!r}")
    return parts[1]


def known_run(store: Store, run_id: str) -> Run:
    run = store.get_run(run_id) if split_run_id(run_id) else None
    if run is None:
        raise RunNotFound(run_id)
    return run


class RunHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        self.reply(run_json(known_run(self.store, run_id)))


class RunTasksHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        run = known_run(self.store, run_id)
        self.reply({"tasks": [task_json(t) for t in run.tasks], "count": len(run.tasks)})


class CancelHandler(BaseHandler):
    role, audited_op = Role.OPERATE, "cancel"

    async def post(self, run_id: str) -> None:
        run = known_run(self.store, run_id)
        if run.status.is_terminal:  # a 409 needs no scheduler, so it holds while it is down too
            raise RunFinished(run_id, run.status.value)
        result = await self.carry_out("cancel", {"run_id": run_id})
        status = result.get("status")
        # the run may have ended on its own between the check and the cancel: say what it became
        self.reply(
            {
                "run_id": run_id,
                "status": status,
                "message": f"run '{run_id}' {status or 'cancelled'}",
            }
        )


class OpenAPIHandler(BaseHandler):
    def get(self) -> None:
        from .app import route_roles  # the app's routes import this module
        from .openapi import document

        self.reply(document(__version__, route_roles()))


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise NotFound(f"no route for {self.request.path[:200]}")
