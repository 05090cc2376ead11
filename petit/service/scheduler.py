"""The scheduler worker's coordinator: it owns the timetable (when jobs fire), the run manager
(admission and the runs in flight), the store and the job summaries the API shows, and turns the
timetable's due fires into runs or dropped fires. Time is passed in; the worker loop reads the
clock."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from ..core.events import EventBus, FireDropped, RunCreated, SchedulerPaused, SchedulerResumed
from ..core.model import Job, Run, RunStatus, Trigger, now_ms
from ..core.params import resolve_params
from ..core.timing import DropReason, OverlapPolicy
from ..core.views import job_summary
from ..errors import PetitError, StorageError
from ..execution.engine import RunEngine
from ..execution.recorder import RunRecorder
from ..jobs.defaults import DefaultsSource
from ..jobs.loader import load_jobs
from ..storage.store import Store
from .metrics import MetricsCollector
from .runs import Refusal, RunManager
from .timetable import Dropped, Due, Fire, Timetable

log = logging.getLogger("petit.scheduler")
# Fires handed out per turn of the worker loop: a catch-up of thousands of fires must not keep
# the worker from its commands (status, pause, shutdown) for the minutes their writes take.
MAX_PER_TURN = 100
# What the timetable's own drops mean, for the log and the drop record (admission's refusals
# carry their own message).
POLICY_DROPS = {
    DropReason.PAUSED: "scheduler is paused",
    DropReason.SUPERSEDED: "a newer fire of the job came due with it and runs instead",
    DropReason.CATCHUP_LIMIT: "more fires came due at once than the catch-up limit of runs",
    DropReason.OUTSIDE_WINDOW: "it fell before the job's catchup_window",
}


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
        self.runs = RunManager(
            jobs,
            store,
            self._new_engine,
            max_jobs,
            send_reply,
            created=self._created,
            bus=self.bus,
        )
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
        now = datetime.now(UTC)
        # the ledger: the runs' fire times (last_fires) and the drops'; the timetable takes the
        # newer of the two for each job
        handled = {job_id: _utc(ms) for job_id, ms in store.drops.handled().items()}
        for job_id, summary in summaries.items():
            if summary.get("enabled") is False or summary.get("defined") is False:
                # disabled or removed when petit stopped: its silence is not downtime to replay
                handled[job_id] = now
        self.timetable = Timetable(jobs, last_fires, now, store.is_paused(), handled=handled)
        self._due: deque[Due] = deque()  # handed out by the timetable, waiting their turn
        self._publish_jobs()

    def restore_queued(self) -> None:
        """After recovery: the runs a previous worker left queued wait again, in order."""
        queued = [run for run in self.store.active_runs() if run.status is RunStatus.QUEUED]
        self.runs.restore_queued(queued)

    @property
    def jobs(self) -> dict[str, Job]:
        return self.runs.jobs

    @property
    def paused(self) -> bool:
        return self.timetable.is_paused

    def _created(self, run: Run) -> None:
        """A new (or restored queued) run: the recorder and the forwarder follow it from now on,
        and RunCreated goes out."""
        self.recorder.track(run)
        if self._track_run is not None:
            self._track_run(run)
        self.bus.publish(
            RunCreated(
                run.created_at,
                run.id,
                run.job_id,
                run.trigger.value,
                run.scheduled_at,
                run.status.value,
                run.jitter_ms,
            )
        )

    def _new_engine(self, job: Job, run: Run, extra_env: dict[str, str]) -> RunEngine:
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
        """Seconds until the next fire is due (0 while fires wait their turn), None when
        nothing is scheduled."""
        return 0.0 if self._due else self.timetable.next_wakeup(now)

    def fire(self, now: datetime) -> None:
        """Hand out the fires due at `now`, at most MAX_PER_TURN of them (the rest wait for the
        next turn, after the worker has read its commands): each a run (started, queued or
        replacing the job's runs, per its overlap policy), or a drop, recorded in the store,
        logged, and published on the bus as FireDropped with its reason."""
        self._due.extend(self.timetable.due(now))
        dropped = False
        for _ in range(min(len(self._due), MAX_PER_TURN)):
            item = self._due.popleft()
            if isinstance(item, Fire) and self.paused:  # paused while it waited its turn
                item = Dropped(item.job_id, item.scheduled_at, DropReason.PAUSED, item.next_fire)
            if isinstance(item, Dropped):
                self._drop(item, now)
                dropped = True
            else:
                dropped |= not self._hand_out(item, now)
        if dropped:
            try:
                self._publish_jobs()  # no run carried the new next_run_at to the store
            except StorageError as exc:
                log.error("cannot record the jobs' next fires: %s", exc.message)

    def _hand_out(self, fire: Fire, now: datetime) -> bool:
        """A run for `fire`, or its drop; False when it was dropped."""
        job = self.jobs.get(fire.job_id)
        overlap = job.overlap if job is not None else OverlapPolicy.SKIP
        try:
            with self.runs.admission():
                decision = self.runs.admit(fire.job_id, _ms(now), overlap)
                if not isinstance(decision, Refusal):
                    self.runs.launch(
                        self.jobs[fire.job_id],
                        fire.trigger,
                        scheduled_at=_ms(fire.scheduled_at),
                        next_run_at=_ms(fire.next_fire),
                        admit=decision,
                        jitter_ms=round(fire.jitter_secs * 1000) if fire.jitter_secs else None,
                    )
                    return True
            reason, error = decision.reason, decision.error
        except PetitError as exc:  # the store could not be read or written
            reason, error = DropReason.ERROR, exc
        self._drop(
            Dropped(fire.job_id, fire.scheduled_at, reason, fire.next_fire), now, error.message
        )
        return False

    def _drop(self, dropped: Dropped, now: datetime, error: str | None = None) -> None:
        """Record a dropped fire (or span) before moving on: with the runs' fire times, the drop
        records are the ledger a restart resumes from. A drop that cannot be recorded is logged:
        with catch-up, the restart hands that fire out again."""
        at, scheduled_at = _ms(now), _ms(dropped.scheduled_at)
        until = _ms(dropped.until) if dropped.until is not None else None
        error = error or POLICY_DROPS[dropped.reason]
        record = {
            "scheduled_at": scheduled_at,
            "reason": dropped.reason.value,
            "at": at,
            "until": until,
            "count": dropped.count,
            "error": error,
        }
        if dropped.count is None:
            more = " and more after it"
        else:
            more = f" and {dropped.count - 1} more" if dropped.count > 1 else ""
        log.log(
            logging.INFO if dropped.reason is DropReason.PAUSED else logging.WARNING,
            "fire of job %s at %s%s dropped: %s",
            dropped.job_id,
            dropped.scheduled_at.isoformat(),
            more,
            error,
        )
        try:
            self.store.drops.append(dropped.job_id, [record])
        except StorageError as exc:
            log.error("cannot record the dropped fire of job %s: %s", dropped.job_id, exc.message)
        self.bus.publish(
            FireDropped(
                at=at,
                job_id=dropped.job_id,
                scheduled_at=scheduled_at,
                reason=dropped.reason.value,
                until=until,
                count=dropped.count,
                error=error,
            )
        )

    def set_paused(self, paused: bool, now: datetime) -> None:
        if paused == self.paused:
            return  # a second pause or resume changes nothing
        self.store.set_paused(paused)
        if paused:
            self.timetable.pause()
            self.bus.publish(SchedulerPaused(at=_ms(now)))
        else:
            for dropped in self.timetable.resume(now):
                self._drop(dropped, now)
            self.bus.publish(SchedulerResumed(at=_ms(now)))
        self._publish_jobs()
        log.info("scheduler %s", "paused" if paused else "resumed")

    def reload(self, jobs_dir: str, now: datetime, defaults: DefaultsSource | None = None) -> dict:
        """JOBS_DIR read again, with the petit.toml [defaults] read at start (`defaults`)."""
        jobs = load_jobs(jobs_dir, defaults)  # raises ConfigError: the old jobs stay
        added = sorted(set(jobs) - set(self.jobs))
        removed = sorted(set(self.jobs) - set(jobs))
        self.runs.jobs = jobs
        self.timetable.reload(jobs, now)
        self.runs.start_queued()  # a raised max_concurrency frees slots; a removed job's end
        self._publish_jobs()
        log.info(
            "reloaded %d job(s) from %s (added %s, removed %s)",
            len(jobs),
            jobs_dir,
            added or "none",
            removed or "none",
        )
        return {
            "jobs": len(jobs),
            "added": added,
            "removed": removed,
            "secret_params": self.secret_params(),
        }

    def secret_params(self) -> dict[str, list[str]]:
        """The names of each job's params declared `secret: true`, for the jobs that have some:
        the supervisor masks their values in the audit lines of the control socket."""
        found = {}
        for job_id in sorted(self.jobs):
            names = [spec.name for spec in self.jobs[job_id].params if spec.secret]
            if names:
                found[job_id] = names
        return found

    # -- runs ---------------------------------------------------------------------------------

    def start_run(
        self,
        job_id: str,
        trigger: Trigger,
        queue: bool = False,
        params: dict | None = None,
        params_as_text: bool = False,
    ) -> Run:
        """A manual trigger: the admission checks (see RunManager.admit), its `params` resolved
        against the job's (InvalidParams, 400, and no run), then the run. At the job's limits it
        is refused (429), or with `queue` waits as a queued run."""
        job = self.jobs.get(job_id)  # an unknown one is refused by admit()
        values = resolve_params(job.params, params or {}, params_as_text) if job else None
        with self.runs.admission():
            decision = self.runs.admit(
                job_id, now_ms(), OverlapPolicy.QUEUE if queue else OverlapPolicy.SKIP
            )
            if isinstance(decision, Refusal):
                raise decision.error
            return self.runs.launch(self.jobs[job_id], trigger, admit=decision, params=values)

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
            "queued_runs": self.runs.queued(),
            "next_fires": next_fires,
            # the zone each job's schedule is written in: a person reads its next fire there
            "next_fire_timezones": {
                job_id: self.jobs[job_id].schedules[0].timezone for job_id in next_fires
            },
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
