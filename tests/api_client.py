"""petit's HTTP API from the outside: a free port to serve on, and one request per connection,
each answer checked for what no response may carry (a permissive CORS header)."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field

HTTP_TIMEOUT_SECS = 15.0


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    _json: object = field(default=None, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        if self._json is None:
            assert self.content_type.startswith("application/json"), (
                f"{self.status}: content type {self.content_type!r}, body {self.body[:300]!r}"
            )
            self._json = json.loads(self.body)
        return self._json


def request(
    port: int,
    method: str,
    path: str,
    headers: dict | None = None,
    body: bytes | None = None,
    host: str = "127.0.0.1",
    timeout: float = HTTP_TIMEOUT_SECS,
) -> Response:
    """One request on a fresh connection. A `Host` in `headers` replaces the default one. Every
    answer is checked for what no response may ever carry: a permissive CORS header."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        raw = conn.getresponse()
        response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()
    assert "access-control-allow-origin" not in response.headers, (method, path, response.headers)
    return response


def try_request(port: int, method: str, path: str, **kwargs) -> Response | None:
    """The response, or None when nothing listens (yet) or the connection broke."""
    try:
        return request(port, method, path, **kwargs)
    except (OSError, http.client.HTTPException):
        return None
