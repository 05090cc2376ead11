"""The str enums of the model, each value spelled exactly as in YAML and JSON."""

from __future__ import annotations

from enum import Enum

from .text import short_repr


class TaskType(str, Enum):
    COMMAND = "command"
    SHELL = "shell"
    PYTHON = "python"


class Condition(str, Enum):
    ALL_SUCCESS = "all_success"
    ON_FAILURE = "on_failure"
    ALL_DONE = "all_done"
    ALWAYS = "always"


class DependencyCondition(str, Enum):
    LAST_SUCCESS = "last_success"
    LAST_COMPLETE = "last_complete"
    WITHIN_WINDOW = "within_window"


class Trigger(str, Enum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    CATCHUP = "catchup"  # a fire that fell while petit was down, run after the start


class RunStatus(str, Enum):
    QUEUED = "queued"  # waits for a free slot (overlap: queue); survives a restart
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING)

    @classmethod
    def named(cls, raw: str) -> RunStatus:
        """The status spelled `raw`; ValueError "must be one of ..., got ..." for anything else
        (a filter from a query string or the command line)."""
        try:
            return cls(raw)
        except ValueError:
            names = ", ".join(status.value for status in cls)
            raise ValueError(f"must be one of {names}, got {short_repr(raw, 40)}") from None


class TaskStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)
