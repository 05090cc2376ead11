"""The scheduler worker's coordinator: it owns the timetable (when jobs fire), the run manager
(admission and the runs in flight), the store and the job summaries the API shows, and turns the
timetable's due fires into runs or dropped fires. Time is passed in; the worker loop reads the
clock."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from ..core.events import EventBus, FireDropped, RunCreated, SchedulerPaused, SchedulerResumed
from ..core.model import Job, Run, Trigger, now_ms
from ..core.views import job_summary
from ..errors import PetitError, StorageError
from ..execution.engine import RunEngine
from ..execution.recorder import RunRecorder
from ..jobs.loader import load_jobs
from ..storage.store import Store
from .metrics import MetricsCollector
from .runs import DropReason, RunManager
from .timetable import Fire, Timetable

log = logging.getLogger("petit.scheduler")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Scheduler:
    """What the worker loop talks to. Events (dropped fires, pause, resume) go to `bus`."""

    def __init__(
        self,
        jobs: dict[str, Job],
        store: Store,
        max_tasks: int = 4,
        max_jobs: int = 0,
        send_reply: Callable[[dict], None] | None = None,
        bus: EventBus | None = None,
        track_run: Callable[[Run], None] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus if bus is not None else EventBus()
        self.recorder = RunRecorder(store, self.bus)
        self._track_run = track_run  # another follower of live runs (the event forwarder)
        self.max_tasks = max_tasks
        self.runs = RunManager(jobs, store, self._new_engine, max_jobs, send_reply)
        summaries = store.job_summaries()
        last_fires = {
            job_id: _utc(summary["last_fire_at"])
            for job_id, summary in summaries.items()
            if summary.get("last_fire_at")
        }
        self.metrics = MetricsCollector(
            {
                job_id: summary["last_success_at"]
                for job_id, summary in summaries.items()
                if summary.get("last_success_at")
            }
        )
        self.bus.subscribe(self.metrics.observe)
        self.timetable = Timetable(jobs, last_fires, datetime.now(UTC), store.is_paused())
        self._publish_jobs()

    @property
    def jobs(self) -> dict[str, Job]:
        return self.runs.jobs

    @property
    def paused(self) -> bool:
        return self.timetable.is_paused

    def _new_engine(self, job: Job, run: Run, extra_env: dict[str, str]) -> RunEngine:
        """A created run's engine; the recorder follows it and RunCreated goes out first."""
        self.recorder.track(run)
        if self._track_run is not None:
            self._track_run(run)
        self.bus.publish(
            RunCreated(run.created_at, run.id, job.id, run.trigger.value, run.scheduled_at)
        )
        return RunEngine(
            job, run, self.store, self.bus, max_tasks=self.max_tasks, extra_env=extra_env
        )

    # -- job summaries ------------------------------------------------------------------------

    def _publish_jobs(self) -> None:
        """Store what the API shows about each job."""
        self.store.sync_jobs({job.id: self._job_summary(job) for job in self.jobs.values()})

    def _job_summary(self, job: Job) -> dict:
        due = self.timetable.next_fire_at(job.id)
        fires = job.enabled and not self.paused and due is not None
        return job_summary(job, _ms(due) if fires else None)

    # -- fires --------------------------------------------------------------------------------

    def next_wakeup(self, now: datetime) -> float | None:
        """Seconds until the next fire is due, None when nothing is scheduled."""
        return self.timetable.next_wakeup(now)

    def fire(self, now: datetime) -> None:
        """Start a run for each fire due at `now`, or drop it: logged, and published on the bus
        as FireDropped with its reason."""
        for fire in self.timetable.due(now):
            if fire.in_pause:
                log.info(
                    "fire of job %s at %s dropped: scheduler is paused",
                    fire.job_id,
                    fire.scheduled_at.isoformat(),
                )
                self._publish_drop(fire, DropReason.PAUSED, now)
                continue
            try:
                refused = self.runs.refusal(fire.job_id, _ms(now))
                if refused is None:
                    self.runs.launch(
                        self.jobs[fire.job_id],
                        Trigger.SCHEDULE,
                        scheduled_at=_ms(fire.scheduled_at),
                        next_run_at=_ms(fire.next_fire),
                    )
                    continue
                reason, error = refused.reason, refused.error
            except PetitError as exc:  # the store could not be read or written
                reason, error = DropReason.ERROR, exc
            log.warning(
                "fire of job %s at %s dropped: %s",
                fire.job_id,
                fire.scheduled_at.isoformat(),
                error.message,
            )
            self._publish_drop(fire, reason, now)
            try:
                self._publish_jobs()  # no run carried the new next_run_at to the store
            except StorageError as exc:
                log.error("cannot record the next fire of job %s: %s", fire.job_id, exc.message)

    def _publish_drop(self, fire: Fire, reason: DropReason, now: datetime) -> None:
        self.bus.publish(
            FireDropped(
                at=_ms(now),
                job_id=fire.job_id,
                scheduled_at=_ms(fire.scheduled_at),
                reason=reason.value,
            )
        )

    def set_paused(self, paused: bool, now: datetime) -> None:
        self.store.set_paused(paused)
        if paused:
            self.timetable.pause()
            self.bus.publish(SchedulerPaused(at=_ms(now)))
        else:
            self.timetable.resume(now)
            self.bus.publish(SchedulerResumed(at=_ms(now)))
        self._publish_jobs()
        log.info("scheduler %s", "paused" if paused else "resumed")

    def reload(self, jobs_dir: str, now: datetime) -> dict:
        jobs = load_jobs(jobs_dir)  # raises ConfigError: the old jobs stay
        added = sorted(set(jobs) - set(self.jobs))
        removed = sorted(set(self.jobs) - set(jobs))
        self.runs.jobs = jobs
        self.timetable.reload(jobs, now)
        self._publish_jobs()
        log.info(
            "reloaded %d job(s) from %s (added %s, removed %s)",
            len(jobs),
            jobs_dir,
            added or "none",
            removed or "none",
        )
        return {"jobs": len(jobs), "added": added, "removed": removed}

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, job_id: str, trigger: Trigger) -> Run:
        """A manual trigger: the admission checks (see RunManager.refusal), then the run."""
        return self.runs.launch(self.runs.check_can_start(job_id, now_ms()), trigger)

    def cancel(self, run_id: str, request_id: str | None) -> None:
        """The reply goes out when the run has ended; raises RunNotFound or RunFinished."""
        self.runs.cancel(run_id, request_id)

    def status(self) -> dict:
        next_fires = self._next_fires()
        return {
            "pid": os.getpid(),
            "state": "paused" if self.paused else "running",
            "paused": self.paused,
            "jobs": len(self.jobs),
            "running_runs": self.runs.running(),
            "next_fires": next_fires,
            # the zone each job's schedule is written in: a person reads its next fire there
            "next_fire_timezones": {job_id: self.jobs[job_id].timezone for job_id in next_fires},
        }

    def metrics_snapshot(self) -> dict:
        """The `metrics` verb's answer: the collector's counts, the pause and the next fires."""
        return {
            **self.metrics.snapshot(self.jobs),
            "paused": self.paused,
            "next_fire_at": self._next_fires(),
        }

    def _next_fires(self) -> dict[str, int]:
        """Epoch ms of each job's next fire that will happen: none while paused."""
        return {
            job_id: _ms(due)
            for job_id in sorted(self.jobs)
            if self.jobs[job_id].enabled
            and not self.paused
            and (due := self.timetable.next_fire_at(job_id)) is not None
        }

    def stop_runs(self, grace_secs: float, hurry: threading.Event) -> None:
        """Let running runs finish for up to `grace_secs` (cut short by `hurry`), then interrupt
        what is left; then write what the recorder still holds."""
        self.runs.stop_runs(grace_secs, hurry)
        try:
            self.recorder.close()
        except StorageError as exc:  # disk full: the next start marks these runs interrupted
            log.error("cannot record the end of the last runs: %s", exc.message)
