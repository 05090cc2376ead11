"""The job keys that say when a job runs and for how long: its schedules, catch-up after downtime,
what a fire does when the job is busy, the jitter of its fires and the whole run's timeout."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.schedule import Schedule
from ..core.timing import (
    DEFAULT_LATEST_WINDOW_SECS,
    DEFAULT_MAX_QUEUED,
    CatchupPolicy,
    OverlapPolicy,
    ScheduleSpec,
)
from .fields import Problems, check_unknown_keys, read_choice, read_count, read_seconds

SCHEDULE_KEYS = {"cron", "timezone"}
TIMING_KEYS = {
    "schedule",
    "catchup",
    "catchup_window",
    "catchup_window_secs",
    "overlap",
    "max_queued",
    "jitter",
    "jitter_secs",
    "timeout",
    "timeout_secs",
}
MAX_SCHEDULES = 100
MAX_QUEUED_LIMIT = 10_000
_SCHEDULE_SHAPE = (
    "expected a cron string, a map {cron: '...', timezone: 'Area/City'} or a list of them"
)


@dataclass(frozen=True)
class Timing:
    schedules: tuple[ScheduleSpec, ...] = ()
    catchup: CatchupPolicy = CatchupPolicy.NONE
    catchup_window_secs: float | None = None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    max_queued: int = DEFAULT_MAX_QUEUED
    jitter_secs: float | None = None
    timeout_secs: float | None = None


def read_timing(problems: Problems, data: dict) -> Timing:
    """Every timing key of a job map, each problem recorded; defaults where a value is unusable."""
    schedules = _schedules(problems, data.get("schedule"))
    catchup = read_choice(
        problems, CatchupPolicy, data.get("catchup"), "catchup", CatchupPolicy.NONE
    )
    window = read_seconds(problems, data, "catchup_window_secs", "catchup_window")
    given_window = "catchup_window" in data or "catchup_window_secs" in data
    if catchup is not CatchupPolicy.NONE and "schedule" not in data:
        problems.add(f"catchup: {catchup.value} only applies to a job with a schedule")
    if catchup is CatchupPolicy.NONE and given_window:
        problems.add("catchup_window: only applies with catchup latest or all")
        window = None
    elif catchup is CatchupPolicy.ALL and not given_window:
        problems.add(
            "catchup_window: required with catchup all (how far back to run missed fires), "
            "like '2h'"
        )
    elif catchup is CatchupPolicy.LATEST and window is None and not given_window:
        window = DEFAULT_LATEST_WINDOW_SECS
    overlap = read_choice(
        problems, OverlapPolicy, data.get("overlap"), "overlap", OverlapPolicy.SKIP
    )
    max_queued = read_count(problems, data, "max_queued", MAX_QUEUED_LIMIT, DEFAULT_MAX_QUEUED)
    jitter = read_seconds(problems, data, "jitter_secs", "jitter", allow_zero=True)
    if ("jitter" in data or "jitter_secs" in data) and "schedule" not in data:
        problems.add("jitter: only applies to a job with a schedule")
    return Timing(
        schedules=schedules,
        catchup=catchup,
        catchup_window_secs=window if catchup is not CatchupPolicy.NONE else None,
        overlap=overlap,
        max_queued=max_queued,
        jitter_secs=jitter or None,
        timeout_secs=read_seconds(problems, data, "timeout_secs", "timeout"),
    )


def _schedules(problems: Problems, value) -> tuple[ScheduleSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        spec = _one_schedule(problems, value, "schedule")
        return () if spec is None else (spec,)
    if not value:
        problems.add(f"schedule: the list is empty: {_SCHEDULE_SHAPE}")
        return ()
    if len(value) > MAX_SCHEDULES:
        problems.add(f"schedule: {len(value)} schedules is more than the limit of {MAX_SCHEDULES}")
        return ()
    specs = [_one_schedule(problems, item, f"schedule[{i}]") for i, item in enumerate(value)]
    if any(spec is None for spec in specs):
        return ()
    if len(specs) > 1:
        for i, spec in enumerate(specs):
            if " ".join(spec.cron.split()).startswith("@every"):
                # @every counts from the job's previous fire, which another schedule may set
                problems.add(
                    f"schedule[{i}]: '@every' cannot be combined with other schedules: give it "
                    "alone, or write the interval as a cron expression"
                )
                return ()
    return tuple(specs)


def _one_schedule(problems: Problems, value, field: str) -> ScheduleSpec | None:
    expression, zone = value, "UTC"
    if isinstance(value, dict):
        check_unknown_keys(problems, value, SCHEDULE_KEYS, field)
        expression, zone = value.get("cron"), value.get("timezone", "UTC")
    if not isinstance(expression, str) or not isinstance(zone, str):
        problems.add(f"{field}: {_SCHEDULE_SHAPE}")
        return None
    try:
        Schedule.parse(expression, zone)
    except ValueError as exc:
        problems.add(f"{field}: {exc}")
        return None
    return ScheduleSpec(expression, zone)
