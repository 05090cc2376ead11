"""When each scheduled job fires next: the fire times, the pause, and what is due at `now`.

Pure: no store, no clock, no processes. The worker loop reads the clock and passes `now` (an
aware datetime); the scheduler turns the fires `due(now)` returns into runs or drops."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..core.model import Job
from ..core.schedule import Schedule


@dataclass(frozen=True)
class Fire:
    """One fire of a job. `in_pause`: it fell inside a pause, so it is dropped, never replayed."""

    job_id: str
    scheduled_at: datetime
    next_fire: datetime
    in_pause: bool = False


class Timetable:
    """The next and last fire of every scheduled job, and whether scheduled fires are paused.

    `last_fires` are the fire times stored by earlier processes, by job id (jobs not defined yet
    included: a job that comes back with a reload keeps the phase of its `@every`)."""

    def __init__(
        self,
        jobs: Mapping[str, Job],
        last_fires: Mapping[str, datetime],
        now: datetime,
        paused: bool = False,
    ) -> None:
        self._schedules: dict[str, Schedule] = {}
        self._enabled: dict[str, bool] = {}
        self._next_fire: dict[str, datetime] = {}
        # never pruned: a job removed then added back by reloads keeps its @every phase
        self._last_fire: dict[str, datetime] = dict(last_fires)
        self._paused = paused
        self.reload(jobs, now)

    @property
    def is_paused(self) -> bool:
        return self._paused

    def reload(self, jobs: Mapping[str, Job], now: datetime) -> None:
        """Take a new set of jobs. A job whose schedule (expression and zone) did not change
        keeps its next fire; a new or changed one is armed from `now`; a removed one is gone."""
        old_schedules = self._schedules
        self._schedules = {
            job.id: Schedule.parse(job.schedule, job.timezone)
            for job in jobs.values()
            if job.schedule is not None
        }
        self._enabled = {job_id: jobs[job_id].enabled for job_id in self._schedules}
        for job_id, schedule in self._schedules.items():
            if old_schedules.get(job_id) != schedule or job_id not in self._next_fire:
                self._arm(job_id, now)
        for job_id in list(self._next_fire):
            if job_id not in self._schedules:
                del self._next_fire[job_id]

    def due(self, now: datetime) -> list[Fire]:
        """The fires due at `now`, earliest first (ties by job id), and each job's fire time
        moved past `now`. One fire per job even when several were missed; `@every` keeps its
        phase. A disabled job's fire time moves on but it never fires. While paused the fires
        are returned with `in_pause` set, so the caller can say what it dropped."""
        fires = []
        for job_id, scheduled_at in sorted(
            self._next_fire.items(), key=lambda item: (item[1], item[0])
        ):
            if scheduled_at > now:
                continue
            self._last_fire[job_id] = scheduled_at
            next_fire = self._next_fire[job_id] = self._schedules[job_id].next_fire(
                now, scheduled_at
            )
            if self._enabled[job_id]:
                fires.append(Fire(job_id, scheduled_at, next_fire, in_pause=self._paused))
        return fires

    def next_wakeup(self, now: datetime) -> float | None:
        """Seconds from `now` to the earliest fire of an enabled job (0 if one is overdue), None
        when no enabled job is scheduled. Paused or not: a fire inside a pause is still noted."""
        upcoming = [due for job_id, due in self._next_fire.items() if self._enabled[job_id]]
        if not upcoming:
            return None
        return max(0.0, (min(upcoming) - now).total_seconds())

    def next_fire_at(self, job_id: str) -> datetime | None:
        """The job's next fire time (disabled jobs included; paused or not), None when the job
        has no schedule."""
        return self._next_fire.get(job_id)

    def pause(self) -> None:
        self._paused = True

    def resume(self, now: datetime) -> None:
        """Fire again, re-armed from `now`: fires that fell inside the pause are not replayed."""
        self._paused = False
        for job_id in self._schedules:
            self._arm(job_id, now)

    def _arm(self, job_id: str, now: datetime) -> None:
        self._next_fire[job_id] = self._schedules[job_id].next_fire(
            now, self._last_fire.get(job_id)
        )
