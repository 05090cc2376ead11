"""Events of the scheduler worker, on their way to the API: buffered as the bus delivers them
and sent in batches, one queue message every ~150 ms, so a busy run costs a few puts a second
rather than one per event. A chatty task cannot flood the queues: past a cap of output lines
per batch the rest are counted per task and sent as one OutputDropped each (the task log still
has every line)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from ..core.events import Event, OutputDropped, TaskOutput
from ..ipc.batches import batch_of

log = logging.getLogger("petit.scheduler")
FLUSH_INTERVAL_SECS = 0.15
MAX_OUTPUT_LINES = 500  # TaskOutput events per batch
MAX_LIVE_LINE_CHARS = 4096


class EventForwarder:
    """A bus subscriber (`publish`, from any thread) and the thread that flushes its buffer
    through `send` (one queue put per batch). `close` flushes what is left and stops. What it
    holds between two flushes is bounded too: past the cap, output lines are only counted."""

    def __init__(
        self,
        send: Callable[[dict], None],
        interval_secs: float = FLUSH_INTERVAL_SECS,
        max_output_lines: int = MAX_OUTPUT_LINES,
    ) -> None:
        self._send = send
        self._interval = interval_secs
        self._max_output = max_output_lines
        self._buffer: list[Event | None] = []  # None: the place of an OutputDropped
        self._output_lines = 0
        # (run id, task id) -> (its place in the buffer, the first line dropped, lines dropped)
        self._dropped: dict[tuple[str, str], tuple[int, TaskOutput, int]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="petit-events")

    def publish(self, event: Event) -> None:
        with self._lock:
            if not isinstance(event, TaskOutput):
                self._buffer.append(event)
            elif self._output_lines < self._max_output:
                self._output_lines += 1
                self._buffer.append(_clipped(event))
            else:
                key = (event.run_id, event.task_id)
                slot, first, count = self._dropped.get(key, (len(self._buffer), event, 0))
                if count == 0:
                    self._buffer.append(None)
                self._dropped[key] = (slot, first, count + 1)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()  # also what came after the thread's last flush, or with no thread at all

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            events, dropped = self._buffer, self._dropped
            self._buffer, self._dropped, self._output_lines = [], {}, 0
        if not events:
            return
        for slot, first, count in dropped.values():
            events[slot] = OutputDropped(
                at=first.at,
                run_id=first.run_id,
                job_id=first.job_id,
                task_id=first.task_id,
                lines=count,
            )
        try:
            self._send(batch_of(events))
        except Exception:  # a closed queue at exit: the events are lost, the runs are not
            log.exception("%d event(s) could not be forwarded", len(events))


def _clipped(event: TaskOutput) -> TaskOutput:
    """A line as forwarded live: at most MAX_LIVE_LINE_CHARS (a 1 MiB line must not travel the
    queues that also carry command replies); the task log keeps it whole."""
    if len(event.line) <= MAX_LIVE_LINE_CHARS:
        return event
    rest = len(event.line) - MAX_LIVE_LINE_CHARS
    return replace(event, line=f"{event.line[:MAX_LIVE_LINE_CHARS]}... [{rest} more characters]")
