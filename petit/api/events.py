"""The API process's copy of the live stream: a mirror of the supervisor's replay buffer, fed by
the queue reader thread, each message rendered once as its Server-Sent Event (however many
clients send it), and the wake-up that tells every waiting stream handler, on the server's loop,
that something arrived."""

from __future__ import annotations

import asyncio
import logging

from ..ipc.stream import EventRing, Message, event_id

log = logging.getLogger("petit.api")


def sse(name: str, data: str, message_id: str | None = None) -> str:
    """One Server-Sent Event; `data` is one line of JSON already."""
    head = f"id: {message_id}\n" if message_id is not None else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


class LiveEvents:
    def __init__(self, ring: EventRing | None = None) -> None:
        self.ring = ring if ring is not None else EventRing()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: set[asyncio.Future] = set()
        self._ready: asyncio.Event | None = None
        self._epoch_known = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake-ups go to `loop` from now on (the server's, once it runs)."""
        self._loop = loop
        self._ready = asyncio.Event()
        if self._epoch_known:
            self._ready.set()

    def receive(self, epoch: str, messages: list) -> list[Message]:
        """From the reader thread: keep a numbered batch, each message's data as its whole
        Server-Sent Event, then wake the handlers."""
        if log.isEnabledFor(logging.DEBUG):
            for seq, name, _, _, data in messages:
                log.debug("event %s-%d %s %s", epoch, seq, name, data)
        new = self.ring.extend(
            epoch,
            [
                (seq, name, job_id, run_id, sse(name, data, event_id(epoch, seq)))
                for seq, name, job_id, run_id, data in messages
            ],
        )
        self._epoch_known = True
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed at exit
                pass
        return new

    def _wake(self) -> None:
        self._ready.set()
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future:
        """Done at the next arrival: take one before looking at the ring, then await it. (One
        future each, resolved in one pass: a hundred clients cost no tasks per wake-up.)"""
        waiter = self._loop.create_future()
        self._waiters.add(waiter)
        return waiter

    def forget(self, waiter: asyncio.Future) -> None:
        """A handler that stopped waiting (a heartbeat, a hang-up) leaves nothing behind."""
        self._waiters.discard(waiter)

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the supervisor's first batch (it says which epoch is on) has arrived."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False
