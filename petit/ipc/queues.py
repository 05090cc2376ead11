"""Request/reply over multiprocessing queues: replies are matched to requests by id, so many
callers share one reply channel, and every wait has a deadline."""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError

from ..errors import Unavailable
from .commands import error_reply


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
