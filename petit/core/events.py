"""What happened, as typed events: the engine publishes them at its state transitions, the
scheduler at dropped fires and pauses. A tiny synchronous bus delivers them to subscribers in
the publisher's thread. (Outside the worker they travel as the live stream's messages: see
service/forwarder.py.)"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

log = logging.getLogger("petit.events")


@dataclass(frozen=True)
class Event:
    """`at` is epoch milliseconds, like every stored time. `kind` names it in log lines."""

    kind: ClassVar[str] = ""
    at: int


@dataclass(frozen=True)
class RunCreated(Event):
    kind: ClassVar[str] = "run_created"
    run_id: str
    job_id: str
    trigger: str
    scheduled_at: int | None = None
    status: str = "pending"  # or "queued": it waits for a free slot
    jitter_ms: int | None = None  # the random delay its scheduled fire waited (job key `jitter`)


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_id: str
    job_id: str


@dataclass(frozen=True)
class RunEnded(Event):
    kind: ClassVar[str] = "run_ended"
    run_id: str
    job_id: str
    status: str
    error: str | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class TaskStarted(Event):
    kind: ClassVar[str] = "task_started"
    run_id: str
    job_id: str
    task_id: str
    attempt: int


@dataclass(frozen=True)
class TaskRetrying(Event):
    """An attempt failed and another one follows after `delay_secs`, at `next_attempt_at`
    (epoch ms)."""

    kind: ClassVar[str] = "task_retrying"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    error: str | None
    exit_code: int | None
    delay_secs: float
    next_attempt_at: int | None = None


@dataclass(frozen=True)
class TaskEnded(Event):
    """The task's final status (completed, failed or skipped); `attempt` is 0 for a skip.
    `cpu_secs` and `max_rss_bytes` are the task's totals over its attempts (None: not
    measured)."""

    kind: ClassVar[str] = "task_ended"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    status: str
    exit_code: int | None = None
    error: str | None = None
    cpu_secs: float | None = None
    max_rss_bytes: int | None = None


@dataclass(frozen=True)
class TaskOutput(Event):
    """Lines a task wrote to one stream (stdout or stderr), in order and without their newlines:
    the lines of one read, so a task printing millions of lines costs one event per read."""

    kind: ClassVar[str] = "task_output"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    stream: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class FireDropped(Event):
    kind: ClassVar[str] = "fire_dropped"
    job_id: str
    scheduled_at: int
    reason: str
    # a span of fires: every fire from scheduled_at up to (not including) until, `count` of
    # them (None: too many to count)
    until: int | None = None
    count: int | None = 1
    error: str | None = None


@dataclass(frozen=True)
class SchedulerPaused(Event):
    kind: ClassVar[str] = "scheduler_paused"


@dataclass(frozen=True)
class SchedulerResumed(Event):
    kind: ClassVar[str] = "scheduler_resumed"


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out in the publisher's thread. A subscriber that raises is logged and
    the others still get the event: a broken metrics counter must never stop a run."""

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers:  # a tuple: subscribing meanwhile is safe
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event.kind)
