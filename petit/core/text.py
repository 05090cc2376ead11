"""Text for people: untrusted values (from job files, names, output) rendered for error lines,
bounded in length and in work and always one printable line; and times in words ("3 min ago",
"14h 35m"). Pure: the caller passes `now`."""

from __future__ import annotations

import reprlib
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

MAX_MESSAGE_CHARS = 500


class _ShortRepr(reprlib.Repr):
    """repr() for error messages about values read from job files: bounded in length AND in
    work. A YAML alias bomb is a few lines whose full repr is gigabytes (`{x!r:.60}` still builds
    all of it before cutting), and Python refuses to print an int of more than 4300 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 4
        self.maxstring = self.maxother = 60
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:  # about 60 digits: more than is shown anyway
            return f"<integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def short_repr(value, limit: int = 100) -> str:
    """At most `limit` characters of repr(value), computed in bounded time. Used for every value
    a job file error quotes."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """Error lines go to terminals, logs and JSON replies: escape what would break the line
    (newlines, U+2028), drive the terminal (ESC), reorder the text (bidi marks) or fail to
    encode (lone surrogates, from escapes or undecodable file names)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else ascii(ch)[1:-1]
        for ch in text
    )


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return (
        text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
    )


def duration_words(secs: float) -> str:
    """A span as people read it, in its two largest units: "7ms", "2.5s", "42s", "3m 12s",
    "14h 35m", "2d 3h". Below ten seconds the tenths still mean something (a run's duration).
    Parts are cut, not rounded, so "in 14h 35m" never overstates a wait and a unit never reads
    60. A negative span (the clocks of two processes) reads as 0ms."""
    ms = max(0, round(secs * 1000))  # to the millisecond first: 2.3 * 1000 is 2299.99...
    if ms < 1000:
        return f"{ms}ms"
    if ms < 10_000:
        return f"{ms // 1000}.{ms % 1000 // 100}s"
    whole = ms // 1000
    for unit_secs, unit, sub_secs, sub in _UNITS:
        if whole >= unit_secs:
            count, rest = divmod(whole, unit_secs)
            part = rest // sub_secs
            return f"{count}{unit} {part}{sub}" if part else f"{count}{unit}"
    return f"{whole}s"


# (unit, its name, the next smaller unit, its name), largest first
_UNITS = ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s"))


def ago(at_ms: float, now_ms: float) -> str:
    """How long before `now_ms` the moment `at_ms` was, in one unit cut down: "just now",
    "42 sec ago", "3 min ago", "5 hours ago", "1 day ago". A moment after `now_ms` (the clock
    was set back since) reads "in 3 min"."""
    secs = int(abs(now_ms - at_ms) // 1000)
    if secs < 1:
        return "just now"
    if secs < 60:
        words = f"{secs} sec"
    elif secs < 3600:
        words = f"{secs // 60} min"
    elif secs < 86400:
        words = _plural(secs // 3600, "hour")
    else:
        words = _plural(secs // 86400, "day")
    return f"{words} ago" if at_ms <= now_ms else f"in {words}"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def wall_clock(at_ms: float, zone: str | None = None, seconds: bool = True) -> str:
    """Epoch milliseconds as "2026-12-02 08:30:15" in the IANA `zone`, or in the machine's
    local zone (TZ) when None; without seconds, "2026-12-02 08:30"."""
    moment = datetime.fromtimestamp(at_ms / 1000, ZoneInfo(zone) if zone else None)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
