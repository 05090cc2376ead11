"""The timetable: which fires are due at `now`, in-process, with `now` always passed in (the clock
is never read or patched). Cron with 5 and 6 fields, `@every` phase, DST days, pause, reload,
disabled jobs, ties, and how long the worker may sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from petit.core.model import Job, Task
from petit.service.timetable import Fire, Timetable


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def job(job_id: str, schedule: str | None, timezone: str = "UTC", enabled: bool = True) -> Job:
    task = Task(id="t", name="t", command="true")
    return Job(
        id=job_id,
        name=job_id,
        tasks=(task,),
        schedule=schedule,
        timezone=timezone,
        enabled=enabled,
    )


def jobs(*items: Job) -> dict[str, Job]:
    return {item.id: item for item in items}


def loop(timetable: Timetable, start: datetime, end: datetime) -> list[Fire]:
    """What the worker loop hands on between `start` and `end`: sleep for `next_wakeup`, then take
    what is due at the instant it wakes."""
    fires: list[Fire] = []
    now = start
    while True:
        wait = timetable.next_wakeup(now)
        if wait is None or now + timedelta(seconds=wait) >= end:
            return fires
        now += timedelta(seconds=wait)
        fires.extend(timetable.due(now))


# --- fires seen by the loop ----------------------------------------------------------------------

LOOP_CASES = [
    # (id, schedule, zone, start, end, expected fires in UTC)
    (
        "5-fields-every-15-min",
        "*/15 * * * *",
        "UTC",
        utc(2024, 1, 1, 10, 7),
        utc(2024, 1, 1, 11, 1),
        [
            utc(2024, 1, 1, 10, 15),
            utc(2024, 1, 1, 10, 30),
            utc(2024, 1, 1, 10, 45),
            utc(2024, 1, 1, 11),
        ],
    ),
    (
        "6-fields-seconds-first-every-20s",
        "*/20 * * * * *",
        "UTC",
        utc(2024, 1, 1, 10, 0, 5),
        utc(2024, 1, 1, 10, 1, 1),
        [utc(2024, 1, 1, 10, 0, 20), utc(2024, 1, 1, 10, 0, 40), utc(2024, 1, 1, 10, 1)],
    ),
    (
        # seconds first: second 30 of minute 0 of every hour (seconds last would be 00:30 daily)
        "6-fields-second-30-of-each-hour",
        "30 0 * * * *",
        "UTC",
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 12),
        [utc(2024, 1, 1, 10, 0, 30), utc(2024, 1, 1, 11, 0, 30)],
    ),
    (
        "every-7m-from-the-start",
        "@every 7m",
        "UTC",
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 10, 22),
        [utc(2024, 1, 1, 10, 7), utc(2024, 1, 1, 10, 14), utc(2024, 1, 1, 10, 21)],
    ),
    # one local day each: a daily job fires once, never twice and never not at all
    (
        "new-york-spring-forward-0230-fires-at-0300-edt",
        "30 2 * * *",
        "America/New_York",
        utc(2024, 3, 10, 5),  # 00:00 EST
        utc(2024, 3, 11, 4),  # 00:00 EDT
        [utc(2024, 3, 10, 7)],
    ),
    (
        "new-york-fall-back-0130-fires-on-the-first-pass",
        "30 1 * * *",
        "America/New_York",
        utc(2024, 11, 3, 4),  # 00:00 EDT
        utc(2024, 11, 4, 5),  # 00:00 EST
        [utc(2024, 11, 3, 5, 30)],  # 01:30 EDT, not again at 01:30 EST
    ),
    (
        "paris-spring-forward-0230-fires-at-0300-cest",
        "30 2 * * *",
        "Europe/Paris",
        utc(2024, 3, 30, 23),  # 00:00 CET
        utc(2024, 3, 31, 22),  # 00:00 CEST
        [utc(2024, 3, 31, 1)],
    ),
    (
        "paris-fall-back-0230-fires-on-the-first-pass",
        "30 2 * * *",
        "Europe/Paris",
        utc(2024, 10, 26, 22),  # 00:00 CEST
        utc(2024, 10, 27, 23),  # 00:00 CET
        [utc(2024, 10, 27, 0, 30)],  # 02:30 CEST, not again at 02:30 CET
    ),
]


@pytest.mark.parametrize(
    "schedule, zone, start, end, expected",
    [case[1:] for case in LOOP_CASES],
    ids=[case[0] for case in LOOP_CASES],
)
def test_the_loop_sees_each_fire_once(schedule, zone, start, end, expected):
    timetable = Timetable(jobs(job("j", schedule, zone)), {}, start)
    fires = loop(timetable, start, end)
    assert [fire.scheduled_at for fire in fires] == expected
    assert all(fire.job_id == "j" and not fire.in_pause for fire in fires)
    # each fire names the one after it, and the timetable holds that one next
    assert [fire.next_fire for fire in fires[:-1]] == expected[1:]
    assert timetable.next_fire_at("j") == fires[-1].next_fire


# --- missed fires --------------------------------------------------------------------------------

MISSED_CASES = [
    # (id, schedule, stored last fire, built at, late now, expected scheduled_at, expected next)
    (
        "cron-fires-once-for-four-missed",
        "*/10 * * * *",
        None,
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 1, 10, 10),
        utc(2024, 1, 1, 10, 50),
    ),
    (
        "every-keeps-its-phase-across-missed-intervals",
        "@every 10m",
        utc(2024, 1, 1, 9, 58),
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 1, 10, 8),
        utc(2024, 1, 1, 10, 48),  # 10:08 + 4 x 10m, not 10:45 + 10m
    ),
    (
        "every-without-a-stored-fire-counts-from-the-start",
        "@every 10m",
        None,
        utc(2024, 1, 1, 10, 1),
        utc(2024, 1, 1, 10, 35),
        utc(2024, 1, 1, 10, 11),
        utc(2024, 1, 1, 10, 41),
    ),
]


@pytest.mark.parametrize(
    "schedule, last_fire, built_at, late, scheduled_at, next_fire",
    [case[1:] for case in MISSED_CASES],
    ids=[case[0] for case in MISSED_CASES],
)
def test_a_late_call_gives_one_fire_and_moves_past_now(
    schedule, last_fire, built_at, late, scheduled_at, next_fire
):
    stored = {} if last_fire is None else {"j": last_fire}
    timetable = Timetable(jobs(job("j", schedule)), stored, built_at)
    assert timetable.due(late) == [Fire("j", scheduled_at, next_fire)]
    assert timetable.due(late) == []  # nothing left over to replay
    assert timetable.next_fire_at("j") == next_fire


# --- pause ---------------------------------------------------------------------------------------

PAUSE_CASES = [
    # (id, schedule, built at, [(now, fires marked in_pause)], resumed at, next fire after resume)
    (
        "cron-fires-inside-the-pause-come-out-marked",
        "*/10 * * * *",
        utc(2024, 1, 1, 10),
        [
            (utc(2024, 1, 1, 10, 10), [utc(2024, 1, 1, 10, 10)]),
            (utc(2024, 1, 1, 10, 25), [utc(2024, 1, 1, 10, 20)]),
        ],
        utc(2024, 1, 1, 10, 27),
        utc(2024, 1, 1, 10, 30),
    ),
    (
        "cron-resume-without-a-call-during-the-pause",
        "*/10 * * * *",
        utc(2024, 1, 1, 10),
        [],
        utc(2024, 1, 1, 10, 35),
        utc(2024, 1, 1, 10, 40),
    ),
    (
        "every-keeps-the-phase-of-the-fire-dropped-in-the-pause",
        "@every 10m",
        utc(2024, 1, 1, 10),
        [(utc(2024, 1, 1, 10, 10), [utc(2024, 1, 1, 10, 10)])],
        utc(2024, 1, 1, 10, 35),
        utc(2024, 1, 1, 10, 40),
    ),
    (
        # the worker never woke during the pause: re-armed from the resume, nothing replayed
        "every-resume-without-a-call-during-the-pause",
        "@every 10m",
        utc(2024, 1, 1, 10),
        [],
        utc(2024, 1, 1, 10, 35),
        utc(2024, 1, 1, 10, 45),
    ),
]


@pytest.mark.parametrize(
    "schedule, built_at, paused_calls, resumed_at, next_fire",
    [case[1:] for case in PAUSE_CASES],
    ids=[case[0] for case in PAUSE_CASES],
)
def test_pause_then_resume_replays_nothing(schedule, built_at, paused_calls, resumed_at, next_fire):
    timetable = Timetable(jobs(job("j", schedule)), {}, built_at)
    timetable.pause()
    assert timetable.is_paused
    for now, expected in paused_calls:
        fires = timetable.due(now)
        assert [fire.scheduled_at for fire in fires] == expected
        assert all(fire.in_pause for fire in fires)
    timetable.resume(resumed_at)
    assert not timetable.is_paused
    assert timetable.next_fire_at("j") == next_fire
    assert timetable.due(resumed_at) == []
    fires = timetable.due(next_fire)
    assert [(fire.scheduled_at, fire.in_pause) for fire in fires] == [(next_fire, False)]


def test_a_timetable_built_paused_marks_its_fires():
    timetable = Timetable(jobs(job("j", "*/10 * * * *")), {}, utc(2024, 1, 1, 10), paused=True)
    assert timetable.is_paused
    assert timetable.due(utc(2024, 1, 1, 10, 10)) == [
        Fire("j", utc(2024, 1, 1, 10, 10), utc(2024, 1, 1, 10, 20), in_pause=True)
    ]


# --- reload --------------------------------------------------------------------------------------

BUILT = utc(2024, 1, 1, 10)
RELOADED = utc(2024, 1, 1, 10, 3)

RELOAD_CASES = [
    # (id, job before (None: absent), job after, stored last fires, next fire after the reload)
    (
        # re-arming from the reload would give 10:13: the unchanged job keeps 10:10
        "unchanged-every-keeps-its-next-fire",
        job("j", "@every 10m"),
        job("j", "@every 10m"),
        {},
        utc(2024, 1, 1, 10, 10),
    ),
    (
        "unchanged-cron-with-another-name-keeps-its-next-fire",
        job("j", "0 * * * *"),
        Job(id="j", name="renamed", tasks=job("j", None).tasks, schedule="0 * * * *"),
        {},
        utc(2024, 1, 1, 11),
    ),
    (
        "disabled-with-the-same-schedule-keeps-its-next-fire",
        job("j", "@every 10m"),
        job("j", "@every 10m", enabled=False),
        {},
        utc(2024, 1, 1, 10, 10),
    ),
    (
        "changed-expression-is-re-armed-from-the-reload",
        job("j", "@every 10m"),
        job("j", "@every 5m"),
        {},
        utc(2024, 1, 1, 10, 8),
    ),
    (
        "changed-zone-is-re-armed",
        job("j", "0 12 * * *"),
        job("j", "0 12 * * *", "Europe/Paris"),
        {},
        utc(2024, 1, 1, 11),  # 12:00 CET
    ),
    (
        "schedule-removed-leaves-no-fire",
        job("j", "@every 10m"),
        job("j", None),
        {},
        None,
    ),
    (
        "new-job-is-armed-from-the-reload",
        None,
        job("j", "@every 10m"),
        {},
        utc(2024, 1, 1, 10, 13),
    ),
    (
        "new-job-keeps-the-phase-of-its-stored-fire",
        None,
        job("j", "@every 10m"),
        {"j": utc(2024, 1, 1, 9, 55)},
        utc(2024, 1, 1, 10, 5),
    ),
]


@pytest.mark.parametrize(
    "before, after, stored, next_fire",
    [case[1:] for case in RELOAD_CASES],
    ids=[case[0] for case in RELOAD_CASES],
)
def test_reload_keeps_unchanged_fire_times(before, after, stored, next_fire):
    other = job("other", "*/5 * * * *")
    timetable = Timetable(jobs(other, *([before] if before else [])), stored, BUILT)
    timetable.reload(jobs(other, after), RELOADED)
    assert timetable.next_fire_at("j") == next_fire
    assert timetable.next_fire_at("other") == utc(2024, 1, 1, 10, 5)  # untouched


def test_a_job_removed_by_a_reload_is_never_due():
    timetable = Timetable(jobs(job("gone", "* * * * * *")), {}, BUILT)
    timetable.reload({}, RELOADED)
    assert timetable.next_fire_at("gone") is None
    assert timetable.due(RELOADED + timedelta(hours=1)) == []
    assert timetable.next_wakeup(RELOADED) is None


# --- disabled jobs -------------------------------------------------------------------------------


def test_a_disabled_job_never_fires_but_its_fire_time_moves_on():
    timetable = Timetable(jobs(job("off", "*/10 * * * *", enabled=False)), {}, BUILT)
    assert timetable.next_wakeup(BUILT) is None  # nothing to wake up for
    assert timetable.due(utc(2024, 1, 1, 10, 25)) == []
    assert timetable.next_fire_at("off") == utc(2024, 1, 1, 10, 30)


def test_a_disabled_job_does_not_fire_while_paused_either():
    timetable = Timetable(jobs(job("off", "*/10 * * * *", enabled=False)), {}, BUILT, paused=True)
    assert timetable.due(utc(2024, 1, 1, 10, 25)) == []
    assert timetable.next_fire_at("off") == utc(2024, 1, 1, 10, 30)


# --- several jobs at once ------------------------------------------------------------------------


def test_due_fires_come_earliest_first_then_by_job_id():
    # insertion order b, z, c, a: the order is the fire time, then the id, never the dict order
    timetable = Timetable(
        jobs(
            job("b", "0 * * * *"),
            job("z", "@every 50m"),
            job("c", "0 * * * *"),
            job("off", "0 * * * *", enabled=False),
            job("a", "0 * * * *"),
        ),
        {},
        BUILT,
    )
    fires = timetable.due(utc(2024, 1, 1, 11))
    assert [(fire.job_id, fire.scheduled_at) for fire in fires] == [
        ("z", utc(2024, 1, 1, 10, 50)),
        ("a", utc(2024, 1, 1, 11)),
        ("b", utc(2024, 1, 1, 11)),
        ("c", utc(2024, 1, 1, 11)),
    ]
    assert timetable.due(utc(2024, 1, 1, 11)) == []


# --- next wake-up --------------------------------------------------------------------------------

WAKEUP_CASES = [
    # (id, jobs, paused, now, expected seconds)
    ("no-jobs", [], False, BUILT, None),
    ("only-unscheduled-jobs", [job("manual", None)], False, BUILT, None),
    ("only-disabled-jobs", [job("off", "* * * * *", enabled=False)], False, BUILT, None),
    ("one-cron-job", [job("j", "*/10 * * * *")], False, utc(2024, 1, 1, 10, 8, 30), 90.0),
    (
        "the-earliest-of-several",
        [job("late", "0 * * * *"), job("soon", "@every 45s")],
        False,
        BUILT,
        45.0,
    ),
    (
        "a-disabled-earlier-job-is-ignored",
        [job("late", "*/10 * * * *"), job("off", "* * * * * *", enabled=False)],
        False,
        BUILT,
        600.0,
    ),
    ("overdue-means-now", [job("j", "*/10 * * * *")], False, utc(2024, 1, 1, 10, 20), 0.0),
    (
        "fractions-of-a-second",
        [job("j", "* * * * * *")],
        False,
        BUILT + timedelta(milliseconds=250),
        0.75,
    ),
    # paused: the worker still wakes, to log and report the fire it drops
    ("paused-still-wakes", [job("j", "*/10 * * * *")], True, BUILT, 600.0),
]


@pytest.mark.parametrize(
    "job_list, paused, now, expected",
    [case[1:] for case in WAKEUP_CASES],
    ids=[case[0] for case in WAKEUP_CASES],
)
def test_next_wakeup(job_list, paused, now, expected):
    timetable = Timetable(jobs(*job_list), {}, BUILT, paused=paused)
    assert timetable.next_wakeup(now) == expected
