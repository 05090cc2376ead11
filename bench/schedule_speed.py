"""How many fire times a second Schedule.next_fire computes, one after the other from the last
one, as a catch-up over a long window does. In process, no service.

Each expression walks its fires from 2024-01-01 for at most ten years, then starts again, for
about a second, after a warm-up that finds the zone's offset changes of those years (petit finds
them once per zone and year, then keeps them). Returns per expression: fires a second, and the
median cost of one call in microseconds.
Usage: .venv/bin/python bench/schedule_speed.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from petit.core.schedule import Schedule  # noqa: E402

CASES = [
    ("* * * * * *", "UTC"),
    ("*/5 * * * *", "UTC"),
    ("0 9 * * MON-FRI", "Europe/Paris"),
    ("*/15 * * * *", "Australia/Lord_Howe"),
    ("0 0 L * *", "UTC"),
]
START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2034, 1, 1, tzinfo=UTC)
BATCH = 1000


def walk(schedule: Schedule, moment: datetime, count: int) -> datetime:
    """`count` successive fires from `moment`, back to START past END."""
    for _ in range(count):
        moment = schedule.next_fire(moment)
        if moment >= END:
            moment = START
    return moment


def schedule_speed(seconds_per_case: float = 1.0) -> dict[str, dict[str, float]]:
    results = {}
    for expression, zone in CASES:
        schedule = Schedule.parse(expression, zone)
        for year in range(START.year, END.year + 1):  # each year's offset changes, found once
            schedule.next_fire(datetime(year, 1, 1, tzinfo=UTC))
        batches: list[float] = []
        moment = START
        while sum(batches) < seconds_per_case:
            began = time.perf_counter()
            moment = walk(schedule, moment, BATCH)
            batches.append(time.perf_counter() - began)
        results[f"{expression} ({zone})"] = {
            "fires_per_sec": round(BATCH * len(batches) / sum(batches)),
            "median_call_us": round(statistics.median(batches) / BATCH * 1e6, 2),
        }
    return results


if __name__ == "__main__":
    print(json.dumps(schedule_speed(), indent=2))
