"""The scheduler worker's events, on their way out as the live stream: each bus event becomes a
stream message as it is published (a `run` or `task` message carries the run's or task's JSON as
it is at that instant, the same views the API serves), and the messages go to the supervisor in
batches: the first event after a quiet spell at once, then at most one queue message every
~30 ms, so a busy run costs a few dozen puts a second rather than one per event. A chatty task
cannot flood the queues: past a cap of output lines per batch the rest are only counted, per
task (the task log still has every line)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from ..core.events import (
    Event,
    FireDropped,
    RunCreated,
    RunEnded,
    RunStarted,
    SchedulerPaused,
    SchedulerResumed,
    TaskEnded,
    TaskOutput,
    TaskRetrying,
    TaskStarted,
)
from ..core.model import Run
from ..core.views import run_json, task_json
from ..ipc.stream import worker_batch

log = logging.getLogger("petit.scheduler")
FLUSH_INTERVAL_SECS = 0.03
MAX_OUTPUT_LINES = 100  # output lines per batch: about 3,300 a second at most
MAX_OUTPUT_CHARS = 128 * 1024  # and characters of them: a batch stays a MiB or two at worst
MAX_MESSAGE_CHARS = 64 * 1024  # in one `log` message (past that, the next message goes on)
MAX_LIVE_LINE_CHARS = 4096
RUN_EVENTS = (RunCreated, RunStarted, RunEnded)
TASK_EVENTS = (TaskStarted, TaskRetrying, TaskEnded)
VIEWED_EVENTS = RUN_EVENTS + TASK_EVENTS  # their messages carry the live run's or task's view


class _Lines:
    """Consecutive lines of one attempt's stream: one `log` message. `dropped` counts the
    task's lines past the cap (the message then carries the count, and no more lines)."""

    __slots__ = ("job_id", "run_id", "task_id", "attempt", "stream", "lines", "chars", "dropped")

    def __init__(self, event: TaskOutput) -> None:
        self.job_id, self.run_id, self.task_id = event.job_id, event.run_id, event.task_id
        self.attempt, self.stream = event.attempt, event.stream
        self.lines: list[str] = []
        self.chars = 0
        self.dropped = 0

    def follows(self, event: TaskOutput) -> bool:
        return (self.run_id, self.task_id, self.attempt, self.stream) == (
            event.run_id,
            event.task_id,
            event.attempt,
            event.stream,
        )

    def message(self) -> tuple[str, str, str, dict]:
        data = {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "stream": self.stream,
            "lines": self.lines,
        }
        if self.dropped:
            data["dropped"] = self.dropped
        return ("log", self.job_id, self.run_id, data)


class EventForwarder:
    """A bus subscriber (`publish`, from any thread) and the thread that flushes its buffer
    through `send` (one queue put per batch). `track(run)` comes before the run's RunCreated:
    its messages are built from the live Run. `close` flushes what is left and stops."""

    def __init__(
        self,
        send: Callable[[dict], None],
        interval_secs: float = FLUSH_INTERVAL_SECS,
        max_output_lines: int = MAX_OUTPUT_LINES,
    ) -> None:
        self._send = send
        self._interval = interval_secs
        self._max_output = max_output_lines
        self._runs: dict[str, tuple[Run, dict]] = {}  # run id -> (run, task id -> its state)
        self._buffer: list[tuple | _Lines] = []
        self._output_lines = self._output_chars = 0
        self._dropped: dict[tuple[str, str], _Lines] = {}  # (run id, task id) -> its count
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the buffer got its first entry
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="petit-events")

    def track(self, run: Run) -> None:
        with self._lock:
            self._runs[run.id] = (run, {state.task_id: state for state in run.tasks})

    def publish(self, event: Event) -> None:
        with self._lock:
            if not self._buffer:
                self._wake.notify()
            if isinstance(event, TaskOutput):
                self._output(event)
                return
            message = self._message(event)
            if message is not None:
                self._buffer.append(message)
            if isinstance(event, RunEnded):
                self._runs.pop(event.run_id, None)

    def _message(self, event: Event) -> tuple | None:
        if isinstance(event, VIEWED_EVENTS):
            tracked = self._runs.get(event.run_id)
            if tracked is None:
                log.warning("%s of untracked run %s not streamed", event.kind, event.run_id)
                return None
            run, states = tracked
            if isinstance(event, RUN_EVENTS):
                return ("run", run.job_id, run.id, run_json(run))
            task = {**task_json(states[event.task_id]), "job_id": run.job_id}
            if isinstance(event, TaskRetrying):  # pending again, and for how long
                task["retry_delay_secs"] = event.delay_secs
            return ("task", run.job_id, run.id, task)
        if isinstance(event, FireDropped):
            dropped = {
                "scheduled_at": event.scheduled_at,
                "reason": event.reason,
                "until": event.until,
                "count": event.count,
                "error": event.error,
            }
            return ("fire_dropped", event.job_id, None, {"job_id": event.job_id, **dropped})
        if isinstance(event, (SchedulerPaused, SchedulerResumed)):
            state = "paused" if isinstance(event, SchedulerPaused) else "running"
            return ("scheduler", None, None, {"state": state})
        return None

    def _output(self, event: TaskOutput) -> None:
        lines = event.lines
        for index, line in enumerate(lines):
            if self._output_lines >= self._max_output:  # the batch is full: count the rest
                self._drop(event, len(lines) - index)
                return
            line = _clipped(line)
            if self._output_chars + len(line) > MAX_OUTPUT_CHARS:
                self._drop(event, 1)  # a shorter line after it may still fit
                continue
            self._output_lines += 1
            self._output_chars += len(line)
            last = self._buffer[-1] if self._buffer else None
            if not (
                isinstance(last, _Lines)
                and not last.dropped
                and last.follows(event)
                and last.chars + len(line) <= MAX_MESSAGE_CHARS
            ):
                last = _Lines(event)
                self._buffer.append(last)
            last.lines.append(line)
            last.chars += len(line)

    def _drop(self, event: TaskOutput, count: int) -> None:
        """Count `count` lines of the event's task past the cap, where its first was dropped."""
        key = (event.run_id, event.task_id)
        counted = self._dropped.get(key)
        if counted is None:
            counted = self._dropped[key] = _Lines(event)
            self._buffer.append(counted)
        counted.dropped += count

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        with self._wake:
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()  # also what came after the thread's last flush, or with no thread at all

    def _run(self) -> None:
        """The first event after a quiet spell goes out at once (a lone event is not delayed);
        after that, at most one batch per interval, so a busy run's events are coalesced."""
        last_sent = -self._interval
        while not self._closed.is_set():
            with self._wake:
                while not self._buffer and not self._closed.is_set():
                    self._wake.wait()
            pause = last_sent + self._interval - time.monotonic()
            if pause > 0 and self._closed.wait(pause):
                return  # close() sends what is left
            last_sent = time.monotonic()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending = self._buffer
            self._buffer, self._dropped = [], {}
            self._output_lines = self._output_chars = 0
        if not pending:
            return
        messages = []
        for entry in pending:
            name, job_id, run_id, data = entry.message() if isinstance(entry, _Lines) else entry
            messages.append((name, job_id, run_id, json.dumps(data, separators=(",", ":"))))
        try:
            self._send(worker_batch(messages))
        except Exception:  # a closed queue at exit: the events are lost, the runs are not
            log.exception("%d event(s) could not be forwarded", len(messages))


def _clipped(line: str) -> str:
    """A line as streamed live: at most MAX_LIVE_LINE_CHARS (a 1 MiB line must not travel the
    queues that also carry command replies); the task log keeps it whole."""
    if len(line) <= MAX_LIVE_LINE_CHARS:
        return line
    rest = len(line) - MAX_LIVE_LINE_CHARS
    return f"{line[:MAX_LIVE_LINE_CHARS]}... [{rest} more characters]"
