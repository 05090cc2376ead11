"""The live event stream between processes: its messages, their ids and the bounded replay
buffer that lets a client resume after a reconnect.

A message is `(name, job_id, run_id, data)`: the stream event's name (`run`, `task`, `log`, ...),
the ids a client filters on (None when the event is about no job or run) and its data as one
line of JSON, serialised once by the scheduler worker and sent as it is by everyone after. The
supervisor numbers them: `seq` counts from 1 within an *epoch*, and the epoch changes whenever
the scheduler worker starts, since events a dead worker had not sent yet are gone. An event's id
is `<epoch>-<seq>`: a client that comes back with one resumes right after it, or is told to
refetch state (`reset`) when that is impossible."""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import NamedTuple

EVENT_BATCH = "events"  # the `event` of a queue message carrying stream messages
DEFAULT_CAPACITY = 5_000  # messages kept for replay (a 200-task run sends about 600)
DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # and at most this much of their data


class Message(NamedTuple):
    seq: int
    name: str
    job_id: str | None
    run_id: str | None
    data: str  # one line of JSON


def worker_batch(messages: list[tuple[str, str | None, str | None, str]]) -> dict:
    """A queue message from the worker: (name, job_id, run_id, data) tuples, not yet numbered."""
    return {"event": EVENT_BATCH, "messages": messages}


def numbered_batch(epoch: str, messages: list[Message]) -> dict:
    """A queue message from the supervisor to the API: numbered messages of one epoch."""
    return {"event": EVENT_BATCH, "epoch": epoch, "messages": [tuple(m) for m in messages]}


def event_id(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse_event_id(text: str | None) -> tuple[str, int] | None:
    """(epoch, seq) of an id this stream gave out; None for anything else."""
    epoch, _, seq = (text or "").strip().rpartition("-")
    if not epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
        return None
    return epoch, int(seq)


class EventRing:
    """The last messages of the current epoch, bounded by count and by bytes of data. The
    supervisor `append`s (and numbers) them; the API keeps a mirror fed with `extend`. Every
    access holds the lock: the API appends from its queue reader thread."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, max_bytes: int = DEFAULT_MAX_BYTES):
        self.epoch = ""
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._messages: deque[Message] = deque()
        self._bytes = 0
        self._last_seq = 0
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._last_seq

    def start_epoch(self, epoch: str) -> None:
        """Forget everything: what follows is numbered from 1 again."""
        with self._lock:
            self.epoch = epoch
            self._messages.clear()
            self._bytes = 0
            self._last_seq = 0

    def append(self, name: str, job_id: str | None, run_id: str | None, data: str) -> Message:
        with self._lock:
            message = _message(self._last_seq + 1, name, job_id, run_id, data)
            self._keep(message)
            return message

    def extend(self, epoch: str, messages: list) -> list[Message]:
        """Mirror numbered messages (a new epoch starts afresh); returns those that were new,
        since a replay after a restart of the API may repeat what it already holds."""
        if epoch != self.epoch:
            self.start_epoch(epoch)
        new = []
        with self._lock:
            for fields in messages:
                message = _message(*fields)
                if message.seq > self._last_seq:
                    self._keep(message)
                    new.append(message)
        return new

    def _keep(self, message: Message) -> None:
        self._messages.append(message)
        self._last_seq = message.seq
        self._bytes += len(message.data)
        while len(self._messages) > self._capacity or (
            self._bytes > self._max_bytes and len(self._messages) > 1
        ):
            self._bytes -= len(self._messages.popleft().data)

    def since(self, seq: int, max_bytes: int | None = None) -> tuple[str, list[Message], bool]:
        """The epoch, the messages after `seq` (oldest first; with `max_bytes`, as many as fit,
        and at least one) and whether some that came after `seq` are no longer held (the
        caller has a gap and must say so). One lock: the three always agree."""
        with self._lock:
            if not self._messages:
                return self.epoch, [], seq < self._last_seq
            first = self._messages[0].seq
            taken, size = [], 0
            for index in range(max(0, seq + 1 - first), len(self._messages)):
                message = self._messages[index]
                size += len(message.data)
                if max_bytes is not None and taken and size > max_bytes:
                    break
                taken.append(message)
            return self.epoch, taken, seq + 1 < first

    def resume_from(self, last_id: str | None) -> int | None:
        """Where a client that last saw `last_id` goes on from: the seq after which its replay
        starts, or None when it must be told to refetch state (an id that is malformed, from an
        earlier epoch, newer than anything sent, or older than what is still held). No id at
        all: from now on."""
        with self._lock:
            if last_id is None:
                return self._last_seq
            parsed = parse_event_id(last_id)
            if parsed is None or parsed[0] != self.epoch or parsed[1] > self._last_seq:
                return None
            first = self._messages[0].seq if self._messages else self._last_seq + 1
            return parsed[1] if parsed[1] + 1 >= first else None


def _message(seq: int, name: str, job_id: str | None, run_id: str | None, data: str) -> Message:
    """A message whose names and ids are shared with every other message holding the same ones
    (a run's hundreds of messages keep one copy of its id, not hundreds)."""
    return Message(
        seq,
        sys.intern(name),
        job_id and sys.intern(job_id),
        run_id and sys.intern(run_id),
        data,
    )


# every name a stream carries; `reset` is the stream's own and always sent
EVENT_NAMES = ("run", "task", "log", "scheduler", "fire_dropped", "child")


def matches(
    message: Message,
    job_ids: frozenset[str],
    run_ids: frozenset[str],
    names: frozenset[str] = frozenset(),
) -> bool:
    """A client's filters: with none, everything; with some, only the events of those jobs
    and runs (an event about no job, like a pause, matches no filter) and of those names."""
    if names and message.name not in names:
        return False
    if job_ids and message.job_id not in job_ids:
        return False
    return not run_ids or message.run_id in run_ids
