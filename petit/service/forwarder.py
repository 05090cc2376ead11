"""Events of the scheduler worker, on their way to the API: buffered as the bus delivers them
and sent in batches, one queue message every ~150 ms, so a busy run costs a few puts a second
rather than one per event. A chatty task cannot flood the queues: past a cap of output lines
per batch the rest are counted per task and sent as one OutputDropped each (the task log still
has every line)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..core.events import Event, OutputDropped, TaskOutput
from ..ipc.batches import batch_of

log = logging.getLogger("petit.scheduler")
FLUSH_INTERVAL_SECS = 0.15
MAX_OUTPUT_LINES = 500  # TaskOutput events per batch


class EventForwarder:
    """A bus subscriber (`publish`, from any thread) and the thread that flushes its buffer
    through `send` (one queue put per batch). `close` flushes what is left and stops."""

    def __init__(
        self,
        send: Callable[[dict], None],
        interval_secs: float = FLUSH_INTERVAL_SECS,
        max_output_lines: int = MAX_OUTPUT_LINES,
    ) -> None:
        self._send = send
        self._interval = interval_secs
        self._max_output = max_output_lines
        self._buffer: list[Event] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="petit-events")

    def publish(self, event: Event) -> None:
        with self._lock:
            self._buffer.append(event)

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
            events, self._buffer = self._buffer, []
        if not events:
            return
        try:
            self._send(batch_of(capped(events, self._max_output)))
        except Exception:  # a closed queue at exit: the events are lost, the runs are not
            log.exception("%d event(s) could not be forwarded", len(events))


def capped(events: list[Event], max_output_lines: int) -> list[Event]:
    """`events` with at most `max_output_lines` TaskOutput events; each task's excess lines
    become one OutputDropped, in the place of its first dropped line."""
    kept: list[Event | None] = []
    dropped: dict[tuple[str, str], tuple[int, TaskOutput, int]] = {}  # slot, first, count
    output_lines = 0
    for event in events:
        if not isinstance(event, TaskOutput):
            kept.append(event)
            continue
        if output_lines < max_output_lines:
            output_lines += 1
            kept.append(event)
            continue
        key = (event.run_id, event.task_id)
        slot, first, count = dropped.get(key, (len(kept), event, 0))
        if count == 0:
            kept.append(None)  # filled in below, once the count is known
        dropped[key] = (slot, first, count + 1)
    for slot, first, count in dropped.values():
        kept[slot] = OutputDropped(
            at=first.at,
            run_id=first.run_id,
            job_id=first.job_id,
            task_id=first.task_id,
            lines=count,
        )
    return [event for event in kept if event is not None]
