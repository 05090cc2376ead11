"""One run of one job: drives the DAG planner and task attempts, retries, cancellation, and
records everything through the recorder. Blocking; one engine per run, in its own thread."""

from __future__ import annotations

import heapq
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.dag import DagPlanner
from ..core.model import Job, RetryCondition, Run, RunStatus, Task, TaskStatus, now_ms
from ..errors import StorageError
from .recorder import RunRecorder
from .runners.local import (
    AttemptResult,
    TaskProcess,
    build_argv,
    build_env,
    sweep_escaped,
    sweep_match,
)

DEFAULT_MAX_TASKS = 4
log = logging.getLogger("petit.engine")

# (event, task_id, detail): "start" / "end" / "stdout" / "stderr"; used by `petit trigger`
Observer = Callable[[str, str, str], None]


@dataclass
class _Finished:
    task_id: str
    attempt: int
    result: AttemptResult


class RunEngine:
    """Executes `run` (already recorded as pending) for `job`. `cancel()` and `interrupt()` are
    thread-safe and make `execute()` return promptly with every task process group killed."""

    def __init__(
        self,
        job: Job,
        run: Run,
        recorder: RunRecorder,
        max_tasks: int = DEFAULT_MAX_TASKS,
        extra_env: dict[str, str] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.job = job
        self.run = run
        # by-id indexes: a scan per event would be quadratic on a 5,000-task DAG
        self._tasks = {task.id: task for task in job.tasks}
        self._states = {state.task_id: state for state in run.tasks}
        self._recorder = recorder
        self._max_tasks = max(1, max_tasks)
        # PETIT_DB always: with the run id it names this run's processes among all others (run
        # ids repeat across dbs), so a stop can find what escaped the process groups.
        self._extra_env = {**(extra_env or {}), "PETIT_DB": recorder.store.db_path}
        self._observer = observer
        self._events: queue.Queue = queue.Queue()
        self._procs: dict[str, TaskProcess] = {}
        self._procs_lock = threading.Lock()
        # Attempts started and not yet reported. Only the execute() thread touches it; a stop
        # waits for it to reach zero, because an attempt may not have registered its process
        # in _procs yet when the stop comes.
        self._in_flight = 0
        self._stop_as: RunStatus | None = None
        self._base_dir = os.path.dirname(os.path.abspath(job.source)) if job.source else os.getcwd()

    # -- control from other threads -----------------------------------------------------------

    def cancel(self) -> None:
        self._stop(RunStatus.CANCELLED)

    def interrupt(self) -> None:
        self._stop(RunStatus.INTERRUPTED)

    def _stop(self, status: RunStatus) -> None:
        with self._procs_lock:
            if self._stop_as is None:
                self._stop_as = status
            procs = list(self._procs.values())
        for proc in procs:
            proc.cancel()
        self._events.put(None)  # wake the loop

    # -- the run ------------------------------------------------------------------------------

    def execute(self) -> Run:
        run = self.run
        run.status = RunStatus.RUNNING
        run.started_at = now_ms()
        self._recorder.changed(run)
        try:
            self._drive()
        except Exception as exc:  # a bug must not leave the run "running" or processes behind
            log.exception("run %s: internal error", run.id)
            self._stop(RunStatus.FAILED)
            self._drain_running()
            run.error = f"internal error: {exc}"
        if self._stop_as is not None:
            self._sweep_run()
        self._finish()
        return run

    def _drive(self) -> None:
        job = self.job
        planner = DagPlanner(
            [t.id for t in job.tasks],
            {t.id: t.depends_on for t in job.tasks},
            {t.id: t.condition for t in job.tasks},
        )
        ready = list(planner.initial())
        delayed: list[
            tuple[float, str]
        ] = []  # (monotonic due time, task id): retry waits hold no slot
        while (ready or self._in_flight or delayed) and self._stop_as is None:
            while ready and self._in_flight < self._max_tasks and self._stop_as is None:
                self._start_attempt(self._tasks[ready.pop(0)])
            timeout = max(0.0, delayed[0][0] - time.monotonic()) if delayed else None
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            while delayed and delayed[0][0] <= time.monotonic():
                ready.insert(0, heapq.heappop(delayed)[1])
            if event is None:
                continue
            self._in_flight -= 1
            status = self._settle(event)
            if status is None:
                task = self._tasks[event.task_id]
                heapq.heappush(delayed, (time.monotonic() + task.retry.delay_secs, task.id))
                continue
            released, skipped = planner.finished(event.task_id, status)
            for task_id in skipped:
                self._skip(task_id, "condition not met")
            ready.extend(released)
        if self._stop_as is not None:
            self._drain_running()

    def _start_attempt(self, task: Task) -> None:
        state = self._states[task.id]
        state.attempts += 1
        state.status = TaskStatus.RUNNING
        if state.started_at is None:
            state.started_at = now_ms()
        # a retry is running again: the previous attempt's end no longer describes the task
        state.ended_at = state.duration_ms = state.exit_code = state.error = None
        state.timed_out = False
        attempt = state.attempts
        env = build_env(self.job, task, self.run.id, attempt, self._extra_env)
        argv = build_argv(task, self._base_dir)
        cwd = None if task.working_dir is None else os.path.join(self._base_dir, task.working_dir)
        on_line = None
        if self._observer is not None:
            self._observer("start", task.id, f"attempt {attempt}")
            on_line = lambda stream, line: self._observer(stream, task.id, line)  # noqa: E731
        self._in_flight += 1
        threading.Thread(
            target=self._attempt,
            args=(task, attempt, argv, env, cwd, on_line),
            name=f"petit-task-{task.id}",
            daemon=True,
        ).start()

    def _attempt(self, task: Task, attempt: int, argv, env, cwd, on_line) -> None:
        # Exactly one event per attempt, whatever happens: the run waits for it before finishing.
        result = _failed_start("internal error")
        try:
            result = self._run_attempt(task, attempt, argv, env, cwd, on_line)
        except Exception as exc:
            log.exception("run %s: task %s attempt %d", self.run.id, task.id, attempt)
            result = _failed_start(str(exc))
        finally:
            self._events.put(_Finished(task.id, attempt, result))

    def _run_attempt(self, task: Task, attempt: int, argv, env, cwd, on_line) -> AttemptResult:
        proc = TaskProcess(argv, env, cwd, task.timeout_secs, on_line=on_line)
        state = self._states[task.id]
        state.pid, state.pid_created = proc.pid, proc.pid_created
        self._recorder.changed(self.run)
        with self._procs_lock:
            self._procs[task.id] = proc
            stopping = self._stop_as is not None
        if stopping:
            proc.cancel()
        try:
            result = proc.collect()
        finally:
            with self._procs_lock:
                self._procs.pop(task.id, None)
        # A retry's log replaces the previous attempt's, even when empty, so it never lies.
        if result.stdout or result.stderr or attempt > 1:
            try:
                self._recorder.store.logs.write(
                    self.run.id,
                    task.id,
                    {
                        "task_id": task.id,
                        "run_id": self.run.id,
                        "attempt": attempt,
                        "exit_code": result.exit_code,
                        "stdout": result.stdout,
                        "stderr": result.stderr,
                        "truncated": result.truncated,
                        "error": result.error,
                    },
                )
            except StorageError as exc:
                log.error("run %s: %s", self.run.id, exc)
        return result

    def _settle(self, event: _Finished) -> TaskStatus | None:
        """Record an attempt's outcome; None means 'retry later', else the task's final status."""
        task = self._tasks[event.task_id]
        state = self._states[task.id]
        result = event.result
        state.exit_code = result.exit_code
        state.timed_out = result.timed_out
        state.ended_at = result.ended_at
        state.duration_ms = result.ended_at - (state.started_at or result.started_at)
        state.error = result.error
        state.pid = None  # also while a retry waits: recovery must not aim at a finished attempt
        failed = result.error is not None
        if failed and not result.cancelled and self._may_retry(task, state.attempts, result):
            state.status = TaskStatus.PENDING
            self._recorder.changed(self.run)
            self._notify(
                "end", task.id, f"attempt {event.attempt} failed: {result.error}; retrying"
            )
            return None
        state.status = TaskStatus.FAILED if failed else TaskStatus.COMPLETED
        self._recorder.changed(self.run)
        self._notify(
            "end", task.id, f"{state.status.value}" + (f": {result.error}" if failed else "")
        )
        return state.status

    @staticmethod
    def _may_retry(task: Task, attempts: int, result: AttemptResult) -> bool:
        policy = task.retry
        if attempts > policy.max_attempts or policy.condition is RetryCondition.NEVER:
            return False
        return policy.condition is RetryCondition.ALWAYS or result.timed_out

    def _skip(self, task_id: str, reason: str) -> None:
        state = self._states[task_id]
        state.status = TaskStatus.SKIPPED
        state.error = state.error or reason
        self._notify("end", task_id, f"skipped ({reason})")

    def _drain_running(self) -> None:
        """After a stop: wait for every started attempt to report (its process group killed and
        its leader reaped), so no process is left behind and no late update follows the end."""
        deadline = time.monotonic() + 10
        while self._in_flight > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error(
                    "run %s: %d attempt(s) did not report after the stop",
                    self.run.id,
                    self._in_flight,
                )
                break
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event is not None:
                self._in_flight -= 1
                self._settle_stopped(event)

    def _sweep_run(self) -> None:
        """After a stop, kill what escaped the task groups of any task of this run (a daemon a
        finished task left behind included). One pass over the processes, only on stops."""
        match = sweep_match(
            {"PETIT_RUN_ID": self.run.id, **self._extra_env}, ("PETIT_RUN_ID", "PETIT_DB")
        )
        try:
            killed = sweep_escaped(match)
        except Exception:  # never let the clean-up keep the run from being recorded as ended
            log.exception("run %s: sweeping escaped processes failed", self.run.id)
            return
        if killed:
            log.warning(
                "run %s: killed %d process(es) that escaped their task's process group",
                self.run.id,
                killed,
            )

    def _settle_stopped(self, event: _Finished) -> None:
        state = self._states[event.task_id]
        state.exit_code = event.result.exit_code
        state.ended_at = event.result.ended_at
        state.duration_ms = event.result.ended_at - (state.started_at or event.result.started_at)
        state.status = TaskStatus.FAILED if event.result.error else TaskStatus.COMPLETED
        state.error = event.result.error
        state.pid = None

    def _finish(self) -> None:
        run = self.run
        stop = self._stop_as
        reason = {
            RunStatus.CANCELLED: "cancelled",
            RunStatus.INTERRUPTED: "run was interrupted",
        }.get(stop)
        for state in run.tasks:
            if state.status is TaskStatus.RUNNING or (
                state.status is TaskStatus.PENDING and state.attempts
            ):
                state.status = TaskStatus.FAILED
                state.error = reason or state.error or "did not finish"
                state.pid = None
            elif state.status is TaskStatus.PENDING:
                state.status = TaskStatus.SKIPPED
                state.error = reason or "not reached"
            if state.status is TaskStatus.FAILED and reason and state.error == "cancelled":
                state.error = reason
        failed = [t.task_id for t in run.tasks if t.status is TaskStatus.FAILED]
        if stop in (RunStatus.CANCELLED, RunStatus.INTERRUPTED):
            run.status = stop
            run.error = reason
        elif failed or stop is RunStatus.FAILED:
            run.status = RunStatus.FAILED
            run.error = run.error or f"failed tasks: {', '.join(failed)}"
        else:
            run.status = RunStatus.COMPLETED
        run.ended_at = now_ms()
        run.duration_ms = run.ended_at - (run.started_at or run.ended_at)
        self._recorder.changed(run)
        self._recorder.flush()

    def _notify(self, event: str, task_id: str, detail: str) -> None:
        if self._observer is not None:
            self._observer(event, task_id, detail)


def _failed_start(error: str) -> AttemptResult:
    stamp = now_ms()
    return AttemptResult(
        exit_code=None,
        error=f"cannot start: {error}",
        timed_out=False,
        cancelled=False,
        stdout="",
        stderr="",
        truncated=False,
        started_at=stamp,
        ended_at=stamp,
    )
