"""A Server-Sent Events client as a browser's EventSource reads a stream: lines parsed as the
spec says (fields, comments, multi-line data, a blank line dispatches), over a real connection.
Used for /api/events and the logs' follow mode."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass


@dataclass
class SseEvent:
    event: str | None  # None for a comment (a heartbeat)
    data: str
    id: str | None

    def json(self):
        return json.loads(self.data)


class SseStream:
    """GET `path` and read its events one at a time; `next(timeout)` raises TimeoutError when
    none comes in time. `last_id` is what a reconnect sends as Last-Event-ID."""

    def __init__(
        self, port: int, path: str, headers: dict | None = None, timeout: float = 15.0
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.last_id: str | None = None
        self.retry_ms: int | None = None

    def next(self, timeout: float = 15.0) -> SseEvent:
        self.conn.sock.settimeout(timeout)
        name, data, event_id = None, [], None
        while True:
            raw = self.response.readline()
            if not raw:
                raise EOFError("the server ended the stream")
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data or name:
                    if event_id is not None:
                        self.last_id = event_id
                    return SseEvent(name or "message", "\n".join(data), event_id)
                continue
            if line.startswith(":"):
                return SseEvent(None, line[1:].strip(), None)
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
            elif field == "retry":
                self.retry_ms = int(value)

    def until(self, predicate, timeout: float = 15.0) -> list[SseEvent]:
        """Events (comments left out) up to and including the first for which `predicate` holds."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching event in {timeout}s; saw {seen[-5:]}")
            event = self.next(remaining)
            if event.event is None:
                continue
            seen.append(event)
            if predicate(event):
                return seen

    def close(self) -> None:
        self.conn.close()
