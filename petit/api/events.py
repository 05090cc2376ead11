"""The API process's copy of the live stream: a mirror of the supervisor's replay buffer, fed by
the queue reader thread, and the wake-up that tells every waiting stream handler, on the server's
loop, that something arrived."""

from __future__ import annotations

import asyncio
import logging

from ..ipc.stream import EventRing, Message

log = logging.getLogger("petit.api")


class LiveEvents:
    def __init__(self, ring: EventRing | None = None) -> None:
        self.ring = ring if ring is not None else EventRing()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._epoch_known = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake-ups go to `loop` from now on (the server's, once it runs)."""
        self._loop = loop
        self._changed, self._ready = asyncio.Event(), asyncio.Event()
        if self._epoch_known:
            self._ready.set()

    def receive(self, epoch: str, messages: list) -> list[Message]:
        """From the reader thread: keep a numbered batch, then wake the handlers."""
        new = self.ring.extend(epoch, messages)
        self._epoch_known = True
        if log.isEnabledFor(logging.DEBUG):
            for message in new:
                log.debug("event %s-%d %s %s", epoch, message.seq, message.name, message.data)
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed at exit
                pass
        return new

    def _wake(self) -> None:
        self._ready.set()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def changed(self) -> asyncio.Event:
        """Set once after the next arrival: take it before looking at the ring, then wait."""
        return self._changed

    async def wait_ready(self, timeout: float) -> bool:
        """Whether the supervisor's first batch (it says which epoch is on) has arrived."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False
