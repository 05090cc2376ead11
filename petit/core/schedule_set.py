"""A job's schedules together: it fires at the union of their times, once per instant."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .schedule import Schedule
from .timing import ScheduleSpec


@dataclass(frozen=True)
class ScheduleSet:
    schedules: tuple[Schedule, ...]

    @classmethod
    def of(cls, specs: Iterable[ScheduleSpec]) -> ScheduleSet:
        """Raises ValueError for an invalid schedule (the loader has validated them already)."""
        return cls(tuple(Schedule.parse(spec.cron, spec.timezone) for spec in specs))

    def next_fire(self, after: datetime, last_fire: datetime | None = None) -> datetime:
        """The first fire of any of them strictly after `after` (aware UTC); two schedules that
        meet at one instant give one fire."""
        return min(schedule.next_fire(after, last_fire) for schedule in self.schedules)

    def describe(self) -> str:
        return "; ".join(schedule.describe() for schedule in self.schedules)

    def newest_fires(
        self, after: datetime, until: datetime, keep: int, last_fire: datetime | None = None
    ) -> Backlog:
        """The fires in (`after`, `until`]: the newest `keep` of them, and the first and number of
        those before. Bounded work whatever the span: COUNT_LIMIT fire times, then a few scans of
        about `keep` near `until`, so a year of an every-second job costs what 10,000 fires do."""
        scanned = self._fires(after, until, COUNT_LIMIT + 1, last_fire)
        if len(scanned) <= COUNT_LIMIT:
            older = scanned[:-keep] if len(scanned) > keep else []
            return Backlog(tuple(scanned[-keep:]), older[0] if older else None, len(older))
        # Too many to count: look for a span before `until` that holds between keep and 4 keep
        # fires, sized from the density seen so far, wider when it held too few.
        width = max((scanned[-1] - after) * keep / len(scanned), _RESOLUTION)
        newest: list[datetime] = []
        for _ in range(64):
            start = max(until - width, scanned[-1])
            tail = self._fires(start, until, 4 * keep, last_fire)
            if len(tail) >= 4 * keep:
                width /= 2  # denser near the end: a narrower span
            elif len(tail) < keep and start > scanned[-1]:
                newest = tail
                width *= 2
            else:
                newest = tail
                break
        return Backlog(tuple(newest[-keep:]), scanned[0], None)

    def _fires(
        self, after: datetime, until: datetime, limit: int, last_fire: datetime | None
    ) -> list[datetime]:
        found: list[datetime] = []
        moment = after
        while len(found) < limit:
            moment = self.next_fire(moment, last_fire)
            if moment > until:
                break
            found.append(moment)
        return found


# Fire times are whole milliseconds at the finest (@every 250ms): a span this short holds one.
_RESOLUTION = timedelta(milliseconds=1)
COUNT_LIMIT = 10_000  # older fires counted one by one up to this, "more than" beyond


@dataclass(frozen=True)
class Backlog:
    """Fires due at once: the newest ones kept, and the older ones not kept (their first, and
    how many, None when more than COUNT_LIMIT)."""

    newest: tuple[datetime, ...]
    older_first: datetime | None = None
    older_count: int | None = 0
