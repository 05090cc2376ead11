"""`petit watch` and `petit logs -f`: what a running petit streams over its control socket,
printed as it happens. They talk to the supervisor, so they work with --no-api too; the clock
is read here, at each event, and handed to the pure formatters."""

from __future__ import annotations

import sys

from ..core.model import Run, TaskRun, now_ms
from ..core.text import duration_words, one_line, wall_clock
from ..errors import JobNotFound
from ..ipc.control import Watch
from ..storage.store import Store
from .history import known_run, log_line, log_prefix, logged_tasks, open_store, whole_option

TICK_SECS = 0.5  # how often a follower looks at the log files when no event comes
RECHECK_SECS = 5.0  # and how often, when quiet, it asks the db whether the run ended unseen


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


# -- petit logs -f --------------------------------------------------------------------------------

TERMINAL = ("completed", "failed", "skipped")


class _Follower:
    """One task's log as `logs -f` prints it: the attempt it follows and that attempt's tail."""

    def __init__(self, store: Store, task: TaskRun, attempt: int, prefix: str) -> None:
        self._store, self._task, self.prefix = store, task, prefix
        self.task_id = task.task_id
        self.attempt = attempt
        self._tail = store.logs.tail(task.run_id, task.task_id, attempt)

    def pump(self) -> None:
        for stream, text in self._tail.read_new():
            print(log_line(stream, text, self.prefix), flush=True)

    def next_attempt(self, attempt: int) -> None:
        """The task started `attempt`: the rest of the previous one's log first."""
        self.pump()
        self._tail.close()
        self.attempt = attempt
        print(f"{self.prefix}--- attempt {attempt} ---", flush=True)
        self._tail = self._store.logs.tail(self._task.run_id, self._task.task_id, attempt)

    def close(self) -> None:
        self._tail.close()


def follow_logs(args: dict, socket: str) -> int:
    """`petit logs -f`: what was printed so far, then the rest as it comes, until the task
    (TASK_ID) or the run ends (0), or the service stops first (1). The service says when output
    arrives and when things end; the lines come from the log files, so none is ever skipped."""
    store = open_store(args)
    run = known_run(store, args["RUN_ID"])
    task_id, fixed = args["TASK_ID"], whole_option(args, "--attempt", None)
    tasks = logged_tasks(run, task_id, fixed)
    # Subscribed before the state is read again: an end cannot fall between the two unseen.
    stream = None if _over(run, task_id, fixed) else Watch(socket, {"run_id": run.id}, TICK_SECS)
    run = known_run(store, run.id)
    followers = [
        _Follower(
            store, task, fixed or max(1, run.task(task.task_id).attempts), log_prefix(task, task_id)
        )
        for task in tasks
    ]
    try:
        ended = (
            stream is None
            or _over(run, task_id, fixed)
            or _follow(
                stream,
                followers,
                task_id,
                fixed,
                lambda: _over(known_run(store, run.id), task_id, fixed),
            )
        )
        for follower in followers:
            follower.pump()
        if not ended:
            print("petit: the service stopped before the run ended", file=sys.stderr)
        return 0 if ended else 1
    finally:
        for follower in followers:
            follower.close()
        if stream is not None:
            stream.close()


def _follow(
    stream: Watch, followers: list[_Follower], task_id: str | None, fixed: int | None, over
) -> bool:
    """Print new lines at each event and tick; True once the followed thing ended, False when
    the stream ended first. `over()` asks the db: after a `reset` (the scheduler restarted, and
    recovery ended the run without an event) and every few seconds, whatever was missed."""
    by_task = {follower.task_id: follower for follower in followers}
    quiet = 0
    for event in stream:
        for follower in followers:
            follower.pump()
        quiet = quiet + 1 if event is None else 0
        name, data = (event or {}).get("event"), (event or {}).get("data") or {}
        if name == "reset" or quiet * TICK_SECS >= RECHECK_SECS:
            quiet = 0
            if over():
                return True
        if name == "run" and data.get("ended_at") is not None:
            return True
        if name == "task" and data["task_id"] in by_task:
            follower = by_task[data["task_id"]]
            if fixed is None and data["attempts"] > follower.attempt:
                follower.next_attempt(data["attempts"])
            if task_id is not None and _attempt_over(data, fixed):
                return True
    return False


def _attempt_over(task: dict, fixed: int | None) -> bool:
    """Whether what is followed of this task is over: the task ended, or the fixed attempt did
    (a later one started, or it failed and waits for its retry)."""
    if task["status"] in TERMINAL:
        return True
    if fixed is None:
        return False
    return task["attempts"] > fixed or (task["attempts"] == fixed and task["status"] == "pending")


def _over(run: Run, task_id: str | None, fixed: int | None) -> bool:
    if run.status.is_terminal:
        return True
    if task_id is None:
        return False
    task = run.task(task_id)
    return _attempt_over({"status": task.status.value, "attempts": task.attempts}, fixed)
