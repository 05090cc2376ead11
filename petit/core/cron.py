"""Classic cron (Vixie, cronie, Debian), evaluated by petit itself: an expression's fields parsed
into the values each one allows, and the first wall-clock time at or after a given one that
matches. Pure and zone-free: which wall times exist on a given day is schedule.py's business.

Fields are `second minute hour day-of-month month day-of-week` (a 5-field line has no seconds: it
fires at second 0). Each field is a list of items: `*`, a value, a range `a-b`, a step `*/n`,
`a-b/n` or `a/n` (= `a-<max>/n`). Day of month also takes `L` (the last day) and `LW` (the last
weekday); day of week takes `5L` (the last Friday) and `5#2` (the second Friday); both take `?`
(= `*`). Names (JAN-DEC, SUN-SAT) in any case; 0 and 7 are Sunday."""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

from .text import short_repr

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    extras: str = ""  # the forms only this field takes, for the error messages

    @property
    def first_name(self) -> int:
        return 1 if self.names is MONTHS else 0


_SECOND, _MINUTE, _HOUR = _Field("second", 0, 59), _Field("minute", 0, 59), _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31, (), ", L (the last day), LW (the last weekday), ?")
_MONTH = _Field("month", 1, 12, MONTHS)
# day of week runs to 7 (Sunday again), as in every classic cron
_DOW = _Field("day-of-week", 0, 7, DAYS, ", 5L (the last Friday), 5#2 (the second Friday), ?")
_ITEM = re.compile(r"(?P<first>[0-9]+|[A-Z]+)(?:-(?P<last>[0-9]+|[A-Z]+))?(?:/(?P<step>[0-9]+))?")
_STAR = re.compile(r"\*(?:/(?P<step>[0-9]+))?")
# croniter's R (random) and Jenkins' H (hashed): fire times that are not written in the line
_UNWRITTEN = re.compile(r"(?P<letter>[RH])(?:[(/].*)?")
_DAY_FORMS = re.compile(r"LW|[0-9]*[LW]|.*#.*")
_DAYS_IN = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class CronSpec:
    """What each field allows, as sorted tuples (seconds to months) and day rules. `day_and`:
    a day must match both day fields (one of them starts with `*` or `?`), else either."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: tuple[int, ...]
    days: frozenset[int]  # day-of-month numbers
    weekdays: frozenset[int]  # 0 (Sunday) to 6
    last_day: bool = False  # L
    last_weekday: bool = False  # LW
    last_of: frozenset[int] = frozenset()  # 5L: these weekdays, last of their month
    nth_of: frozenset[tuple[int, int]] = frozenset()  # 5#2: (weekday, week of the month)
    day_and: bool = True
    # the matching days of a month depend only on its length and the weekday of its 1st
    _month_days: dict[tuple[int, int], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def is_every_hour(self) -> bool:
        return len(self.hours) == 24

    def days_of(self, year: int, month: int) -> tuple[int, ...]:
        """The days of that month that match both day fields under the day rule, in order."""
        length = _DAYS_IN[month - 1] + (month == 2 and _is_leap(year))
        return self._days(date(year, month, 1).isoweekday() % 7, length)

    def next_match(self, start: datetime, last_year: int) -> datetime | None:
        """The first wall time (whole seconds, in `start`'s tzinfo) at or after `start` that
        matches, or None when there is none before the end of `last_year`. Skips whole months,
        days and hours that do not match instead of stepping through them."""
        year, month, day, tzinfo = start.year, start.month, start.day, start.tzinfo
        clock: tuple[int, int, int] | None = (start.hour, start.minute, start.second)
        while year <= last_year:
            index = bisect_left(self.months, month)
            if index == len(self.months):
                year, month, day, clock = year + 1, 1, 1, None
                continue
            if self.months[index] != month:
                month, day, clock = self.months[index], 1, None
            days = self.days_of(year, month)
            index = bisect_left(days, day)
            if index < len(days) and days[index] == day and clock is not None:
                found = self._time_from(*clock)
                if found is not None:
                    return datetime(year, month, day, *found, 0, tzinfo)
                index += 1  # nothing left today: the next matching day, from its first second
            if index < len(days):
                first = (self.hours[0], self.minutes[0], self.seconds[0])
                return datetime(year, month, days[index], *first, 0, tzinfo)
            year, month, day, clock = year + (month == 12), month % 12 + 1, 1, None
        return None

    def can_fire(self) -> bool:
        """Whether any day ever matches: every month length occurs with its 1st on every weekday
        (February of 29 days included), so trying each pair decides it exactly."""
        return any(
            self._days(first, length)
            for month in self.months
            for length in ((28, 29) if month == 2 else (_DAYS_IN[month - 1],))
            for first in range(7)
        )

    def _days(self, first: int, length: int) -> tuple[int, ...]:
        key = (first, length)
        if key not in self._month_days:
            self._month_days[key] = tuple(
                day
                for day in range(1, length + 1)
                if self._matches(day, (first + day - 1) % 7, length)
            )
        return self._month_days[key]

    def _matches(self, day: int, weekday: int, length: int) -> bool:
        by_date = (
            day in self.days
            or (self.last_day and day == length)
            or (self.last_weekday and day == _last_weekday(weekday, day, length))
        )
        by_weekday = (
            weekday in self.weekdays
            or (weekday in self.last_of and day + 7 > length)
            or (weekday, (day + 6) // 7) in self.nth_of
        )
        return by_date and by_weekday if self.day_and else by_date or by_weekday

    def _time_from(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first allowed time of day at or after this one, or None."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        h = bisect_left(hours, hour)
        if h == len(hours):
            return None
        if hours[h] != hour:
            return hours[h], minutes[0], seconds[0]
        m = bisect_left(minutes, minute)
        if m < len(minutes):
            if minutes[m] != minute:
                return hour, minutes[m], seconds[0]
            s = bisect_left(seconds, second)
            if s < len(seconds):
                return hour, minute, seconds[s]
            if m + 1 < len(minutes):
                return hour, minutes[m + 1], seconds[0]
        return (hours[h + 1], minutes[0], seconds[0]) if h + 1 < len(hours) else None


def parse_cron(text: str) -> CronSpec:
    """5 or 6 whitespace-separated fields -> CronSpec. Raises ValueError naming the field and
    what was expected ("minute field: 61 is out of range: expected 0-59")."""
    fields = text.upper().split()
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise ValueError(f"expected 5 or 6 fields, got {len(fields)}")
    second, minute, hour, dom, month, dow = fields
    days, day_flags = _day_of_month(dom)
    weekdays, last_of, nth_of = _day_of_week(dow)
    spec = CronSpec(
        seconds=_sorted(_SECOND, second),
        minutes=_sorted(_MINUTE, minute),
        hours=_sorted(_HOUR, hour),
        months=_sorted(_MONTH, month),
        days=days,
        weekdays=weekdays,
        last_day="L" in day_flags,
        last_weekday="LW" in day_flags,
        last_of=last_of,
        nth_of=nth_of,
        # classic cron's rule: a field that starts with `*` (or `?`) leaves the day to the other
        day_and=dom[0] in "*?" or dow[0] in "*?",
    )
    if not spec.can_fire():
        names = ", ".join(MONTHS[m - 1] for m in spec.months)
        raise ValueError(f"it would never fire: no day of {names} matches the day fields")
    return spec


def _sorted(spec: _Field, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in _items(spec, text):
        values |= _values(spec, item)
    return tuple(sorted(values))


def _day_of_month(text: str) -> tuple[frozenset[int], set[str]]:
    days: set[int] = set()
    flags: set[str] = set()
    for item in _items(_DOM, text):
        if item in ("L", "LW"):
            flags.add(item)
        elif item.endswith("W"):
            raise _error(
                _DOM, f"{short_repr(item)}: the nearest weekday (15W) is not supported; LW is"
            )
        else:
            days |= _values(_DOM, item)
    return frozenset(days), flags


def _day_of_week(text: str) -> tuple[frozenset[int], frozenset[int], frozenset[tuple[int, int]]]:
    weekdays: set[int] = set()
    last_of: set[int] = set()
    nth_of: set[tuple[int, int]] = set()
    for item in _items(_DOW, text):
        day, hash_sign, week = item.partition("#")
        if hash_sign:
            if not re.fullmatch("[1-5]", week):
                raise _error(
                    _DOW, f"{short_repr(item)}: expected a day, # and a week 1-5, like 5#2"
                )
            nth_of.add((_value(_DOW, day) % 7, int(week)))
        elif item.endswith("L") and len(item) > 1:
            last_of.add(_value(_DOW, item[:-1]) % 7)
        else:
            weekdays |= {value % 7 for value in _values(_DOW, item)}
    return frozenset(weekdays), frozenset(last_of), frozenset(nth_of)


def _items(spec: _Field, text: str) -> list[str]:
    """The field's comma-separated items (`?` read as `*`), with the forms petit refuses or this
    field does not take named before anything else."""
    if text == "?" and spec.extras:
        return ["*"]
    items = text.split(",")
    for item in items:
        unwritten = _UNWRITTEN.fullmatch(item)
        if not item:
            raise _error(spec, f"an empty item in {short_repr(text)}")
        if unwritten:
            kind = "a random" if unwritten["letter"] == "R" else "a hashed"
            raise _error(
                spec,
                f"{short_repr(item)} ({kind} value) is not supported: a fire time must be the "
                "same at every reading; write the value itself",
            )
        if "?" in item:
            raise _error(spec, "? is only a whole day-of-month or day-of-week field")
        if not spec.extras and _DAY_FORMS.fullmatch(item):
            raise _error(
                spec,
                f"{short_repr(item)}: L and W are for day-of-month (L, LW), L and # for "
                "day-of-week (5L, 5#2)",
            )
    return items


def _values(spec: _Field, item: str) -> set[int]:
    star = _STAR.fullmatch(item)
    match = star or _ITEM.fullmatch(item)
    if match is None:
        raise _error(
            spec,
            f"cannot read {short_repr(item)}: expected * or a number {spec.low}-{spec.high}, "
            f"a range like 1-5, a step like */10 or 1-30/5{spec.extras}, or a list of those",
        )
    step = int(match["step"]) if match["step"] else 1
    if star:
        first, last = spec.low, spec.high
    else:
        first = _value(spec, match["first"])
        # a/n is a-<max>/n, as cronie reads it
        last = (
            _value(spec, match["last"]) if match["last"] else spec.high if match["step"] else first
        )
        if last < first:
            raise _error(
                spec,
                f"the range {item.split('/')[0]} runs backwards, and cron ranges do not wrap "
                f"around: write it as a list, {_wrapped(spec, match['first'], first, last)}",
            )
    if not 1 <= step <= spec.high - spec.low + 1:
        raise _error(
            spec, f"the step in {short_repr(item)}: expected 1 to {spec.high - spec.low + 1}"
        )
    return set(range(first, last + 1, step))


def _value(spec: _Field, word: str) -> int:
    if word in spec.names:
        return spec.names.index(word) + spec.first_name
    if not re.fullmatch("[0-9]+", word):
        names = f" or {spec.names[0]}-{spec.names[-1]}" if spec.names else ""
        raise _error(
            spec, f"cannot read {short_repr(word)}: expected {spec.low}-{spec.high}{names}"
        )
    if not spec.low <= int(word) <= spec.high:
        raise _error(spec, f"{word} is out of range: expected {spec.low}-{spec.high}")
    return int(word)


def _wrapped(spec: _Field, first_word: str, first: int, last: int) -> str:
    """A backwards range as the list it stands for: 5-1 -> 5-59,0-1; FRI-MON -> FRI,SAT,SUN,MON."""
    top = 6 if spec is _DOW else spec.high
    if first_word in spec.names:
        shift = spec.first_name
        wanted = [*range(first, top + 1), *range(spec.low, last + 1)]
        return ",".join(spec.names[value - shift] for value in wanted)
    head = f"{first}-{top}" if first < top else f"{first}"
    return f"{head},{spec.low}-{last}" if spec.low < last else f"{head},{last}"


def _error(spec: _Field, what: str) -> ValueError:
    return ValueError(f"{spec.name} field: {what}")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _last_weekday(weekday: int, day: int, length: int) -> int:
    """The month's last Monday-to-Friday, from any of its days whose weekday is known."""
    last = (weekday + length - day) % 7  # the weekday of the month's last day
    return length - (2 if last == 0 else 1 if last == 6 else 0)
