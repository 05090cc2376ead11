"""Schedules: cron (5 fields, 6 with seconds first), POSIX day-of-week, @ shortcuts, @every,
time zones and DST. `now` is always passed explicitly; the clock is never read or patched."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from jobfiles import write_job

from petit.core.schedule import Schedule, parse_duration
from petit.core.text import short_repr
from petit.jobs.loader import load_jobs

UTC = UTC
NEW_YORK = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def fires(
    expression: str,
    start: datetime,
    count: int,
    zone: str = "UTC",
    last_fire: datetime | None = None,
) -> list[datetime]:
    """The next `count` fires after `start`, each computed from the previous one."""
    schedule = Schedule.parse(expression, zone)
    result: list[datetime] = []
    moment, last = start, last_fire
    for _ in range(count):
        moment = schedule.next_fire(moment, last)
        last = moment
        result.append(moment)
    return result


def fires_until(
    expression: str, start: datetime, end: datetime, zone: str = "UTC"
) -> list[datetime]:
    schedule = Schedule.parse(expression, zone)
    result: list[datetime] = []
    moment = schedule.next_fire(start)
    while moment < end:
        result.append(moment)
        moment = schedule.next_fire(moment)
    return result


def local(moments: list[datetime], zone: ZoneInfo) -> list[str]:
    """Render as local wall time with its offset, the way an operator reads a schedule."""
    return [m.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S%z") for m in moments]


# --- cron fields ---------------------------------------------------------------------------------

MONDAY = utc(2024, 1, 1)  # 2024-01-01 is a Monday

CRON_CASES = [
    # (expression, after, expected next fires)
    ("* * * * *", utc(2024, 1, 1, 0, 0, 30), [utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)]),
    ("*/15 * * * *", utc(2024, 1, 1, 0, 7), [utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30)]),
    ("30 7 * * *", utc(2024, 1, 1, 8), [utc(2024, 1, 2, 7, 30), utc(2024, 1, 3, 7, 30)]),
    ("0 0 1 * *", utc(2024, 1, 15), [utc(2024, 2, 1), utc(2024, 3, 1)]),
    ("0 0 29 2 *", MONDAY, [utc(2024, 2, 29), utc(2028, 2, 29)]),
    ("0 12 1 JAN *", MONDAY, [utc(2024, 1, 1, 12), utc(2025, 1, 1, 12)]),
    ("0 0 1 JAN-MAR *", utc(2024, 2, 15), [utc(2024, 3, 1), utc(2025, 1, 1)]),
    # six fields: seconds come FIRST
    ("0 0 2 * * *", MONDAY, [utc(2024, 1, 1, 2), utc(2024, 1, 2, 2)]),
    (
        "*/10 * * * * *",
        utc(2024, 1, 1, 0, 0, 5),
        [utc(2024, 1, 1, 0, 0, 10), utc(2024, 1, 1, 0, 0, 20), utc(2024, 1, 1, 0, 0, 30)],
    ),
    ("30 * * * * *", MONDAY, [utc(2024, 1, 1, 0, 0, 30), utc(2024, 1, 1, 0, 1, 30)]),
    ("15 30 6 * * *", MONDAY, [utc(2024, 1, 1, 6, 30, 15), utc(2024, 1, 2, 6, 30, 15)]),
]


@pytest.mark.parametrize(
    "expression, after, expected", CRON_CASES, ids=[f"{c[0]!r}" for c in CRON_CASES]
)
def test_cron_next_fires(expression, after, expected):
    assert fires(expression, after, len(expected)) == expected


def test_six_fields_means_seconds_first_not_years_or_seconds_last():
    # "0 0 2 * * *" read with seconds LAST would be "every second of minute 0 of hour 0,
    # on the 2nd"; seconds first means 02:00:00 daily.
    daily = fires("0 0 2 * * *", MONDAY, 3)
    assert [f.strftime("%d %H:%M:%S") for f in daily] == [
        "01 02:00:00",
        "02 02:00:00",
        "03 02:00:00",
    ]


@pytest.mark.parametrize(
    "after, expected",
    [
        (utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)),  # exactly on a fire: strictly after
        (utc(2024, 1, 1, 1, 0, 0, 500_000), utc(2024, 1, 1, 2)),  # just past a fire
        (utc(2024, 1, 1, 0, 59, 59, 999_999), utc(2024, 1, 1, 1)),  # just before a fire
    ],
    ids=["on-the-fire", "just-after", "just-before"],
)
def test_next_fire_is_strictly_after(after, expected):
    assert Schedule.parse("0 * * * *").next_fire(after) == expected


# --- day of week (POSIX) and names -------------------------------------------------------------

DOW_CASES = [
    ("0 0 * * 0", ["Sun"]),
    ("0 0 * * 7", ["Sun"]),
    ("0 0 * * 1", ["Mon"]),
    ("0 0 * * 6", ["Sat"]),
    ("0 0 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0 0 * * MON-FRI", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0 0 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0 0 * * SAT,SUN", ["Sat", "Sun"]),
    ("0 0 * * 6,0", ["Sat", "Sun"]),
    ("0 0 * * 5-7", ["Fri", "Sat", "Sun"]),
    ("0 0 0 * * 0", ["Sun"]),  # six fields: dow is still the last field
]


@pytest.mark.parametrize("expression, weekdays", DOW_CASES, ids=[c[0] for c in DOW_CASES])
def test_day_of_week_is_posix(expression, weekdays):
    two_weeks = fires_until(expression, MONDAY - timedelta(seconds=1), MONDAY + timedelta(days=14))
    seen = [WEEKDAYS[f.weekday()] for f in two_weeks]
    assert sorted(set(seen), key=WEEKDAYS.index) == weekdays
    assert len(seen) == 2 * len(weekdays)  # once a day on each matching day, two weeks


def test_sunday_as_0_and_7_give_identical_fires():
    assert fires("0 9 * * 0", MONDAY, 5) == fires("0 9 * * 7", MONDAY, 5)


# --- single-value ranges, steps, the day rule, L, LW, # and ? ------------------------------------


def days(moments: list[datetime]) -> list[str]:
    return [m.strftime("%a %d %b") for m in moments]


FORM_CASES = [
    # (expression, after, expected next fires) -- 2024-01-01 is a Monday
    # a single-value range is its one value, never the whole field
    ("5-5 * * * *", MONDAY, [utc(2024, 1, 1, 0, 5), utc(2024, 1, 1, 1, 5)]),
    ("7-7/5 * * * *", MONDAY, [utc(2024, 1, 1, 0, 7), utc(2024, 1, 1, 1, 7)]),
    ("0 0 1 JUN-JUN *", MONDAY, [utc(2024, 6, 1), utc(2025, 6, 1)]),
    ("0 0 * * MON-MON", MONDAY, [utc(2024, 1, 8), utc(2024, 1, 15)]),
    ("0 0 * * 7-7", MONDAY, [utc(2024, 1, 7), utc(2024, 1, 14)]),
    # a/n is a to the field's end, every n
    (
        "7/20 * * * *",
        MONDAY,
        [utc(2024, 1, 1, 0, 7), utc(2024, 1, 1, 0, 27), utc(2024, 1, 1, 0, 47)],
    ),
    ("0 0 1 JUN/5 *", MONDAY, [utc(2024, 6, 1), utc(2024, 11, 1), utc(2025, 6, 1)]),
    ("0 0 ? * MON", MONDAY, [utc(2024, 1, 8), utc(2024, 1, 15)]),  # ? is *
    ("0 0 1 * ?", MONDAY, [utc(2024, 2, 1), utc(2024, 3, 1)]),
    ("0 0 L * *", MONDAY, [utc(2024, 1, 31), utc(2024, 2, 29), utc(2024, 3, 31), utc(2024, 4, 30)]),
    # the last weekday: Sunday 31 March 2024 gives Friday 29, Saturday 31 August gives Friday 30
    ("0 0 LW 3,6,8 *", MONDAY, [utc(2024, 3, 29), utc(2024, 6, 28), utc(2024, 8, 30)]),
    (
        "0 0 15,L 2 *",
        MONDAY,
        [utc(2024, 2, 15), utc(2024, 2, 29), utc(2025, 2, 15), utc(2025, 2, 28)],
    ),
    ("0 0 * * 5L", MONDAY, [utc(2024, 1, 26), utc(2024, 2, 23), utc(2024, 3, 29)]),
    ("0 0 * * 5#2", MONDAY, [utc(2024, 1, 12), utc(2024, 2, 9), utc(2024, 3, 8)]),
    ("0 0 * * fri#2,SUN#1", MONDAY, [utc(2024, 1, 7), utc(2024, 1, 12), utc(2024, 2, 4)]),
    # 5 Mondays in February: 29 February on a Monday, 28 years apart
    ("0 0 * 2 1#5", MONDAY, [utc(2044, 2, 29), utc(2072, 2, 29)]),
]


@pytest.mark.parametrize(
    "expression, after, expected", FORM_CASES, ids=[f"{c[0]!r}" for c in FORM_CASES]
)
def test_field_forms(expression, after, expected):
    assert fires(expression, after, len(expected)) == expected


DAY_RULE_CASES = [
    # a day field that starts with * (or is ?) leaves the day to the other one: both must match
    ("0 0 */2 * MON", ["Mon 01 Jan", "Mon 15 Jan", "Mon 29 Jan", "Mon 05 Feb", "Mon 19 Feb"]),
    ("0 0 */1 * 1", ["Mon 01 Jan", "Mon 08 Jan", "Mon 15 Jan", "Mon 22 Jan", "Mon 29 Jan"]),
    ("0 0 1,15 * */2", ["Thu 01 Feb", "Thu 15 Feb", "Sat 01 Jun", "Sat 15 Jun", "Thu 01 Aug"]),
    # both restricted: a day that matches either one fires
    ("0 0 1,15 * MON", ["Mon 01 Jan", "Mon 08 Jan", "Mon 15 Jan", "Mon 22 Jan", "Mon 29 Jan"]),
    ("0 0 13 * FRI", ["Fri 05 Jan", "Fri 12 Jan", "Sat 13 Jan", "Fri 19 Jan", "Fri 26 Jan"]),
    ("0 0 13 * 5#3", ["Sat 13 Jan", "Fri 19 Jan", "Tue 13 Feb", "Fri 16 Feb", "Wed 13 Mar"]),
    ("0 0 L * MON", ["Mon 01 Jan", "Mon 08 Jan", "Mon 15 Jan", "Mon 22 Jan", "Mon 29 Jan"]),
    # 30 February never comes, Mondays of February do
    ("0 0 30 2 MON", ["Mon 05 Feb", "Mon 12 Feb", "Mon 19 Feb", "Mon 26 Feb", "Mon 03 Feb"]),
    # spelled out, 1-31 is not *: OR with Monday is every day, as in classic cron
    ("0 0 1-31 * MON", ["Mon 01 Jan", "Tue 02 Jan", "Wed 03 Jan", "Thu 04 Jan", "Fri 05 Jan"]),
]


@pytest.mark.parametrize("expression, expected", DAY_RULE_CASES, ids=[c[0] for c in DAY_RULE_CASES])
def test_day_of_month_and_day_of_week_follow_classic_cron(expression, expected):
    assert days(fires(expression, MONDAY - timedelta(seconds=1), len(expected))) == expected


@pytest.mark.parametrize(
    "expression, weekdays",
    [("0 0 * * */2", ["Tue", "Thu", "Sat", "Sun"]), ("0 0 * * 1/2", ["Mon", "Wed", "Fri", "Sun"])],
    ids=["*/2", "1/2"],
)
def test_day_of_week_steps_run_over_0_to_7(expression, weekdays):
    week = fires_until(expression, MONDAY - timedelta(seconds=1), MONDAY + timedelta(days=7))
    assert sorted(WEEKDAYS[f.weekday()] for f in week) == sorted(weekdays)


# --- shortcuts -----------------------------------------------------------------------------------

SHORTCUT_CASES = [
    ("@yearly", utc(2024, 3, 5, 10), [utc(2025, 1, 1), utc(2026, 1, 1)]),
    ("@annually", utc(2024, 3, 5, 10), [utc(2025, 1, 1), utc(2026, 1, 1)]),
    ("@monthly", utc(2024, 3, 5, 10), [utc(2024, 4, 1), utc(2024, 5, 1)]),
    ("@weekly", utc(2024, 3, 5, 10), [utc(2024, 3, 10), utc(2024, 3, 17)]),  # Sundays
    ("@daily", utc(2024, 3, 5, 10), [utc(2024, 3, 6), utc(2024, 3, 7)]),
    ("@midnight", utc(2024, 3, 5, 10), [utc(2024, 3, 6), utc(2024, 3, 7)]),
    ("@hourly", utc(2024, 3, 5, 10, 20), [utc(2024, 3, 5, 11), utc(2024, 3, 5, 12)]),
]


@pytest.mark.parametrize(
    "expression, after, expected", SHORTCUT_CASES, ids=[c[0] for c in SHORTCUT_CASES]
)
def test_shortcuts(expression, after, expected):
    assert fires(expression, after, len(expected)) == expected


def test_weekly_fires_on_sunday():
    assert {WEEKDAYS[f.weekday()] for f in fires("@weekly", MONDAY, 4)} == {"Sun"}


# --- durations -----------------------------------------------------------------------------------

DURATION_CASES = [
    ("30s", 30),
    ("5m", 300),
    ("1h", 3600),
    ("1h30m", 5400),
    ("1d", 86400),
    ("2d12h", 216000),
    ("250ms", 0.25),
    ("1m30s", 90),
    (" 10s ", 10),
    ("366d", 366 * 86400),
    # decimals and compound forms as people write them
    ("0.5s", 0.5),
    ("1.5h", 5400),
    ("0.1h", 360),  # exactly: summed as fractions, not floats
    ("1h 30m", 5400),
    ("10 s", 10),
    ("1d 2h 3m 4s 5ms", 93784.005),
    ("1.5m 0.25s", 90.25),
    ("0.001s", 0.001),
    ("007s", 7),
]


@pytest.mark.parametrize(
    "text, seconds", DURATION_CASES, ids=[c[0].strip() for c in DURATION_CASES]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


EXPECTED = "expected numbers with units d, h, m, s or ms, like '30s', '1m30s' or '0.5s'"
BAD_DURATION_CASES = [
    ("5x", f"'5x' is not a number with a unit: {EXPECTED}"),
    ("", f"empty: {EXPECTED}"),
    ("   ", f"empty: {EXPECTED}"),
    # a trailing number must not be silently dropped
    ("1h30", "'30' has no unit: expected a unit (d, h, m, s or ms), like '30s'"),
    ("10", "'10' has no unit: expected a unit (d, h, m, s or ms), like '10s'"),
    ("-5m", "must not be negative"),
    ("-1s", "must not be negative"),
    ("1h-5m", "must not be negative"),
    ("0s", "must be greater than zero"),
    ("0m0s", "must be greater than zero"),
    ("0.0s", "must be greater than zero"),
    ("m", f"'m' is not a number with a unit: {EXPECTED}"),
    ("5 minutes", f"'5 minutes' is not a number with a unit: {EXPECTED}"),
    ("10 secs", f"'10 secs' is not a number with a unit: {EXPECTED}"),
    ("1H", f"'1H' is not a number with a unit: {EXPECTED}"),
    ("1x", f"'1x' is not a number with a unit: {EXPECTED}"),
    ("1.2.3s", f"'1.2.3s' is not a number with a unit: {EXPECTED}"),
    ("1.s", f"'1.s' is not a number with a unit: {EXPECTED}"),
    (".5s", f"'.5s' is not a number with a unit: {EXPECTED}"),
    ("1m.5s", f"'.5s' is not a number with a unit: {EXPECTED}"),
    ("1e3s", f"'1e3s' is not a number with a unit: {EXPECTED}"),
    ("nan", f"'nan' is not a number with a unit: {EXPECTED}"),
    ("inf", f"'inf' is not a number with a unit: {EXPECTED}"),
    ("1,5s", f"'1,5s' is not a number with a unit: {EXPECTED}"),
    ("\u0663s", f"'\u0663s' is not a number with a unit: {EXPECTED}"),  # an Arabic-Indic 3
    # a repeated or out-of-order unit is a typo more often than not: never summed
    ("1m1h", "unit 'h' after 'm': write the units largest first"),
    ("30s1m", "unit 'm' after 's': write the units largest first"),
    ("1s1s", "unit 's' appears twice: give each unit once, largest first"),
    ("1h 2h", "unit 'h' appears twice: give each unit once, largest first"),
    ("0.0001s", "more precise than a millisecond"),
    ("1.5ms", "more precise than a millisecond"),
    ("367d", "longer than 366 days"),
    ("366d1ms", "longer than 366 days"),
    ("9999999999999999d", "longer than 366 days"),
    ("9" * 65 + "s", "longer than 64 characters"),
]


@pytest.mark.parametrize(
    "text, message", BAD_DURATION_CASES, ids=[repr(c[0])[:30] for c in BAD_DURATION_CASES]
)
def test_parse_duration_rejects_malformed(text, message):
    """Each bad spelling gets one line that says what is wrong with it, in these words."""
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == f"invalid duration {short_repr(text)}: {message}"


def test_a_zero_duration_where_zero_is_allowed():
    assert parse_duration("0s", allow_zero=True) == parse_duration("0.0m", allow_zero=True) == 0


@pytest.mark.parametrize("value", [30, 1.5, None, ["5m"]], ids=["int", "float", "none", "list"])
def test_parse_duration_rejects_non_strings(value):
    with pytest.raises(ValueError, match="duration string"):
        parse_duration(value)


# --- @every ---------------------------------------------------------------------------------------

EVERY_CASES = [
    ("@every 30s", 30),
    ("@every 5m", 300),
    ("@every 1h30m", 5400),
    ("@every 1d", 86400),
    ("@every 1m30s", 90),
    ("@every 1h 30m", 5400),  # the spaces are inside the duration, not a sixth cron field
    ("@every 0.5s", 0.5),
]


@pytest.mark.parametrize("expression, step", EVERY_CASES, ids=[c[0] for c in EVERY_CASES])
def test_every_without_last_fire_counts_from_now(expression, step):
    now = utc(2024, 5, 1, 12, 0, 7)
    assert Schedule.parse(expression).next_fire(now) == now + timedelta(seconds=step)


@pytest.mark.parametrize("expression, step", EVERY_CASES, ids=[c[0] for c in EVERY_CASES])
def test_every_is_anchored_to_last_fire(expression, step):
    last = utc(2024, 5, 1, 12, 0, 7)
    now = last + timedelta(seconds=step / 3)  # a scheduler tick in between must not shift it
    assert Schedule.parse(expression).next_fire(now, last_fire=last) == last + timedelta(
        seconds=step
    )


@pytest.mark.parametrize(
    "elapsed, expected_offset",
    [
        (timedelta(minutes=17, seconds=3), timedelta(minutes=20)),  # 3 fires missed: next in phase
        (timedelta(minutes=20), timedelta(minutes=25)),  # exactly on a missed phase point
        (timedelta(hours=5, seconds=1), timedelta(hours=5, minutes=5)),
    ],
    ids=["missed-3", "on-phase", "missed-60"],
)
def test_every_keeps_phase_and_does_not_replay_missed_fires(elapsed, expected_offset):
    last = utc(2024, 5, 1, 12, 0, 7)
    now = last + elapsed
    nxt = Schedule.parse("@every 5m").next_fire(now, last_fire=last)
    assert nxt == last + expected_offset
    assert nxt > now and nxt - now <= timedelta(minutes=5)  # one fire ahead, no backlog


def test_every_longer_than_a_scheduler_tick_still_fires():
    # the older tool never fired an @every longer than its tick; here a 1d interval is reached
    last = utc(2024, 5, 1)
    schedule = Schedule.parse("@every 1d")
    ticks = [last + timedelta(minutes=m) for m in range(0, 2 * 24 * 60, 1)]
    due = [
        t for t in ticks if schedule.next_fire(t - timedelta(microseconds=1), last_fire=last) <= t
    ]
    assert due == [utc(2024, 5, 2)]


def test_every_sequence_from_successive_fires():
    assert fires("@every 1h30m", utc(2024, 1, 1), 3) == [
        utc(2024, 1, 1, 1, 30),
        utc(2024, 1, 1, 3),
        utc(2024, 1, 1, 4, 30),
    ]


def test_every_crosses_dst_in_real_time_even_with_zoned_inputs():
    # 01:30 EDT + 1h is 01:30 EST (the repeated hour); wall-clock arithmetic would give 02:30 EST
    last = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)
    nxt = Schedule.parse("@every 1h", "America/New_York").next_fire(last, last_fire=last)
    assert nxt - last == timedelta(hours=1)
    assert nxt.tzinfo is UTC
    assert local([nxt], NEW_YORK) == ["2024-11-03 01:30:00-0500"]


# --- rejected expressions ------------------------------------------------------------------------

BAD_EXPRESSIONS = [
    ("* * * * * * *", "7 fields"),
    ("* * * *", "4 fields"),
    ("@every 5x", "invalid duration"),
    ("@every", "needs a duration"),
    ("@every 1h30", "invalid duration"),
    ("@every -5m", "invalid duration"),
    ("@every 0s", "greater than zero"),
    ("@every 1m1h", "largest first"),
    ("@every ", "needs a duration"),
    ("@fortnightly", "unknown shortcut"),
    ("@DAILY", "unknown shortcut"),
    ("0 0 31 2 *", "invalid cron expression"),
    ("0 0 30 2 *", "invalid cron expression"),
    ("0 0 31 4,6,9,11 *", "invalid cron expression"),
    ("61 * * * *", "invalid cron expression"),
    ("* 24 * * *", "invalid cron expression"),
    ("* * * 13 *", "invalid cron expression"),
    ("* * * * 8", "invalid cron expression"),
    ("60 * * * * *", "invalid cron expression"),
    ("* * * * FUNDAY", "invalid cron expression"),
    ("", "non-empty"),
    ("   ", "non-empty"),
]


@pytest.mark.parametrize(
    "expression, message", BAD_EXPRESSIONS, ids=[repr(c[0]) for c in BAD_EXPRESSIONS]
)
def test_rejected_expressions(expression, message):
    with pytest.raises(ValueError, match=message):
        Schedule.parse(expression)


REFUSED_FORMS = [
    # (expression, what the message must say)
    ("5-1 * * * *", "minute field: the range 5-1 runs backwards.*write it as a list, 5-59,0-1"),
    ("0 22-2 * * *", "hour field: the range 22-2 runs backwards.*22-23,0-2"),
    ("0 0 * * FRI-MON", "day-of-week field: the range FRI-MON .*FRI,SAT,SUN,MON"),
    ("0 0 * * 6-1", "day-of-week field: .*6,0-1"),
    ("0 0 1 NOV-FEB *", "month field: .*NOV,DEC,JAN,FEB"),
    ("R * * * *", "minute field: 'R' \\(a random value\\) is not supported"),
    ("0 H * * *", "hour field: 'H' \\(a hashed value\\) is not supported"),
    ("H/15 * * * *", "minute field: 'H/15' \\(a hashed value\\)"),
    ("0 0 15W * *", "day-of-month field: '15W': the nearest weekday .* not supported; LW is"),
    ("0 0 * * 1#6", "day-of-week field: '1#6': expected a day, # and a week 1-5"),
    ("L * * * *", "minute field: 'L': L and W are for day-of-month"),
    ("0 0 * 5L *", "month field: '5L'"),
    ("0 0 1 * L", "day-of-week field: cannot read 'L'"),
    ("? * * * *", "minute field: \\? is only a whole day-of-month or day-of-week field"),
    ("0 0 ?,1 * *", "day-of-month field: \\? is only a whole"),
    ("*/61 * * * *", "minute field: the step in '\\*/61': expected 1 to 60"),
    ("*/0 * * * *", "minute field: the step in '\\*/0'"),
    ("1,,2 * * * *", "minute field: an empty item in '1,,2'"),
    ("1.5 * * * *", "minute field: cannot read '1.5'"),
    ("* * * * FUNDAY", "day-of-week field: cannot read 'FUNDAY': expected 0-7 or SUN-SAT"),
    ("* * * JAN-FOO *", "month field: cannot read 'FOO': expected 1-12 or JAN-DEC"),
    ("0 0 31 4,6,9,11 *", "it would never fire: no day of APR, JUN, SEP, NOV matches"),
    ("0 0 */30 2 1#5", "it would never fire"),  # AND: the 1st or 31st being a 5th Monday
]


@pytest.mark.parametrize("expression, message", REFUSED_FORMS, ids=[c[0] for c in REFUSED_FORMS])
def test_refused_forms_say_which_field_and_what_to_write(expression, message):
    with pytest.raises(ValueError, match=f"^invalid cron expression '{re.escape(expression)}': "):
        Schedule.parse(expression)
    with pytest.raises(ValueError, match=message):
        Schedule.parse(expression)


def test_a_schedule_never_searches_forever():
    with pytest.raises(ValueError, match="has no fire time within 100 years"):
        Schedule.parse("0 0 1 1 *").next_fire(utc(9999, 6, 1))
    with pytest.raises(ValueError, match="has no fire time"):
        Schedule.parse("* * * * * *", "Europe/Paris").next_fire(utc(9999, 12, 31, 23, 59, 59))


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus_Mons", "", "Europe/Pariss", "../../etc/passwd", "utc"],
    ids=["unknown", "empty", "typo", "path", "lowercase"],
)
def test_bad_timezone_rejected(zone):
    with pytest.raises(ValueError, match="unknown time zone"):
        Schedule.parse("0 * * * *", zone)


def test_non_string_expression_rejected():
    with pytest.raises(ValueError, match="non-empty string"):
        Schedule.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("expression", ["0 * * * *", "@every 5m"], ids=["cron", "every"])
def test_naive_now_rejected(expression):
    # a naive datetime would silently be read as the host's local time
    with pytest.raises(ValueError, match="timezone-aware"):
        Schedule.parse(expression).next_fire(datetime(2024, 1, 1))


def test_naive_last_fire_rejected():
    with pytest.raises(ValueError, match="last_fire must be a timezone-aware"):
        Schedule.parse("@every 5m").next_fire(utc(2024, 1, 1), last_fire=datetime(2024, 1, 1))


def test_whitespace_is_normalised():
    assert fires("  0   2  * * * ", MONDAY, 1) == [utc(2024, 1, 1, 2)]


# --- results are aware UTC -----------------------------------------------------------------------

AWARE_CASES = [
    ("30 2 * * *", "America/New_York"),
    ("0 * * * *", "Europe/Paris"),
    ("*/10 * * * * *", "UTC"),
    ("@daily", "Asia/Kolkata"),
    ("@every 1h30m", "America/New_York"),
    ("0 0 2 * * *", "Australia/Sydney"),
]


@pytest.mark.parametrize("expression, zone", AWARE_CASES, ids=[f"{e} {z}" for e, z in AWARE_CASES])
@pytest.mark.parametrize(
    "now",
    [
        utc(2024, 3, 10, 6, 45),
        datetime(2024, 11, 3, 1, 15, tzinfo=NEW_YORK),
        datetime(2024, 7, 1, 9, 0, tzinfo=PARIS),
    ],
    ids=["utc-now", "new-york-now", "paris-now"],
)
def test_next_fire_is_aware_utc_and_after_now(expression, zone, now):
    nxt = Schedule.parse(expression, zone).next_fire(now)
    assert nxt.tzinfo is UTC
    assert nxt.utcoffset() == timedelta(0)
    assert nxt > now


# --- time zones and DST --------------------------------------------------------------------------


def test_timezone_shifts_the_fire_instant():
    # 07:30 in Paris is 06:30 UTC in winter and 05:30 UTC in summer
    winter = Schedule.parse("30 7 * * *", "Europe/Paris").next_fire(utc(2024, 1, 10))
    summer = Schedule.parse("30 7 * * *", "Europe/Paris").next_fire(utc(2024, 7, 10))
    assert (winter, summer) == (utc(2024, 1, 10, 6, 30), utc(2024, 7, 10, 5, 30))


def test_new_york_spring_forward_daily_0230_fires_once_at_0300_then_0230():
    # 2024-03-10: clocks jump from 02:00 EST to 03:00 EDT; 02:30 does not exist that day
    got = fires("30 2 * * *", utc(2024, 3, 9, 12), 4, "America/New_York")
    assert local(got, NEW_YORK) == [
        "2024-03-10 03:00:00-0400",
        "2024-03-11 02:30:00-0400",
        "2024-03-12 02:30:00-0400",
        "2024-03-13 02:30:00-0400",
    ]


def test_new_york_spring_forward_fires_once_on_the_day():
    day = fires_until("30 2 * * *", utc(2024, 3, 10, 5), utc(2024, 3, 11, 4), "America/New_York")
    assert local(day, NEW_YORK) == ["2024-03-10 03:00:00-0400"]


def test_new_york_fall_back_daily_0130_fires_once():
    # 2024-11-03: 01:00-02:00 happens twice (EDT then EST); a fixed 01:30 must fire only once
    day = fires_until("30 1 * * *", utc(2024, 11, 3, 4), utc(2024, 11, 4, 4), "America/New_York")
    assert local(day, NEW_YORK) == ["2024-11-03 01:30:00-0400"]
    following = fires("30 1 * * *", day[0], 2, "America/New_York")
    assert local(following, NEW_YORK) == ["2024-11-04 01:30:00-0500", "2024-11-05 01:30:00-0500"]


@pytest.mark.parametrize(
    "after",
    [utc(2024, 11, 3, 5, 45), utc(2024, 11, 3, 6, 0), utc(2024, 11, 3, 6, 29)],
    ids=["after-first-0130", "in-second-pass", "just-before-repeat"],
)
def test_new_york_fall_back_now_inside_overlap_does_not_refire(after):
    nxt = Schedule.parse("30 1 * * *", "America/New_York").next_fire(after)
    assert local([nxt], NEW_YORK) == ["2024-11-04 01:30:00-0500"]


def test_new_york_fall_back_hourly_fires_once_per_real_hour():
    got = fires_until(
        "0 * * * *", utc(2024, 11, 3, 3, 30), utc(2024, 11, 3, 8, 30), "America/New_York"
    )
    assert local(got, NEW_YORK) == [
        "2024-11-03 00:00:00-0400",
        "2024-11-03 01:00:00-0400",
        "2024-11-03 01:00:00-0500",
        "2024-11-03 02:00:00-0500",
        "2024-11-03 03:00:00-0500",
    ]
    gaps = {b - a for a, b in zip(got, got[1:])}
    assert gaps == {timedelta(hours=1)}


def test_new_york_spring_forward_hourly_skips_the_missing_hour():
    got = fires_until(
        "0 * * * *", utc(2024, 3, 10, 5, 30), utc(2024, 3, 10, 8, 30), "America/New_York"
    )
    assert local(got, NEW_YORK) == [
        "2024-03-10 01:00:00-0500",
        "2024-03-10 03:00:00-0400",
        "2024-03-10 04:00:00-0400",
    ]


def test_six_field_schedule_follows_the_same_dst_rules():
    spring = fires("0 30 2 * * *", utc(2024, 3, 10, 5), 2, "America/New_York")
    fall = fires_until("0 30 1 * * *", utc(2024, 11, 3, 4), utc(2024, 11, 4, 4), "America/New_York")
    assert local(spring, NEW_YORK) == ["2024-03-10 03:00:00-0400", "2024-03-11 02:30:00-0400"]
    assert local(fall, NEW_YORK) == ["2024-11-03 01:30:00-0400"]


@pytest.mark.parametrize(
    "now",
    [
        datetime(2024, 11, 3, 1, 15, tzinfo=NEW_YORK),
        datetime(2024, 11, 3, 1, 15, fold=1, tzinfo=NEW_YORK),
    ],
    ids=["first-0115", "second-0115"],
)
def test_zoned_now_inside_overlap_is_read_as_its_real_instant(now):
    nxt = Schedule.parse("0 * * * *", "America/New_York").next_fire(now)
    assert nxt - now.astimezone(UTC) == timedelta(minutes=45)


def test_paris_spring_forward_0230_fires_at_0300_then_0230():
    # 2024-03-31: Paris jumps from 02:00 CET to 03:00 CEST
    got = fires("30 2 * * *", utc(2024, 3, 30, 12), 3, "Europe/Paris")
    assert local(got, PARIS) == [
        "2024-03-31 03:00:00+0200",
        "2024-04-01 02:30:00+0200",
        "2024-04-02 02:30:00+0200",
    ]


def test_paris_fall_back_0230_fires_once():
    # 2024-10-27: 02:00-03:00 happens twice in Paris
    day = fires_until("30 2 * * *", utc(2024, 10, 26, 22), utc(2024, 10, 27, 23), "Europe/Paris")
    assert local(day, PARIS) == ["2024-10-27 02:30:00+0200"]


def test_paris_fall_back_hourly_fires_every_real_hour():
    got = fires_until(
        "0 * * * *", utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 2, 30), "Europe/Paris"
    )
    assert local(got, PARIS) == [
        "2024-10-27 02:00:00+0200",
        "2024-10-27 02:00:00+0100",
        "2024-10-27 03:00:00+0100",
    ]


def test_paris_weekday_schedule_skips_the_weekend():
    got = fires(
        "30 7 * * 1-5", datetime(2024, 6, 7, 8, 0, tzinfo=PARIS), 2, "Europe/Paris"
    )  # a Friday
    assert local(got, PARIS) == ["2024-06-10 07:30:00+0200", "2024-06-11 07:30:00+0200"]


# Two policies: a cron whose hour field allows all 24 hours follows real time (every instant whose
# wall time matches fires, whatever the spelling); any other keeps wall-clock appointments.
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # 30-minute shifts: +10:30 in winter, +11 in summer


@pytest.mark.parametrize("hours", ["*", "0-23", "0-23/1", "*/1", "0-11,12-23"])
def test_every_hour_follows_real_time_however_it_is_spelled(hours):
    spring = fires_until(
        f"30 {hours} * * *", utc(2024, 3, 10, 5), utc(2024, 3, 10, 9), "America/New_York"
    )
    fall = fires_until(
        f"30 {hours} * * *", utc(2024, 11, 3, 4), utc(2024, 11, 3, 8), "America/New_York"
    )
    # 02:30 does not exist on 10 March; 01:30 comes twice on 3 November
    assert local(spring, NEW_YORK) == [
        "2024-03-10 00:30:00-0500",
        "2024-03-10 01:30:00-0500",
        "2024-03-10 03:30:00-0400",
        "2024-03-10 04:30:00-0400",
    ]
    assert local(fall, NEW_YORK) == [
        "2024-11-03 00:30:00-0400",
        "2024-11-03 01:30:00-0400",
        "2024-11-03 01:30:00-0500",
        "2024-11-03 02:30:00-0500",
    ]


def test_lord_howe_fall_back_fires_both_passes_of_the_repeated_half_hour():
    # 2024-04-07: at 02:00 (+11) the clocks go back to 01:30 (+10:30)
    got = fires_until(
        "*/15 * * * *", utc(2024, 4, 6, 14), utc(2024, 4, 6, 15, 45), "Australia/Lord_Howe"
    )
    assert local(got, LORD_HOWE) == [
        "2024-04-07 01:15:00+1100",
        "2024-04-07 01:30:00+1100",
        "2024-04-07 01:45:00+1100",
        "2024-04-07 01:30:00+1030",
        "2024-04-07 01:45:00+1030",
        "2024-04-07 02:00:00+1030",
    ]
    assert {b - a for a, b in zip(got, got[1:])} == {timedelta(minutes=15)}


def test_lord_howe_spring_forward():
    # 2024-10-06: at 02:00 (+10:30) the clocks jump to 02:30 (+11)
    appointment = fires("15 2 * * *", utc(2024, 10, 5, 12), 2, "Australia/Lord_Howe")
    assert local(appointment, LORD_HOWE) == ["2024-10-06 02:30:00+1100", "2024-10-07 02:15:00+1100"]
    hourly = fires_until(
        "32 * * * *", utc(2024, 10, 5, 14), utc(2024, 10, 5, 17), "Australia/Lord_Howe"
    )  # 02:32 exists (after the jump) and fires; 02:00 to 02:29 do not exist
    assert local(hourly, LORD_HOWE) == [
        "2024-10-06 00:32:00+1030",
        "2024-10-06 01:32:00+1030",
        "2024-10-06 02:32:00+1100",
        "2024-10-06 03:32:00+1100",
    ]


def test_one_second_before_the_jump_the_skipped_appointment_is_still_ahead():
    # 06:59:59 UTC is 01:59:59 EST; the next second is 03:00:00 EDT
    nxt = Schedule.parse("30 2 * * *", "America/New_York").next_fire(utc(2024, 3, 10, 6, 59, 59))
    assert local([nxt], NEW_YORK) == ["2024-03-10 03:00:00-0400"]


def test_a_skipped_appointment_keeps_its_second():
    got = fires("30 30 2 * * *", utc(2024, 3, 30, 12), 2, "Europe/Paris")
    assert local(got, PARIS) == ["2024-03-31 03:00:30+0200", "2024-04-01 02:30:30+0200"]


def test_skipped_appointments_fire_once_after_the_jump():
    # every minute of 02:00-02:59, which 31 March skips, collapses into one fire at 03:00
    got = fires_until("* 2 * * *", utc(2024, 3, 30, 23), utc(2024, 4, 1, 1, 1), "Europe/Paris")
    assert local(got[:2], PARIS) == ["2024-03-31 03:00:00+0200", "2024-04-01 02:00:00+0200"]
    assert len(got) == 1 + 60


def test_an_hour_step_keeps_appointments():
    # `*/2` does not allow every hour: 02:00 fires once each day, like a fixed hour
    spring = fires("0 */2 * * *", utc(2024, 3, 30, 22, 30), 3, "Europe/Paris")
    fall = fires("0 */2 * * *", utc(2024, 10, 26, 21, 30), 3, "Europe/Paris")
    assert local(spring, PARIS) == [
        "2024-03-31 00:00:00+0100",
        "2024-03-31 03:00:00+0200",
        "2024-03-31 04:00:00+0200",
    ]
    assert local(fall, PARIS) == [
        "2024-10-27 00:00:00+0200",
        "2024-10-27 02:00:00+0200",
        "2024-10-27 04:00:00+0100",
    ]


# --- describe ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, zone, text",
    [
        ("0 * * * *", "UTC", "0 * * * *"),
        ("30 7 * * 1-5", "Europe/Paris", "30 7 * * 1-5 (Europe/Paris)"),
    ],
    ids=["utc", "paris"],
)
def test_describe(expression, zone, text):
    assert Schedule.parse(expression, zone).describe() == text


def test_every_duration_key_of_a_job_file_reads_decimals_and_compound_forms(tmp_path):
    """Each key that takes a duration goes through parse_duration, so each reads the new forms."""
    write_job(
        tmp_path,
        "up.yaml",
        "id: up\nname: Up\ntasks:\n  - id: t\n    command: 'true'\n",
    )
    write_job(
        tmp_path,
        "forms.yaml",
        """\
id: forms
name: Forms
schedule: "@every 1m30s"
catchup: latest
catchup_window: 1.5h
jitter: 0.5s
timeout: 1h 30m
depends_on: [{job: up, condition: within_window, window: 2d12h}]
tasks:
  - id: t
    command: "true"
    timeout: "0.5s"
    retry: {max_attempts: 2, delay: 250ms, backoff: 2, max_delay: 1m30s}
""",
    )
    job = load_jobs(str(tmp_path))["forms"]
    task = job.tasks[0]
    assert Schedule.parse(job.schedules[0].cron).every_secs == 90
    assert (job.catchup_window_secs, job.jitter_secs, job.timeout_secs) == (5400, 0.5, 5400)
    assert job.depends_on[0].window_secs == 216000
    assert (task.timeout_secs, task.retry.delay_secs, task.retry.max_delay_secs) == (0.5, 0.25, 90)
