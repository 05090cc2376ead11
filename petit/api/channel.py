"""Commands from the API process to the scheduler, through the supervisor, over the two queues
this process was given."""

from __future__ import annotations

import asyncio
import threading

from ..errors import Unavailable
from ..ipc.commands import request, unwrap
from ..ipc.queues import ReplyMatcher

# a little above the supervisor's own deadlines towards the scheduler (5 s, 20 s for a cancel)
REPLY_DEADLINE_SECS = 6.0
CANCEL_REPLY_DEADLINE_SECS = 21.0


class CommandChannel:
    """Request/reply with the supervisor over the two queues this process was given."""

    def __init__(self, replies, requests) -> None:
        self._replies, self._requests = replies, requests
        self._matcher = ReplyMatcher()
        self._requests.cancel_join_thread()
        threading.Thread(target=self._read, daemon=True, name="petit-api-replies").start()

    def _read(self) -> None:
        while True:
            reply = self._replies.get()
            if reply is None:
                return
            self._matcher.resolve(reply)  # safe from this thread: a late reply is dropped

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        message = request(cmd, args)
        future = self._matcher.expect(message["id"])
        self._requests.put(message)
        deadline = CANCEL_REPLY_DEADLINE_SECS if cmd == "cancel" else REPLY_DEADLINE_SECS
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(future), deadline)
        except TimeoutError:
            self._matcher.discard(message["id"])
            raise Unavailable(f"the scheduler did not answer within {deadline:g}s") from None
        return unwrap(reply)
