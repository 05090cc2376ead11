"""Runs in flight and queued: admission checks and the overlap policy, the active-runs table,
the queue (started in order as slots free), starting a run on its own thread, cancel (the reply
waits for the end), status, and stopping what is left at shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ..core.events import EventBus, RunEnded
from ..core.model import (
    CANCELLED,
    DependencyCondition,
    Job,
    JobDependency,
    Run,
    RunStatus,
    Trigger,
    now_ms,
)
from ..core.params import resolve_params, secret_names
from ..core.timing import DropReason, OverlapPolicy
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
# why a queued run ended without starting
REPLACED = "cancelled: replaced by a newer fire (overlap: replace)"
NO_LONGER_DEFINED = "cancelled: the job is no longer defined"


class Admit(str, Enum):
    """What an admitted fire or trigger does."""

    START = "start"
    QUEUE = "queue"  # wait as a queued run for a free slot
    REPLACE = "replace"  # cancel the job's runs in flight, then start (queued until they end)


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
    """The runs in flight and queued of `jobs` (replace the attribute on reload). Engines come
    from `new_engine`, each driven by its own thread; `created` hears of every new run before
    it is queued or started; `send_reply` answers cancels when a run ends; a queued run that
    ends without starting is published on `bus`."""

    def __init__(
        self,
        jobs: dict[str, Job],
        store: Store,
        new_engine: EngineFactory,
        max_jobs: int = 0,
        send_reply: Callable[[dict], None] | None = None,
        created: Callable[[Run], None] | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.max_jobs = max_jobs
        self.stopping = False
        self._new_engine = new_engine
        self._created = created or (lambda run: None)
        self._bus = bus if bus is not None else EventBus()
        self._send_reply = send_reply or (lambda reply: None)
        self._active: dict[str, _ActiveRun] = {}
        self._queued: list[Run] = []  # oldest first
        # One lock for both tables: "at the limit?" and "start it" must be one step, or two
        # runs ending together would both start the same queued run.
        self._lock = threading.RLock()

    # -- admission ----------------------------------------------------------------------------

    def admission(self) -> threading.RLock:
        """Held around `admit` and `launch`: a run ending meanwhile must not start a queued run
        into the slot just admitted (with --max-jobs 1, two runs would be in flight)."""
        return self._lock

    def admit(self, job_id: str, now_ms: int, overlap: OverlapPolicy) -> Admit | Refusal:
        """What a fire or trigger of `job_id` does under `overlap`, or why it may not run. In
        order: shutting down (409), unknown job (404), its max_concurrency (429; `allow`
        ignores it, `queue` queues, `replace` replaces), --max-jobs (429; `queue` queues), a
        queue already full (max_queued, 429), a cross-job dependency (409). A job with runs
        waiting queues behind them. Raises StorageError if the summaries cannot be read."""
        if self.stopping:
            return Refusal(DropReason.SHUTTING_DOWN, Conflict("petit is shutting down"))
        job = self.jobs.get(job_id)
        if job is None:
            return Refusal(DropReason.UNKNOWN_JOB, JobNotFound(job_id))
        with self._lock:
            mine = sum(1 for a in self._active.values() if a.engine.job.id == job_id)
            total = len(self._active)
            waiting = sum(1 for run in self._queued if run.job_id == job_id)
        decision = Admit.QUEUE if waiting else Admit.START
        limit = job.max_concurrency
        if limit is not None and mine >= limit and overlap is not OverlapPolicy.ALLOW:
            if overlap is OverlapPolicy.SKIP:
                return Refusal(
                    DropReason.MAX_CONCURRENCY,
                    TooManyRuns(
                        f"job '{job_id}' already has {mine} run(s) in flight "
                        f"(max_concurrency {limit})"
                    ),
                )
            decision = Admit.REPLACE if overlap is OverlapPolicy.REPLACE else Admit.QUEUE
        if decision is Admit.START and self.max_jobs and total >= self.max_jobs:
            if overlap is not OverlapPolicy.QUEUE:
                return Refusal(
                    DropReason.MAX_JOBS,
                    TooManyRuns(f"{total} runs in flight, the --max-jobs limit"),
                )
            decision = Admit.QUEUE
        if decision is Admit.QUEUE and waiting >= job.max_queued:
            return Refusal(
                DropReason.MAX_QUEUED,
                TooManyRuns(
                    f"job '{job_id}' already has {waiting} run(s) queued (max_queued "
                    f"{job.max_queued})"
                ),
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
        return decision

    # -- runs ---------------------------------------------------------------------------------

    def launch(
        self,
        job: Job,
        trigger: Trigger,
        scheduled_at: int | None = None,
        next_run_at: int | None = None,
        admit: Admit = Admit.START,
        jitter_ms: int | None = None,
        params: dict | None = None,
    ) -> Run:
        """Record a run of an admitted job with its resolved `params` (None: the defaults, as
        scheduled and catch-up runs have), then start it on its own thread, or queue it
        (`Admit.REPLACE`: after cancelling the job's runs in flight and its queued ones). Raises
        StorageError when the run cannot be recorded (nothing started or cancelled then)."""
        if params is None:  # a scheduled job requires no param (the loader sees to it)
            params = resolve_params(job.params, {}, as_text=False)
        run = self.store.create_run(
            job.id,
            [t.id for t in job.tasks],
            trigger,
            scheduled_at=scheduled_at,
            next_run_at=next_run_at,
            queued=admit is not Admit.START,
            jitter_ms=jitter_ms,
            params=params,
            secret_params=secret_names(job.params),
        )
        self._created(run)
        if admit is Admit.START:
            self._start(job, run)
            return run
        with self._lock:
            if admit is Admit.REPLACE:
                for older in [r for r in self._queued if r.job_id == job.id]:
                    self._end_queued(older, REPLACED)
            self._queued.append(run)
        if admit is Admit.REPLACE:
            for active in self._snapshot():
                if active.engine.job.id == job.id:
                    active.engine.cancel(REPLACED)
        log.info("run %s of job %s queued (%s)", run.id, job.id, trigger.value)
        self.start_queued()
        return run

    def restore_queued(self, runs: list[Run]) -> None:
        """Take back the queued runs a previous worker left (recovery keeps them queued), then
        start what may start. Runs of a job no longer defined end cancelled."""
        for run in sorted(runs, key=lambda r: (r.created_at, r.seq)):
            self._created(run)
            with self._lock:
                self._queued.append(run)
        self.start_queued()

    def start_queued(self) -> None:
        """Start queued runs, oldest first, while their jobs and --max-jobs have room."""
        with self._lock:
            if self.stopping:
                return
            for run in list(self._queued):
                job = self.jobs.get(run.job_id)
                if job is None:
                    self._end_queued(run, NO_LONGER_DEFINED)
                    continue
                mine = sum(1 for a in self._active.values() if a.engine.job.id == job.id)
                if job.max_concurrency is not None and mine >= job.max_concurrency:
                    continue
                if self.max_jobs and len(self._active) >= self.max_jobs:
                    return
                self._queued.remove(run)
                run.dequeue()
                try:
                    self.store.dequeue(run)
                except PetitError as exc:  # it stays queued on disk: the next start runs it
                    log.error("run %s cannot leave the queue: %s", run.id, exc.message)
                    self._queued.insert(0, run)
                    run.status = RunStatus.QUEUED
                    return
                self._start(job, run)

    def _start(self, job: Job, run: Run) -> None:
        # PETIT_DB tells recovery which tasks are this db's: run ids repeat across dbs.
        extra_env = {"PETIT_DB": self.store.db_path}
        if run.scheduled_at is not None:
            extra_env["PETIT_SCHEDULED_AT"] = str(run.scheduled_at)
        active = _ActiveRun(self._new_engine(job, run, extra_env))
        with self._lock:
            self._active[run.id] = active
        threading.Thread(
            target=self._execute, args=(active,), name=f"petit-run-{run.id}", daemon=True
        ).start()
        log.info("run %s of job %s started (%s)", run.id, job.id, run.trigger.value)

    def _end_queued(self, run: Run, reason: str) -> None:
        """A queued run that will never start: cancelled, its end recorded and published."""
        with self._lock:
            if run in self._queued:
                self._queued.remove(run)
        now = now_ms()
        run.cancel(now, reason)
        self._bus.publish(
            RunEnded(now, run.id, run.job_id, run.status.value, run.error, run.duration_ms)
        )
        log.info("queued run %s of job %s ended: %s", run.id, run.job_id, reason)

    def _execute(self, active: _ActiveRun) -> None:
        run = active.engine.run
        try:
            try:
                active.engine.execute()  # a failed write of its end is retried by the recorder
            finally:
                with self._lock:
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
            self.start_queued()
        finally:
            active.done.set()  # after the replies: stop_runs waits for it, then closes the queue

    def cancel(self, run_id: str, request_id: str | None) -> None:
        """Cancel a running or queued run; the reply to `request_id` is sent when it has ended.
        Raises RunNotFound for an unknown run, RunFinished for one that is no longer running."""
        with self._lock:
            active = self._active.get(run_id)
            if active is not None:
                active.waiters.append(request_id)
            queued = next((r for r in self._queued if r.id == run_id), None)
            if queued is not None:
                self._end_queued(queued, CANCELLED)
        if active is not None:
            active.engine.cancel()
            return
        if queued is not None:
            self._send_reply(ok_reply(request_id, run_brief(queued)))
            return
        run = self.store.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        raise RunFinished(run_id, run.status.value)

    def running(self) -> list[dict]:
        """A brief of each run in flight (what `status` shows)."""
        return [run_brief(active.engine.run) for active in self._snapshot()]

    def queued(self) -> list[dict]:
        """A brief of each queued run, oldest first."""
        with self._lock:
            return [run_brief(run) for run in self._queued]

    def stop_runs(self, grace_secs: float, hurry: threading.Event) -> None:
        """Admit nothing more and start nothing queued (queued runs stay queued for the next
        start); let running runs finish for up to `grace_secs` (cut short by `hurry`), then
        interrupt what is left and wait for it to end."""
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
        with self._lock:
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
