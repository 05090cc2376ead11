"""The API process's memory of recent events: a ring buffer of the last ~10,000, each with a
sequence number, so a client that reconnects asks for what came after the last one it saw."""

from __future__ import annotations

import threading
from collections import deque

DEFAULT_CAPACITY = 10_000


class EventLog:
    """Events as JSON text (of `Event.to_wire` dicts: a third of a dict's memory, and what a
    stream sends as it is), numbered from 1 in arrival order. Appended from the queue reader
    thread, read from the server's loop: every access holds the lock."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[tuple[int, str]] = deque(maxlen=capacity)
        self._last_seq = 0
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def append(self, event: str) -> int:
        """Keep one event (the oldest is forgotten once full); its sequence number."""
        with self._lock:
            self._last_seq += 1
            self._events.append((self._last_seq, event))
            return self._last_seq

    def since(self, seq: int) -> list[tuple[int, str]]:
        """(sequence number, event) of the events after `seq` still held, oldest first."""
        with self._lock:
            if not self._events:
                return []
            first = self._events[0][0]
            return list(self._events)[max(0, seq + 1 - first) :]
