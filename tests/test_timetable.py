"""The timetable: which fires are due at `now`, in-process, with `now` always passed in (the clock
is never read or patched). Cron with 5 and 6 fields, `@every` phase, DST days, pause, reload,
disabled jobs, ties, how long the worker may sleep; catch-up after downtime (none, latest, all,
windows, DST), lists of schedules and jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from petit.core.model import Job, Task, Trigger
from petit.core.timing import CatchupPolicy, DropReason, ScheduleSpec
from petit.service.timetable import MAX_CATCHUP_RUNS, Dropped, Fire, Timetable


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def job(
    job_id: str,
    schedule: str | list[str] | None,
    timezone: str = "UTC",
    enabled: bool = True,
    **policies,
) -> Job:
    task = Task(id="t", name="t", command="true")
    expressions = [] if schedule is None else [schedule] if isinstance(schedule, str) else schedule
    return Job(
        id=job_id,
        name=job_id,
        tasks=(task,),
        schedules=tuple(ScheduleSpec(e, timezone) for e in expressions),
        enabled=enabled,
        **policies,
    )


def jobs(*items: Job) -> dict[str, Job]:
    return {item.id: item for item in items}


def loop(timetable: Timetable, start: datetime, end: datetime) -> list[Fire | Dropped]:
    """What the worker loop hands on between `start` and `end`: sleep for `next_wakeup`, then take
    what is due at the instant it wakes."""
    fires: list[Fire | Dropped] = []
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
    assert all(isinstance(fire, Fire) and fire.job_id == "j" for fire in fires)
    # each fire names the one after it, and the timetable holds that one next
    assert [fire.next_fire for fire in fires[:-1]] == expected[1:]
    assert timetable.next_fire_at("j") == fires[-1].next_fire


# --- missed fires --------------------------------------------------------------------------------

MISSED_CASES = [
    # (id, schedule, stored last fire, built at, late now, first missed, newest, older count, next)
    (
        "cron-runs-the-newest-of-four-missed",
        "*/10 * * * *",
        None,
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 1, 10, 10),
        utc(2024, 1, 1, 10, 40),
        3,
        utc(2024, 1, 1, 10, 50),
    ),
    (
        "every-keeps-its-phase-across-missed-intervals",
        "@every 10m",
        utc(2024, 1, 1, 9, 58),
        utc(2024, 1, 1, 10),
        utc(2024, 1, 1, 10, 45),
        utc(2024, 1, 1, 10, 8),
        utc(2024, 1, 1, 10, 38),
        3,
        utc(2024, 1, 1, 10, 48),  # 10:08 + 4 x 10m, not 10:45 + 10m
    ),
    (
        "every-without-a-stored-fire-counts-from-the-start",
        "@every 10m",
        None,
        utc(2024, 1, 1, 10, 1),
        utc(2024, 1, 1, 10, 35),
        utc(2024, 1, 1, 10, 11),
        utc(2024, 1, 1, 10, 31),
        2,
        utc(2024, 1, 1, 10, 41),
    ),
]


@pytest.mark.parametrize(
    "schedule, last_fire, built_at, late, first, newest, count, next_fire",
    [case[1:] for case in MISSED_CASES],
    ids=[case[0] for case in MISSED_CASES],
)
def test_a_late_call_runs_the_newest_fire_and_drops_the_older_ones(
    schedule, last_fire, built_at, late, first, newest, count, next_fire
):
    stored = {} if last_fire is None else {"j": last_fire}
    timetable = Timetable(jobs(job("j", schedule)), stored, built_at)
    # every fire from the first missed one up to the newest is said, as one span
    assert timetable.due(late) == [
        Dropped("j", first, DropReason.SUPERSEDED, next_fire, until=newest, count=count),
        Fire("j", newest, next_fire),
    ]
    assert timetable.due(late) == []  # nothing left over to replay
    assert timetable.next_fire_at("j") == next_fire


# --- pause ---------------------------------------------------------------------------------------

PAUSE_CASES = [
    # (id, schedule, built at, [(now, [(dropped fire, count)])], resumed at,
    #  [(dropped fire, count)] by the resume, next fire after resume)
    (
        "cron-fires-inside-the-pause-come-out-dropped",
        "*/10 * * * *",
        utc(2024, 1, 1, 10),
        [
            (utc(2024, 1, 1, 10, 10), [(utc(2024, 1, 1, 10, 10), 1)]),
            (utc(2024, 1, 1, 10, 25), [(utc(2024, 1, 1, 10, 20), 1)]),
        ],
        utc(2024, 1, 1, 10, 27),
        [],
        utc(2024, 1, 1, 10, 30),
    ),
    (
        # the worker never woke during the pause: the resume says what fell inside it
        "cron-resume-without-a-call-during-the-pause",
        "*/10 * * * *",
        utc(2024, 1, 1, 10),
        [],
        utc(2024, 1, 1, 10, 35),
        [(utc(2024, 1, 1, 10, 10), 2), (utc(2024, 1, 1, 10, 30), 1)],
        utc(2024, 1, 1, 10, 40),
    ),
    (
        "every-keeps-the-phase-of-the-fires-dropped-in-the-pause",
        "@every 10m",
        utc(2024, 1, 1, 10),
        [(utc(2024, 1, 1, 10, 10), [(utc(2024, 1, 1, 10, 10), 1)])],
        utc(2024, 1, 1, 10, 35),
        [(utc(2024, 1, 1, 10, 20), 1), (utc(2024, 1, 1, 10, 30), 1)],
        utc(2024, 1, 1, 10, 40),
    ),
]


def dropped_in_pause(items: list) -> list[tuple[datetime, int]]:
    assert all(isinstance(i, Dropped) and i.reason is DropReason.PAUSED for i in items), items
    return [(item.scheduled_at, item.count) for item in items]


@pytest.mark.parametrize(
    "schedule, built_at, paused_calls, resumed_at, resume_drops, next_fire",
    [case[1:] for case in PAUSE_CASES],
    ids=[case[0] for case in PAUSE_CASES],
)
def test_pause_then_resume_replays_nothing(
    schedule, built_at, paused_calls, resumed_at, resume_drops, next_fire
):
    timetable = Timetable(jobs(job("j", schedule, catchup=CatchupPolicy.ALL)), {}, built_at)
    timetable.pause()
    assert timetable.is_paused
    for now, expected in paused_calls:
        assert dropped_in_pause(timetable.due(now)) == expected
    assert dropped_in_pause(timetable.resume(resumed_at)) == resume_drops
    assert not timetable.is_paused
    assert timetable.next_fire_at("j") == next_fire
    assert timetable.due(resumed_at) == []
    assert timetable.due(next_fire) == [Fire("j", next_fire, next_fire + timedelta(minutes=10))]


def test_a_timetable_built_paused_drops_its_fires():
    timetable = Timetable(jobs(job("j", "*/10 * * * *")), {}, utc(2024, 1, 1, 10), paused=True)
    assert timetable.is_paused
    assert timetable.due(utc(2024, 1, 1, 10, 10)) == [
        Dropped("j", utc(2024, 1, 1, 10, 10), DropReason.PAUSED, utc(2024, 1, 1, 10, 20))
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
        Job(
            id="j",
            name="renamed",
            tasks=job("j", None).tasks,
            schedules=(ScheduleSpec("0 * * * *"),),
        ),
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


# --- catch-up after downtime ---------------------------------------------------------------------

DOWN_AT = utc(2024, 1, 1, 10, 0, 30)  # the ledger: the last fire handed out before the stop
UP_AT = utc(2024, 1, 1, 13, 5)  # the start after the downtime


def started(policy: CatchupPolicy, window_secs: float | None, schedule="0 * * * *", **more):
    """A timetable built at UP_AT for a job whose ledger says DOWN_AT, and its first due()."""
    timetable = Timetable(
        jobs(job("j", schedule, catchup=policy, catchup_window_secs=window_secs, **more)),
        {},
        UP_AT,
        handled={"j": DOWN_AT},
    )
    return timetable, timetable.due(UP_AT)


def test_catchup_none_starts_from_now_and_says_nothing_of_the_downtime():
    timetable, items = started(CatchupPolicy.NONE, None)
    assert items == []
    assert timetable.next_fire_at("j") == utc(2024, 1, 1, 14)


def test_catchup_latest_runs_the_most_recent_missed_fire_once():
    timetable, items = started(CatchupPolicy.LATEST, 86400)
    assert items == [
        Dropped(
            "j",
            utc(2024, 1, 1, 11),
            DropReason.SUPERSEDED,
            utc(2024, 1, 1, 14),
            until=utc(2024, 1, 1, 13),
            count=2,
        ),
        Fire("j", utc(2024, 1, 1, 13), utc(2024, 1, 1, 14), Trigger.CATCHUP),
    ]
    assert timetable.due(UP_AT) == []


def test_catchup_all_runs_every_missed_fire_oldest_first_as_catchup():
    timetable, items = started(CatchupPolicy.ALL, 86400)
    assert items == [
        Fire("j", utc(2024, 1, 1, hour), utc(2024, 1, 1, 14), Trigger.CATCHUP)
        for hour in (11, 12, 13)
    ]
    # the next one is an ordinary scheduled fire
    assert timetable.due(utc(2024, 1, 1, 14)) == [
        Fire("j", utc(2024, 1, 1, 14), utc(2024, 1, 1, 15), Trigger.SCHEDULE)
    ]


def test_catchup_window_bounds_how_far_back_and_says_what_fell_before_it():
    # 2h back from 13:05 is 11:05: the 11:00 fire is older than the window
    timetable, items = started(CatchupPolicy.ALL, 7200)
    assert items == [
        Dropped(
            "j",
            utc(2024, 1, 1, 11),
            DropReason.OUTSIDE_WINDOW,
            utc(2024, 1, 1, 12),
            until=utc(2024, 1, 1, 12),
            count=1,
        ),
        Fire("j", utc(2024, 1, 1, 12), utc(2024, 1, 1, 14), Trigger.CATCHUP),
        Fire("j", utc(2024, 1, 1, 13), utc(2024, 1, 1, 14), Trigger.CATCHUP),
    ]


def test_catchup_without_a_ledger_starts_from_now():
    timetable = Timetable(
        jobs(job("j", "0 * * * *", catchup=CatchupPolicy.ALL, catchup_window_secs=86400)),
        {},
        UP_AT,
    )
    assert timetable.due(UP_AT) == []
    assert timetable.next_fire_at("j") == utc(2024, 1, 1, 14)


def test_catchup_all_of_a_frequent_job_is_capped_and_says_the_rest():
    # every 2 seconds for 3 hours: 5,535 missed fires; the newest MAX_CATCHUP_RUNS run
    timetable, items = started(CatchupPolicy.ALL, 86400, schedule="*/2 * * * * *")
    dropped, fires = items[0], items[1:]
    assert len(fires) == MAX_CATCHUP_RUNS
    assert [f.scheduled_at for f in fires] == [
        UP_AT - timedelta(seconds=2 * n) for n in reversed(range(MAX_CATCHUP_RUNS))
    ]
    # the fire at the start instant itself is an ordinary one; the ones before it catch up
    assert fires[-1].trigger is Trigger.SCHEDULE
    assert all(f.trigger is Trigger.CATCHUP for f in fires[:-1])
    assert dropped.reason is DropReason.CATCHUP_LIMIT
    assert dropped.scheduled_at == DOWN_AT + timedelta(seconds=2)
    assert dropped.until == fires[0].scheduled_at
    total = int((UP_AT - DOWN_AT).total_seconds()) // 2
    assert dropped.count == total - MAX_CATCHUP_RUNS  # none lost, none counted twice


def test_a_year_of_missed_seconds_is_bounded_work_and_an_uncounted_span():
    ledger = UP_AT - timedelta(days=365)
    timetable = Timetable(
        jobs(
            job("j", "* * * * * *", catchup=CatchupPolicy.LATEST, catchup_window_secs=366 * 86400)
        ),
        {},
        UP_AT,
        handled={"j": ledger},
    )
    dropped, fire = timetable.due(UP_AT)
    assert fire.scheduled_at == UP_AT
    assert (dropped.scheduled_at, dropped.until) == (ledger + timedelta(seconds=1), UP_AT)
    assert dropped.reason is DropReason.SUPERSEDED and dropped.count is None  # "and more"


def test_a_catchup_fire_inside_a_pause_is_dropped_not_run():
    timetable = Timetable(
        jobs(job("j", "0 * * * *", catchup=CatchupPolicy.ALL, catchup_window_secs=86400)),
        {},
        UP_AT,
        paused=True,
        handled={"j": DOWN_AT},
    )
    items = timetable.due(UP_AT)
    assert dropped_in_pause(items) == [(utc(2024, 1, 1, 11), 2), (utc(2024, 1, 1, 13), 1)]
    assert timetable.resume(UP_AT + timedelta(minutes=1)) == []  # nothing left to replay


def test_the_ledger_of_runs_and_of_drops_agree_on_where_to_resume():
    # the runs' last fire (last_fires) is older than the drops' (handled): the newer one counts
    timetable = Timetable(
        jobs(job("j", "0 * * * *", catchup=CatchupPolicy.ALL, catchup_window_secs=86400)),
        {"j": utc(2024, 1, 1, 11)},
        UP_AT,
        handled={"j": utc(2024, 1, 1, 12)},
    )
    assert [f.scheduled_at for f in timetable.due(UP_AT)] == [utc(2024, 1, 1, 13)]


DST_CATCHUP_CASES = [
    # (id, schedule, zone, ledger, start, expected catch-up fires in UTC)
    (
        "new-york-spring-forward-daily-0230-once",
        "30 2 * * *",
        "America/New_York",
        utc(2024, 3, 9, 7, 30),  # Saturday 02:30 EST
        utc(2024, 3, 10, 12),
        [utc(2024, 3, 10, 7)],  # 03:00 EDT, right after the jump
    ),
    (
        "new-york-fall-back-daily-0130-once",
        "30 1 * * *",
        "America/New_York",
        utc(2024, 11, 2, 5, 30),
        utc(2024, 11, 3, 12),
        [utc(2024, 11, 3, 5, 30)],  # 01:30 EDT only
    ),
    (
        "paris-fall-back-hourly-every-real-hour",
        "0 * * * *",
        "Europe/Paris",
        utc(2024, 10, 26, 23),  # 01:00 CEST
        utc(2024, 10, 27, 2, 30),
        [utc(2024, 10, 27, 0), utc(2024, 10, 27, 1), utc(2024, 10, 27, 2)],  # 02:00 twice, 03:00
    ),
    (
        "paris-spring-forward-hourly-skips-the-missing-hour",
        "0 * * * *",
        "Europe/Paris",
        utc(2024, 3, 30, 23),  # 00:00 CET
        utc(2024, 3, 31, 2, 30),
        [utc(2024, 3, 31, 0), utc(2024, 3, 31, 1), utc(2024, 3, 31, 2)],  # 01:00 CET, 03:00, 04:00
    ),
]


@pytest.mark.parametrize(
    "schedule, zone, ledger, start, expected",
    [case[1:] for case in DST_CATCHUP_CASES],
    ids=[case[0] for case in DST_CATCHUP_CASES],
)
def test_catchup_across_dst_gives_each_wall_clock_fire_once(
    schedule, zone, ledger, start, expected
):
    timetable = Timetable(
        jobs(job("j", schedule, zone, catchup=CatchupPolicy.ALL, catchup_window_secs=86400 * 2)),
        {},
        start,
        handled={"j": ledger},
    )
    fires = timetable.due(start)
    assert [f.scheduled_at for f in fires] == expected
    assert all(isinstance(f, Fire) and f.trigger is Trigger.CATCHUP for f in fires)


# --- lists of schedules --------------------------------------------------------------------------


def test_a_list_of_schedules_fires_at_the_union_once_per_instant():
    # 09:00 and 17:00 on weekdays (Paris), and every 4 hours UTC: 08:00 UTC is 09:00 Paris
    both = job("j", None)
    both = Job(
        id="j",
        name="j",
        tasks=both.tasks,
        schedules=(
            ScheduleSpec("0 9,17 * * MON-FRI", "Europe/Paris"),
            ScheduleSpec("0 */4 * * *"),
        ),
    )
    start = utc(2024, 1, 8)  # a Monday, 01:00 in Paris
    fires = loop(Timetable(jobs(both), {}, start), start, utc(2024, 1, 9))
    assert [f.scheduled_at for f in fires] == [
        utc(2024, 1, 8, 4),
        utc(2024, 1, 8, 8),  # both schedules meet here: one fire
        utc(2024, 1, 8, 12),
        utc(2024, 1, 8, 16),  # 17:00 Paris and 16:00 UTC: one fire
        utc(2024, 1, 8, 20),
    ]


# --- jitter --------------------------------------------------------------------------------------


def test_jitter_delays_each_fire_by_its_own_draw_within_the_bound():
    start = utc(2024, 1, 1)
    timetable = Timetable(
        jobs(job("j", "*/5 * * * *", jitter_secs=30.0)), {}, start, rng=random.Random(7)
    )
    fires = [f for f in loop(timetable, start, utc(2024, 1, 1, 2, 1)) if isinstance(f, Fire)]
    assert len(fires) == 24
    # nominal times stay the schedule's; the delays are drawn per fire, within [0, 30]
    assert [f.scheduled_at for f in fires] == [
        start + timedelta(minutes=5 * n) for n in range(1, 25)
    ]
    delays = [f.jitter_secs for f in fires]
    assert all(0 <= d <= 30 for d in delays) and len(set(delays)) == len(delays)
    assert max(delays) > 15 and min(delays) < 15  # spread over the bound, not stuck at one end


def test_a_jittered_fire_is_due_only_once_its_delay_has_passed():
    start = utc(2024, 1, 1)
    timetable = Timetable(
        jobs(job("j", "*/5 * * * *", jitter_secs=60.0)), {}, start, rng=random.Random(1)
    )
    wait = timetable.next_wakeup(start)
    assert 300 <= wait <= 360
    assert timetable.due(start + timedelta(seconds=wait - 0.001)) == []
    (fire,) = timetable.due(start + timedelta(seconds=wait))
    assert fire.scheduled_at == utc(2024, 1, 1, 0, 5)
    assert fire.jitter_secs == pytest.approx(wait - 300)


def test_catchup_fires_are_not_jittered():
    timetable, items = started(CatchupPolicy.ALL, 86400, jitter_secs=600.0)
    assert [f.jitter_secs for f in items] == [0.0, 0.0, 0.0]


# --- what the review found -----------------------------------------------------------------------


def test_a_resume_while_running_hands_out_nothing():
    # a jittered fire past its nominal time but not due yet must not come out of a resume
    timetable = Timetable(
        jobs(job("j", "* * * * *", jitter_secs=20.0)), {}, BUILT, rng=random.Random(3)
    )
    assert timetable.resume(utc(2024, 1, 1, 10, 1, 0, 1)) == []
    (fire,) = loop(timetable, BUILT, utc(2024, 1, 1, 10, 1, 30))
    assert fire.scheduled_at == utc(2024, 1, 1, 10, 1)


def test_a_clock_stepped_back_never_hands_a_fire_out_twice():
    timetable = Timetable(jobs(job("j", "* * * * *")), {}, BUILT)
    timetable.pause()
    assert dropped_in_pause(timetable.due(utc(2024, 1, 1, 10, 6))) == [
        (utc(2024, 1, 1, 10, 1), 5),
        (utc(2024, 1, 1, 10, 6), 1),
    ]
    timetable.resume(utc(2024, 1, 1, 10, 2))  # the clock went back 4 minutes
    assert timetable.due(utc(2024, 1, 1, 10, 6)) == []
    assert timetable.next_fire_at("j") == utc(2024, 1, 1, 10, 7)


def test_a_jitter_longer_than_the_interval_is_held_under_half_the_gap():
    timetable = Timetable(
        jobs(job("j", "* * * * *", jitter_secs=90.0)), {}, BUILT, rng=random.Random(5)
    )
    items = loop(timetable, BUILT, utc(2024, 1, 1, 12, 0, 31))
    assert all(isinstance(i, Fire) for i in items), "a fire was superseded by its own jitter"
    assert len(items) == 120 and max(i.jitter_secs for i in items) <= 30
