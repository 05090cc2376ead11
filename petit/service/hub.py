"""The supervisor's part of the live stream: it numbers the scheduler worker's messages, keeps
the replay buffer (which outlives a restart of the API process, so a client that reconnects to
the new one misses nothing), passes every message on to the API process and streams it to the
control-socket clients that asked to `watch`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ipc.stream import EventRing, event_id, matches, numbered_batch

log = logging.getLogger("petit.supervisor")
# A watcher whose unread output passes this is dropped: a stuck `petit watch` must not make the
# supervisor hold a growing buffer. (Checked before each write, and far above one batch, so a
# watcher that reads is never dropped for a burst.)
WATCH_BUFFER_LIMIT = 8 * 1024 * 1024
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_epoch(now_ms: int, starts: int) -> str:
    """A name no earlier epoch had: the time of the worker's start, and how many starts this
    supervisor counted (two starts within one millisecond stay apart)."""
    digits = ""
    while now_ms:
        now_ms, rest = divmod(now_ms, 36)
        digits = _BASE36[rest] + digits
    return f"{digits or '0'}x{starts}"


@dataclass(eq=False)
class Watcher:
    writer: asyncio.StreamWriter
    job_ids: frozenset[str]
    run_ids: frozenset[str]
    gone: asyncio.Event = field(default_factory=asyncio.Event)


def watch_line(epoch: str, seq: int, name: str, data: str) -> bytes:
    """One event as a control-socket line (`data` is JSON already)."""
    return f'{{"id":{json.dumps(event_id(epoch, seq))},"event":"{name}","data":{data}}}\n'.encode()


class EventHub:
    """`send_to_api` passes a queue message to the API process (when one is up)."""

    def __init__(self, send_to_api: Callable[[dict], None]) -> None:
        self.ring = EventRing()
        self._send_to_api = send_to_api
        self._starts = 0
        self._watchers: set[Watcher] = set()

    def scheduler_started(self) -> None:
        """A new epoch: what the previous worker had not sent is lost, so clients refetch."""
        self._starts += 1
        self.ring.start_epoch(new_epoch(int(time.time() * 1000), self._starts))
        reset = watch_line(self.ring.epoch, 0, "reset", '{"reason":"scheduler started"}')
        for watcher in list(self._watchers):
            self._write(watcher, reset)
        self._send_to_api(numbered_batch(self.ring.epoch, []))

    def api_started(self) -> None:
        """The new API process gets the whole replay buffer first, so resumes work at once."""
        epoch, messages, _ = self.ring.since(0)
        self._send_to_api(numbered_batch(epoch, messages))

    def publish(self, messages: list) -> None:
        """Number and pass on (name, job_id, run_id, data) messages, in order."""
        numbered = [self.ring.append(*fields) for fields in messages]
        self._send_to_api(numbered_batch(self.ring.epoch, numbered))
        for watcher in list(self._watchers):
            lines = [
                watch_line(self.ring.epoch, m.seq, m.name, m.data)
                for m in numbered
                if matches(m, watcher.job_ids, watcher.run_ids)
            ]
            if lines:
                self._write(watcher, b"".join(lines))

    def own(self, name: str, data: dict) -> None:
        """An event of the supervisor itself (a child restarted)."""
        self.publish([(name, None, None, json.dumps(data, separators=(",", ":")))])

    def _write(self, watcher: Watcher, chunk: bytes) -> None:
        if watcher.gone.is_set():
            return
        if watcher.writer.transport.get_write_buffer_size() > WATCH_BUFFER_LIMIT:
            log.warning("a watcher that does not read was dropped")
            watcher.writer.transport.abort()  # close() would wait for the unread bytes to go
            watcher.gone.set()
            return
        try:
            watcher.writer.write(chunk)
        except (ConnectionError, RuntimeError):  # closed meanwhile
            watcher.gone.set()

    async def watch(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        job_ids: frozenset[str],
        run_ids: frozenset[str],
        reply: bytes,
    ) -> None:
        """Send the watch's `reply`, then every event from that instant until the client hangs
        up, is dropped for not reading, or the supervisor stops (`close_watchers`). The reply
        and the registration happen before the first await: no event can fall between."""
        writer.write(reply)
        watcher = Watcher(writer, job_ids, run_ids)
        self._watchers.add(watcher)
        hangup = asyncio.ensure_future(_until_eof(reader))
        gone = asyncio.ensure_future(watcher.gone.wait())
        try:
            await asyncio.wait((hangup, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            gone.cancel()
            self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher.gone.set()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """A watcher has nothing more to say: whatever it sends is read and ignored until EOF."""
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass
