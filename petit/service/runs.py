"""Runs in flight: admission checks, the active-runs table, starting a run on its own thread,
cancel (the reply waits for the end), status, and stopping what is left at shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..core.model import DependencyCondition, Job, JobDependency, Run, RunStatus, Trigger
from ..core.views import run_brief
from ..errors import (
    Conflict,
    JobNotFound,
    PetitError,
    RunFinished,
    RunNotFound,
    TooManyRuns,
)
from ..execution.engine import RunEngine
from ..ipc.commands import ok_reply
from ..storage.store import Store

log = logging.getLogger("petit.scheduler")

EngineFactory = Callable[[Job, Run, dict[str, str]], RunEngine]


class DropReason(str, Enum):
    """Why a scheduled fire did not become a run (the `reason` of a FireDropped event)."""

    PAUSED = "paused"
    SHUTTING_DOWN = "shutting_down"
    UNKNOWN_JOB = "unknown_job"
    MAX_CONCURRENCY = "max_concurrency"
    MAX_JOBS = "max_jobs"
    DEPENDENCY = "dependency"
    ERROR = "error"  # the run could not be created (the store refused the write)


@dataclass(frozen=True)
class Refusal:
    """An admission check that failed: why, and the error a manual trigger answers with."""

    reason: DropReason
    error: PetitError


class _ActiveRun:
    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine
        self.done = threading.Event()
        self.waiters: list[str] = []  # request ids of cancels waiting for the end


class RunManager:
    """The runs in flight of `jobs` (replace the attribute on reload). Engines come from
    `new_engine`, each driven by its own thread; `send_reply` answers cancels when a run ends."""

    def __init__(
        self,
        jobs: dict[str, Job],
        store: Store,
        new_engine: EngineFactory,
        max_jobs: int = 0,
        send_reply: Callable[[dict], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.max_jobs = max_jobs
        self.stopping = False
        self._new_engine = new_engine
        self._send_reply = send_reply or (lambda reply: None)
        self._active: dict[str, _ActiveRun] = {}
        self._active_lock = threading.Lock()

    # -- admission ----------------------------------------------------------------------------

    def refusal(self, job_id: str, now_ms: int) -> Refusal | None:
        """The first admission check that fails, None when the job may start. In order:
        shutting down (409), unknown job (404), its max_concurrency (429), --max-jobs (429),
        a cross-job dependency (409). Raises StorageError if the summaries cannot be read."""
        if self.stopping:
            return Refusal(DropReason.SHUTTING_DOWN, Conflict("petit is shutting down"))
        job = self.jobs.get(job_id)
        if job is None:
            return Refusal(DropReason.UNKNOWN_JOB, JobNotFound(job_id))
        with self._active_lock:
            mine = sum(1 for a in self._active.values() if a.engine.job.id == job_id)
            total = len(self._active)
        if job.max_concurrency is not None and mine >= job.max_concurrency:
            return Refusal(
                DropReason.MAX_CONCURRENCY,
                TooManyRuns(
                    f"job '{job_id}' already has {mine} run(s) in flight "
                    f"(max_concurrency {job.max_concurrency})"
                ),
            )
        if self.max_jobs and total >= self.max_jobs:
            return Refusal(
                DropReason.MAX_JOBS, TooManyRuns(f"{total} runs in flight, the --max-jobs limit")
            )
        if job.depends_on:
            summaries = self.store.job_summaries()
            for dep in job.depends_on:
                reason = unmet_dependency(dep, summaries.get(dep.job_id, {}), now_ms)
                if reason:
                    return Refusal(
                        DropReason.DEPENDENCY,
                        Conflict(
                            f"job '{job_id}' depends on '{dep.job_id}' "
                            f"({dep.condition.value}): {reason}"
                        ),
                    )
        return None

    def check_can_start(self, job_id: str, now_ms: int) -> Job:
        """The job, if it may start now; raises the first failed check's error (see `refusal`)."""
        refused = self.refusal(job_id, now_ms)
        if refused is not None:
            raise refused.error
        return self.jobs[job_id]

    # -- runs ---------------------------------------------------------------------------------

    def launch(
        self,
        job: Job,
        trigger: Trigger,
        scheduled_at: int | None = None,
        next_run_at: int | None = None,
    ) -> Run:
        """Record a run of an admitted job and start it on its own thread. Raises StorageError
        when the run cannot be recorded (nothing started then)."""
        run = self.store.create_run(
            job.id,
            [t.id for t in job.tasks],
            trigger,
            scheduled_at=scheduled_at,
            next_run_at=next_run_at,
        )
        # PETIT_DB tells recovery which tasks are this db's: run ids repeat across dbs.
        extra_env = {"PETIT_DB": self.store.db_path}
        if scheduled_at is not None:
            extra_env["PETIT_SCHEDULED_AT"] = str(scheduled_at)
        active = _ActiveRun(self._new_engine(job, run, extra_env))
        with self._active_lock:
            self._active[run.id] = active
        threading.Thread(
            target=self._execute, args=(active,), name=f"petit-run-{run.id}", daemon=True
        ).start()
        log.info("run %s of job %s started (%s)", run.id, job.id, trigger.value)
        return run

    def _execute(self, active: _ActiveRun) -> None:
        run = active.engine.run
        try:
            try:
                active.engine.execute()  # a failed write of its end is retried by the recorder
            finally:
                with self._active_lock:
                    self._active.pop(run.id, None)
            log.info(
                "run %s of job %s ended %s in %s ms%s",
                run.id,
                run.job_id,
                run.status.value,
                run.duration_ms,
                f": {run.error}" if run.error else "",
            )
            for request_id in active.waiters:
                self._send_reply(ok_reply(request_id, run_brief(run)))
        finally:
            active.done.set()  # after the replies: stop_runs waits for it, then closes the queue

    def cancel(self, run_id: str, request_id: str | None) -> None:
        """Cancel a running run; the reply to `request_id` is sent when it has ended. Raises
        RunNotFound for an unknown run, RunFinished for one that is no longer running."""
        with self._active_lock:
            active = self._active.get(run_id)
            if active is not None:
                active.waiters.append(request_id)
        if active is not None:
            active.engine.cancel()
            return
        run = self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        raise RunFinished(run_id, run.status.value)

    def running(self) -> list[dict]:
        """A brief of each run in flight (what `status` shows)."""
        return [run_brief(active.engine.run) for active in self._snapshot()]

    def stop_runs(self, grace_secs: float, hurry: threading.Event) -> None:
        """Admit nothing more; let running runs finish for up to `grace_secs` (cut short by
        `hurry`), then interrupt what is left and wait for it to end."""
        self.stopping = True
        deadline = time.monotonic() + grace_secs
        while self._snapshot() and time.monotonic() < deadline and not hurry.is_set():
            hurry.wait(0.05)
        for active in self._snapshot():
            active.engine.interrupt()
        deadline = time.monotonic() + 15  # one deadline for all: the supervisor's own comes next
        for active in self._snapshot():
            active.done.wait(max(0.0, deadline - time.monotonic()))

    def _snapshot(self) -> list[_ActiveRun]:
        with self._active_lock:
            return list(self._active.values())


def unmet_dependency(dep: JobDependency, summary: dict, now_ms: int) -> str | None:
    """Why `dep` does not hold given the summary of the job it names (None when it holds)."""
    if dep.condition is DependencyCondition.LAST_SUCCESS:
        if summary.get("last_status") != RunStatus.COMPLETED.value:
            return f"its last run is {summary.get('last_status') or 'missing'}, not completed"
    elif dep.condition is DependencyCondition.LAST_COMPLETE:
        if summary.get("last_status") not in (RunStatus.COMPLETED.value, RunStatus.FAILED.value):
            return f"its last run is {summary.get('last_status') or 'missing'}, not finished"
    else:
        success = summary.get("last_success_at")
        if success is None or now_ms - success > dep.window_secs * 1000:
            return f"no successful run in the last {dep.window_secs:g}s"
    return None
