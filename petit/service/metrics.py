"""The scheduler worker's metrics: counters and histogram buckets kept as plain numbers, fed by
the worker's event bus, and a snapshot of them as a plain dict (the `metrics` verb's answer; the
API turns it into the Prometheus text format). They live here, not in the API process, so that a
restarted API serves the same counts. Pure: every time comes in the events, no clock is read."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.events import (
    Event,
    FireDropped,
    RunCreated,
    RunEnded,
    RunStarted,
    TaskEnded,
    TaskRetrying,
)
from ..core.model import Job, RunStatus, TaskStatus, Trigger
from ..core.timing import CatchupPolicy, DropReason

# upper bounds in seconds; Prometheus adds +Inf. Runs last from a second to hours; a fire is
# normally late by milliseconds, and by seconds only when the worker is starved or was stopped.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 12 * 3600)
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# bytes, 1 MiB to 16 GiB by fours: a task's peak memory, from a shell script to a big load
MEMORY_BUCKETS = tuple(2**20 * 4**power for power in range(8))
RETRIED = "retried"  # the attempt status of a failed attempt that another one follows
ATTEMPT_STATUSES = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, RETRIED)
RUN_END_STATUSES = tuple(status.value for status in RunStatus if status.is_terminal)


class Histogram:
    """Observations counted into buckets (`le` bounds, inclusive, as Prometheus reads them)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        index = bisect_left(self.bounds, value)
        if index < len(self.bounds):
            self.counts[index] += 1
        self.count += 1
        self.sum += value

    def to_dict(self) -> dict:
        """`counts` cumulative per bound (the +Inf bucket is `count`), `sum` in the unit
        observed (seconds, bytes)."""
        cumulative, total = [], 0
        for number in self.counts:
            total += number
            cumulative.append(total)
        return {"counts": cumulative, "count": self.count, "sum": self.sum}


@dataclass
class _RunSeen:
    job_id: str
    trigger: str
    scheduled_at: int | None
    jitter_ms: int | None
    queued: bool  # created queued: it waits for a slot until its RunStarted
    attempts: dict[str, int] = field(default_factory=dict)  # task id -> last attempt counted
    started: bool = False


class MetricsCollector:
    """An event subscriber (`bus.subscribe(collector.observe)`); thread-safe, since runs publish
    from their own threads while the worker loop takes snapshots.

    `last_success_at` seeds each job's last success (epoch ms) from the store, so a restarted
    worker does not forget it: an alert on "no success for a day" must not fire on a restart."""

    def __init__(self, last_success_at: Mapping[str, int] | None = None) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str, str], int] = {}  # (job, status, trigger) -> ended runs
        self._attempts: dict[tuple[str, str], int] = {}  # (job, attempt status) -> attempts
        self._dropped: dict[tuple[str, str], int] = {}  # (job, reason) -> dropped fires
        self._durations: dict[str, Histogram] = {}
        self._lateness: dict[str, Histogram] = {}
        self._cpu: dict[tuple[str], float] = {}  # (job,) -> CPU seconds of its ended tasks
        self._memory: dict[str, Histogram] = {}  # job -> its ended tasks' peak memory
        self._last_success: dict[str, int] = dict(last_success_at or {})
        self._in_flight: dict[str, _RunSeen] = {}  # run id -> what its later events need

    def observe(self, event: Event) -> None:
        with self._lock:
            handler = self._HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _created(self, event: RunCreated) -> None:
        self._in_flight[event.run_id] = _RunSeen(
            event.job_id,
            event.trigger,
            event.scheduled_at,
            event.jitter_ms,
            queued=event.status == RunStatus.QUEUED.value,
        )

    def _started(self, event: RunStarted) -> None:
        """Lateness is petit's own delay: not the jitter the job asked for, not the wait of a
        queued run (the job was busy: its own doing), not a catch-up run's (petit was down)."""
        seen = self._in_flight.get(event.run_id)
        if seen is None:
            return
        seen.started = True
        scheduled = seen.trigger == Trigger.SCHEDULE.value and seen.scheduled_at is not None
        if scheduled and not seen.queued:
            # never negative: a wall clock stepped back between the fire and the start
            late_ms = event.at - seen.scheduled_at - (seen.jitter_ms or 0)
            _histogram(self._lateness, event.job_id, LATENESS_BUCKETS).observe(
                max(0, late_ms) / 1000
            )

    def _ended(self, event: RunEnded) -> None:
        seen = self._in_flight.pop(event.run_id, None)
        trigger = seen.trigger if seen is not None else "unknown"
        _add(self._runs, (event.job_id, event.status, trigger))
        # None for a queued run cancelled before it started: its wait is no duration
        if event.duration_ms is not None:
            _histogram(self._durations, event.job_id, DURATION_BUCKETS).observe(
                event.duration_ms / 1000
            )
        if event.status == RunStatus.COMPLETED.value:
            self._last_success[event.job_id] = event.at

    def _attempt_ended(self, event: TaskRetrying | TaskEnded) -> None:
        """An attempt ended. A task's TaskEnded can repeat the attempt its TaskRetrying already
        counted (a run cancelled during the retry delay ends the waiting task failed), and a
        skipped task (attempt 0) never ran: neither is an attempt."""
        seen = self._in_flight.get(event.run_id)
        counted = seen.attempts.get(event.task_id, 0) if seen is not None else 0
        if event.attempt <= counted:
            return
        if seen is not None:
            seen.attempts[event.task_id] = event.attempt
        status = RETRIED if isinstance(event, TaskRetrying) else event.status
        _add(self._attempts, (event.job_id, status))

    def _task_ended(self, event: TaskEnded) -> None:
        """The task's last attempt, and what the task used: its totals over its attempts, once
        per task (a retried attempt's usage is counted when its task ends)."""
        self._attempt_ended(event)
        if event.cpu_secs is not None:
            _add(self._cpu, (event.job_id,), event.cpu_secs)
        if event.max_rss_bytes is not None:
            _histogram(self._memory, event.job_id, MEMORY_BUCKETS).observe(event.max_rss_bytes)

    def _dropped_fire(self, event: FireDropped) -> None:
        """A span counts its fires; one too long to count (count None) counts 1: at least."""
        _add(self._dropped, (event.job_id, event.reason), event.count or 1)

    _HANDLERS = {
        RunCreated: _created,
        RunStarted: _started,
        RunEnded: _ended,
        TaskRetrying: _attempt_ended,
        TaskEnded: _task_ended,
        FireDropped: _dropped_fire,
    }

    def snapshot(self, jobs: Mapping[str, Job]) -> dict:
        """Every count as plain JSON values. Each series a defined job can have is there from
        the start, at 0, so that a query over time (`increase`) sees its first change."""
        with self._lock:
            runs, attempts, dropped = dict(self._runs), dict(self._attempts), dict(self._dropped)
            cpu = {(job_id,): 0.0 for job_id in jobs} | self._cpu
            scheduled = [job_id for job_id in sorted(jobs) if jobs[job_id].scheduled]
            for job_id in sorted(jobs):
                triggers = [Trigger.MANUAL.value]
                if job_id in scheduled:
                    triggers.append(Trigger.SCHEDULE.value)
                    if jobs[job_id].catchup is not CatchupPolicy.NONE:
                        triggers.append(Trigger.CATCHUP.value)
                for status in RUN_END_STATUSES:
                    for trigger in triggers:
                        runs.setdefault((job_id, status, trigger), 0)
                for status in ATTEMPT_STATUSES:
                    attempts.setdefault((job_id, status), 0)
            for job_id in scheduled:
                for reason in DropReason:
                    dropped.setdefault((job_id, reason.value), 0)
            active: dict[str, int] = dict.fromkeys(sorted(jobs), 0)
            queued: dict[str, int] = dict.fromkeys(sorted(jobs), 0)
            for seen in self._in_flight.values():
                waiting = seen.queued and not seen.started
                table = queued if waiting else active
                table[seen.job_id] = table.get(seen.job_id, 0) + 1
            return {
                "jobs": sorted(jobs),
                "runs_total": _series(runs, ("job_id", "status", "trigger")),
                "task_attempts_total": _series(attempts, ("job_id", "status")),
                "fires_dropped_total": _series(dropped, ("job_id", "reason")),
                "run_duration_seconds": _histograms(self._durations, jobs, DURATION_BUCKETS),
                "fire_lateness_seconds": _histograms(self._lateness, scheduled, LATENESS_BUCKETS),
                "task_cpu_seconds_total": _series(cpu, ("job_id",)),
                "task_max_rss_bytes": _histograms(self._memory, jobs, MEMORY_BUCKETS),
                "runs_active": active,
                "runs_queued": queued,
                # only defined jobs': a job removed from JOBS_DIR must not look overdue for ever
                "last_success_at": {
                    job_id: at
                    for job_id, at in sorted(self._last_success.items())
                    if job_id in jobs
                },
            }


def _add(counts: dict, key: tuple, number: float = 1) -> None:
    counts[key] = counts.get(key, 0) + number


def _histogram(table: dict[str, Histogram], job_id: str, bounds: tuple[float, ...]) -> Histogram:
    if job_id not in table:
        table[job_id] = Histogram(bounds)
    return table[job_id]


def _series(counts: dict[tuple, int], labels: tuple[str, ...]) -> list[dict]:
    return [{**dict(zip(labels, key, strict=True)), "value": counts[key]} for key in sorted(counts)]


def _histograms(table: dict[str, Histogram], job_ids, bounds: tuple[float, ...]) -> dict:
    """The job's histogram, empty for a listed job that saw no observation yet."""
    names = sorted({*table, *job_ids})
    return {
        "buckets": list(bounds),
        "series": [
            {"job_id": job_id, **(table.get(job_id) or Histogram(bounds)).to_dict()}
            for job_id in names
        ],
    }
