"""The API process's two queues to the supervisor: commands out (answered by the scheduler
through the supervisor, each with the verb's deadline for the API), and in, the replies, the
live stream's batches and the API keys a reload read."""

from __future__ import annotations

import logging
import threading

from ..ipc.commands import COMMANDS, FROM_API
from ..ipc.queues import QueueClient
from ..ipc.stream import EVENT_BATCH
from .access import Access
from .events import LiveEvents

log = logging.getLogger("petit.api")
# how long a handler waits for the scheduler's answer to most verbs (a cancel: longer)
REPLY_DEADLINE_SECS = COMMANDS["trigger"].wait_secs(FROM_API)
# the supervisor's message with the keys it read at a reload: {"event": KEYS_EVENT, "keys":
# [ApiKey.as_wire(), ...] or None}
KEYS_EVENT = "api_keys"


class CommandChannel:
    """Request/reply with the supervisor over the two queues this process was given; a reader
    thread takes what arrives: replies for the waiting callers, events for `events`, new keys
    for `access`."""

    def __init__(self, replies, requests, access: Access, events: LiveEvents | None = None) -> None:
        self._replies = replies
        self.events = events if events is not None else LiveEvents()
        self.access = access
        requests.cancel_join_thread()
        self._client = QueueClient(requests.put, FROM_API)
        self.reader = threading.Thread(target=self._read, daemon=True, name="petit-api-replies")
        self.reader.start()

    def _read(self) -> None:
        while True:
            message = self._replies.get()
            if message is None:
                return
            event = message.get("event")
            if event == EVENT_BATCH:
                self.events.receive(message.get("epoch", ""), message.get("messages") or [])
            elif event == KEYS_EVENT:
                self.access.receive(message.get("keys"))
            else:
                self._client.resolve(message)  # safe from this thread: a late reply is dropped

    async def call(self, cmd: str, args: dict | None = None) -> dict:
        """The command's result; raises the error its reply carries, or Unavailable."""
        return await self._client.call(cmd, args)
