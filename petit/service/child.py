"""One supervised child process: spawn it, read what it sends, reap it when it exits."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from enum import Enum

from ..errors import Unavailable
from ..ipc.commands import FROM_SUPERVISOR
from ..ipc.queues import QueueClient
from ..ipc.stream import EVENT_BATCH
from .entry import run_child
from .settings import Settings

log = logging.getLogger("petit.supervisor")
BACKOFF_FIRST_SECS = 0.5
READ_POLL_SECS = 0.2  # how soon a reader thread notices that its child was reaped


class ChildState(str, Enum):
    """Spelled as `petit ctl status` shows them."""

    STOPPED = "stopped"  # never started, or exited during shutdown
    STARTING = "starting"  # spawned, not yet reported ready
    RUNNING = "running"
    BACKOFF = "backoff"  # exited unexpectedly, restart pending


class Child:
    """One supervised process. Queues are created anew for every start: a process killed while
    holding a queue's internal lock would otherwise wedge the queue for its successor.

    `on_events` receives the stream messages the child sends, a batch at a time; `on_ready` is
    told when a start reported ready (its message is `ready_info`). Its other messages are
    requests for `on_request` when given (the API asks), else replies for `client`, the
    supervisor's command client to this child (the scheduler answers)."""

    def __init__(
        self,
        name: str,
        target: str,
        settings: Settings,
        on_events: Callable[[Child, list], None],
        on_request: Callable[[Child, dict], None] | None = None,
        on_ready: Callable[[Child], None] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.settings = settings
        self.on_events = on_events
        self.on_request = on_request
        self.on_ready = on_ready
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.inbox = self.outbox = None  # child -> supervisor, supervisor -> child
        self.state = ChildState.STOPPED
        self.started_at = 0.0
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.backoff = BACKOFF_FIRST_SECS
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()
        self.fatal: dict | None = None  # why the child refused to start, as an error body
        self.ready_info: dict = {}
        self.client = QueueClient(self.send, FROM_SUPERVISOR, peer=name)

    def start(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[Child], None]) -> None:
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.outbox.cancel_join_thread()  # never hang on exit because a dead child left it unread
        self.proc = self.ctx.Process(
            target=run_child,
            name=f"petit-{self.name}",
            args=(self.target, self.settings, self.outbox, self.inbox),
        )
        self.proc.start()
        self.state, self.started_at = ChildState.STARTING, time.monotonic()
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
        event = message.get("event")
        if event == EVENT_BATCH:  # a dying worker's last events still count
            self.on_events(self, message.get("messages") or [])
            return
        if self.proc is None or self.proc.exitcode is not None:
            return  # read just before the child died: it is not ready, and nobody waits on it
        if event == "ready":
            self.state = ChildState.RUNNING  # STARTING -> RUNNING
            self.ready_info = message
            self.ready.set()
            if self.on_ready is not None:
                self.on_ready(self)
        elif event == "fatal":
            self.fatal = message.get("error") or {}
            if self.restarts:  # a first start's refusal is reported by run() to the user instead
                log.error("%s cannot start: %s", self.name, self.fatal.get("error"))
        elif event is None and self.on_request is not None:
            self.on_request(self, message)
        elif event is None:
            self.client.resolve(message)

    def reap(self, loop: asyncio.AbstractEventLoop) -> int | None:
        loop.remove_reader(self.proc.sentinel)
        self.proc.join(timeout=1)
        code = self.proc.exitcode
        self.stop_reading.set()  # stops this start's reader thread...
        self.reader.join(timeout=1.0)  # ...before interpreter exit closes the queue under it
        self.last_exit_code = code
        self.client.fail_all(f"the {self.name} process exited")
        for channel in (self.inbox, self.outbox):  # their feeder threads and pipes go with them
            channel.close()
        self.ready.clear()
        self.exited.set()
        return code

    @property
    def is_up(self) -> bool:
        """Started and not reaped: its queues are open."""
        return self.state in (ChildState.STARTING, ChildState.RUNNING) and not self.exited.is_set()

    def send(self, message: dict) -> None:
        """Raises Unavailable, never ValueError, when the child is gone: a put on the queues of
        a reaped child fails with "Queue is closed"."""
        if self.outbox is None or not self.is_up:
            raise Unavailable(f"the {self.name} process is not running")
        self.outbox.put(message)

    def info(self) -> dict:
        alive = self.proc is not None and self.proc.exitcode is None and self.is_up
        return {
            "name": self.name,
            "pid": self.proc.pid if alive else None,
            "state": self.state.value,
            "uptime_secs": round(time.monotonic() - self.started_at, 3) if alive else None,
            "restarts": self.restarts,
        }
