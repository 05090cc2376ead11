"""What happened, as typed events: the engine publishes them at its state transitions, the
scheduler at fires and pauses, the supervisor at restarts. A tiny synchronous bus delivers them
to subscribers in the publisher's thread; `to_wire` / `from_wire` carry them across processes
as plain dicts (what a multiprocessing queue can take)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

log = logging.getLogger("petit.events")


@dataclass(frozen=True)
class Event:
    """`at` is epoch milliseconds, like every stored time. `kind` is the wire name."""

    kind: ClassVar[str] = ""
    at: int

    def to_wire(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class RunCreated(Event):
    kind: ClassVar[str] = "run_created"
    run_id: str
    job_id: str
    trigger: str
    scheduled_at: int | None = None


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
    """An attempt failed and another one follows after `delay_secs`."""

    kind: ClassVar[str] = "task_retrying"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    error: str | None
    exit_code: int | None
    delay_secs: float


@dataclass(frozen=True)
class TaskEnded(Event):
    """The task's final status (completed, failed or skipped); `attempt` is 0 for a skip."""

    kind: ClassVar[str] = "task_ended"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    status: str
    exit_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class TaskOutput(Event):
    """One line a task wrote (without its newline); `stream` is stdout or stderr."""

    kind: ClassVar[str] = "task_output"
    run_id: str
    job_id: str
    task_id: str
    attempt: int
    stream: str
    line: str


@dataclass(frozen=True)
class OutputDropped(Event):
    """Lines of a chatty task that were not forwarded live (the task log still has them)."""

    kind: ClassVar[str] = "output_dropped"
    run_id: str
    job_id: str
    task_id: str
    lines: int


@dataclass(frozen=True)
class FireDropped(Event):
    kind: ClassVar[str] = "fire_dropped"
    job_id: str
    scheduled_at: int
    reason: str


@dataclass(frozen=True)
class SchedulerPaused(Event):
    kind: ClassVar[str] = "scheduler_paused"


@dataclass(frozen=True)
class SchedulerResumed(Event):
    kind: ClassVar[str] = "scheduler_resumed"


@dataclass(frozen=True)
class ChildRestarted(Event):
    kind: ClassVar[str] = "child_restarted"
    child: str
    exit_code: int | None
    restarts: int


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunCreated,
        RunStarted,
        RunEnded,
        TaskStarted,
        TaskRetrying,
        TaskEnded,
        TaskOutput,
        OutputDropped,
        FireDropped,
        SchedulerPaused,
        SchedulerResumed,
        ChildRestarted,
    )
}


def from_wire(data: dict) -> Event:
    """Rebuild an event from `to_wire`'s dict; raises ValueError for an unknown kind or fields."""
    cls = EVENT_TYPES.get(data.get("kind", "")) if isinstance(data, dict) else None
    if cls is None:
        raise ValueError(f"unknown event {data!r:.80}")
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"malformed {cls.kind} event: {exc}") from None


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
