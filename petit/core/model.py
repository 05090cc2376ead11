"""The data model: plain dataclasses and str enums spelled exactly as in YAML and JSON."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from enum import Enum


def now_ms() -> int:
    """Wall-clock now as epoch milliseconds (UTC), the unit every stored time uses."""
    return time.time_ns() // 1_000_000


class TaskType(str, Enum):
    COMMAND = "command"
    SHELL = "shell"
    PYTHON = "python"


class Condition(str, Enum):
    ALL_SUCCESS = "all_success"
    ON_FAILURE = "on_failure"
    ALL_DONE = "all_done"
    ALWAYS = "always"


class RetryCondition(str, Enum):
    ALWAYS = "always"
    TRANSIENT_ONLY = "transient_only"
    NEVER = "never"


class DependencyCondition(str, Enum):
    LAST_SUCCESS = "last_success"
    LAST_COMPLETE = "last_complete"
    WITHIN_WINDOW = "within_window"


class Trigger(str, Enum):
    MANUAL = "manual"
    SCHEDULE = "schedule"


class RunStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class TaskStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.RUNNING)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 0  # retries; total attempts = max_attempts + 1
    delay_secs: float = 0.0
    condition: RetryCondition = RetryCondition.ALWAYS


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    type: TaskType = TaskType.COMMAND
    command: str | None = None
    args: tuple[str, ...] = ()
    script: str | None = None
    inline: str | None = None
    depends_on: tuple[str, ...] = ()
    condition: Condition = Condition.ALL_SUCCESS
    retry: RetryPolicy = RetryPolicy()
    timeout_secs: float | None = None
    environment: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None


@dataclass(frozen=True)
class JobDependency:
    job_id: str
    condition: DependencyCondition = DependencyCondition.LAST_SUCCESS
    window_secs: float | None = None


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    tasks: tuple[Task, ...]
    description: str = ""
    schedule: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    max_concurrency: int | None = None
    config: dict = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[JobDependency, ...] = ()
    source: str = ""

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)


@dataclass
class TaskRun:
    task_id: str
    run_id: str
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    duration_ms: int | None = None
    timed_out: bool = False
    # pid + create time identify the process group leader for recovery kills;
    # the create time guards against killing a reused pid.
    pid: int | None = None
    pid_created: float | None = None

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TaskRun:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = TaskStatus(kwargs.get("status", "pending"))
        return cls(**kwargs)


@dataclass
class Run:
    id: str
    job_id: str
    seq: int
    trigger: Trigger = Trigger.MANUAL
    status: RunStatus = RunStatus.PENDING
    created_at: int = 0
    scheduled_at: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    tasks: list[TaskRun] = field(default_factory=list)

    def task(self, task_id: str) -> TaskRun:
        return next(t for t in self.tasks if t.task_id == task_id)

    def to_dict(self) -> dict:
        # hand-written rather than dataclasses.asdict: this runs on every coalesced write
        data = dict(self.__dict__)
        data["status"] = self.status.value
        data["trigger"] = self.trigger.value
        data["tasks"] = [task.to_dict() for task in self.tasks]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = RunStatus(kwargs.get("status", "pending"))
        kwargs["trigger"] = Trigger(kwargs.get("trigger", "manual"))
        kwargs["tasks"] = [TaskRun.from_dict(t) for t in data.get("tasks", [])]
        return cls(**kwargs)
