"""Commands between processes: the command table, request/reply envelopes, the reply matcher
used over multiprocessing queues, and the JSON-lines control-socket client."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, InvalidStateError

from .errors import (BadRequest, Conflict, NotListening, PetitError, StorageError, Unavailable,
                     from_wire)

# verb -> required string arguments
COMMANDS: dict[str, tuple[str, ...]] = {
    "status": (), "pause": (), "resume": (), "reload": (), "shutdown": (),
    "trigger": ("job_id",), "cancel": ("run_id",),
}
MAX_LINE_BYTES = 64 * 1024
SOCKET_PATH_MAX = 107          # sun_path is 108 bytes including the terminating NUL
DEFAULT_DEADLINE_SECS = 10.0


def request(cmd: str, args: dict | None = None, request_id: str | None = None) -> dict:
    return {"id": request_id or uuid.uuid4().hex, "cmd": cmd, "args": args or {}}


def ok_reply(request_id: str | None, result: dict) -> dict:
    return {"id": request_id, "ok": True, "result": result}


def error_reply(request_id: str | None, exc: PetitError) -> dict:
    # Echo only an id a client could match: an object or a float (NaN, Infinity) taken from a
    # malformed request would make the reply itself invalid JSON for strict parsers.
    if not isinstance(request_id, (str, int)):
        request_id = None
    return {"id": request_id, "ok": False, **exc.to_wire()}


def validate_request(message) -> dict:
    """Check the envelope and the verb's arguments; raise BadRequest with what was expected."""
    if not isinstance(message, dict):
        raise BadRequest('expected a JSON object like {"id": "1", "cmd": "status", "args": {}}')
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:   # a list or object is unhashable
        raise BadRequest(f"unknown command {cmd!r:.60}: expected one of {', '.join(COMMANDS)}")
    args = message.get("args") or {}
    if not isinstance(args, dict):
        raise BadRequest("'args' must be a JSON object")
    for name in COMMANDS[cmd]:
        if not isinstance(args.get(name), str) or not args[name]:
            raise BadRequest(f"command {cmd!r} needs a string argument {name!r}")
    request_id = message.get("id")
    if request_id is not None and not isinstance(request_id, (str, int)):
        raise BadRequest("'id' must be a string")
    # Only the declared arguments go on to the scheduler: anything else a client sent is unused,
    # and could be nested too deeply to pickle across the process boundary.
    return {"id": request_id, "cmd": cmd, "args": {name: args[name] for name in COMMANDS[cmd]}}


def unwrap(reply: dict) -> dict:
    """A reply's result, or the exception it carries."""
    if reply.get("ok"):
        return reply.get("result") or {}
    raise from_wire(reply)


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


def hold_instance_lock(db: str) -> int:
    """One process that runs jobs per db (`petit run`, or a one-shot `petit trigger`): an flock
    held for the holder's life, so one's recovery never kills the other's tasks."""
    try:
        fd = os.open(db + ".run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(f"{db}.run.lock: cannot create the instance lock: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"another petit is already running jobs on {db} (a `petit run`, or a "
                       "`petit trigger` in progress); use `petit ctl trigger` against a running service") from None
    return fd


def check_socket_path(path: str) -> None:
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise BadRequest(f"control socket path is {len(os.fsencode(path))} bytes, over the "
                         f"{SOCKET_PATH_MAX}-byte limit of Unix sockets: {path}; "
                         "pass a shorter --socket PATH")


def call_socket(path: str, cmd: str, args: dict | None = None,
                timeout: float = DEFAULT_DEADLINE_SECS) -> dict:
    """Send one command over the control socket and return its result (or raise its error)."""
    check_socket_path(path)
    message = request(cmd, args)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            _connect(sock, path, time.monotonic() + timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotListening(f"no petit is listening on {path} ({exc.strerror})") from None
        except BlockingIOError:
            raise Unavailable(f"petit on {path} did not accept the connection within {timeout:g}s") from None
        except OSError as exc:
            raise NotListening(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            raw = _read_line(sock)
        except socket.timeout:
            raise Unavailable(f"petit on {path} did not answer within {timeout:g}s") from None
        except OSError as exc:
            raise Unavailable(f"connection to {path} failed: {exc.strerror or exc}") from None
    try:
        reply = json.loads(raw)
    except ValueError:
        raise Unavailable(f"petit on {path} sent a malformed reply") from None
    return unwrap(reply)


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


def _read_line(sock: socket.socket) -> bytes:
    chunks = bytearray()
    while not chunks.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks += chunk
        if len(chunks) > 16 * MAX_LINE_BYTES:
            break
    return bytes(chunks)


def is_listening(path: str) -> bool:
    try:
        call_socket(path, "status", timeout=2.0)
        return True
    except NotListening:
        return False
    except PetitError:
        return True   # something answered, even if with an error


def run_child(target: str, settings: dict, outbox, inbox) -> None:
    """Entry point of a spawned child ("module:function"). It lives here rather than in the
    supervisor so that a child imports only what it needs: not asyncio for the scheduler, and
    not the supervisor's import restrictions for the API."""
    import importlib
    module, name = target.split(":")
    getattr(importlib.import_module(module), name)(settings, outbox, inbox)
