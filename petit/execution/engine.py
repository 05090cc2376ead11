"""One run of one job over a TaskRunner: drives the DAG planner and task attempts, retries and
cancellation, and publishes an event at every transition (the recorder and `petit trigger`'s
printer are subscribers). Blocking; one engine per run, in its own thread."""

from __future__ import annotations

import functools
import heapq
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, replace

from ..core.dag import DagPlanner, ancestors
from ..core.events import (
    EventBus,
    RunEnded,
    RunStarted,
    TaskEnded,
    TaskOutput,
    TaskRetrying,
    TaskStarted,
)
from ..core.model import (
    CANCELLED,
    INTERRUPTED,
    Job,
    Run,
    RunStatus,
    Task,
    TaskRun,
    TaskStatus,
    now_ms,
)
from ..core.outputs import OutputError, RunOutputs, parse_outputs
from ..core.text import duration_words
from ..errors import internal_error
from ..storage.logs import LogWriter
from ..storage.store import Store
from .runners.base import (
    DEFAULT_LOG_LIMIT,
    AttemptHandle,
    AttemptResult,
    AttemptSpec,
    TaskRunner,
    attempt_cwd,
    build_argv,
    build_env,
    job_folder,
)

DEFAULT_MAX_TASKS = 4
log = logging.getLogger("petit.engine")


@dataclass
class _Finished:
    task_id: str
    attempt: int
    result: AttemptResult
    internal: bool = False  # a bug inside petit, not a failure of the task: never retried
    final: bool = False  # nothing another attempt could change (what its upstream tasks wrote)


class RunEngine:
    """Executes `run` (already recorded as pending) for `job`. `cancel()` and `interrupt()` are
    thread-safe and make `execute()` return promptly with every attempt ended."""

    def __init__(
        self,
        job: Job,
        run: Run,
        store: Store,
        bus: EventBus,
        runner: TaskRunner | None = None,
        max_tasks: int = DEFAULT_MAX_TASKS,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.job = job
        self.run = run
        # by-id indexes: a scan per event would be quadratic on a 5,000-task DAG
        self._tasks = {task.id: task for task in job.tasks}
        self._depends_on = {task.id: task.depends_on for task in job.tasks}
        self._states = {state.task_id: state for state in run.tasks}
        self._store = store
        self._bus = bus
        if runner is None:  # imported here: only the default needs processes
            from .runners.local import LocalRunner

            runner = LocalRunner()
        self._runner = runner
        self._max_tasks = max(1, max_tasks)
        # PETIT_DB always: with the run id it names this run's processes among all others (run
        # ids repeat across dbs), so a stop can find what escaped the process groups.
        self._extra_env = {**(extra_env or {}), "PETIT_DB": store.db_path}
        self._events: queue.Queue = queue.Queue()
        self._handles: dict[str, AttemptHandle] = {}
        self._handles_lock = threading.Lock()
        # Attempts started and not yet reported. Only the execute() thread touches it; a stop
        # waits for it to reach zero, because an attempt may not have registered its handle
        # in _handles yet when the stop comes.
        self._in_flight = 0
        # (monotonic due time, task id) of the retries waiting their delay: they hold no slot
        self._delayed: list[tuple[float, str]] = []
        self._stop_as: RunStatus | None = None
        self._stop_reason: str | None = None  # why the stop ended the unfinished tasks
        self._timed_out = False  # the stop is the job's timeout
        self._error: str | None = None  # a bug inside petit that ended the run
        self._outputs = RunOutputs()  # of each completed task that wrote some
        self._ended = False  # RunEnded is out: a straggler's output lines are not published
        self._base_dir = job_folder(job)

    # -- control from other threads -----------------------------------------------------------

    def cancel(self, reason: str = CANCELLED) -> None:
        self._stop(RunStatus.CANCELLED, reason)

    def interrupt(self) -> None:
        self._stop(RunStatus.INTERRUPTED, INTERRUPTED)

    def _stop(self, status: RunStatus, reason: str | None = None) -> None:
        with self._handles_lock:
            if self._stop_as is None:
                self._stop_as, self._stop_reason = status, reason
            handles = list(self._handles.values())
        for handle in handles:
            handle.cancel()
        self._events.put(None)  # wake the loop

    # -- the run ------------------------------------------------------------------------------

    def execute(self) -> Run:
        run = self.run
        now = now_ms()
        run.start(now)
        self._bus.publish(RunStarted(at=now, run_id=run.id, job_id=run.job_id))
        try:
            self._drive()
        except Exception as exc:  # a bug must not leave the run "running" or processes behind
            log.exception("run %s: internal error", run.id)
            self._stop(RunStatus.FAILED)
            self._drain_running()
            self._error = internal_error(exc).message
        if self._stop_as is not None:
            self._sweep_run()
        self._finish()
        return run

    def _drive(self) -> None:
        job = self.job
        planner = DagPlanner(
            [t.id for t in job.tasks],
            self._depends_on,
            {t.id: t.condition for t in job.tasks},
        )
        ready = list(planner.initial())
        delayed = self._delayed
        limit = job.timeout_secs
        deadline = time.monotonic() + limit if limit else None
        while (ready or self._in_flight or delayed) and self._stop_as is None:
            # checked with work left only: a run whose last task ended at the deadline completed
            if deadline is not None and time.monotonic() >= deadline:
                self._timed_out = True
                self._stop(RunStatus.FAILED, f"run timed out after {duration_words(limit)}")
                break
            while ready and self._in_flight < self._max_tasks and self._stop_as is None:
                self._start_attempt(self._tasks[ready.pop(0)])
            wake = min((t for t in (delayed[0][0] if delayed else None, deadline) if t), default=0)
            timeout = max(0.0, wake - time.monotonic()) if wake else None
            try:
                finished = self._events.get(timeout=timeout)
            except queue.Empty:
                finished = None
            while delayed and delayed[0][0] <= time.monotonic():
                ready.insert(0, heapq.heappop(delayed)[1])
            if finished is None:
                continue
            self._in_flight -= 1
            status = self._settle(finished)
            if status is None:  # a retry, in self._delayed
                continue
            released, skipped = planner.finished(finished.task_id, status)
            for task_id in skipped:
                self._skip(task_id, "condition not met")
            ready.extend(released)
        if self._stop_as is not None:
            self._drain_running()

    def _start_attempt(self, task: Task) -> None:
        state = self._states[task.id]
        state.start_attempt(now_ms())
        attempt = state.attempts
        try:
            env = build_env(
                self.job,
                task,
                self.run.id,
                attempt,
                self._extra_env,
                self.run.params,
                self._upstream_outputs(task),
            )
        except OutputError as exc:  # its upstream outputs cannot be handed over: never started
            self._in_flight += 1
            self._publish(TaskStarted, task.id, attempt=attempt)
            self._events.put(_Finished(task.id, attempt, _failure(str(exc)), final=True))
            return
        log_file = self._store.logs.writer(self.run.id, task.id, attempt, DEFAULT_LOG_LIMIT)
        spec = AttemptSpec(
            job_id=self.job.id,
            run_id=self.run.id,
            task_id=task.id,
            attempt=attempt,
            argv=build_argv(task, self._base_dir),
            env=env,
            cwd=attempt_cwd(task, self._base_dir),
            timeout_secs=task.timeout_secs,
            log_limit=DEFAULT_LOG_LIMIT,
            on_lines=functools.partial(self._output, task.id, attempt, log_file),
        )
        self._in_flight += 1
        threading.Thread(
            target=self._attempt, args=(spec, log_file), name=f"petit-task-{task.id}", daemon=True
        ).start()

    def _upstream_outputs(self, task: Task) -> dict[str, dict[str, str]]:
        """The outputs of the tasks `task` depends on, directly or not (task id -> values)."""
        if not self._outputs.by_task:  # the usual case: no walk up the DAG
            return {}
        return self._outputs.of(ancestors(task.id, self._depends_on))

    def _attempt(self, spec: AttemptSpec, log_file: LogWriter) -> None:
        # Exactly one report per attempt, whatever happens: the run waits for it before finishing.
        finished = _Finished(spec.task_id, spec.attempt, _failure("internal error"), internal=True)
        try:
            finished = _Finished(spec.task_id, spec.attempt, self._run_attempt(spec))
        except Exception as exc:
            log.exception("run %s: task %s attempt %d", self.run.id, spec.task_id, spec.attempt)
            error = internal_error(exc).message  # the details go to the log only
            finished = _Finished(spec.task_id, spec.attempt, _failure(error), internal=True)
        finally:
            # the log is complete on disk before the attempt's end is recorded: a follower that
            # sees the end and reads once more has every line
            log_file.close()
            self._events.put(finished)

    def _run_attempt(self, spec: AttemptSpec) -> AttemptResult:
        try:
            handle = self._runner.start(spec)
            self._states[spec.task_id].attach(handle.to_dict())
        finally:
            # after the handle is on the task (the recorder persists it for recovery), and
            # even when the start raised: every TaskEnded follows its TaskStarted
            self._publish(TaskStarted, spec.task_id, attempt=spec.attempt)
        with self._handles_lock:
            self._handles[spec.task_id] = handle
            stopping = self._stop_as is not None
        if stopping:
            handle.cancel()
        try:
            return handle.collect()
        finally:
            with self._handles_lock:
                self._handles.pop(spec.task_id, None)

    def _output(
        self, task_id: str, attempt: int, log_file: LogWriter, stream: str, lines: list[str]
    ) -> None:
        log_file.append_lines(stream, lines)
        if not self._ended:
            self._publish(TaskOutput, task_id, attempt=attempt, stream=stream, lines=tuple(lines))

    def _settle(self, finished: _Finished) -> TaskStatus | None:
        """Record an attempt's outcome; None means 'retry later' (the retry is in
        self._delayed), else the task's final status. Once the run is stopping nothing is
        retried."""
        task = self._tasks[finished.task_id]
        state = self._states[task.id]
        result = finished.result
        if result.cancelled and self._stop_reason:
            result = replace(result, error=self._stop_reason)  # the stop says why
        outputs: dict[str, str] = {}
        if result.error is None and result.output:
            try:
                outputs = parse_outputs(result.output)
                self._outputs.check(outputs)
            except OutputError as exc:  # the task's failure: its retry policy decides
                result = replace(result, error=str(exc))
        retry = (
            result.error is not None
            and not finished.internal
            and not finished.final
            and not result.cancelled
            and self._stop_as is None
            and task.retry.should_retry(state.attempts, result)
        )
        if retry:
            # drawn once, here: the delay waited, recorded and published is one and the same
            delay_ms = round(task.retry.delay_for(finished.attempt, random.random()) * 1000)
            heapq.heappush(self._delayed, (time.monotonic() + delay_ms / 1000, task.id))
            state.wait_for_retry(result, now_ms(), delay_ms)
            self._publish(
                TaskRetrying,
                task.id,
                attempt=finished.attempt,
                error=result.error,
                exit_code=result.exit_code,
                delay_secs=delay_ms / 1000,
                next_attempt_at=state.next_attempt_at,
            )
            return None
        state.finish(result, outputs)
        if outputs and state.status is TaskStatus.COMPLETED:
            self._outputs.add(task.id, outputs)
        self._publish_end(state)
        return state.status

    def _skip(self, task_id: str, reason: str) -> None:
        state = self._states[task_id]
        state.skip(reason)
        self._publish_end(state)

    def _drain_running(self) -> None:
        """After a stop: wait for every started attempt to report (its process group killed and
        its leader reaped), so nothing is left behind and no late update follows the end."""
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
                finished = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if finished is not None:
                self._in_flight -= 1
                self._settle(finished)

    def _sweep_run(self) -> None:
        """After a stop, end what escaped the attempts of any task of this run (a daemon a
        finished task left behind included). Only on stops."""
        try:
            killed = self._runner.sweep_run(self.run.id, self._store.db_path)
        except Exception:  # never let the clean-up keep the run from being recorded as ended
            log.exception("run %s: sweeping escaped processes failed", self.run.id)
            return
        if killed:
            log.warning(
                "run %s: killed %d process(es) that escaped their task's process group",
                self.run.id,
                killed,
            )

    def _finish(self) -> None:
        run = self.run
        now = now_ms()
        unfinished = [state for state in run.tasks if not state.status.is_terminal]
        if self._stop_as is RunStatus.CANCELLED:
            run.cancel(now, self._stop_reason or CANCELLED)
        elif self._stop_as is RunStatus.INTERRUPTED:
            run.interrupt(INTERRUPTED, now)
        elif self._timed_out:
            run.time_out(now, self._stop_reason)
        else:
            run.finish(now, self._error)
        for state in unfinished:
            self._publish_end(state)
        self._ended = True
        self._bus.publish(
            RunEnded(
                at=now,
                run_id=run.id,
                job_id=run.job_id,
                status=run.status.value,
                error=run.error,
                duration_ms=run.duration_ms,
            )
        )

    def _publish_end(self, state: TaskRun) -> None:
        skipped = state.status is TaskStatus.SKIPPED
        self._publish(
            TaskEnded,
            state.task_id,
            attempt=0 if skipped else state.attempts,
            status=state.status.value,
            exit_code=state.exit_code,
            error=state.error,
            cpu_secs=state.cpu_secs,
            max_rss_bytes=state.max_rss_bytes,
        )

    def _publish(self, event_type: type, task_id: str, **fields) -> None:
        self._bus.publish(
            event_type(
                at=now_ms(), run_id=self.run.id, job_id=self.job.id, task_id=task_id, **fields
            )
        )


def _failure(error: str) -> AttemptResult:
    """The result of an attempt that ran nothing: a bug inside petit broke it, or it could not
    be started."""
    stamp = now_ms()
    return AttemptResult(
        exit_code=None,
        error=error,
        timed_out=False,
        cancelled=False,
        started_at=stamp,
        ended_at=stamp,
    )
