"""The stream clients of the live-stream benchmarks: one reader that stamps each event with the
time it arrived (for the event and the log-follow latencies), and a crowd of clients that only
drain their sockets (the load of many open dashboards).

bench.py puts tests/ on sys.path first: the reader is the tests' SSE parser, so the benchmark
reads the stream exactly as the tests prove it is written."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator

from sse_client import SseEvent, SseStream

CONNECT_SECS = 10.0
RECV_BYTES = 65536


def open_stream(port: int, path: str) -> SseStream:
    """GET `path` as an event stream; a clear error when the route answers anything else (an
    older petit serves the logs route as JSON whatever `?follow=` says)."""
    stream = SseStream(port, path)
    kind = stream.headers.get("content-type", "")
    if stream.status != 200 or not kind.startswith("text/event-stream"):
        body = stream.response.read(300)
        stream.close()
        raise RuntimeError(f"GET {path}: {stream.status} {kind!r}, not an event stream: {body!r}")
    return stream


def arrivals(stream: SseStream, timeout: float) -> Iterator[tuple[float, SseEvent]]:
    """Each event of `stream` (comments left out) with the epoch ms at which it was parsed;
    TimeoutError once `timeout` seconds have passed since the first one was asked for."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        event = stream.next(remaining)
        received = time.time_ns() / 1e6
        if event.event is not None:
            yield received, event
    raise TimeoutError(f"the stream gave nothing more that was wanted in {timeout}s")


def first_arrival(
    stream: SseStream, predicate: Callable[[SseEvent], bool], timeout: float
) -> float:
    """The epoch ms at which the first event for which `predicate` holds arrived."""
    return next(received for received, event in arrivals(stream, timeout) if predicate(event))


class StreamCrowd:
    """`count` clients of the event stream at `path`, each on its own socket, all drained by one
    selector thread of this process: they read every byte and parse none, so they load the
    server as that many reading clients do while costing the shared CPUs as little as a client
    can. Use as a context manager; leaving it closes every socket."""

    def __init__(self, port: int, path: str, count: int) -> None:
        self.received = [0] * count  # body bytes per client
        self.closed_by_server = 0
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True, name="bench-crowd")
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECS)
                self._socks.append(sock)
                sock.sendall(request)
            for number, sock in enumerate(self._socks):
                self.received[number] = self._read_head(sock, path)
        except BaseException:
            self.close()
            raise
        self._thread.start()

    @staticmethod
    def _read_head(sock: socket.socket, path: str) -> int:
        """Read the response head, fail unless it is a 200; the body bytes read with it."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(RECV_BYTES)
            if not chunk:
                raise RuntimeError(f"GET {path}: closed before its head: {data[:300]!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
            raise RuntimeError(f"GET {path}: {head.splitlines()[0]!r}, not an event stream")
        return len(body)

    def _drain(self) -> None:
        with selectors.DefaultSelector() as selector:
            for number, sock in enumerate(self._socks):
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, number)
            while not self._stop.is_set() and selector.get_map():
                for key, _ in selector.select(timeout=0.1):
                    try:
                        data = key.fileobj.recv(RECV_BYTES)
                    except BlockingIOError:
                        continue
                    except ConnectionError:
                        data = b""
                    if not data:  # the server let it go: counted, the benchmark then fails
                        self.closed_by_server += 1
                        selector.unregister(key.fileobj)
                        continue
                    self.received[key.data] += len(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> StreamCrowd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
