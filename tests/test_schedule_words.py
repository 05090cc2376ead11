"""A job's schedule in words (core/schedule_words.py): every phrase the dashboard shows, the zone
suffix, and the raw cron for what has no phrase."""

from __future__ import annotations

import pytest

from petit.core.schedule_words import schedule_words


@pytest.mark.parametrize(
    "expression, words",
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("* * * * * *", "every second"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("0 */2 * * * *", "every 2 minutes"),
        ("15 * * * *", "every hour at :15"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("@hourly", "every hour at :00"),
        ("30 7 * * *", "every day at 07:30"),
        ("0 30 7 * * *", "every day at 07:30"),
        ("@daily", "every day at 00:00"),
        ("@midnight", "every day at 00:00"),
        ("30 7 * * 1-5", "at 07:30 on Monday to Friday"),
        ("30 7 * * mon-fri", "at 07:30 on Monday to Friday"),
        ("0 9 * * 1,3,5", "at 09:00 on Monday, Wednesday and Friday"),
        ("0 9 * * 6,0", "at 09:00 on Saturday and Sunday"),
        ("@weekly", "every Sunday at 00:00"),
        ("0 0 * * 7", "every Sunday at 00:00"),
        ("0 0 * * SUN", "every Sunday at 00:00"),
        ("@monthly", "on day 1 of every month at 00:00"),
        ("0 12 15 * *", "on day 15 of every month at 12:00"),
        ("@yearly", "every year on 1 January at 00:00"),
        ("0 0 25 dec *", "every year on 25 December at 00:00"),
        ("  */5   *  * * * ", "every 5 minutes"),
        ("@every 5m", "every 5 minutes"),
        ("@every 1m", "every minute"),
        ("@every 10s", "every 10 seconds"),
        ("@every 90m", "every 1h 30m"),
        ("@every 1h30m", "every 1h 30m"),
        ("@every 2d", "every 2 days"),
        ("@every 1500ms", "every 1s 500ms"),
        ("*/1 * * * *", "every minute"),
        ("0 */1 * * *", "every hour at :00"),
        ("0 */4 * * *", "every 4 hours at :00"),
        ("*/15 * * * * *", "every 15 seconds"),
        # ? is *
        ("0 9 ? * MON", "every Monday at 09:00"),
        ("0 9 1 * ?", "on day 1 of every month at 09:00"),
        ("0 0 * * MON-MON", "at 00:00 on Monday"),
        # the last day, the last weekday, the last or nth weekday of the month
        ("0 0 L * *", "on the last day of every month at 00:00"),
        ("0 18 LW * *", "on the last weekday of every month at 18:00"),
        ("0 0 * * 5L", "on the last Friday of every month at 00:00"),
        ("0 0 * * friL", "on the last Friday of every month at 00:00"),
        ("0 0 * * 5#2", "on the second Friday of every month at 00:00"),
        ("0 0 ? * 7#1", "on the first Sunday of every month at 00:00"),
        # both day fields restricted: either one fires (classic cron)
        ("0 0 1 * 1", "on day 1 of every month and every Monday at 00:00"),
        ("0 9 15 * 1-5", "on day 15 of every month and on Monday to Friday at 09:00"),
        # no phrase fits: the cron itself
        ("30 * * * * *", "cron 30 * * * * *"),
        ("0-30/5 9-17 * * *", "cron 0-30/5 9-17 * * *"),
        # a step that does not divide the hour or the day is no pace: */7 is :00 ... :56, :00
        ("*/7 * * * *", "cron */7 * * * *"),
        ("*/45 * * * * *", "cron */45 * * * * *"),
        ("0 */5 * * *", "cron 0 */5 * * *"),
        # one day field starting with * leaves the day to the other (AND): no phrase for these
        ("0 0 */2 * MON", "cron 0 0 */2 * MON"),
        ("0 0 1 * */2", "cron 0 0 1 * */2"),
        ("0 0 L * MON", "cron 0 0 L * MON"),
        ("0 0 L 2 *", "cron 0 0 L 2 *"),
        ("0 0 1 6 1", "cron 0 0 1 6 1"),
        ("0 0 * * 5#2,1", "cron 0 0 * * 5#2,1"),
        ("0 0 * * FRI-MON", "cron 0 0 * * FRI-MON"),
        ("0 0 * 6 *", "cron 0 0 * 6 *"),
        ("0 0 1 13 *", "cron 0 0 1 13 *"),
        ("0 25 * * *", "cron 0 25 * * *"),
        ("0 0 * * 8", "cron 0 0 * * 8"),
        ("0 0 * * 1-3-5", "cron 0 0 * * 1-3-5"),
        ("1 2 3", "cron 1 2 3"),
        ("@every soon", "cron @every soon"),
        ("@fortnightly", "cron @fortnightly"),
    ],
)
def test_phrases_in_utc(expression, words):
    assert schedule_words(expression, "UTC") == words


@pytest.mark.parametrize(
    "expression, zone, words",
    [
        ("30 7 * * *", "Europe/Paris", "every day at 07:30 (Europe/Paris)"),
        ("*/5 * * * *", "America/New_York", "every 5 minutes (America/New_York)"),
        ("0 0 1 * */2", "Asia/Tokyo", "cron 0 0 1 * */2 (Asia/Tokyo)"),
        # an interval keeps its pace in any zone: naming one would suggest otherwise
        ("@every 5m", "Europe/Paris", "every 5 minutes"),
        ("30 7 * * *", None, "every day at 07:30"),
    ],
)
def test_the_zone_is_named_unless_utc(expression, zone, words):
    assert schedule_words(expression, zone) == words


def test_unscheduled_is_none():
    assert schedule_words(None, "UTC") is None
