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
    if second != "0":
        # "at second 30 of every minute" would read worse than the cron
        return _pace(second, "second") if (minute, hour, dom, month, dow) == ("*",) * 5 else None
    if (hour, dom, month, dow) == ("*",) * 4 and (minute == "*" or _STEP.fullmatch(minute)):
        return _pace(minute, "minute")
    at_minute = _number(minute, 0, 59)
    if at_minute is None:
        return None
    if (dom, month, dow) == ("*",) * 3:
        if hour == "*":
            return f"every hour at :{at_minute:02d}"
        step = _STEP.fullmatch(hour)
        if step:
            return f"every {step.group(1)} hours at :{at_minute:02d}"
    at_hour = _number(hour, 0, 23)
    if at_hour is None:
        return None
    return _days(dom, month, dow, f"{at_hour:02d}:{at_minute:02d}")


def _pace(field: str, unit: str) -> str | None:
    if field == "*":
        return f"every {unit}"
    step = _STEP.fullmatch(field)
    return f"every {step.group(1)} {unit}s" if step else None


def _days(dom: str, month: str, dow: str, clock: str) -> str | None:
    if (dom, month, dow) == ("*", "*", "*"):
        return f"every day at {clock}"
    if (dom, month) == ("*", "*"):
        days = _weekdays(dow)
        if days is None:
            return None
        if len(days) == 1 and "-" not in dow:
            return f"every {days[0]} at {clock}"
        return f"at {clock} on {_listed(days)}"
    day = _number(dom, 1, 31)
    if day is None or dow != "*":
        return None
    if month == "*":
        return f"on day {day} of every month at {clock}"
    month_number = _number(month, 1, 12, _MONTH_NAMES)
    if month_number is None:
        return None
    return f"every year on {day} {MONTHS[month_number - 1]} at {clock}"


def _weekdays(field: str) -> list[str] | None:
    """'1-5' -> 'Monday to Friday' (one item); '1,3' -> ['Monday', 'Wednesday']; 0 and 7 are
    Sunday."""
    names = []
    for part in field.split(","):
        ends = part.split("-")
        numbers = [_number(end, 0, 7, _DAY_NAMES) for end in ends]
        if len(ends) > 2 or None in numbers:
            return None
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
