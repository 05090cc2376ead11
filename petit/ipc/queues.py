"""Request/reply over multiprocessing queues: replies are matched to requests by id, so many
callers share one reply channel, and every wait has a deadline. Also the other message that
travels the same queues: a batch of events."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

from ..errors import Unavailable
from .commands import COMMANDS, Caller, error_reply, request, unwrap


class ReplyMatcher:
    """Matches replies to requests by id, so many callers can share one reply channel; every
    wait has a deadline."""

    def __init__(self) -> None:
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()

    def expect(self, request_id: str) -> Future:
        future: Future = Future()
        with self._lock:
            self._pending[request_id] = future
        return future

    def resolve(self, reply: dict) -> None:
        with self._lock:
            future = self._pending.pop(reply.get("id"), None)
        if future is not None:
            _settle(future, reply)

    def fail_all(self, reason: str) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            _settle(future, error_reply(None, Unavailable(reason)))

    def discard(self, request_id: str) -> None:
        """Forget a request whose caller gave up waiting."""
        with self._lock:
            self._pending.pop(request_id, None)


def _settle(future: Future, reply: dict) -> None:
    """A caller whose deadline passed cancels its future while the reply may be on its way: the
    reply is then dropped, and the thread delivering it must not die of it."""
    try:
        future.set_result(reply)
    except InvalidStateError:
        pass


class QueueClient:
    """Commands to a peer process over a queue, each awaited until the verb's deadline for this
    caller (the table's rule). `send` puts one message on the outgoing queue; whoever reads the
    incoming queue hands replies to `resolve` (from any thread)."""

    def __init__(self, send: Callable[[dict], None], caller: Caller, peer: str = "scheduler"):
        self._send = send
        self.caller = caller
        self.peer = peer
        self._matcher = ReplyMatcher()

    def resolve(self, reply: dict) -> None:
        self._matcher.resolve(reply)

    def fail_all(self, reason: str) -> None:
        """Answer every waiting caller at once: the peer is gone."""
        self._matcher.fail_all(reason)

    async def exchange(self, cmd: str, args: dict | None = None) -> dict:
        """Send one command and return its reply envelope; raises Unavailable when the peer
        cannot be reached or does not answer in time."""
        timeout = COMMANDS[cmd].wait_secs(self.caller)
        message = request(cmd, args)
        # the worker drops a command nobody waits for any more, so a caller told 503 may retry
        # without the first attempt running late behind its back (CLOCK_MONOTONIC is system-wide)
        message["deadline"] = time.monotonic() + timeout
        future = self._matcher.expect(message["id"])
        try:
            self._send(message)
        except BaseException:
            self._matcher.discard(message["id"])
            raise
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            self._matcher.discard(message["id"])
            raise Unavailable(
                f"the {self.peer} did not answer {cmd!r} within {timeout:g}s"
            ) from None

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        """The command's result, or the exception its reply carries."""
        return unwrap(await self.exchange(cmd, args))
