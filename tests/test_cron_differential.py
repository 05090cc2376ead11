"""petit's cron evaluator against cronsim, an independent one that follows Debian cron: thousands
of seeded random expressions (every field form, 5 and 6 fields), from random instants in UTC and
around the daylight saving changes of zones with 1-hour, 30-minute and 2-hour shifts.

Both must agree on which expressions are valid and on every fire time. The differences that are
left are petit's documented policies (docs/jobs.md, "Differences from cronsim"); each one is
handled by one of the marked adjustments below, never by skipping a case. Deterministic: the seed
is fixed (PETIT_CRON_SEED overrides it, and a failure prints it). The soak variant (20x the
expressions) only runs with PETIT_SOAK=1."""

from __future__ import annotations

import functools
import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from petit.core.schedule import Schedule

pytestmark = pytest.mark.xdist_group("cpu")

SEED = int(os.environ.get("PETIT_CRON_SEED", "12"))
SOAK = os.environ.get("PETIT_SOAK") == "1"
EXPRESSIONS = 2500
SOAK_FACTOR = 20
FIRES = 15  # compared per start: at most this many, and no more than 3 past a day and 6 hours
# zones with 1-hour shifts both ways, Lord_Howe's 30 minutes, Troll's 2 hours, Chatham's +12:45,
# St_Johns' -3:30, and zones without DST today (Kolkata, Tehran since 2022, Sao_Paulo since 2019)
DST_ZONES = [
    "America/New_York",
    "Europe/Paris",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "Pacific/Chatham",
    "America/St_Johns",
    "Australia/Sydney",
    "Asia/Tehran",
    "America/Sao_Paulo",
]
ZONES = ["UTC", "Asia/Kolkata", *DST_ZONES]
# past rules from the tz database (the US rules changed in 2007), future ones from its TZ strings
YEARS = [1996, 2001, 2006, 2007, 2011, 2016, 2021, 2024, 2025, 2031, 2037, 2046, 2059]
FIELDS = [  # name, lowest, highest, names
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())),
    ("day-of-week", 0, 7, ("SUN MON TUE WED THU FRI SAT".split())),
]


# --- random expressions --------------------------------------------------------------------------


def word(rng: random.Random, field: tuple, value: int) -> str:
    """A value as a number or, where the field has names, sometimes as its name in any case."""
    name, low, _, names = field
    if names and rng.random() < 0.4 and value - (name == "month") < len(names):
        text = names[value - (name == "month")]
        return rng.choice([text, text.lower(), text.title()])
    return str(value)


def item(rng: random.Random, field: tuple) -> str:
    name, low, high, _ = field
    span = high - low + 1
    a, b = sorted(rng.randint(low, high) for _ in range(2))
    form = rng.random()
    if form < 0.35:
        return word(rng, field, a)
    if form < 0.5:
        return f"{word(rng, field, a)}-{word(rng, field, b)}"
    if form < 0.55:
        return f"{word(rng, field, a)}-{word(rng, field, a)}"  # a single-value range
    if form < 0.7:
        return f"*/{rng.randint(1, span)}"
    if form < 0.8:
        return f"{word(rng, field, a)}-{word(rng, field, b)}/{rng.randint(1, span)}"
    if form < 0.85:
        return f"{a}-{a}/{rng.randint(1, span)}"  # a single-value range with a step
    if form < 0.9:
        return f"{word(rng, field, a)}/{rng.randint(1, span)}"
    if name == "day-of-month":
        return rng.choice(["L", "LW", "l", str(a)])
    if name == "day-of-week":
        day = rng.randint(0, 7)
        return rng.choice([f"{day}L", f"{word(rng, field, day % 7)}#{rng.randint(1, 5)}"])
    return word(rng, field, a)


def field_text(rng: random.Random, field: tuple, star: float) -> str:
    name = field[0]
    if rng.random() < star:
        return "?" if name in ("day-of-month", "day-of-week") and rng.random() < 0.2 else "*"
    if name == "hour" and rng.random() < 0.1:
        return rng.choice(["0-23", "0-23/1", "*/1", "0-11,12-23"])  # all 24 hours, spelled out
    return ",".join(item(rng, field) for _ in range(rng.choice([1, 1, 1, 2, 3])))


def expression(rng: random.Random) -> str:
    # mostly sparse seconds and minutes, so that a few fires span a DST change
    stars = [0.1, 0.15, 0.35, 0.5, 0.6, 0.5]
    fields = [field_text(rng, field, star) for field, star in zip(FIELDS, stars)]
    if rng.random() < 0.6:
        return " ".join(fields[1:])
    if rng.random() < 0.6:
        fields[0] = str(rng.choice([0, 0, 15, 30, 59]))
    return " ".join(fields)


# what breaks a field, by the field's position in a 6-field line (None: any field)
BREAKERS = [
    (None, lambda low, high: f"{high}-{low}"),  # a range that wraps around
    (None, lambda low, high: str(high + 1)),
    (None, lambda low, high: "*/0"),
    (None, lambda low, high: f"{low}-"),
    (None, lambda low, high: f"{low},,{high}"),
    (None, lambda low, high: "R"),
    (None, lambda low, high: "H"),
    (None, lambda low, high: "H/5"),
    (None, lambda low, high: f"*-{high}"),
    (None, lambda low, high: "FUNDAY"),
    (0, lambda low, high: "L"),
    (1, lambda low, high: "?"),
    (2, lambda low, high: "5#2"),
    (3, lambda low, high: "15W"),
    (3, lambda low, high: "?,1"),
    (3, lambda low, high: "5L"),
    (4, lambda low, high: "JAN-FOO"),
    (5, lambda low, high: "1#6"),
    (5, lambda low, high: "L"),
    (5, lambda low, high: "1-5L"),
]


def broken_expression(rng: random.Random) -> str:
    fields = expression(rng).split()
    if len(fields) == 5:
        fields.insert(0, "0")
    position, breaker = rng.choice(BREAKERS)
    position = rng.randrange(6) if position is None else position
    fields[position] = breaker(*FIELDS[position][1:3])
    return " ".join(fields)


# --- when the zones change -----------------------------------------------------------------------


@functools.cache
def changes(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants of `year` where the zone's UTC offset changes: probes every 6 hours in UTC,
    then bisection (petit finds them another way)."""
    found = []
    moment, step = datetime(year, 1, 1, tzinfo=UTC), timedelta(hours=6)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year == year:
        probe = moment + step
        if probe.astimezone(zone).utcoffset() != offset:
            low, high = moment, probe
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            found.append(high.replace(microsecond=0))
            offset = probe.astimezone(zone).utcoffset()
        moment = probe
    return found


def start_near_change(rng: random.Random, zone: ZoneInfo) -> datetime:
    """An instant from a day before a change to two hours after it, often very close to it, at
    whole hours, minutes or seconds or anywhere in between."""
    found: list[datetime] = []
    while not found:
        found = changes(zone, rng.choice(YEARS))
    at = rng.choice(found)
    spread = rng.choice([26 * 3600, 3 * 3600, 300])
    moment = at + timedelta(seconds=rng.uniform(-spread, min(spread, 2 * 3600)))
    grain = rng.choice([3600, 60, 1, 0])
    if grain:
        moment = datetime.fromtimestamp(moment.timestamp() // grain * grain, UTC)
    return moment


def random_start(rng: random.Random) -> datetime:
    moment = datetime(rng.choice(YEARS), 1, 1, tzinfo=UTC)
    moment += timedelta(seconds=rng.randrange(366 * 86400))
    return moment + timedelta(microseconds=rng.choice([0, 0, rng.randrange(10**6)]))


# --- the two evaluators --------------------------------------------------------------------------


def petit_fires(schedule: Schedule, start: datetime, until: datetime, most: int) -> list:
    fires, moment = [], start
    while len(fires) < most:
        moment = schedule.next_fire(moment)
        if moment > until and len(fires) >= 3:
            break
        fires.append(moment)
    return fires


@functools.lru_cache(maxsize=64)
def for_cronsim(text: str) -> str:
    """The same expression in cronsim's dialect.
    Adjustment 1: cronsim has no `?`; it means `*`, day rule included.
    Adjustment 2: cronsim reads a single-value range with a step, `7-7/5`, as `7/5` (7 to the
    end, every 5th); petit, as cronie, as the range's one value, 7."""
    parts = text.split()
    fields = FIELDS if len(parts) == 6 else FIELDS[1:]
    return " ".join(
        "*"
        if part == "?" and field[0] in ("day-of-month", "day-of-week")
        else ",".join(single(field, item) for item in part.split(","))
        for field, part in zip(fields, parts)
    )


def single(field: tuple, item: str) -> str:
    match = re.fullmatch(r"(\w+)-(\w+)/\d+", item)
    if match and value(field, match[1]) == value(field, match[2]) is not None:
        return match[1]
    return item


def value(field: tuple, text: str) -> int | None:
    names = [name.lower() for name in field[3]]
    if text.lower() in names:
        return names.index(text.lower()) + (field[0] == "month")
    return int(text) if text.isdigit() else None


def cronsim_fires(text: str, zone: ZoneInfo, start: datetime, until: datetime, most: int) -> list:
    """cronsim's fires after `start`, as petit collects them (at most `most`, and past `until`
    only up to 3), with petit's DST policy applied the way cronsim itself applies policies."""
    # Adjustment 3: which DST handling applies. cronsim decides by spelling: a 5-field line whose
    # minute and hour do not start with `*` keeps wall-clock appointments (Debian's fixup),
    # anything else follows real time. petit decides by value: a cron whose hour field allows
    # all 24 hours follows real time, any other keeps appointments (6 fields, `*/2` hours and
    # `*/5 3` included; `0 0-23` follows real time like `0 *`). So cronsim is set to petit's.
    iterator = CronSim(for_cronsim(text), start.astimezone(zone))
    if len(iterator.hours) == 24:
        fires = real_time_fires(text, zone, start)
    else:
        if iterator.fixup_tz is None:
            iterator.fixup_tz, iterator.dt = zone, iterator.dt.replace(tzinfo=None)
        # Adjustment 4: keeping appointments, cronsim started in the second pass of a repeated
        # time walks that time's wall clock again from its first pass, before `start`.
        fires = (fire.astimezone(UTC) for fire in iterator if fire.astimezone(UTC) > start)
    found: list[datetime] = []
    for fire in fires:
        if len(found) >= most or (fire > until and len(found) >= 3):
            break
        found.append(fire)
    return found


def real_time_fires(text: str, zone: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """Every instant after `start` whose wall-clock time cronsim matches, walked one stretch of
    constant offset at a time.
    Adjustment 5: cronsim's own real-time walk adds real-time deltas to jump to the next minute
    or hour, which steps over wall times just after a 30-minute jump (on 2016-10-02 Lord_Howe
    jumps from 02:00 to 02:30: it never fires `32 * * * *` at 02:32), and it can loop forever
    around St_Johns' changes at 00:01. So cronsim only matches wall-clock times here, without a
    zone, and the test walks real time itself."""
    moment = start
    while True:
        offset = moment.astimezone(zone).utcoffset()
        change = next_change(zone, moment)
        wall = (moment + offset).replace(tzinfo=None)
        # a stretch's first instant may fire (cronsim yields strictly after its start)
        wall -= timedelta(seconds=1) if moment != start else timedelta(0)
        for match in CronSim(for_cronsim(text), wall):
            fire = (match - offset).replace(tzinfo=UTC)
            if fire >= change:
                break
            yield fire
        else:
            return
        moment = change


def next_change(zone: ZoneInfo, moment: datetime) -> datetime:
    """The next change after `moment`, or, with none this year or next, the start of the year
    after: the walk may start a stretch again anywhere."""
    for year in (moment.year, moment.year + 1):
        for change in changes(zone, year):
            if change > moment:
                return change
    return datetime(moment.year + 2, 1, 1, tzinfo=UTC)


def verdict(text: str, zone: ZoneInfo) -> str | None:
    """None if petit accepts the expression, else its error."""
    try:
        Schedule.parse(text, zone.key)
    except ValueError as exc:
        return str(exc)
    return None


def cronsim_accepts(text: str) -> bool:
    try:
        CronSim(for_cronsim(text), datetime(2024, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


def run_campaign(count: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    zones = {name: ZoneInfo(name) for name in ZONES}
    tally = dict.fromkeys(["expressions", "starts", "fires", "across a change", "never fire"], 0)
    for _ in range(count):
        text = expression(rng)
        zone = zones[rng.choice(ZONES)]
        refusal = verdict(text, zone)
        tally["expressions"] += 1
        if refusal is not None:
            # petit refuses only what can never fire, and cronsim refuses it too or never fires
            # it (it gives up after 50 years)
            assert "never fire" in refusal or not cronsim_accepts(text), (seed, text, refusal)
            if cronsim_accepts(text):
                start = datetime(2024, 1, 1, tzinfo=UTC)
                assert not cronsim_fires(text, zone, start, start, 1), (seed, text, refusal)
            tally["never fire"] += 1
            continue
        assert cronsim_accepts(text), (seed, text, "petit accepts it")
        schedule = Schedule.parse(text, zone.key)
        near = start_near_change if zone.key in DST_ZONES else lambda rng, zone: random_start(rng)
        for start in [random_start(rng), near(rng, zone), near(rng, zone)]:
            until = start + timedelta(days=1, hours=6)
            ours = petit_fires(schedule, start, until, most=FIRES)
            theirs = cronsim_fires(text, zone, start, until, most=FIRES)
            assert ours == theirs, (
                f"seed {seed}: {text!r} in {zone.key} after {start.isoformat()}\n"
                f"petit:   {[f.astimezone(zone).isoformat() for f in ours]}\n"
                f"cronsim: {[f.astimezone(zone).isoformat() for f in theirs]}"
            )
            tally["starts"] += 1
            tally["fires"] += len(ours)
            if ours and start.astimezone(zone).utcoffset() != ours[-1].astimezone(zone).utcoffset():
                tally["across a change"] += 1
    return tally


def test_petit_and_cronsim_refuse_the_same_broken_expressions():
    rng = random.Random(SEED)
    for _ in range(EXPRESSIONS // 5):
        text = broken_expression(rng)
        with pytest.raises(ValueError, match=r"invalid cron expression .*: [a-z-]+ field: "):
            Schedule.parse(text)
        assert not cronsim_accepts(text), (SEED, text)


@pytest.mark.timeout(60)
def test_petit_and_cronsim_agree_on_random_expressions():
    tally = run_campaign(EXPRESSIONS, SEED)
    print(f"cron differential, seed {SEED}: {tally}")
    # the campaign compared real work, a good part of it across daylight saving changes
    assert tally["starts"] > 2 * EXPRESSIONS and tally["across a change"] > EXPRESSIONS // 4


@pytest.mark.skipif(not SOAK, reason="soak variant: set PETIT_SOAK=1 (make soak)")
@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_petit_and_cronsim_agree_on_random_expressions_soak():
    tally = run_campaign(EXPRESSIONS * SOAK_FACTOR, SEED + 1)
    print(f"cron differential soak, seed {SEED + 1}: {tally}")
