"""A job's schedule in English, for people ("every day at 07:30 (Europe/Paris)"). Pure: the
expression and zone in, a phrase out; what it cannot phrase is said as the raw cron. It phrases
stored text, so it never raises: a schedule is validated where jobs are loaded."""

from __future__ import annotations

import re
from functools import lru_cache

from .schedule import SHORTCUTS, parse_duration

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAY_NAMES = {name[:3].lower(): i for i, name in enumerate(DAYS)}
_MONTH_NAMES = {name[:3].lower(): i + 1 for i, name in enumerate(MONTHS)}
_STEP = re.compile(r"\*/([1-9][0-9]*)")
_NTH = re.compile(r"([0-7]|[a-z]{3})#([1-5])")
_ORDINALS = ("first", "second", "third", "fourth", "fifth")
# @every as the largest units that divide it, as people write durations
_UNITS = (("d", "day", 86400_000), ("h", "hour", 3600_000), ("m", "minute", 60_000))
_UNITS += (("s", "second", 1000), ("ms", "millisecond", 1))


@lru_cache(maxsize=4096)  # /api/jobs phrases every job on every request
def schedule_words(expression: str | None, zone: str | None = "UTC") -> str | None:
    """'*/5 * * * *' -> 'every 5 minutes'; None (unscheduled) -> None; a cron it has no phrase
    for -> 'cron <expr>'. A cron's phrase names the zone its times are read in unless it is UTC;
    `@every` keeps its pace whatever the zone, so its phrase names none."""
    if not isinstance(expression, str):
        return None
    text = " ".join(expression.split())
    if text.startswith("@every"):
        return _every(text, text[len("@every") :].strip())
    phrase = _cron(SHORTCUTS.get(text, text).split())
    words = phrase or f"cron {text}"
    return words if zone in (None, "", "UTC") else f"{words} ({zone})"


def _every(text: str, duration: str) -> str:
    try:
        total_ms = round(parse_duration(duration) * 1000)
    except ValueError:
        return f"cron {text}"
    parts = []
    for short, long, size in _UNITS:
        count, total_ms = divmod(total_ms, size)
        if count:
            parts.append((count, short, long))
    if len(parts) == 1:
        count, _, long = parts[0]
        return f"every {long}" if count == 1 else f"every {count} {long}s"
    return "every " + " ".join(f"{count}{short}" for count, short, _ in parts)


def _cron(fields: list[str]) -> str | None:
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return None
    second, minute, hour, dom, month, dow = (f.lower() for f in fields)
    dom, dow = ("*" if day == "?" else day for day in (dom, dow))  # ? is *
    if second != "0":
        # "at second 30 of every minute" would read worse than the cron
        return _pace(second, "second") if (minute, hour, dom, month, dow) == ("*",) * 5 else None
    if (hour, dom, month, dow) == ("*",) * 4 and (minute == "*" or _STEP.fullmatch(minute)):
        return _pace(minute, "minute")
    at_minute = _number(minute, 0, 59)
    if at_minute is None:
        return None
    if (dom, month, dow) == ("*",) * 3:
        hours = _pace(hour, "hour", 24)
        if hours is not None:
            return f"{hours} at :{at_minute:02d}"
    at_hour = _number(hour, 0, 23)
    if at_hour is None:
        return None
    return _days(dom, month, dow, f"{at_hour:02d}:{at_minute:02d}")


def _pace(field: str, unit: str, size: int = 60) -> str | None:
    """'*' or '*/n' as a pace, when it is one: */7 minutes fire at :00 and :56 then at :00 again,
    7 and 4 minutes apart, so a step that does not divide the field's size has no phrase."""
    step = _STEP.fullmatch(field)
    count = 1 if field == "*" else int(step.group(1)) if step else 0
    if not count or size % count:
        return None
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def _days(dom: str, month: str, dow: str, clock: str) -> str | None:
    if (dom, month, dow) == ("*", "*", "*"):
        return f"every day at {clock}"
    if (dom, month) == ("*", "*"):
        in_month = _weekday_in_month(dow)
        if in_month:
            return f"on {in_month} of every month at {clock}"
        days = _weekdays(dow)
        if days is None:
            return None
        return (
            f"every {days[0]} at {clock}"
            if _one_day(days, dow)
            else f"at {clock} on {_listed(days)}"
        )
    if (month, dow) == ("*", "*") and dom in ("l", "lw"):
        return f"on the last {'day' if dom == 'l' else 'weekday'} of every month at {clock}"
    day = _number(dom, 1, 31)
    if day is None:
        return None
    if dow != "*":
        # both day fields restricted: classic cron fires on a day that matches either one
        days = _weekdays(dow)
        if month != "*" or days is None:
            return None
        weekly = f"every {days[0]}" if _one_day(days, dow) else f"on {_listed(days)}"
        return f"on day {day} of every month and {weekly} at {clock}"
    if month == "*":
        return f"on day {day} of every month at {clock}"
    month_number = _number(month, 1, 12, _MONTH_NAMES)
    if month_number is None:
        return None
    return f"every year on {day} {MONTHS[month_number - 1]} at {clock}"


def _weekday_in_month(field: str) -> str | None:
    """'5#2' -> 'the second Friday'; '5l' -> 'the last Friday'."""
    nth = _NTH.fullmatch(field)
    day, which = (nth.group(1), _ORDINALS[int(nth.group(2)) - 1]) if nth else (field[:-1], "last")
    number = _number(day, 0, 7, _DAY_NAMES)
    if number is None or not (nth or field.endswith("l")):
        return None
    return f"the {which} {DAYS[number % 7]}"


def _one_day(days: list[str], field: str) -> bool:
    return len(days) == 1 and "-" not in field


def _weekdays(field: str) -> list[str] | None:
    """'1-5' -> 'Monday to Friday' (one item); '1,3' -> ['Monday', 'Wednesday']; 0 and 7 are
    Sunday."""
    names = []
    for part in field.split(","):
        ends = part.split("-")
        numbers = [_number(end, 0, 7, _DAY_NAMES) for end in ends]
        if len(ends) > 2 or None in numbers or numbers != sorted(numbers):
            return None
        if len(numbers) == 2 and numbers[0] == numbers[1]:
            numbers.pop()  # MON-MON is Monday
        names.append(" to ".join(DAYS[n % 7] for n in numbers))
    return names


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _number(field: str, low: int, high: int, names: dict[str, int] | None = None) -> int | None:
    if names and field in names:
        return names[field]
    if not (field.isascii() and field.isdigit()) or len(field) > 2:
        return None
    value = int(field)
    return value if low <= value <= high else None
