"""`petit watch` and `petit logs -f`: what a running petit streams over its control socket,
printed as it happens. They talk to the supervisor, so they work with --no-api too; the clock
is read here, at each event, and handed to the pure formatters."""

from __future__ import annotations

import sys

from ..core.model import now_ms
from ..core.text import duration_words, one_line, wall_clock
from ..errors import JobNotFound
from ..ipc.control import Watch
from .history import log_line, open_store

TICK_SECS = 0.5  # how often a follower looks at the log files when no event comes


def event_lines(event: dict, now: int) -> list[str]:
    """One event as `petit watch` prints it: the local time it arrived, then what happened (a
    `log` event gives one line per output line)."""
    stamp = wall_clock(now)
    return [f"{stamp}  {text}" for text in _describe(event.get("event"), event.get("data") or {})]


def _describe(name: str | None, data: dict) -> list[str]:
    if name == "run":
        return [f"run {data['id']} {data['status']}{_run_detail(data)}"]
    if name == "task":
        return [f"task {data['run_id']} {data['task_id']} {_task_state(data)}"]
    if name == "log":
        where = f"log {data['run_id']} {data['task_id']}"
        stream = data.get("stream", "stdout")
        lines = [log_line(stream, line, f"{where} ") for line in data.get("lines", [])]
        if data.get("dropped"):
            lines.append(
                f"{where} [{data['dropped']} line(s) not streamed live; "
                f"petit logs {data['run_id']} {data['task_id']} has them]"
            )
        return lines
    if name == "scheduler":
        return [f"scheduler {data['state']}"]
    if name == "fire_dropped":
        at = wall_clock(data["scheduled_at"])
        return [f"fire of {data['job_id']} at {at} dropped: {data['reason']}"]
    if name == "child":
        return [
            f"{data['child']} process restarted (exit code {data['exit_code']}, "
            f"restart {data['restarts']})"
        ]
    if name == "reset":
        return [f"events may have been missed ({data.get('reason')}); see petit runs"]
    return [f"{name} {data}"]


def _run_detail(data: dict) -> str:
    if data["status"] == "pending":
        return f" ({data['trigger']})"
    if data.get("duration_ms") is None:
        return ""
    error = f": {one_line(data['error'])}" if data.get("error") else ""
    return f" in {duration_words(data['duration_ms'] / 1000)}{error}"


def _task_state(data: dict) -> str:
    status, attempt = data["status"], data["attempts"]
    if status == "running":
        return f"running (attempt {attempt})"
    if "retry_delay_secs" in data:
        return (
            f"attempt {attempt} failed: {one_line(data.get('error') or '')}; "
            f"retrying in {duration_words(data['retry_delay_secs'])}"
        )
    text = status
    if data.get("exit_code") is not None:
        text += f", exit code {data['exit_code']}"
    if data.get("duration_ms") is not None:
        text += f", {duration_words(data['duration_ms'] / 1000)}"
    if data.get("error") and status != "completed":
        text += f": {one_line(data['error'])}"
    return text


def watch(args: dict, socket: str) -> int:
    """Print events until Ctrl-C (0) or until the service stops (1). A JOB_ID must be one the
    service's db knows, so that a typo is an error rather than a silent stream."""
    job_id = args["JOB_ID"]
    if job_id:
        store = open_store(args)
        if job_id not in store.job_summaries():
            raise JobNotFound(job_id)
    stream = Watch(socket, {"job_id": job_id} if job_id else {})
    print(f"petit: watching {socket} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        for event in stream:
            for line in event_lines(event, now_ms()):
                print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        stream.close()
    print("petit: the service stopped", file=sys.stderr)
    return 1
