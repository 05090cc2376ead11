"""The control socket's client side and limits: JSON lines over a Unix socket."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

from ..errors import BadRequest, NotListening, PetitError, Unavailable
from .commands import COMMANDS, FROM_CTL, request, unwrap

MAX_LINE_BYTES = 64 * 1024
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
PROBE_SECS = 2.0  # is anybody there: an answer of any kind will do


def check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise BadRequest(
            f"control socket path is {len(os.fsencode(path))} bytes, over the "
            f"{SOCKET_PATH_MAX}-byte limit of Unix sockets: {path}; choose a shorter path"
        )


def call_socket(
    path: str,
    cmd: str,
    args: dict | None = None,
    timeout: float | None = None,
    *,
    client: str | None = None,
) -> dict:
    """Send one command over the control socket and return its result (or raise its error).
    `timeout` defaults to the verb's wait for `petit ctl` (the command table's rule); `client`
    names the sender in the request (the audit log's door)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return _exchange(sock, path, cmd, args, timeout, client)[0]


class Watch:
    """A `watch` connection to a running petit: connected when made (or raising as
    call_socket does), then iterated for its events, as dicts with id, event and data, until
    the service stops. With `tick_secs`, a None comes each time that long passes without one."""

    def __init__(self, path: str, args: dict | None = None, tick_secs: float | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _, rest = _exchange(self.sock, path, "watch", args, None)
        except BaseException:
            self.sock.close()
            raise
        self._path, self._pending = path, bytearray(rest)
        self.sock.settimeout(tick_secs)

    def __iter__(self) -> Iterator[dict | None]:
        while True:
            *lines, rest = self._pending.split(b"\n")
            self._pending = bytearray(rest)
            for line in lines:
                yield json.loads(line)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                yield None
                continue
            except OSError as exc:
                raise Unavailable(
                    f"connection to {self._path} failed: {exc.strerror or exc}"
                ) from None
            if not chunk:
                return  # the service stopped
            self._pending += chunk

    def close(self) -> None:
        self.sock.close()


def _exchange(
    sock: socket.socket,
    path: str,
    cmd: str,
    args: dict | None,
    timeout: float | None,
    client: str | None = None,
) -> tuple[dict, bytes]:
    """Connect `sock`, send one command and read its reply: the result, and what the server
    sent after the reply (a watch's first events)."""
    check_socket_path(path)
    if timeout is None:
        timeout = COMMANDS[cmd].wait_secs(FROM_CTL)
    message = request(cmd, args, client=client)
    sock.settimeout(timeout)
    try:
        _connect(sock, path, time.monotonic() + timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotListening(f"no petit is listening on {path} ({exc.strerror})") from None
    except BlockingIOError:
        raise Unavailable(
            f"petit on {path} did not accept the connection within {timeout:g}s"
        ) from None
    except OSError as exc:
        raise NotListening(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        raw, rest = _read_line(sock)
    except TimeoutError:
        raise Unavailable(f"petit on {path} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise Unavailable(f"connection to {path} failed: {exc.strerror or exc}") from None
    try:
        reply = json.loads(raw)
    except ValueError:
        raise Unavailable(f"petit on {path} sent a malformed reply") from None
    return unwrap(reply), rest


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    """A socket with a timeout connects without blocking: on a Unix socket whose accept queue is
    full (a busy supervisor, a burst of clients) that is EAGAIN at once, not a wait. Retry until
    the deadline; the server is busy, not gone."""
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _read_line(sock: socket.socket) -> tuple[bytes, bytes]:
    """The first line, and what came after it in the same reads (a watch's first events)."""
    chunks = bytearray()
    while b"\n" not in chunks:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks += chunk
        if len(chunks) > 16 * MAX_LINE_BYTES:
            break
    line, newline, rest = bytes(chunks).partition(b"\n")
    return line + newline, rest


def is_listening(path: str) -> bool:
    try:
        call_socket(path, "status", timeout=PROBE_SECS)
        return True
    except NotListening:
        return False
    except PetitError:
        return True  # something answered, even if with an error
