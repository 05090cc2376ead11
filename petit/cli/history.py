"""`petit runs`, `petit show` and `petit logs`: the run history read straight from the db,
whether a service runs or not, through the Store and the JSON views the HTTP API reads with.
The clock is read here, once per command, and handed to the pure text helpers as `now`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

from ..core.followups import log_sources
from ..core.model import Run, RunStatus, TaskRun, now_ms
from ..core.params import param_text
from ..core.text import ago, duration_words, one_line, short_repr, wall_clock
from ..core.views import run_json, task_json
from ..errors import NotFound, RunNotFound, StorageError, TaskNotFound, UsageError
from ..service.settings import db_path, whole_number
from ..storage.pages import runs_page
from ..storage.store import Store

DEFAULT_LIMIT = 20
STDERR_MARK = "! "  # the start of a line a task wrote to stderr, after the task prefix if any


# -- shared ---------------------------------------------------------------------------------------


def open_store(args: dict) -> Store:
    """The store of --db, checked: a db that does not exist is an error here, not an empty
    history (the usual cause is a --db other than the service's)."""
    path = db_path(args)
    if not os.path.exists(path):
        raise StorageError(
            f"{path}: no petit database there; give --db the same path as to petit run "
            "or petit trigger"
        )
    store = Store(path)
    store.check()
    return store


def known_run(store: Store, run_id: str) -> Run:
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def whole_option(args: dict, option: str, default: int | None) -> int | None:
    """A whole-number option of >= 1, or `default` when it is not given."""
    return default if args[option] is None else whole_number(option, args[option])


def table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in (headers, *rows)
    ]


def _moment(at_ms: int | None, now: int) -> str:
    return "-" if at_ms is None else f"{wall_clock(at_ms)} ({ago(at_ms, now)})"


def _took(duration_ms: int | None, started_at: int | None, now: int) -> str:
    """A finished span, or how long it has been going for, or '-' when it never started."""
    if duration_ms is not None:
        return duration_words(duration_ms / 1000)
    if started_at is None:
        return "-"
    return f"{duration_words((now - started_at) / 1000)} so far"


def _print_json(value: dict) -> None:
    print(json.dumps(value, indent=2))


# -- petit runs -----------------------------------------------------------------------------------


def print_runs(args: dict) -> int:
    limit = whole_option(args, "--limit", DEFAULT_LIMIT)
    status = _status_option(args["--status"])
    store = open_store(args)
    summaries = store.job_summaries()
    job_id = args["JOB_ID"]
    if job_id is not None and job_id not in summaries:
        known = ", ".join(sorted(summaries)) or "none"
        raise NotFound(
            f"job {short_repr(job_id)} not found in {store.db_path}; known jobs: {known}"
        )
    runs = newest_runs(store, [job_id] if job_id else sorted(summaries), limit, status)
    if args["--json"]:
        _print_json({"runs": [run_json(run) for run in runs], "count": len(runs)})
        return 0
    if not runs:
        print("no runs")
        return 0
    now = now_ms()
    rows = [
        (
            run.id,
            run.job_id,
            run.status.value,
            run.trigger.value,
            _moment(run.started_at, now),
            _took(run.duration_ms, run.started_at, now),
        )
        for run in runs
    ]
    for line in table(("RUN", "JOB", "STATUS", "TRIGGER", "STARTED", "DURATION"), rows):
        print(line)
    return 0


def _status_option(raw: str | None) -> RunStatus | None:
    if raw is None:
        return None
    try:
        return RunStatus.named(raw)
    except ValueError as exc:
        raise UsageError(f"--status {exc}") from None


def newest_runs(
    store: Store, job_ids: list[str], limit: int, status: RunStatus | None
) -> list[Run]:
    """The `limit` newest runs of these jobs together (with `status` only, when given)."""
    runs = [run for job_id in job_ids for run in runs_page(store, job_id, limit, status)]
    runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return runs[:limit]


# -- petit show -----------------------------------------------------------------------------------


def print_run(args: dict) -> int:
    run = known_run(open_store(args), args["RUN_ID"])
    if args["--json"]:  # the API's Run, with the API's TaskState list of the run
        _print_json({**run_json(run), "tasks": [task_json(task) for task in run.tasks]})
        return 0
    now = now_ms()
    print(f"run {run.id} of job {run.job_id}: {run.status.value} ({run.trigger.value})")
    facts = [
        ("created", _moment(run.created_at, now)),
        ("scheduled", run.scheduled_at and _moment(run.scheduled_at, now)),
        ("started", _moment(run.started_at, now)),
        ("ended", run.ended_at and _moment(run.ended_at, now)),
        ("duration", _took(run.duration_ms, run.started_at, now)),
        ("used", usage_words(run.cpu_secs, run.max_rss_bytes)),
        ("error", run.error and one_line(run.error)),
        ("params", _assignments(run.shown_params)),
    ]
    for name, value in facts:
        if value:
            print(f"  {name:<11}{value}")
    print()
    rows = [
        (
            task.task_id,
            task.status.value,
            str(task.attempts),
            "-" if task.exit_code is None else str(task.exit_code),
            _took(task.duration_ms, task.started_at, now),
            usage_words(task.cpu_secs, task.max_rss_bytes) or "-",
            one_line(task.error or ""),
        )
        for task in run.tasks
    ]
    headers = ("TASK", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "USED", "ERROR")
    for line in table(headers, rows):
        print(line)
    for task in run.tasks:
        if task.outputs:
            print(f"  outputs of {task.task_id}: {_assignments(task.outputs)}")
    for task in run.tasks:
        if task.attempts > 1 or task.next_attempt_at is not None:
            print()
            for line in _attempt_lines(task, now):
                print(line)
    _print_followups(run)
    return 0


def usage_words(cpu_secs: float | None, max_rss_bytes: int | None) -> str | None:
    """'cpu 1.23s, peak 45 MiB', of what was measured; None when nothing was."""
    words = []
    if cpu_secs is not None:
        words.append(f"cpu {cpu_secs:.2f}s")
    if max_rss_bytes is not None:
        mib = max_rss_bytes / 2**20
        size = f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.{0 if mib >= 10 else 1}f} MiB"
        words.append(f"peak {size}")
    return ", ".join(words) or None


def _attempt_lines(task: TaskRun, now: int) -> list[str]:
    """A retried task attempt by attempt, with the delay chosen after each failed one, and
    while a retry waits, when it starts."""
    lines = [f"task {task.task_id}, attempt by attempt:"]
    rows = [
        (
            str(entry.get("attempt")),
            "-" if entry.get("started_at") is None else wall_clock(entry["started_at"]),
            "-" if entry.get("exit_code") is None else str(entry["exit_code"]),
            _took(entry.get("duration_ms"), entry.get("started_at"), now),
            "-"
            if entry.get("retry_delay_ms") is None
            else duration_words(entry["retry_delay_ms"] / 1000),
            one_line(entry.get("error") or ""),
        )
        for entry in task.attempt_history
    ]
    headers = ("ATTEMPT", "STARTED", "EXIT", "DURATION", "RETRY AFTER", "ERROR")
    lines += [f"  {line}" for line in table(headers, rows)]
    if task.next_attempt_at is not None:
        lines.append(f"  next: attempt {task.attempts + 1} at {_moment(task.next_attempt_at, now)}")
    return lines


def _print_followups(run: Run) -> None:
    """The hooks that ran after the run's end, and the webhooks told of it."""
    hooks = [
        (
            h["hook"],
            h["status"],
            "-" if h["exit_code"] is None else str(h["exit_code"]),
            "-" if h["duration_ms"] is None else duration_words(h["duration_ms"] / 1000),
            one_line(h["error"] or ""),
        )
        for h in run.hooks
    ]
    if hooks:
        print()
        for line in table(("HOOK", "STATUS", "EXIT", "DURATION", "ERROR"), hooks):
            print(line)
    notified = []
    for entry in run.notifications:
        last = entry["attempts"][-1] if entry["attempts"] else {}
        state = "delivered" if entry["delivered"] else "not delivered" if last else "pending"
        if entry.get("abandoned"):
            state = "abandoned"
        outcome = last.get("error") or (last.get("status_code") and f"HTTP {last['status_code']}")
        notified.append(
            (
                one_line(entry["url"]),
                entry["event"],
                state,
                str(len(entry["attempts"])),
                one_line(str(outcome or "")),
            )
        )
    if notified:
        print()
        for line in table(("WEBHOOK", "EVENT", "STATE", "ATTEMPTS", "LAST"), notified):
            print(line)


def _assignments(values: dict) -> str:
    """name=value pairs on one line (a value of several lines shows its newlines as \\n)."""
    return one_line(" ".join(f"{name}={param_text(value)}" for name, value in values.items()))


# -- petit logs -----------------------------------------------------------------------------------


def print_logs(args: dict) -> int:
    attempt = whole_option(args, "--attempt", None)
    store = open_store(args)
    run = known_run(store, args["RUN_ID"])
    task_id = args["TASK_ID"]
    printed = False
    tasks = logged_tasks(run, task_id, attempt)
    for task in tasks:
        for line in stored_log(store, task, attempt, log_prefix(task, task_id)):
            print(line)
            printed = True
    if not printed:  # not an error: a skipped task, or one that printed nothing, has no log
        what = f"run '{run.id}'"
        if task_id is not None:
            what = f"task '{task_id}' of run '{run.id}' ({tasks[0].status.value})"
        print(f"no output recorded for {what}", file=sys.stderr)
    return 0


def logged_tasks(run: Run, task_id: str | None, attempt: int | None) -> list[TaskRun]:
    """The tasks `petit logs` shows: TASK_ID's, or every task that made that attempt, in DAG
    order (the run's order), then the hooks that ran (`@on_failure`...). Raises for an unknown
    task or an attempt it never made."""
    tasks = log_sources(run)
    if task_id is None:
        return [task for task in tasks if attempt is None or attempt <= task.attempts]
    task = next((t for t in tasks if t.task_id == task_id), None)
    if task is None:
        raise TaskNotFound(run.id, task_id)
    if attempt is not None and attempt > task.attempts:
        raise NotFound(
            f"task '{task_id}' of run '{run.id}' has no attempt {attempt}: it made {task.attempts}"
        )
    return [task]


def log_prefix(task: TaskRun, task_id: str | None) -> str:
    """A run's lines carry their task; one task's lines are bare."""
    return "" if task_id else f"[{task.task_id}] "


def stored_log(store: Store, task: TaskRun, attempt: int | None, prefix: str = "") -> Iterator[str]:
    """The lines of one attempt's stored log (the task's last attempt when `attempt` is None,
    even when that one printed nothing), as printed."""
    record = store.logs.read(task.run_id, task.task_id, attempt or task.attempts or None)
    if record is None:
        return
    if record["truncated"]:  # the store keeps the end of a long output: its start is gone
        yield f"{prefix}[truncated]"
    for stream, text in record["lines"]:
        yield log_line(stream, text, prefix)


def log_line(stream: str, text: str, prefix: str = "") -> str:
    """One captured line as `petit logs` prints it: stdout as it was, stderr marked. A follow
    mode prints the lines of live `log` events with this same function."""
    return f"{prefix}{STDERR_MARK if stream == 'stderr' else ''}{text}"
