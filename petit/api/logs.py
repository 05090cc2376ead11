"""GET /api/runs/{run_id}/tasks/{task_id}/logs: a task's log as far as it is written, or with
`?follow=true` a Server-Sent Events stream of it that ends once the task has. The log comes from
the files the worker appends to (storage/logs.py); the task's end from its stored state."""

from __future__ import annotations

import asyncio
import json
import re
import time

from ..core.followups import log_sources
from ..core.model import TaskRun, TaskStatus
from ..errors import BadRequest, NotFound, PetitError, TaskNotFound
from ..storage.store import Store
from .base import BaseHandler
from .handlers import known_run, parse_flag
from .stream import HEARTBEAT_SECS, send, sse, start_stream

POLL_SECS = 0.25  # a printed line is on disk within 0.5 s, so it reaches the client within ~1 s
STATE_CHECK_SECS = 0.3  # the worker records a task's end within ~0.25 s
MAX_LINES_PER_MESSAGE = 500  # a big backlog goes out in messages a client can resume between
_RESUME_ID = re.compile(r"([1-9][0-9]{0,8}):([0-9]{1,12})")


def _parse_attempt(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not raw.strip("0") or len(raw) > 9:
        raise BadRequest(f"attempt must be a whole number >= 1, got {raw[:40]!r}")
    return int(raw)


def _parse_resume(raw: str | None) -> tuple[int, int] | None:
    """A Last-Event-ID this route gave out, `<attempt>:<lines sent>`, as (attempt, line)."""
    if raw is None:
        return None
    match = _RESUME_ID.fullmatch(raw.strip())
    if match is None:
        raise BadRequest(
            f"Last-Event-ID must be '<attempt>:<line>' as this stream sent it, got {raw[:40]!r}"
        )
    return int(match[1]), int(match[2])


def _end_data(state: TaskRun | None) -> dict:
    if state is None:  # the run was removed (retention) while it was followed
        return {"status": None, "exit_code": None, "attempts": 0}
    return {"status": state.status.value, "exit_code": state.exit_code, "attempts": state.attempts}


class LogFollow:
    """One `?follow=true` stream, without the HTTP: `step(now)` returns what to send now (maybe
    nothing) and sets `ended` once the `end` message is out. Without a pinned attempt it goes
    on from attempt to attempt until the task is over; with one, until that attempt is."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        task_id: str,
        attempt: int,
        pinned: bool,
        start_line: int = 0,
        now: float = 0.0,
    ) -> None:
        self._store, self._run_id, self._task_id = store, run_id, task_id
        self.attempt, self._pinned = attempt, pinned
        self._tail = store.logs.tail(run_id, task_id, attempt, start_line)
        self._latest = attempt  # the newest attempt the stored state showed
        self._next_check = now
        self._last_sent = now
        self.ended = False

    def step(self, now: float) -> str:
        end = None
        if now >= self._next_check:  # the state before the log: a task seen over is fully written
            self._next_check = now + STATE_CHECK_SECS
            end = self._check()
        parts = self._drain()
        while not self._pinned and self.attempt < self._latest:
            self._tail.close()
            self.attempt += 1
            self._tail = self._store.logs.tail(self._run_id, self._task_id, self.attempt)
            parts += self._drain()
        if end is not None:
            parts.append(sse("end", json.dumps(end)))
            self.ended = True
        if parts:
            self._last_sent = now
        elif now - self._last_sent >= HEARTBEAT_SECS:
            parts.append(": keepalive\n\n")
            self._last_sent = now
        return "".join(parts)

    def close(self) -> None:
        self._tail.close()

    def _check(self) -> dict | None:
        """The `end` message's data once what is followed is over, else None."""
        run = self._store.get_run(self._run_id)
        state = (
            next((t for t in log_sources(run) if t.task_id == self._task_id), None) if run else None
        )
        if state is None:
            return _end_data(None)
        self._latest = max(self._latest, state.attempts)
        over = run.status.is_terminal or state.status.is_terminal
        if self._pinned:  # a later attempt began, or a retry of this one is waiting its delay
            over = over or state.attempts > self.attempt or state.status is TaskStatus.PENDING
        return _end_data(state) if over else None

    def _drain(self) -> list[str]:
        """Every complete line on disk, as `log` messages of consecutive lines of one stream;
        each id is the attempt and the number of its lines sent so far."""
        messages = []
        while lines := self._tail.read_new():
            number = self._tail.position - len(lines)  # the lines of one read are consecutive
            start = 0
            while start < len(lines):
                stream, end = lines[start][0], start
                while end < len(lines) and lines[end][0] == stream:
                    end += 1
                end = min(end, start + MAX_LINES_PER_MESSAGE)
                data = {
                    "run_id": self._run_id,
                    "task_id": self._task_id,
                    "attempt": self.attempt,
                    "stream": stream,
                    "lines": [text for _, text in lines[start:end]],
                }
                messages.append(sse("log", json.dumps(data), f"{self.attempt}:{number + end}"))
                start = end
        return messages


class TaskLogsHandler(BaseHandler):
    async def get(self, run_id: str, task_id: str) -> None:
        run = known_run(self.store, run_id)
        state = next((t for t in log_sources(run) if t.task_id == task_id), None)
        if state is None:
            raise TaskNotFound(run_id, task_id)
        attempt = _parse_attempt(self.get_query_argument("attempt", None))
        if attempt is not None and attempt > state.attempts:
            raise NotFound(
                f"task '{task_id}' of run '{run_id}' has no attempt {attempt} "
                f"(it has {state.attempts})"
            )
        if parse_flag("follow", self.get_query_argument("follow", "false")):
            await self._follow(run_id, task_id, state, attempt)
            return
        shown = attempt or state.attempts
        record = (self.store.logs.read(run_id, task_id, shown) if shown else None) or {}
        self.reply(
            {
                "run_id": run_id,
                "task_id": task_id,
                "status": state.status.value,
                "attempt": shown,
                "attempts": state.attempts,
                "exit_code": state.exit_code,
                "stdout": record.get("stdout", ""),
                "stderr": record.get("stderr", ""),
                "truncated": record.get("truncated", False),
                "lines": record.get("lines", []),
            }
        )

    async def _follow(self, run_id: str, task_id: str, state: TaskRun, attempt: int | None):
        first, start_line = attempt or max(1, state.attempts), 0
        resume = _parse_resume(self.request.headers.get("Last-Event-ID"))
        if resume is not None:
            if resume[0] > max(1, state.attempts) or attempt not in (None, resume[0]):
                raise BadRequest(f"Last-Event-ID {resume[0]}:{resume[1]} is not of this stream")
            first, start_line = resume
        start_stream(self)
        if self.request.method == "HEAD":
            self.finish()
            return
        pinned = attempt is not None
        follow = LogFollow(self.store, run_id, task_id, first, pinned, start_line, time.monotonic())
        self._gone = asyncio.Event()
        try:
            while not follow.ended:
                try:
                    chunk = follow.step(time.monotonic())
                except PetitError as exc:  # the headers are out: say it in the stream, then stop
                    await send(self, sse("error", json.dumps(exc.to_wire())))
                    break
                if chunk and not await send(self, chunk):
                    return  # the client left, or stopped reading
                if not follow.ended:
                    await _wait(self._gone, POLL_SECS)
                if self._gone.is_set():
                    return
        finally:  # tornado finishes the response once get() returns
            follow.close()

    def on_connection_close(self) -> None:
        gone = getattr(self, "_gone", None)
        if gone is not None:
            gone.set()


async def _wait(event: asyncio.Event, secs: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), secs)
    except TimeoutError:
        pass
