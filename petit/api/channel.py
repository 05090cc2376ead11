"""The API process's two queues to the supervisor: commands out (answered by the scheduler
through the supervisor, each with the verb's deadline for the API), and in, the replies and the
event batches the supervisor fans out."""

from __future__ import annotations

import json
import logging
import threading

from ..ipc.batches import EVENT_BATCH
from ..ipc.commands import COMMANDS, FROM_API
from ..ipc.queues import QueueClient
from .events import EventLog

log = logging.getLogger("petit.api")
# how long a handler waits for the scheduler's answer to most verbs (a cancel: longer)
REPLY_DEADLINE_SECS = COMMANDS["trigger"].wait_secs(FROM_API)


class CommandChannel:
    """Request/reply with the supervisor over the two queues this process was given; a reader
    thread takes what arrives: replies for the waiting callers, events for `events`."""

    def __init__(self, replies, requests, events: EventLog | None = None) -> None:
        self._replies = replies
        self.events = events if events is not None else EventLog()
        requests.cancel_join_thread()
        self._client = QueueClient(requests.put, FROM_API)
        self.reader = threading.Thread(target=self._read, daemon=True, name="petit-api-replies")
        self.reader.start()

    def _read(self) -> None:
        while True:
            message = self._replies.get()
            if message is None:
                return
            if message.get("event") == EVENT_BATCH:
                self._keep(message.get("events") or [])
            else:
                self._client.resolve(message)  # safe from this thread: a late reply is dropped

    def _keep(self, events: list[dict]) -> None:
        debug = log.isEnabledFor(logging.DEBUG)
        for event in events:
            text = json.dumps(event, separators=(",", ":"))
            self.events.append(text)
            if debug:
                log.debug("event %s %s", event.get("kind"), text)

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        """The command's result; raises the error its reply carries, or Unavailable."""
        return await self._client.call(cmd, args)
