"""When a job runs, in the model's words: its schedules, what happens to the fires that fell while
petit was down (catch-up), what a fire does when the job is busy (overlap), and why a fire did
not become a run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DEFAULT_MAX_QUEUED = 10
DEFAULT_LATEST_WINDOW_SECS = 86400.0


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule of a job: a cron line, shortcut or `@every`, and the zone it is read in."""

    cron: str
    timezone: str = "UTC"


class CatchupPolicy(str, Enum):
    """What happens, at start, to the fires that fell while petit was down."""

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


class OverlapPolicy(str, Enum):
    """What a scheduled fire does when the job is at its max_concurrency."""

    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"
    ALLOW = "allow"


class DropReason(str, Enum):
    """Why a scheduled fire did not become a run (a FireDropped event's and a drop record's
    `reason`)."""

    PAUSED = "paused"
    SHUTTING_DOWN = "shutting_down"
    UNKNOWN_JOB = "unknown_job"
    MAX_CONCURRENCY = "max_concurrency"
    MAX_JOBS = "max_jobs"
    MAX_QUEUED = "max_queued"
    DEPENDENCY = "dependency"
    ERROR = "error"  # the run could not be created (the store refused the write)
    # the catch-up policy's own choices
    OUTSIDE_WINDOW = "outside_catchup_window"
    SUPERSEDED = "superseded"  # an older missed fire of a job that runs only the latest
    CATCHUP_LIMIT = "catchup_limit"  # more missed fires than catch-up runs at once
