"""Catch-up at start stays bounded in time and memory whatever the window: the timetable built on
a ledger far in the past, and its first `due(now)`, in-process (no petit processes: this is the
work the worker does before its first fire). Each case reports its wall time and peak Python
memory (tracemalloc), and how many runs and dropped fires it hands out."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from petit.core.model import Job, Task
from petit.core.timing import CatchupPolicy, ScheduleSpec
from petit.service.timetable import Dropped, Fire, Timetable

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
# (name, schedule, policy, window, downtime, jobs)
CASES = (
    ("every second, all, 2h down", "* * * * * *", CatchupPolicy.ALL, 7200, 7200, 1),
    (
        "every second, latest, a year down",
        "* * * * * *",
        CatchupPolicy.LATEST,
        366 * 86400,
        365 * 86400,
        1,
    ),
    ("every minute, all, 1h down, 1,000 jobs", "* * * * *", CatchupPolicy.ALL, 86400, 3600, 1000),
    ("@every 250ms, all, 1 day down", "@every 250ms", CatchupPolicy.ALL, 86400, 86400, 1),
)


def _jobs(schedule: str, policy: CatchupPolicy, window: float, count: int) -> dict[str, Job]:
    task = (Task(id="t", name="t", command="true"),)
    return {
        f"j{n}": Job(
            id=f"j{n}",
            name=f"j{n}",
            tasks=task,
            schedules=(ScheduleSpec(schedule),),
            catchup=policy,
            catchup_window_secs=window,
        )
        for n in range(count)
    }


def bench_catchup() -> dict:
    results = {}
    for name, schedule, policy, window, downtime, count in CASES:
        jobs = _jobs(schedule, policy, window, count)
        ledger = {job_id: NOW - timedelta(seconds=downtime) for job_id in jobs}
        tracemalloc.start()
        started = time.perf_counter()
        timetable = Timetable(jobs, ledger, NOW, handled=ledger)
        items = timetable.due(NOW)
        secs = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        drops = [item for item in items if isinstance(item, Dropped)]
        results[name] = {
            "secs": round(secs, 3),
            "peak_mib": round(peak / 2**20, 2),
            "runs": sum(1 for item in items if isinstance(item, Fire)),
            "dropped_spans": len(drops),
            "dropped_fires": sum(d.count or 0 for d in drops),
            "uncounted_spans": sum(1 for d in drops if d.count is None),
        }
    return results


def catchup_rows(results: dict, speed: dict) -> list[tuple[str, str, str, str]]:
    """The table's rows: fire times per second (bench/schedule_speed.py), then one per case."""
    rows = [
        (f"next_fire: {name}", f"{r['fires_per_sec']:,} fires/s", "croniter: ~7,000/s", "")
        for name, r in speed.items()
    ]
    for name, r in results.items():
        dropped = f"{r['dropped_fires']:,}" + ("+" if r["uncounted_spans"] else "")
        rows.append(
            (
                f"catch-up at start: {name}",
                f"{r['secs'] * 1000:.0f} ms, peak {r['peak_mib']:.1f} MiB",
                "bounded",
                f"{r['runs']:,} runs, {dropped} dropped",
            )
        )
    return rows


if __name__ == "__main__":
    for case, figures in bench_catchup().items():
        print(f"{case}: {figures}")
