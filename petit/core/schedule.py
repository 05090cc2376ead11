"""Schedules: cron (5 fields, or 6 with seconds first), @ shortcuts, `@every <dur>`, IANA zones,
and how a cron's wall-clock times become instants across daylight saving changes.

Everything here takes `now` / `last_fire` as parameters; only the scheduler loop reads the clock.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .cron import CronSpec, parse_cron
from .text import short_repr

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# One part of a duration: a number (digits, or digits with a fraction) and a unit, spaces allowed
# around and between them. Units are written largest first, each at most once (_UNITS).
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:(ms|s|m|h|d)(?![A-Za-z])\s*)?", re.ASCII)
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_UNITS = tuple(_UNIT_MS)  # largest first, as they must be written
MAX_DURATION_SECS = 366 * 86400
# The longest duration text read: a valid one (five parts at most) is far shorter, and a bound
# keeps a megabyte of digits from costing an exact sum of huge fractions.
_MAX_DURATION_CHARS = 64
_DURATION_EXPECTED = "expected numbers with units d, h, m, s or ms, like '30s', '1m30s' or '0.5s'"
_MAX_EXPRESSION_CHARS = 1000  # a cron line; parsing it costs in proportion
_SEARCH_YEARS = 100  # every valid cron fires within 40 years (29 February on a given weekday)
_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# How far apart wall times are sampled to find a zone's changes: no zone has changed its offset
# twice within 6 hours.
_SAMPLE = timedelta(hours=6)
_MAX_ZONE_CHARS = 255  # longer names make ZoneInfo fail with ENAMETOOLONG


def parse_duration(text: str, allow_zero: bool = False) -> float:
    """'30s', '0.5s', '1m30s', '1h 30m', '2d12h', '250ms' -> seconds (docs/jobs.md, "Durations").
    Raises ValueError, whose message says what is wrong, for anything else: the whole string
    must be read, nothing is silently cut or rounded."""
    if not isinstance(text, str):
        raise ValueError(
            f"expected a duration string like '30s' or '1m30s', got {short_repr(text)}"
        )
    total_ms = _duration_ms(text)
    if total_ms == 0 and not allow_zero:
        raise ValueError(f"invalid duration {short_repr(text)}: must be greater than zero")
    if total_ms > MAX_DURATION_SECS * 1000:
        raise ValueError(f"invalid duration {short_repr(text)}: longer than 366 days")
    return total_ms / 1000


def _duration_ms(text: str) -> int:
    """The exact number of milliseconds `text` spells, summed as fractions (0.1h is exactly
    360000 ms; in floats it is 360000.00000000006)."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"invalid duration {short_repr(text)}: {why}")

    if len(text) > _MAX_DURATION_CHARS:
        raise refuse(f"longer than {_MAX_DURATION_CHARS} characters")
    if not text.strip():
        raise refuse(f"empty: {_DURATION_EXPECTED}")
    pos, parts, units = 0, [], []
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        number, unit = match.groups() if match else (None, None)
        if unit is None and not (match and match.end() == len(text)):
            rest = text[pos:].strip()
            why = f"{short_repr(rest)} is not a number with a unit: {_DURATION_EXPECTED}"
            raise refuse("must not be negative" if rest.startswith("-") else why)
        if unit is None:  # digits at the very end: '10', '1h30'
            raise refuse(
                f"{number!r} has no unit: expected a unit (d, h, m, s or ms), like '{number}s'"
            )
        if unit in units:
            raise refuse(f"unit {unit!r} appears twice: give each unit once, largest first")
        if units and _UNITS.index(unit) < _UNITS.index(units[-1]):
            raise refuse(f"unit {unit!r} after {units[-1]!r}: write the units largest first")
        units.append(unit)
        parts.append((number, _UNIT_MS[unit]))
        pos = match.end()
    # summed exactly in units of 10**-places ms, without fractions.Fraction (which imports
    # decimal: a MiB more in every process that reads a job file)
    places = max(len(number.partition(".")[2]) for number, _ in parts)
    total = sum(
        int(number.replace(".", "")) * unit_ms * 10 ** (places - len(number.partition(".")[2]))
        for number, unit_ms in parts
    )
    whole, rest = divmod(total, 10**places)
    if rest:
        raise refuse("more precise than a millisecond")
    return whole


def load_zone(name: str) -> ZoneInfo:
    try:
        if len(name) > _MAX_ZONE_CHARS:
            raise ValueError("too long for a zone name")
        return ZoneInfo(name)
    # OSError: a name that is a folder of the tz database ('America') or too long for a path
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ValueError(
            f"unknown time zone {short_repr(name)}: expected an IANA name like "
            "'Europe/Paris' or 'UTC'"
        ) from exc


@dataclass(frozen=True)
class Schedule:
    """A validated schedule. `next_fire(after, last_fire)` gives the next instant (aware UTC)."""

    expression: str
    zone: ZoneInfo
    cron: str | None = None  # normalised cron fields (5 or 6 with seconds first)
    every_secs: float | None = None

    @classmethod
    def parse(cls, expression: str, timezone_name: str = "UTC") -> Schedule:
        """Raises ValueError with a message that says what was expected."""
        if not isinstance(expression, str) or not expression.strip():
            raise ValueError("schedule must be a non-empty string")
        if len(expression) > _MAX_EXPRESSION_CHARS:
            raise ValueError(
                f"schedule {short_repr(expression)} is longer than "
                f"{_MAX_EXPRESSION_CHARS} characters"
            )
        zone = load_zone(timezone_name)
        text = " ".join(expression.split())
        if text.startswith("@every"):
            rest = text[len("@every") :].strip()
            if not rest:
                raise ValueError("'@every' needs a duration, like '@every 5m'")
            return cls(expression, zone, every_secs=parse_duration(rest))
        if text.startswith("@"):
            if text not in SHORTCUTS:
                raise ValueError(
                    f"unknown shortcut {short_repr(text)}: expected one of "
                    f"{', '.join(SHORTCUTS)} or '@every <duration>'"
                )
            text = SHORTCUTS[text]
        count = len(text.split())
        if count not in (5, 6):
            raise ValueError(
                f"cron expression {short_repr(expression)} has {count} fields: expected 5 "
                "(min hour dom month dow) or 6 with seconds first "
                "(sec min hour dom month dow)"
            )
        try:
            _compiled(text)
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {short_repr(expression)}: {exc}") from exc
        return cls(expression, zone, cron=text)

    def next_fire(self, after: datetime, last_fire: datetime | None = None) -> datetime:
        """The first fire strictly after `after` (aware), as an aware UTC datetime. `@every`
        keeps the phase of `last_fire` and never replays fires missed before `after`. Raises
        ValueError for a naive datetime, or when no fire comes within 100 years (or year 9999)."""
        after = _as_utc(after, "after")
        last_fire = None if last_fire is None else _as_utc(last_fire, "last_fire")
        if self.every_secs is not None:
            # In UTC: adding a timedelta to a zoned datetime is wall-clock arithmetic, which
            # would stretch or shrink an interval that crosses a DST change.
            step = timedelta(seconds=self.every_secs)
            if last_fire is None or last_fire + step > after:
                return (last_fire or after) + step
            missed = (after - last_fire) // step
            candidate = last_fire + step * missed
            return candidate if candidate > after else candidate + step
        spec = _compiled(self.cron)
        try:
            found = _next_instant(spec, self.zone, after, min(after.year + _SEARCH_YEARS, MAXYEAR))
        except OverflowError:  # within a day of the ends of datetime (years 1 and 9999)
            found = None
        if found is None:
            raise ValueError(
                f"schedule {short_repr(self.expression)} has no fire time within "
                f"{_SEARCH_YEARS} years after {after.isoformat()} (the search ends in {MAXYEAR})"
            )
        return found

    def describe(self) -> str:
        zone = str(self.zone)
        return self.expression if zone == "UTC" else f"{self.expression} ({zone})"


def _as_utc(moment: datetime, name: str) -> datetime:
    """A naive datetime would be read as the host's local time without a word; refuse it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}"
        )
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


@lru_cache(maxsize=1024)
def _compiled(text: str) -> CronSpec:
    return parse_cron(text)


# --- wall clock and real time --------------------------------------------------------------------
#
# A cron matches wall-clock times; a zone maps them to instants: none for a time a spring-forward
# skips, two for one a fall-back repeats. Two policies (docs/jobs.md, "Daylight saving time"):
# - a cron whose hour field allows all 24 hours follows real time: it fires at every instant whose
#   wall-clock time matches (both passes of a repeated time, nothing for a skipped one);
# - any other cron keeps wall-clock appointments, as Debian cron does: a repeated time fires on
#   its first pass only; a skipped one fires once, right after the jump (moved on by whole
#   minutes, so it keeps its second).
# Instants are aware UTC datetimes. Wall times are datetimes in UTC's tzinfo too, whose fields
# are the wall clock's: wall = instant + offset needs no conversion (datetime.replace costs more
# than the rest of a next_fire).


class _Change(NamedTuple):
    """A change of a zone's UTC offset: `at` is the first instant with the new offset."""

    at: datetime
    before: timedelta
    after: timedelta


class _Year(NamedTuple):
    """A zone's offset at the start of a year (1 January 00:00 UTC) and its changes after that,
    up to and including the next 1 January."""

    offset: timedelta
    ats: tuple[datetime, ...]
    changes: tuple[_Change, ...]


def _next_instant(
    spec: CronSpec, zone: ZoneInfo, after: datetime, last_year: int
) -> datetime | None:
    """Walks real time one stretch of constant offset at a time: between two changes, wall time is
    UTC plus one offset, so a match there is found by the wall-clock search alone."""
    keeps_appointments = not spec.is_every_hour
    moment = after - timedelta(microseconds=after.microsecond) if after.microsecond else after
    # the wall time just after `after` read with `after`'s offset, not the next second's: when
    # the next second is a jump, the times it skips are still ahead of `after`
    offset = _offset_at(zone, moment)
    start = moment + offset + _SECOND
    change = _last_change(zone, moment) if keeps_appointments else None
    if (
        change
        and change.after < change.before
        and moment < change.at + change.before - change.after
    ):
        # `after` is in the second pass of a repeated time: those times fired on the first one
        start = max(start, change.at + change.before)
    while True:
        wall = spec.next_match(start, last_year)
        if wall is None:
            return None
        fire = wall - offset
        change = _next_change(zone, moment, fire)
        if change is None:
            return fire
        if keeps_appointments and change.before < change.after and wall < change.at + change.after:
            # a time this spring-forward skips: the first time after the jump, same second
            jump_end = change.at + change.after
            return wall + _MINUTE * -((wall - jump_end) // _MINUTE) - change.after
        # go on from the change: wall time jumps forward there, or back to repeat a stretch
        moment, offset = change.at, change.after
        start = moment + offset
        if keeps_appointments and change.after < change.before:
            start = moment + change.before  # past the repeat: those times fired on the first pass


def _offset_at(zone: ZoneInfo, moment: datetime) -> timedelta:
    year = _year(zone, moment.year)
    index = bisect_right(year.ats, moment)
    return year.changes[index - 1].after if index else year.offset


def _next_change(zone: ZoneInfo, moment: datetime, until: datetime) -> _Change | None:
    """The first change after `moment`, if it comes at or before `until`."""
    for number in range(moment.year, until.year + 1):
        year = _year(zone, number)
        index = bisect_right(year.ats, moment)
        if index < len(year.ats):
            change = year.changes[index]
            return change if change.at <= until else None
    return None


def _last_change(zone: ZoneInfo, moment: datetime) -> _Change | None:
    """The last change at or before `moment`, within a year."""
    for number in (moment.year, moment.year - 1):
        year = _year(zone, number)
        index = bisect_right(year.ats, moment)
        if index:
            return year.changes[index - 1]
    return None


@lru_cache(maxsize=512)
def _year(zone: ZoneInfo, number: int) -> _Year:
    """zoneinfo does not list a zone's changes: they are found by sampling the offset of a wall
    time every 6 hours (no zone has changed twice within 6 hours), then bisecting to the second.
    `zone.utcoffset(wall)` reads a naive wall time at its first pass (fold=0), so the first wall
    time with the new offset is where a jump ends or a repeat ends: the change is that wall time
    minus the larger of the two offsets."""
    if not 1 <= number <= MAXYEAR:
        return _Year(timedelta(0), (), ())
    low = datetime(number, 1, 1, tzinfo=UTC)
    start_offset = low.astimezone(zone).utcoffset()
    if zone.key == "UTC" or number in (1, MAXYEAR):  # no sampling past datetime's first and last
        return _Year(start_offset, (), ())
    end = datetime(number + 1, 1, 1, tzinfo=UTC)
    changes = []
    wall, last_wall = datetime(number, 1, 1) - _DAY, datetime(number + 1, 1, 1) + _DAY
    offset = zone.utcoffset(wall)
    while wall < last_wall:
        probe = wall + _SAMPLE
        probe_offset = zone.utcoffset(probe)
        if probe_offset != offset:
            first, last = wall, probe  # the new offset starts in (first, last]
            while last - first > _SECOND:
                middle = first + (last - first) // 2 // _SECOND * _SECOND
                first, last = (
                    (middle, last) if zone.utcoffset(middle) == offset else (first, middle)
                )
            at = (last - max(offset, probe_offset)).replace(tzinfo=UTC)
            if low < at <= end:
                changes.append(_Change(at, offset, probe_offset))
        wall, offset = probe, probe_offset
    return _Year(start_offset, tuple(change.at for change in changes), tuple(changes))
