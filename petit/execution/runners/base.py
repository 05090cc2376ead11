"""The seam between the engine and whatever runs task attempts: a runner-neutral spec of one
attempt, its result, and the protocols a runner implements. The engine and recovery know only
these; how an attempt runs (process groups here, a remote worker elsewhere) stays in a runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ...core.model import Job, Task, TaskType
from ...core.outputs import output_environment
from ...core.params import param_environment

# An attempt's log keeps at least its last DEFAULT_LOG_LIMIT bytes (a segment of the file), and
# a line longer than that reaches `on_lines` in pieces of that size: memory stays bounded.
DEFAULT_LOG_LIMIT = 1024 * 1024

# (stream name, the lines of one read of that stream, without their newlines): one call per
# read, not per line, because a task printing millions of lines must not cost a call for each
LineCallback = Callable[[str, list[str]], None]


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one task. `env` is petit's part of the environment (job, task, PETIT_*);
    a runner adds what its processes inherit. `on_lines` gets every output line, without its
    newline, as it comes (a batch per read): the runner keeps no output of its own."""

    job_id: str
    run_id: str
    task_id: str
    attempt: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str | None = None
    timeout_secs: float | None = None
    log_limit: int = DEFAULT_LOG_LIMIT  # the longest line passed to on_lines in one piece
    on_lines: LineCallback | None = None


@dataclass
class AttemptResult:
    """How an attempt ended. A non-zero exit is data here, never an exception."""

    exit_code: int | None
    error: str | None
    timed_out: bool
    cancelled: bool
    started_at: int
    ended_at: int
    # what its process tree used (see runners/usage.py); None when the runner did not measure
    cpu_secs: float | None = None  # user + system
    max_rss_bytes: int | None = None
    # what the attempt wrote to its PETIT_OUTPUT file: at most OUTPUT_LIMIT + 1 bytes, so the
    # engine can tell a file too big; None when the runner gives no such file
    output: bytes | None = None


class AttemptHandle(Protocol):
    """A started attempt. `cancel()` may be called from any thread, also after the end, and
    makes `collect()` return promptly."""

    def to_dict(self) -> dict | None:
        """What the engine persists on the task so that recovery finds the attempt again after
        a crash: JSON-serialisable, with the runner's name under "runner"; None when nothing
        was started (a failed start)."""

    def cancel(self) -> None: ...

    def collect(self) -> AttemptResult:
        """Block until the attempt is over; what it leaves behind is already cleaned up."""


class TaskRunner(Protocol):
    name: str  # the "runner" key of the handles it makes

    def start(self, spec: AttemptSpec) -> AttemptHandle:
        """Start the attempt; a failure to start is reported by the handle's result."""

    def sweep_run(self, run_id: str, db_path: str) -> int:
        """After a stop (cancel, interrupt, shutdown): end whatever the run's attempts left
        behind. Returns how many things were killed."""

    def recover(self, handle: dict) -> int:
        """End the attempt a dead worker left in flight, if it is still there. Returns how many
        things were killed."""


def build_argv(task: Task, base_dir: str) -> tuple[str, ...]:
    """A python task's script file is found relative to the job file's folder."""
    if task.type is TaskType.COMMAND:
        return (task.command, *task.args)
    if task.type is TaskType.SHELL:
        return ("/bin/sh", "-c", task.script)
    if task.inline is not None:
        return (sys.executable, "-c", task.inline)
    return (sys.executable, os.path.join(base_dir, task.script))


def job_folder(job: Job) -> str:
    """Where a job's relative paths (a python script, working_dir) start: its file's folder."""
    return os.path.dirname(os.path.abspath(job.source)) if job.source else os.getcwd()


def attempt_cwd(task: Task, base_dir: str) -> str | None:
    return None if task.working_dir is None else os.path.join(base_dir, task.working_dir)


def build_env(
    job: Job,
    task: Task,
    run_id: str,
    attempt: int,
    extra: Mapping[str, str] | None = None,
    params: Mapping[str, object] | None = None,
    upstream: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Job environment, then the task's, then `extra`, then the run's `params` as
    PETIT_PARAM_<NAME> and the outputs of the tasks `upstream` (task id -> values) as
    PETIT_OUT_<TASK>_<KEY>, then the PETIT_* identity of the attempt, which no job can override
    (a task must not impersonate another run). Params and outputs reach a task only here, as
    data: nothing is templated into its command, arguments or script."""
    env = {**job.environment, **task.environment, **(extra or {})}
    env.update(param_environment(params or {}))
    env.update(output_environment(upstream or {}))
    env.update(
        PETIT_JOB_ID=job.id, PETIT_RUN_ID=run_id, PETIT_TASK_ID=task.id, PETIT_ATTEMPT=str(attempt)
    )
    return env
