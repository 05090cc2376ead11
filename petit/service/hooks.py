"""What follows a run's end: an event subscriber that, on RunEnded, runs the job's hooks (each an
attempt of the local runner, in its own process group, killed with it at its timeout) on a thread
of their own, and hands the job's webhooks to the notifier. Neither the engine nor the scheduler
loop ever waits for them; the run has ended before they start and its status never changes.

Each hook's outcome goes on the run (`Run.hooks`, written with Store.record_followups after the
run's end record) and its output to the run's logs under `@<hook>`, a name no task id can take."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..core.events import Event, RunEnded
from ..core.followups import SHUTDOWN, hook_environment, hook_outcome, hooks_fired, notify_event
from ..core.hooks import Hook, HookEvent
from ..core.model import Job, Run, now_ms
from ..errors import StorageError, internal_error
from ..execution.runners.base import (
    DEFAULT_LOG_LIMIT,
    AttemptHandle,
    AttemptSpec,
    TaskRunner,
    attempt_cwd,
    build_argv,
    build_env,
    job_folder,
)
from ..execution.runners.local import KILL_GRACE_SECS, LocalRunner, sweep_escaped
from ..storage.store import Store
from .notify import Notifier

log = logging.getLogger("petit.hooks")
# After a stop, a killed hook reports within the runner's grace (SIGTERM, then SIGKILL).
REPORT_AFTER_KILL_SECS = KILL_GRACE_SECS + 3.0
NOTIFY_LAST_CHANCE_SECS = 2.0


class RunFollowups:
    """Subscribe `on_event` to the bus after the recorder (a run's end is on disk before its
    hooks write theirs) and `track` every run it should follow. `job_of` gives the job a run
    belongs to as loaded now; `on_hook` hears of each hook's outcome (`petit trigger` prints
    it)."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        job_of: Callable[[str], Job | None],
        runner: TaskRunner | None = None,
        on_hook: Callable[[Run, dict], None] | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._job_of = job_of
        self._runner = runner or LocalRunner()
        self._on_hook = on_hook or (lambda run, outcome: None)
        self._tracked: dict[str, Run] = {}
        self._threads: list[threading.Thread] = []
        self._handles: set[AttemptHandle] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def track(self, run: Run) -> None:
        with self._lock:
            self._tracked[run.id] = run

    def on_event(self, event: Event) -> None:
        if not isinstance(event, RunEnded):
            return
        with self._lock:
            run = self._tracked.pop(event.run_id, None)
        job = self._job_of(event.job_id) if run is not None else None
        if job is None:
            return
        # Only these pure checks here: the engine thread (or the scheduler loop, for a queued
        # run's end) publishes the event and must not wait for a write or a process.
        hooks = hooks_fired(job.hooks, run)
        if not hooks and not any(notify_event(webhook, run) for webhook in job.notify):
            return
        thread = threading.Thread(
            target=self._follow,
            args=(job, run, hooks),
            name=f"petit-hooks-{run.id}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def close(self, deadline: float | None = None, hurry: threading.Event | None = None) -> None:
        """Let the hooks in flight finish until `deadline` (time.monotonic(); None: however long
        they take, each bounded by its timeout) or `hurry`, then kill what still runs (recorded
        failed, "interrupted by shutdown"); then the notifier's close, with the same deadline (or
        NOTIFY_LAST_CHANCE_SECS from now, whichever is later)."""
        hurry = hurry or threading.Event()
        while self._alive() and (deadline is None or time.monotonic() < deadline):
            if hurry.wait(0.05):
                break
        with self._lock:
            self._stopping = True
            handles = list(self._handles)
        for handle in handles:
            handle.cancel()
        end = time.monotonic() + REPORT_AFTER_KILL_SECS
        for thread in self._alive():
            thread.join(max(0.0, end - time.monotonic()))
        if deadline is not None:  # pending deliveries get a short last chance, even past it
            deadline = max(deadline, time.monotonic() + NOTIFY_LAST_CHANCE_SECS)
        self._notifier.close(deadline, hurry)

    def _alive(self) -> list[threading.Thread]:
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def _follow(self, job: Job, run: Run, hooks: list[Hook]) -> None:
        self._notifier.send(job.notify, run)
        for hook in hooks:
            try:
                outcome = self._run_hook(job, run, hook)
            except Exception as exc:  # a bug must not lose the other hooks' records
                log.exception("run %s: hook %s", run.id, hook.event.value)
                now = now_ms()
                outcome = hook_outcome(hook.event, None, internal_error(exc).message, now, now)
            run.hooks = [*run.hooks, outcome]  # replaced, never changed in place
            try:
                self._store.record_followups(run, hooks=run.hooks)
            except StorageError as exc:
                log.error("run %s: cannot record hook %s: %s", run.id, hook.event.value, exc)
            log.log(
                logging.WARNING if outcome["error"] else logging.INFO,
                "run %s: hook %s %s in %d ms%s",
                run.id,
                hook.event.value,
                outcome["status"],
                outcome["duration_ms"],
                f": {outcome['error']}" if outcome["error"] else "",
            )
            self._on_hook(run, outcome)

    def _run_hook(self, job: Job, run: Run, hook: Hook) -> dict:
        if self._stopping:
            now = now_ms()
            return hook_outcome(hook.event, None, SHUTDOWN, now, now)
        command, folder = hook.command, job_folder(job)
        env = {**hook_environment(run, hook.event), "PETIT_DB": self._store.db_path}
        log_file = self._store.logs.writer(run.id, command.id, 1, DEFAULT_LOG_LIMIT)
        spec = AttemptSpec(
            job_id=job.id,
            run_id=run.id,
            task_id=command.id,
            attempt=1,
            argv=build_argv(command, folder),
            env=build_env(job, command, run.id, 1, env),
            cwd=attempt_cwd(command, folder),
            timeout_secs=command.timeout_secs,
            on_lines=lambda stream, lines: log_file.append_lines(stream, lines),
        )
        try:
            handle = self._runner.start(spec)
            with self._lock:
                self._handles.add(handle)
                stopping = self._stopping
            if stopping:  # the stop came between the check above and the start
                handle.cancel()
            try:
                result = handle.collect()
            finally:
                with self._lock:
                    self._handles.discard(handle)
        finally:
            log_file.close()
        if result.cancelled:
            # what escaped the hook's group goes too, as after a stopped task
            self._runner.sweep_run(run.id, self._store.db_path)
        error = SHUTDOWN if result.cancelled else result.error
        return hook_outcome(hook.event, result.exit_code, error, result.started_at, result.ended_at)


def sweep_orphan_hooks(db_path: str) -> int:
    """At start, before any run: kill the hooks a dead worker of this db left running (nothing
    enforces their timeout any more). They carry PETIT_DB and PETIT_HOOK, which no task has."""
    return sum(
        sweep_escaped({"PETIT_DB": db_path, "PETIT_HOOK": event.value}) for event in HookEvent
    )
