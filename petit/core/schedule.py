"""Schedules: cron (5 fields, or 6 with seconds first), @ shortcuts, `@every <dur>`, IANA zones.

Everything here takes `now` / `last_fire` as parameters; only the scheduler loop reads the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

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
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DURATION_SECS = 366 * 86400
_MAX_DURATION_DIGITS = 12  # 366 days is 31,622,400,000 ms: 11 digits
_MAX_EXPRESSION_CHARS = 1000  # a cron line; croniter's cost grows with its length
_MAX_ZONE_CHARS = 255  # longer names make ZoneInfo fail with ENAMETOOLONG


def parse_duration(text: str, allow_zero: bool = False) -> float:
    """'30s', '5m', '1h30m', '1d', '250ms' -> seconds. Raises ValueError on anything else
    (the whole string must be consumed: nothing is silently cut)."""
    if not isinstance(text, str):
        raise ValueError(
            f"expected a duration string like '30s', '5m' or '1h30m', got {short_repr(text)}"
        )
    compact = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            break
        if len(match.group(1)) > _MAX_DURATION_DIGITS:
            # int("9" * 400) * 0.001 overflows a float; anything this long is over 366 days
            raise ValueError(f"invalid duration {short_repr(text)}: longer than 366 days")
        total += int(match.group(1)) * _UNIT_SECS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(
            f"invalid duration {short_repr(text)}: expected digits with units ms/s/m/h/d, "
            "like '30s', '5m', '1h30m' or '1d'"
        )
    if total < 0 or (total == 0 and not allow_zero):
        raise ValueError(f"invalid duration {short_repr(text)}: must be greater than zero")
    if total > _MAX_DURATION_SECS:
        raise ValueError(f"invalid duration {short_repr(text)}: longer than 366 days")
    return total


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
            # second_at_beginning: a 6th field means seconds FIRST, never seconds last.
            croniter.expand(text, strict=True, second_at_beginning=True)
            croniter(text, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True).get_next(
                datetime
            )
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"invalid cron expression {short_repr(expression)}: {exc}") from exc
        return cls(expression, zone, cron=text)

    @property
    def _hour_is_fixed(self) -> bool:
        fields = self.cron.split()
        hour = fields[2] if len(fields) == 6 else fields[1]
        return not hour.startswith("*")

    def next_fire(self, after: datetime, last_fire: datetime | None = None) -> datetime:
        """The first fire strictly after `after` (aware). `@every` keeps the phase of `last_fire`
        and never replays fires missed before `after`."""
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
        it = croniter(self.cron, after.astimezone(self.zone), second_at_beginning=True)
        while True:
            candidate = it.get_next(datetime)
            if not (self._hour_is_fixed and _is_repeat_of_wall_time(candidate)):
                return candidate.astimezone(UTC)
            # A fixed wall-clock time inside a fall-back overlap fires once (first pass);
            # wildcard-hour jobs keep firing once per real hour.

    def describe(self) -> str:
        zone = str(self.zone)
        return self.expression if zone == "UTC" else f"{self.expression} ({zone})"


def _as_utc(moment: datetime, name: str) -> datetime:
    """A naive datetime would be read as the host's local time without a word; refuse it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got naive {moment.isoformat()}"
        )
    return moment.astimezone(UTC)


def _is_repeat_of_wall_time(local: datetime) -> bool:
    """True for the second occurrence (fold=1) of a wall-clock time repeated by a DST fall-back."""
    if local.fold != 1:
        return False
    return local.replace(fold=0).utcoffset() != local.utcoffset()
