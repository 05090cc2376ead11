"""When each scheduled job fires: its fire times, catch-up after downtime, jitter, the pause, and
what is due at `now`.

Pure: no store, no clock, no processes. The worker loop reads the clock and passes `now` (an
aware datetime); the scheduler turns what `due(now)` returns into runs, queued runs or recorded
drops. Every fire time is handed out once: as a Fire, or inside a Dropped (a fire, or a span of
them, that will not run and why)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..core.model import Job, Trigger
from ..core.schedule_set import ScheduleSet
from ..core.timing import CatchupPolicy, DropReason

# The most runs one job gets for the fires due at once (after downtime, a stall or a pause);
# older ones are dropped as one span, so a long window of a frequent job stays bounded.
MAX_CATCHUP_RUNS = 1000


@dataclass(frozen=True)
class Fire:
    """A fire that should become a run. `scheduled_at` is the nominal time; the fire came due
    `jitter_secs` after it. CATCHUP: it fell before this timetable started (petit was down)."""

    job_id: str
    scheduled_at: datetime
    next_fire: datetime
    trigger: Trigger = Trigger.SCHEDULE
    jitter_secs: float = 0.0


@dataclass(frozen=True)
class Dropped:
    """Fires that will not run: one at `scheduled_at`, or, with `until`, every fire from
    `scheduled_at` up to (not including) `until`; `count` of them, None when too many to count."""

    job_id: str
    scheduled_at: datetime
    reason: DropReason
    next_fire: datetime
    until: datetime | None = None
    count: int | None = 1


Due = Fire | Dropped


@dataclass
class _Entry:
    job: Job
    schedules: ScheduleSet
    cursor: datetime  # every fire at or before it is handed out
    next_fire: datetime  # the first fire after the cursor
    jitter_secs: float = 0.0  # drawn for next_fire

    @property
    def due_at(self) -> datetime:
        return self.next_fire + timedelta(seconds=self.jitter_secs)


class Timetable:
    """The fires of every scheduled job and whether they are paused.

    `last_fires`: each job's last fire handed to a run, kept by earlier processes (the phase of
    an `@every`; jobs not defined now included, so a job that comes back keeps its phase).
    `handled`: the ledger, each job's newest fire time handed out as a run or a drop; jobs with
    catch-up resume from it, the others from `now`. `rng` draws the jitter."""

    def __init__(
        self,
        jobs: Mapping[str, Job],
        last_fires: Mapping[str, datetime],
        now: datetime,
        paused: bool = False,
        handled: Mapping[str, datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        # never pruned: a job removed then added back by reloads keeps its @every phase
        self._last_fire: dict[str, datetime] = dict(last_fires)
        self._paused = paused
        self._started_at = now
        self._rng = rng or random.Random()
        self._backlog: list[Dropped] = []  # spans dropped at the start, out at the first due()
        handled = handled or {}
        for job in jobs.values():
            if job.scheduled:
                self._entries[job.id] = self._arm(job, self._start_cursor(job, handled, now))

    @property
    def is_paused(self) -> bool:
        return self._paused

    def _start_cursor(self, job: Job, handled: Mapping[str, datetime], now: datetime) -> datetime:
        """Where a job starts: from `now`, or with catch-up from its ledger, within its window
        (the fires before the window are dropped as one span)."""
        through = max(
            (t for t in (handled.get(job.id), self._last_fire.get(job.id)) if t is not None),
            default=None,
        )
        if job.catchup is CatchupPolicy.NONE or through is None:
            return now
        window_start = now - timedelta(seconds=job.catchup_window_secs or 0)
        if through >= window_start:
            return through
        schedules = ScheduleSet.of(job.schedules)
        last_fire = self._last_fire.get(job.id)
        backlog = schedules.newest_fires(through, window_start, 1, last_fire)
        if backlog.newest:
            first = backlog.older_first or backlog.newest[0]
            count = None if backlog.older_count is None else backlog.older_count + 1
            self._backlog.append(
                Dropped(
                    job.id,
                    first,
                    DropReason.OUTSIDE_WINDOW,
                    schedules.next_fire(window_start, last_fire),
                    until=schedules.next_fire(window_start, last_fire),
                    count=count,
                )
            )
        return window_start

    def _arm(self, job: Job, cursor: datetime) -> _Entry:
        schedules = ScheduleSet.of(job.schedules)
        entry = _Entry(job, schedules, cursor, cursor)
        self._advance(entry, cursor)
        return entry

    def _advance(self, entry: _Entry, cursor: datetime) -> None:
        # never back: a clock stepped back must not hand out again what was handed out
        entry.cursor = max(entry.cursor, cursor)
        last_fire = self._last_fire.get(entry.job.id)
        entry.next_fire = entry.schedules.next_fire(entry.cursor, last_fire)
        entry.jitter_secs = 0.0
        jitter = entry.job.jitter_secs
        # a fire that is already late (caught up after downtime) is not delayed any more; a
        # delay never reaches the fire after it (half the gap at most), or the two would come
        # due together and the older one be superseded
        if jitter and entry.next_fire >= self._started_at:
            following = entry.schedules.next_fire(entry.next_fire, entry.next_fire)
            gap = (following - entry.next_fire).total_seconds()
            entry.jitter_secs = self._rng.uniform(0, min(jitter, gap / 2))

    def reload(self, jobs: Mapping[str, Job], now: datetime) -> None:
        """Take a new set of jobs. A job whose schedules did not change keeps its next fire (and
        takes its new policies); a new or changed one is armed from `now`; a removed one is gone."""
        entries = {}
        for job in jobs.values():
            if not job.scheduled:
                continue
            entry = self._entries.get(job.id)
            if entry is not None and entry.job.schedules == job.schedules:
                entry.job = job
                entries[job.id] = entry
            else:
                entries[job.id] = self._arm(job, now)
        self._entries = entries

    def due(self, now: datetime) -> list[Due]:
        """Every fire due at `now`, each handed out once, earliest first (ties by job id). Per
        job, the fires that came due together (usually one; more after a stall or downtime)
        follow its catch-up policy: all of them (at most MAX_CATCHUP_RUNS, older ones dropped),
        or the newest (older ones dropped as superseded). While paused they are all dropped. A
        disabled job's fire time moves on but it never fires or drops."""
        out: list[Due] = list(self._backlog)
        self._backlog.clear()
        for entry in list(self._entries.values()):
            if entry.due_at <= now:
                out.extend(self._take(entry, now))
        return sorted(out, key=lambda item: (item.scheduled_at, item.job_id))

    def _take(self, entry: _Entry, now: datetime) -> list[Due]:
        """Hand out every fire of `entry` up to `now` and move its cursor to `now`."""
        job = entry.job
        every = job.catchup is CatchupPolicy.ALL
        keep = 1 if self._paused or not every else MAX_CATCHUP_RUNS
        last_fire = self._last_fire.get(job.id)
        backlog = entry.schedules.newest_fires(entry.cursor, now, keep, last_fire)
        waited_for, jitter = entry.next_fire, entry.jitter_secs
        if backlog.newest:
            self._last_fire[job.id] = backlog.newest[-1]  # first: @every counts from it
        self._advance(entry, now)
        if not backlog.newest or not job.enabled:
            return []
        out: list[Due] = []
        if backlog.older_count != 0:
            if self._paused:
                reason = DropReason.PAUSED
            else:
                reason = DropReason.CATCHUP_LIMIT if every else DropReason.SUPERSEDED
            count = None if backlog.older_count is None else backlog.older_count
            out.append(
                Dropped(
                    job.id,
                    backlog.older_first,
                    reason,
                    entry.next_fire,
                    until=backlog.newest[0],
                    count=count,
                )
            )
        for scheduled_at in backlog.newest:
            if self._paused:
                out.append(Dropped(job.id, scheduled_at, DropReason.PAUSED, entry.next_fire))
                continue
            trigger = Trigger.CATCHUP if scheduled_at < self._started_at else Trigger.SCHEDULE
            # only the fire the job waited for was delayed; the others were late already
            delay = jitter if scheduled_at == waited_for else 0.0
            out.append(Fire(job.id, scheduled_at, entry.next_fire, trigger, delay))
        return out

    def next_wakeup(self, now: datetime) -> float | None:
        """Seconds from `now` until something is due (0 if it is overdue), None when no enabled
        job is scheduled. Paused or not: a fire inside a pause is still noted as dropped."""
        if self._backlog:
            return 0.0
        upcoming = [entry.due_at for entry in self._entries.values() if entry.job.enabled]
        if not upcoming:
            return None
        return max(0.0, (min(upcoming) - now).total_seconds())

    def next_fire_at(self, job_id: str) -> datetime | None:
        """The job's next fire time, nominal (disabled jobs included; paused or not), None when
        the job has no schedule."""
        entry = self._entries.get(job_id)
        return None if entry is None else entry.next_fire

    def pause(self) -> None:
        self._paused = True

    def resume(self, now: datetime) -> list[Due]:
        """Fire again from `now`. Returns the fires that fell inside the pause and were not
        noted yet (a jitter was still delaying them), as dropped: they are never replayed."""
        drops: list[Due] = []
        if not self._paused:
            return drops  # nothing fell inside a pause
        for entry in self._entries.values():
            drops.extend(self._take(entry, now))
        self._paused = False
        return sorted(drops, key=lambda item: (item.scheduled_at, item.job_id))
