"""Times in words: spans, "ago" and wall-clock times, with `now` passed in."""

from __future__ import annotations

import time

import pytest

from petit.core.text import ago, duration_words, wall_clock

MIN, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    "secs, words",
    [
        (0, "0ms"),
        (0.007, "7ms"),
        (0.9994, "999ms"),
        (0.9996, "1.0s"),  # to the millisecond first, then cut
        (2.3, "2.3s"),  # 2.3 * 1000 is 2299.99...: not "2.2s"
        (9.99, "9.9s"),
        (10, "10s"),
        (59.99, "59s"),
        (MIN, "1m"),
        (3 * MIN + 12, "3m 12s"),
        (HOUR - 1, "59m 59s"),
        (HOUR, "1h"),
        (3 * HOUR + 12 * MIN + 59, "3h 12m"),
        (14 * HOUR + 35 * MIN + 20, "14h 35m"),
        (DAY - 1, "23h 59m"),
        (DAY, "1d"),
        (2 * DAY + 3 * HOUR + 59 * MIN, "2d 3h"),
        (400 * DAY, "400d"),
        (-3, "0ms"),
    ],
    ids=repr,
)
def test_duration_words(secs, words):
    assert duration_words(secs) == words


@pytest.mark.parametrize(
    "before_secs, words",
    [
        (0, "just now"),
        (0.999, "just now"),
        (1, "1 sec ago"),
        (59.9, "59 sec ago"),
        (MIN, "1 min ago"),
        (3 * MIN + 59, "3 min ago"),
        (HOUR - 1, "59 min ago"),
        (HOUR, "1 hour ago"),
        (5 * HOUR + 59 * MIN, "5 hours ago"),
        (DAY, "1 day ago"),
        (40 * DAY, "40 days ago"),
        (-3 * MIN, "in 3 min"),  # the clock was set back
        (-0.5, "just now"),
    ],
    ids=repr,
)
def test_ago(before_secs, words):
    now_ms = 1_796_196_600_000
    assert ago(now_ms - before_secs * 1000, now_ms) == words


def test_wall_clock_in_a_zone_and_in_the_local_zone(monkeypatch):
    paris_morning = 1_796_196_600_000  # 2026-12-02 07:30:00 UTC
    assert wall_clock(paris_morning, "Europe/Paris", seconds=False) == "2026-12-02 08:30"
    assert wall_clock(paris_morning + 15_500, "UTC") == "2026-12-02 07:30:15"
    assert wall_clock(paris_morning + 15_500, "America/New_York") == "2026-12-02 02:30:15"
    # summer time: Paris is UTC+2 in July
    assert wall_clock(1_783_065_600_000, "Europe/Paris", seconds=False) == "2026-07-03 10:00"
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert wall_clock(paris_morning) == "2026-12-02 16:30:00"
    finally:
        monkeypatch.undo()
        time.tzset()
