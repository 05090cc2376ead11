"""The data model: plain dataclasses and str enums spelled exactly as in YAML and JSON."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, fields
from typing import Protocol

from ..errors import InvalidTransition
from .enums import (  # the model's vocabulary, imported from here by most of petit
    Condition,
    DependencyCondition,
    RunStatus,
    TaskStatus,
    TaskType,
    Trigger,
)
from .hooks import Hook, Webhook
from .params import ParamSpec, masked_params
from .retry import FailedAttempt, RetryPolicy
from .timing import DEFAULT_MAX_QUEUED, CatchupPolicy, OverlapPolicy, ScheduleSpec
from .usage import USAGE_KEYS, usage_totals


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    # read back for every stored run and task: dataclasses.fields() costs more than the rest
    return frozenset(f.name for f in fields(cls))


# Why a run's unfinished tasks ended, when a stop ended it (also the run's own error).
CANCELLED = "cancelled"
INTERRUPTED = "run was interrupted"


def now_ms() -> int:
    """Wall-clock now as epoch milliseconds (UTC), the unit every stored time uses."""
    return time.time_ns() // 1_000_000


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
    # the job fires at the union of their times, once per instant; () = manual triggers only
    schedules: tuple[ScheduleSpec, ...] = ()
    enabled: bool = True
    max_concurrency: int | None = None
    catchup: CatchupPolicy = CatchupPolicy.NONE
    catchup_window_secs: float | None = None  # None with catchup none
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    max_queued: int = DEFAULT_MAX_QUEUED
    jitter_secs: float | None = None
    timeout_secs: float | None = None  # the whole run's limit
    config: dict = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    params: tuple[ParamSpec, ...] = ()
    depends_on: tuple[JobDependency, ...] = ()
    hooks: tuple[Hook, ...] = ()  # on_success / on_failure / on_finish
    notify: tuple[Webhook, ...] = ()
    source: str = ""

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)

    @property
    def scheduled(self) -> bool:
        return bool(self.schedules)


class AttemptOutcome(FailedAttempt, Protocol):
    """What the model reads from an attempt's result (execution's AttemptResult is one). It
    may also carry `cpu_secs` and `max_rss_bytes`, what the attempt used; one that does not
    (or has None) was not measured."""

    ended_at: int


@dataclass
class TaskRun:
    """One task of one run. Its status changes only through the methods below, one per edge;
    an edge the model does not know raises InvalidTransition (a bug in petit)."""

    task_id: str
    run_id: str
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    duration_ms: int | None = None
    # totals over the attempts: CPU seconds summed, peak memory the max (None: none measured)
    cpu_secs: float | None = None
    max_rss_bytes: int | None = None
    timed_out: bool = False
    next_attempt_at: int | None = None  # while a retry waits: when it starts
    # The runner's opaque, JSON-serialisable handle on the attempt in flight, for recovery
    # after a crash (the local runner's: {"runner": "local", "pid": ..., "created": ...});
    # None while no attempt is in flight.
    handle: dict | None = None
    outputs: dict[str, str] | None = None  # what it wrote to PETIT_OUTPUT, once completed
    # One dict per attempt, oldest first (see _attempt_entry). An entry is replaced, never
    # changed in place, so a writer thread copying the list never sees half an update.
    attempt_history: list[dict] = field(default_factory=list)

    def start_attempt(self, now: int) -> None:
        # PENDING -> RUNNING (a first attempt, or a retry once its delay is over)
        self._move((TaskStatus.PENDING,), TaskStatus.RUNNING)
        self.attempts += 1
        if self.started_at is None:
            self.started_at = now
        # a retry is running again: the previous attempt's end no longer describes the task
        self.ended_at = self.duration_ms = self.exit_code = self.error = self.handle = None
        self.next_attempt_at, self.timed_out = None, False
        self.attempt_history.append(_attempt_entry(self.attempts, now))

    def attach(self, handle: dict | None) -> None:
        """Record the runner's handle on the attempt that just started (status stays RUNNING)."""
        self.handle = handle

    def wait_for_retry(self, result: AttemptOutcome, now: int, delay_ms: int) -> None:
        # RUNNING -> PENDING: the attempt failed and another one follows after the delay
        self._move((TaskStatus.RUNNING,), TaskStatus.PENDING)
        self._record(result)
        self.attempt_history[-1] = {**self.attempt_history[-1], "retry_delay_ms": delay_ms}
        self.next_attempt_at = now + delay_ms

    def finish(self, result: AttemptOutcome, outputs: dict[str, str] | None = None) -> None:
        # RUNNING -> COMPLETED (with the `outputs` it wrote), RUNNING -> FAILED: the attempt's
        # error says which
        failed = result.error is not None
        self._move((TaskStatus.RUNNING,), TaskStatus.FAILED if failed else TaskStatus.COMPLETED)
        self._record(result)
        self.outputs = None if failed else dict(outputs or {})

    def skip(self, reason: str) -> None:
        # PENDING -> SKIPPED: never started (its condition is false, or the run ended first)
        if self.attempts:
            raise InvalidTransition(self._what(), "pending (retrying)", TaskStatus.SKIPPED.value)
        self._move((TaskStatus.PENDING,), TaskStatus.SKIPPED)
        self.error = reason

    def abandon(self, error: str, now: int) -> None:
        # RUNNING -> FAILED, PENDING (awaiting a retry) -> FAILED: the run ended without the
        # attempt's result (stopped, crashed, or an attempt that never reported)
        if not self.attempts:
            raise InvalidTransition(self._what(), self.status.value, TaskStatus.FAILED.value)
        self._move((TaskStatus.RUNNING, TaskStatus.PENDING), TaskStatus.FAILED)
        self.error = error
        self.ended_at = now
        self.duration_ms = now - (self.started_at or now)
        self.handle = self.next_attempt_at = None
        if self._has_open_attempt():
            self._end_attempt(None, False, error, now)

    def interrupt(self, reason: str | None, now: int) -> None:
        """What the end of its run does to an unfinished task: one that had an attempt is
        abandoned, one that never started is skipped. Without a reason (a run ended by a bug)
        each keeps what it knows."""
        if self.attempts:
            self.abandon(reason or self.error or "did not finish", now)
        else:
            self.skip(reason or "not reached")

    def _has_open_attempt(self) -> bool:
        """Whether the newest attempt started and has not ended: it is in flight."""
        return bool(self.attempt_history) and self.attempt_history[-1]["ended_at"] is None

    def _record(self, result: AttemptOutcome) -> None:
        self.exit_code = result.exit_code
        self.timed_out = result.timed_out
        self.error = result.error
        self.ended_at = result.ended_at
        self.duration_ms = result.ended_at - (self.started_at or result.ended_at)
        self.handle = None  # also while a retry waits: recovery must not aim at a finished attempt
        if self._has_open_attempt():
            used = {key: getattr(result, key, None) for key in USAGE_KEYS}
            self._end_attempt(
                result.exit_code, result.timed_out, result.error, result.ended_at, used
            )

    def _end_attempt(
        self,
        exit_code: int | None,
        timed_out: bool,
        error: str | None,
        now: int,
        used: dict | None = None,
    ) -> None:
        last = self.attempt_history[-1]
        started = last["started_at"] if last["started_at"] is not None else now
        self.attempt_history[-1] = {
            **last,
            "ended_at": now,
            "duration_ms": now - started,
            "exit_code": exit_code,
            "timed_out": timed_out,
            "error": error,
            **(used or {}),
        }
        history = self.attempt_history  # entries stored before accounting lack the keys
        self.cpu_secs, self.max_rss_bytes = usage_totals(
            [entry.get("cpu_secs") for entry in history],
            [entry.get("max_rss_bytes") for entry in history],
        )

    def _move(self, allowed: tuple[TaskStatus, ...], to: TaskStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(self._what(), self.status.value, to.value)
        self.status = to

    def _what(self) -> str:
        return f"task '{self.task_id}' of run '{self.run_id}'"

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["status"] = self.status.value
        data["attempt_history"] = list(self.attempt_history)  # a snapshot, not the live list
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TaskRun:
        known = _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = TaskStatus(kwargs.get("status", "pending"))
        if "handle" not in data and data.get("pid"):
            # written before runners had handles: only the local runner existed then
            kwargs["handle"] = {
                "runner": "local",
                "pid": data["pid"],
                "created": data.get("pid_created"),
            }
        if "attempt_history" in data:
            history = data["attempt_history"]
            if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
                raise ValueError("attempt_history is not a list of objects")
            # an entry stored by an older petit lacks the keys added since: they read as unset
            kwargs["attempt_history"] = [
                {**_attempt_entry(entry.get("attempt"), entry.get("started_at")), **entry}
                for entry in history
            ]
        else:
            kwargs["attempt_history"] = _history_before_it_was_kept(kwargs)
        return cls(**kwargs)


def _attempt_entry(attempt: int, started_at: int | None) -> dict:
    return {
        "attempt": attempt,
        "started_at": started_at,
        "ended_at": None,
        "duration_ms": None,
        "exit_code": None,
        "timed_out": False,
        "error": None,
        "cpu_secs": None,
        "max_rss_bytes": None,
        "retry_delay_ms": None,  # the delay chosen after this attempt failed, if one followed
    }


def _history_before_it_was_kept(task: dict) -> list[dict]:
    """A record written before attempts were kept knows only the task's span and its latest
    attempt's outcome: one entry that covers the span, numbered as the latest attempt."""
    if not task.get("attempts"):
        return []
    entry = _attempt_entry(task["attempts"], task.get("started_at"))
    if task.get("ended_at") is not None:
        entry.update(
            ended_at=task["ended_at"],
            duration_ms=task.get("duration_ms"),
            exit_code=task.get("exit_code"),
            timed_out=bool(task.get("timed_out")),
            error=task.get("error"),
        )
    return [entry]


@dataclass
class Run:
    """One run of one job; like TaskRun, its status changes only through its methods."""

    id: str
    job_id: str
    seq: int
    trigger: Trigger = Trigger.MANUAL
    status: RunStatus = RunStatus.PENDING
    created_at: int = 0
    scheduled_at: int | None = None
    jitter_ms: int | None = None  # the random delay of a scheduled fire (job key `jitter`)
    params: dict = field(default_factory=dict)  # name -> value, defaults filled in
    # the params its job declared `secret: true` when it was created: the tasks get their
    # values, every view shows "***" (shown_params)
    secret_params: tuple[str, ...] = ()
    started_at: int | None = None
    ended_at: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    # totals over its tasks, set when it ends: CPU seconds summed, peak memory the max
    cpu_secs: float | None = None
    max_rss_bytes: int | None = None
    tasks: list[TaskRun] = field(default_factory=list)
    hooks: list[dict] = field(default_factory=list)  # after the end: see core/hooks.py
    notifications: list[dict] = field(default_factory=list)

    def task(self, task_id: str) -> TaskRun:
        return next(t for t in self.tasks if t.task_id == task_id)

    @property
    def shown_params(self) -> dict:
        """Its params as every view shows them: a secret one's value masked."""
        return masked_params(self.params, self.secret_params)

    def dequeue(self) -> None:
        # QUEUED -> PENDING: a slot freed, the run starts now
        self._move((RunStatus.QUEUED,), RunStatus.PENDING)

    def start(self, now: int) -> None:
        # PENDING -> RUNNING
        self._move((RunStatus.PENDING,), RunStatus.RUNNING)
        self.started_at = now

    def finish(self, now: int, error: str | None = None) -> None:
        # RUNNING -> COMPLETED when no task failed; RUNNING -> FAILED when one did, or when
        # `error` (a bug inside petit) cut the run short
        self._end((RunStatus.RUNNING,), RunStatus.COMPLETED, None, now)
        failed = [t.task_id for t in self.tasks if t.status is TaskStatus.FAILED]
        if failed or error:
            self.status = RunStatus.FAILED
            self.error = error or f"failed tasks: {', '.join(failed)}"

    def cancel(self, now: int, reason: str = CANCELLED) -> None:
        # RUNNING -> CANCELLED; QUEUED -> CANCELLED (it never started: every task is skipped)
        self._end((RunStatus.QUEUED, RunStatus.RUNNING), RunStatus.CANCELLED, reason, now)

    def time_out(self, now: int, error: str) -> None:
        # RUNNING -> FAILED: the run outlived its job's timeout; a task with an attempt fails
        # with `error`, one never started is skipped
        self._end((RunStatus.RUNNING,), RunStatus.FAILED, error, now)

    def interrupt(self, reason: str, now: int) -> None:
        # RUNNING -> INTERRUPTED (shutdown), PENDING -> INTERRUPTED (found after a crash)
        self._end((RunStatus.PENDING, RunStatus.RUNNING), RunStatus.INTERRUPTED, reason, now)

    def _end(
        self, allowed: tuple[RunStatus, ...], to: RunStatus, reason: str | None, now: int
    ) -> None:
        never_started = self.status is RunStatus.QUEUED
        self._move(allowed, to)
        for task in self.tasks:
            if not task.status.is_terminal:
                task.interrupt(reason, now)
        self.error = reason
        self.ended_at = now
        self.cpu_secs, self.max_rss_bytes = usage_totals(
            [task.cpu_secs for task in self.tasks], [task.max_rss_bytes for task in self.tasks]
        )
        # a queued run that never started has no duration: its wait is not work
        self.duration_ms = (
            None if never_started else now - (self.started_at or self.created_at or now)
        )

    def _move(self, allowed: tuple[RunStatus, ...], to: RunStatus) -> None:
        if self.status not in allowed:
            raise InvalidTransition(f"run '{self.id}'", self.status.value, to.value)
        self.status = to

    def to_dict(self) -> dict:
        # hand-written rather than dataclasses.asdict: this runs on every coalesced write
        data = dict(self.__dict__)
        data["status"] = self.status.value
        data["trigger"] = self.trigger.value
        data["secret_params"] = list(self.secret_params)
        data["tasks"] = [task.to_dict() for task in self.tasks]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Run:
        known = _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["status"] = RunStatus(kwargs.get("status", "pending"))
        kwargs["trigger"] = Trigger(kwargs.get("trigger", "manual"))
        secret = data.get("secret_params", ())  # a record from before secret params has none
        if not isinstance(secret, (list, tuple)) or not all(isinstance(n, str) for n in secret):
            raise ValueError("secret_params is not a list of names")
        kwargs["secret_params"] = tuple(secret)
        kwargs["tasks"] = [TaskRun.from_dict(t) for t in data.get("tasks", [])]
        return cls(**kwargs)
