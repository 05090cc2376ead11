"""`GET /api/events`: the live stream as Server-Sent Events. Each client has its own position
in the API's copy of the replay buffer; it resumes after the id it last saw, or is told to
`reset` (refetch state) when that is impossible. A client that does not keep up is dropped,
never buffered for: its next reconnect then says whether it missed anything."""

from __future__ import annotations

import asyncio
import json
import logging

import tornado.iostream

from ..errors import BadRequest, JobNotFound, RunNotFound, Unavailable
from ..ipc.stream import EVENT_NAMES, event_id, matches
from .base import ID_MAX_CHARS, BaseHandler
from .events import LiveEvents, sse
from .handlers import known_job, known_run

log = logging.getLogger("petit.api")
HEARTBEAT_SECS = 5.0  # a comment at least this often: proxies and clients see a live line
# Written at a time, then flushed before the next: a reading client is never dropped for a
# burst (a replay after a restart), and one client holds at most about this much of our memory.
CHUNK_BYTES = 256 * 1024
# A client that takes none of a chunk for this long does not read: it is dropped.
WRITE_TIMEOUT_SECS = 10.0
READY_WAIT_SECS = 5.0
MAX_FILTERS = 100
RETRY_MS = 1000


def start_stream(handler: BaseHandler) -> None:
    """The headers of an event stream (the logs' follow mode sends one too), and the stream
    held under its key, which closes it if the key is removed (BaseHandler.on_finish lets go)."""
    handler.access.hold(handler, handler.api_key)
    handler.set_header("Content-Type", "text/event-stream; charset=utf-8")
    handler.set_header("X-Accel-Buffering", "no")  # a proxy in front must not hold events back


async def send(handler: BaseHandler, text: str) -> bool:
    """Write and wait until the client took it; False when it is gone, or took nothing for
    WRITE_TIMEOUT_SECS (it is then dropped: a stuck client holds one chunk of the server's
    memory, for a bounded time, and never slows the others)."""
    handler.write(text)
    try:
        await asyncio.wait_for(handler.flush(), WRITE_TIMEOUT_SECS)
        return True
    except TimeoutError:
        log.warning("event stream client %s dropped: it does not read", handler.request.remote_ip)
        handler.request.connection.close()
        return False
    except tornado.iostream.StreamClosedError:
        return False


def _reset(epoch: str, seq: int, reason: str) -> str:
    return sse("reset", json.dumps({"reason": reason}), event_id(epoch, seq))


def _names(given: list[str]) -> frozenset[str]:
    """The `event` filter: names of events to send (all when none is given)."""
    unknown = sorted(set(given) - set(EVENT_NAMES))
    if unknown:
        raise BadRequest(
            f"unknown event name {unknown[0][:40]!r}; expected one of {', '.join(EVENT_NAMES)}"
        )
    return frozenset(given)


class EventStreamHandler(BaseHandler):
    def initialize(self) -> None:
        # before anything else: a client may hang up while the request is still being read
        self.gone = False
        self._waiter: asyncio.Future | None = None

    @property
    def live(self) -> LiveEvents:
        return self.commands.events

    def on_connection_close(self) -> None:
        self.gone = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> None:
        job_ids, run_ids = self._filters()
        names = _names(self.get_arguments("event"))
        last_id = self.request.headers.get("Last-Event-ID") or self.get_argument(
            "last_event_id", None
        )
        if not await self.live.wait_ready(READY_WAIT_SECS):
            raise Unavailable("the event stream is not available yet; retry in a moment")
        start_stream(self)
        if self.request.method == "HEAD":
            self.finish()
            return
        await self._stream(job_ids, run_ids, names, last_id)

    def _filters(self) -> tuple[frozenset[str], frozenset[str]]:
        job_ids = frozenset(self.get_arguments("job_id"))
        run_ids = frozenset(self.get_arguments("run_id"))
        if len(job_ids) + len(run_ids) > MAX_FILTERS:
            raise BadRequest(f"at most {MAX_FILTERS} job_id and run_id filters")
        for job_id in sorted(job_ids):
            if len(job_id) > ID_MAX_CHARS["job_id"]:  # the routes' own bound, quoted short
                raise JobNotFound(job_id[:200])
            known_job(self.store, job_id)
        for run_id in sorted(run_ids):
            if len(run_id) > ID_MAX_CHARS["run_id"]:
                raise RunNotFound(run_id[:200])
            known_run(self.store, run_id)
        return job_ids, run_ids

    async def _stream(
        self, job_ids: frozenset, run_ids: frozenset, names: frozenset, last_id: str | None
    ) -> None:
        ring = self.live.ring
        epoch = ring.epoch
        position = ring.resume_from(last_id)
        out = [f"retry: {RETRY_MS}\n\n"]
        if position is None:
            position = ring.last_seq
            out.append(_reset(epoch, position, "the events after that id are no longer held"))
        loop = asyncio.get_running_loop()
        wrote_at = loop.time()
        while not self.gone:
            self._waiter = self.live.waiter()
            now_epoch, messages, lost = ring.since(position, CHUNK_BYTES)
            if now_epoch != epoch:  # the scheduler restarted: what it had not sent is lost
                epoch, position = now_epoch, 0
                out.append(_reset(epoch, position, "the scheduler restarted"))
                continue
            if lost:  # fell behind the buffer: its reconnect will be told to reset
                log.warning("event stream client %s dropped: behind", self.request.remote_ip)
                self.request.connection.close()
                return
            out.extend(m.data for m in messages if matches(m, job_ids, run_ids, names))
            if messages:
                position = messages[-1].seq
            if out:
                if not await send(self, "".join(out)):
                    return
                out, wrote_at = [], loop.time()
            if messages and position < ring.last_seq:
                continue  # more is waiting: no need to wait for a wake-up
            try:
                await asyncio.wait_for(self._waiter, wrote_at + HEARTBEAT_SECS - loop.time())
            except TimeoutError:
                out.append(": keepalive\n\n")
            finally:
                self.live.forget(self._waiter)
