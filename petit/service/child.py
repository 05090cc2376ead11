"""One supervised child process: spawn it, read what it sends, reap it when it exits."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable

from ..errors import Unavailable
from ..ipc.queues import ReplyMatcher
from .entry import run_child

log = logging.getLogger("petit.supervisor")
BACKOFF_FIRST_SECS = 0.5
READ_POLL_SECS = 0.2  # how soon a reader thread notices that its child was reaped


class Child:
    """One supervised process. Queues are created anew for every start: a process killed while
    holding a queue's internal lock would otherwise wedge the queue for its successor."""

    def __init__(
        self, name: str, target: str, settings: dict, on_message: Callable[[Child, dict], None]
    ) -> None:
        self.name = name
        self.target = target
        self.settings = settings
        self.on_message = on_message
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.inbox = self.outbox = None  # child -> supervisor, supervisor -> child
        self.state = "stopped"
        self.started_at = 0.0
        self.restarts = 0
        self.backoff = BACKOFF_FIRST_SECS
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()
        self.fatal: dict | None = None  # why the child refused to start, as an error body
        self.ready_info: dict = {}
        self.matcher = ReplyMatcher()

    def start(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[Child], None]) -> None:
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.outbox.cancel_join_thread()  # never hang on exit because a dead child left it unread
        self.proc = self.ctx.Process(
            target=run_child,
            name=f"petit-{self.name}",
            args=(self.target, self.settings, self.outbox, self.inbox),
        )
        self.proc.start()
        self.state, self.started_at = "starting", time.monotonic()
        self.ready.clear()
        self.exited.clear()
        self.fatal = None
        log.info("%s started (pid %d)", self.name, self.proc.pid)
        self.stop_reading = threading.Event()
        self.reader = threading.Thread(
            target=self._read,
            args=(loop, self.inbox, self.stop_reading),
            daemon=True,
            name=f"petit-read-{self.name}",
        )
        self.reader.start()
        loop.add_reader(self.proc.sentinel, on_exit, self)

    def _read(self, loop: asyncio.AbstractEventLoop, inbox, stop: threading.Event) -> None:
        # Stopped by a flag, never by a None put into the inbox: a put needs the queue's
        # cross-process write lock, which a child that died mid-send still holds; the put's feeder
        # thread then blocks for ever and the supervisor hangs at exit joining it.
        while not stop.is_set():
            try:
                message = inbox.get(timeout=READ_POLL_SECS)
                loop.call_soon_threadsafe(self._deliver, message)
            except queue.Empty:
                continue
            except (RuntimeError, EOFError, OSError, TypeError, ValueError):
                # the loop closed at shutdown, or the queue went away with its child (at exit the
                # queue's feeder thread closes the reading end under a get(): TypeError)
                return

    def _deliver(self, message: dict) -> None:
        if self.proc is None or self.proc.exitcode is not None:
            return  # read just before the child died: it is not ready, and nobody waits on it
        if message.get("event") == "ready":
            self.state = "running"
            self.ready_info = message
            self.ready.set()
        elif message.get("event") == "fatal":
            self.fatal = message.get("error") or {}
            if self.restarts:  # a first start's refusal is reported by run() to the user instead
                log.error("%s cannot start: %s", self.name, self.fatal.get("error"))
        elif message.get("event") is None:
            self.on_message(self, message)

    def reap(self, loop: asyncio.AbstractEventLoop) -> int | None:
        loop.remove_reader(self.proc.sentinel)
        self.proc.join(timeout=1)
        code = self.proc.exitcode
        self.stop_reading.set()  # stops this start's reader thread...
        self.reader.join(timeout=1.0)  # ...before interpreter exit closes the queue under it
        self.matcher.fail_all(f"the {self.name} process exited")
        for channel in (self.inbox, self.outbox):  # their feeder threads and pipes go with them
            channel.close()
        self.ready.clear()
        self.exited.set()
        return code

    def send(self, message: dict) -> None:
        if self.outbox is None or self.state == "stopped":
            raise Unavailable(f"the {self.name} process is not running")
        self.outbox.put(message)

    def info(self) -> dict:
        alive = self.proc is not None and self.proc.exitcode is None and self.state != "stopped"
        return {
            "name": self.name,
            "pid": self.proc.pid if alive else None,
            "state": self.state,
            "uptime_secs": round(time.monotonic() - self.started_at, 3) if alive else None,
            "restarts": self.restarts,
        }
