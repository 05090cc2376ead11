"""Coalesced recording of live runs: a subscriber of the engine's events, it writes a run at
its end and at most once per interval before, so a 200-task run costs a handful of writes
instead of hundreds. (Its start needs no write of its own: the run is durable from its
creation, and recovery treats a pending run as it treats a running one.)"""

from __future__ import annotations

import logging
import threading

from ..core.events import Event, EventBus, RunEnded, TaskOutput
from ..core.model import Run
from ..errors import StorageError
from ..storage.store import Store

FLUSH_INTERVAL_SECS = 0.25
# While writes fail (disk full), retries slow down to this: a full disk for an hour must cost
# neither a busy loop nor an error line every 0.25 s.
RETRY_MAX_SECS = 5.0
log = logging.getLogger("petit.recorder")


class RunRecorder:
    """Records the runs it `track`s whenever the bus says they changed."""

    def __init__(
        self, store: Store, bus: EventBus, interval_secs: float = FLUSH_INTERVAL_SECS
    ) -> None:
        self.store = store
        self._interval = interval_secs
        self._tracked: dict[str, Run] = {}  # run id -> the live Run its engine changes
        self._dirty: dict[str, Run] = {}
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self._failures = 0  # consecutive failed writes; only the first one is logged
        self._thread = threading.Thread(target=self._loop, name="petit-recorder", daemon=True)
        self._thread.start()
        self._unsubscribe = bus.subscribe(self._on_event)

    def track(self, run: Run) -> None:
        """Record `run` on its events from now on, until its RunEnded."""
        with self._cond:
            self._tracked[run.id] = run

    def _on_event(self, event: Event) -> None:
        # Output lines change nothing that is recorded: a chatty task must cost no writes.
        if isinstance(event, TaskOutput):
            return
        with self._cond:
            run = self._tracked.get(getattr(event, "run_id", None))
            if run is not None and isinstance(event, RunEnded):
                del self._tracked[run.id]
        if run is None:
            return
        self.changed(run)
        if isinstance(event, RunEnded):  # the end is written before anyone is told of it
            try:
                self.flush()
            except StorageError:
                pass  # logged by _write; the loop retries until the disk takes it

    def changed(self, run: Run) -> None:
        with self._cond:
            first = not self._dirty
            self._dirty[run.id] = run
            if first:
                self._cond.notify()

    def flush(self) -> None:
        """Write every pending change now; raises StorageError when the write fails (the
        changes stay pending and the loop retries them)."""
        with self._cond:
            batch, self._dirty = list(self._dirty.values()), {}
        self._write(batch)

    def close(self) -> None:
        self._unsubscribe()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)
        self.flush()

    def _write(self, batch: list[Run]) -> None:
        if not batch:
            return
        with self._write_lock:
            try:
                self.store.save_runs(batch)
            except StorageError as exc:
                # Keep the changes so the next flush retries them; the run itself goes on.
                if not self._failures:
                    log.error("cannot record run state (will retry): %s", exc)
                self._failures += 1
                with self._cond:
                    for run in batch:
                        self._dirty.setdefault(run.id, run)
                    # Wake the loop: after a failed flush from the engine (a run's end) nothing
                    # else may change, and the retry would wait for ever.
                    self._cond.notify()
                raise
            if self._failures:
                log.warning("run state recorded again after %d failed attempt(s)", self._failures)
                self._failures = 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                # let more changes gather before writing
                self._cond.wait(self._interval)
            try:
                self.flush()
            except Exception as exc:  # this thread must outlive any error, or batching stops
                if not isinstance(exc, StorageError):
                    log.exception("recording run state failed")
                with self._cond:
                    self._cond.wait(self._retry_delay())

    def _retry_delay(self) -> float:
        return min(self._interval * 2 ** min(self._failures, 16), RETRY_MAX_SECS)
