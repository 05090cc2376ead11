"""The scheduler worker's state and decisions: fire times, admission, active runs, pause,
reload, cancel and shutdown of runs. Time is passed in; the worker loop reads the clock."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime

from ..core.events import EventBus, RunCreated
from ..core.model import DependencyCondition, Job, Run, RunStatus, Trigger, now_ms
from ..core.schedule import Schedule
from ..errors import Conflict, NotFound, PetitError, StorageError, TooManyRuns
from ..execution.engine import RunEngine
from ..execution.recorder import RunRecorder
from ..ipc.commands import ok_reply
from ..jobs.loader import load_jobs
from ..storage.store import Store

log = logging.getLogger("petit.scheduler")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class _ActiveRun:
    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine
        self.done = threading.Event()
        self.waiters: list[str] = []  # request ids of cancels waiting for the end


class Scheduler:
    """State and decisions of the worker. Time is passed in (`now`), never read inside."""

    def __init__(
        self,
        jobs: dict[str, Job],
        store: Store,
        max_tasks: int = 4,
        max_jobs: int = 0,
        send_reply=None,
        bus: EventBus | None = None,
    ) -> None:
        self.store = store
        self.bus = bus or EventBus()
        self.recorder = RunRecorder(store, self.bus)
        self.max_tasks = max_tasks
        self.max_jobs = max_jobs
        self.jobs: dict[str, Job] = {}
        self.schedules: dict[str, Schedule] = {}
        self.next_fire: dict[str, datetime] = {}
        self.last_fire: dict[str, datetime] = {}
        self.active: dict[str, _ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._send_reply = send_reply or (lambda reply: None)
        self.paused = store.is_paused()
        self.stopping = False
        self._install(jobs, datetime.now(UTC))

    # -- jobs and fire times ------------------------------------------------------------------

    def _install(self, jobs: dict[str, Job], now: datetime) -> None:
        stored = self.store.job_summaries()
        old_schedules = self.schedules
        self.jobs = jobs
        self.schedules = {
            job.id: Schedule.parse(job.schedule, job.timezone)
            for job in jobs.values()
            if job.schedule is not None
        }
        for job_id, schedule in self.schedules.items():
            last = stored.get(job_id, {}).get("last_fire_at")
            if job_id not in self.last_fire and last:
                self.last_fire[job_id] = _utc(last)
            unchanged = job_id in old_schedules and old_schedules[job_id] == schedule
            if not unchanged or job_id not in self.next_fire:
                self.next_fire[job_id] = schedule.next_fire(now, self.last_fire.get(job_id))
        for job_id in list(self.next_fire):
            if job_id not in self.schedules:
                del self.next_fire[job_id]
        self._publish_jobs()

    def _publish_jobs(self) -> None:
        """Store what the API shows about each job."""
        self.store.sync_jobs({job.id: self._job_summary(job) for job in self.jobs.values()})

    def _job_summary(self, job: Job) -> dict:
        fires = job.enabled and not self.paused and job.id in self.next_fire
        return {
            "name": job.name,
            "description": job.description,
            "enabled": job.enabled,
            "schedule": job.schedule,
            "timezone": job.timezone,
            "task_count": len(job.tasks),
            "max_concurrency": job.max_concurrency,
            "tasks": [{"id": t.id, "depends_on": list(t.depends_on)} for t in job.tasks],
            "depends_on": [
                {"job": d.job_id, "condition": d.condition.value} for d in job.depends_on
            ],
            "next_run_at": _ms(self.next_fire[job.id]) if fires else None,
            "source": job.source,
        }

    def seconds_until_next_fire(self, now: datetime) -> float | None:
        due = [self.next_fire[j] for j in self.next_fire if self.jobs[j].enabled]
        if not due:
            return None
        return max(0.0, (min(due) - now).total_seconds())

    def fire_due(self, now: datetime) -> None:
        for job_id, due in sorted(self.next_fire.items(), key=lambda item: item[1]):
            if due > now:
                continue
            job = self.jobs[job_id]
            schedule = self.schedules[job_id]
            self.last_fire[job_id] = due
            self.next_fire[job_id] = schedule.next_fire(max(now, due), due)
            if not job.enabled:
                continue
            if self.paused:
                log.info(
                    "fire of job %s at %s dropped: scheduler is paused", job_id, due.isoformat()
                )
                continue
            try:
                self.start_run(
                    job_id,
                    Trigger.SCHEDULE,
                    scheduled_at=_ms(due),
                    next_run_at=_ms(self.next_fire[job_id]),
                )
            except PetitError as exc:
                log.warning(
                    "fire of job %s at %s dropped: %s", job_id, due.isoformat(), exc.message
                )
                try:
                    self._publish_jobs()  # no run carried the new next_run_at to the store
                except StorageError as error:
                    log.error("cannot record the next fire of job %s: %s", job_id, error.message)

    # -- runs ---------------------------------------------------------------------------------

    def check_can_start(self, job_id: str, now_ms_: int) -> Job:
        """The manual-trigger checks, in order: unknown job (404), concurrency (429),
        dependency (409)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job '{job_id}' not found")
        with self._active_lock:
            mine = sum(1 for a in self.active.values() if a.engine.job.id == job_id)
            total = len(self.active)
        if job.max_concurrency is not None and mine >= job.max_concurrency:
            raise TooManyRuns(
                f"job '{job_id}' already has {mine} run(s) in flight "
                f"(max_concurrency {job.max_concurrency})"
            )
        if self.max_jobs and total >= self.max_jobs:
            raise TooManyRuns(f"{total} runs in flight, the --max-jobs limit")
        if job.depends_on:
            summaries = self.store.job_summaries()
            for dep in job.depends_on:
                reason = _unmet(dep, summaries.get(dep.job_id, {}), now_ms_)
                if reason:
                    raise Conflict(
                        f"job '{job_id}' depends on '{dep.job_id}' "
                        f"({dep.condition.value}): {reason}"
                    )
        return job

    def start_run(
        self,
        job_id: str,
        trigger: Trigger,
        scheduled_at: int | None = None,
        next_run_at: int | None = None,
    ) -> Run:
        if self.stopping:
            raise Conflict("petit is shutting down")
        job = self.check_can_start(job_id, now_ms())
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
        self.recorder.track(run)
        self.bus.publish(RunCreated(run.created_at, run.id, job.id, trigger.value, scheduled_at))
        engine = RunEngine(
            job, run, self.store, self.bus, max_tasks=self.max_tasks, extra_env=extra_env
        )
        active = _ActiveRun(engine)
        with self._active_lock:
            self.active[run.id] = active
        threading.Thread(
            target=self._execute, args=(active,), name=f"petit-run-{run.id}", daemon=True
        ).start()
        log.info("run %s of job %s started (%s)", run.id, job.id, trigger.value)
        return run

    def _execute(self, active: _ActiveRun) -> None:
        run = active.engine.run
        try:
            try:
                active.engine.execute()
            except StorageError as exc:
                log.error("run %s: cannot record its end: %s", run.id, exc)
            finally:
                with self._active_lock:
                    self.active.pop(run.id, None)
            log.info(
                "run %s of job %s ended %s in %s ms%s",
                run.id,
                run.job_id,
                run.status.value,
                run.duration_ms,
                f": {run.error}" if run.error else "",
            )
            for request_id in active.waiters:
                self._send_reply(ok_reply(request_id, _run_brief(run)))
        finally:
            active.done.set()  # after the replies: stop_runs waits for it, then closes the queue

    def cancel(self, run_id: str, request_id: str | None) -> dict | None:
        """Returns a reply now when the run is not running; otherwise replies when it ended."""
        with self._active_lock:
            active = self.active.get(run_id)
            if active is not None:
                active.waiters.append(request_id)
        if active is not None:
            active.engine.cancel()
            return None
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound(f"run '{run_id}' not found")
        raise Conflict(f"run '{run_id}' already finished ({run.status.value})")

    def set_paused(self, paused: bool, now: datetime) -> None:
        self.store.set_paused(paused)
        self.paused = paused
        if not paused:  # fires that fell inside the pause are not replayed
            for job_id, schedule in self.schedules.items():
                self.next_fire[job_id] = schedule.next_fire(now, self.last_fire.get(job_id))
        self._publish_jobs()
        log.info("scheduler %s", "paused" if paused else "resumed")

    def reload(self, jobs_dir: str, now: datetime) -> dict:
        jobs = load_jobs(jobs_dir)  # raises ConfigError: the old jobs stay
        added = sorted(set(jobs) - set(self.jobs))
        removed = sorted(set(self.jobs) - set(jobs))
        self._install(jobs, now)
        log.info(
            "reloaded %d job(s) from %s (added %s, removed %s)",
            len(jobs),
            jobs_dir,
            added or "none",
            removed or "none",
        )
        return {"jobs": len(jobs), "added": added, "removed": removed}

    def status(self) -> dict:
        with self._active_lock:
            running = [_run_brief(a.engine.run) for a in self.active.values()]
        return {
            "pid": os.getpid(),
            "state": "paused" if self.paused else "running",
            "paused": self.paused,
            "jobs": len(self.jobs),
            "running_runs": running,
            "next_fires": {
                j: _ms(t)
                for j, t in sorted(self.next_fire.items())
                if self.jobs[j].enabled and not self.paused
            },
        }

    def stop_runs(self, grace_secs: float, hurry: threading.Event) -> None:
        """Let running runs finish for up to `grace_secs` (cut short by `hurry`), then interrupt
        what is left."""
        self.stopping = True
        deadline = time.monotonic() + grace_secs
        while self._snapshot() and time.monotonic() < deadline and not hurry.is_set():
            hurry.wait(0.05)
        for active in self._snapshot():
            active.engine.interrupt()
        deadline = time.monotonic() + 15  # one deadline for all: the supervisor's own comes next
        for active in self._snapshot():
            active.done.wait(max(0.0, deadline - time.monotonic()))
        try:
            self.recorder.close()
        except StorageError as exc:  # disk full: the next start marks these runs interrupted
            log.error("cannot record the end of the last runs: %s", exc.message)

    def _snapshot(self) -> list[_ActiveRun]:
        with self._active_lock:
            return list(self.active.values())


def _run_brief(run: Run) -> dict:
    return {
        "run_id": run.id,
        "job_id": run.job_id,
        "status": run.status.value,
        "trigger": run.trigger.value,
        "started_at": run.started_at,
    }


def _unmet(dep, summary: dict, now: int) -> str | None:
    if dep.condition is DependencyCondition.LAST_SUCCESS:
        if summary.get("last_status") != RunStatus.COMPLETED.value:
            return f"its last run is {summary.get('last_status') or 'missing'}, not completed"
    elif dep.condition is DependencyCondition.LAST_COMPLETE:
        if summary.get("last_status") not in (RunStatus.COMPLETED.value, RunStatus.FAILED.value):
            return f"its last run is {summary.get('last_status') or 'missing'}, not finished"
    else:
        success = summary.get("last_success_at")
        if success is None or now - success > dep.window_secs * 1000:
            return f"no successful run in the last {dep.window_secs:g}s"
    return None
