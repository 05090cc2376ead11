"""What follows a run's end: an event subscriber that, on RunEnded, hands the job's webhooks to
the notifier and queues the job's hooks for a small pool of threads (HOOK_SLOTS hooks at once,
over all runs; a run's hooks in order). Each hook is an attempt of the local runner, in its own
process group, killed with it at its timeout. Neither the engine nor the scheduler loop ever
waits for them; the run has ended before they start and its status never changes.

Each hook is recorded on the run (`Run.hooks`, written with Store.record_followups after the
run's end record): `running` with its process handle while it runs (so that recovery can kill
it if petit dies), then its outcome. Its output goes to the run's logs under `@<hook>`, a name
no task id can take."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from ..core.events import Event, RunEnded
from ..core.followups import (
    SHUTDOWN,
    hook_environment,
    hook_outcome,
    hook_running,
    hooks_fired,
)
from ..core.hooks import Hook
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
from ..execution.runners.local import KILL_GRACE_SECS, LocalRunner, sweep_escaped, sweep_match
from ..storage.store import Store
from .notify import Notifier

log = logging.getLogger("petit.hooks")
HOOK_SLOTS = 4  # hooks running at once; more wait, not yet started (their timeout not counting)
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
        slots: int = HOOK_SLOTS,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._job_of = job_of
        self._runner = runner or LocalRunner()
        self._on_hook = on_hook or (lambda run, outcome: None)
        self._slots = slots
        self._tracked: dict[str, Run] = {}
        self._queue: queue.Queue[tuple[Job, Run, list[Hook]] | None] = queue.Queue()
        self._unfinished = 0  # runs whose hooks are queued or running
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
        # Only queueing here: the engine thread (or the scheduler loop, for a queued run's end)
        # publishes the event and must not wait for a write or a process.
        self._notifier.send(job.notify, run)
        hooks = hooks_fired(job.hooks, run)
        if not hooks:
            return
        with self._lock:
            self._unfinished += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < self._slots:
                thread = threading.Thread(target=self._loop, name="petit-hooks", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._queue.put((job, run, hooks))

    def close(self, deadline: float | None = None, hurry: threading.Event | None = None) -> None:
        """Let the hooks queued or in flight finish until `deadline` (time.monotonic(); None:
        however long they take, each bounded by its timeout) or `hurry`, then kill what still
        runs and record it and what has not started failed ("interrupted by shutdown"); then the
        notifier's close, with the same deadline (or NOTIFY_LAST_CHANCE_SECS from now, whichever
        is later)."""
        hurry = hurry or threading.Event()
        while self._busy() and (deadline is None or time.monotonic() < deadline):
            if hurry.wait(0.05):
                break
        with self._lock:
            self._stopping = True
            handles = list(self._handles)
            threads = list(self._threads)
        for handle in handles:
            handle.cancel()
        for _ in threads:
            self._queue.put(None)
        end = time.monotonic() + REPORT_AFTER_KILL_SECS
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        if deadline is not None:  # pending deliveries get a short last chance, even past it
            deadline = max(deadline, time.monotonic() + NOTIFY_LAST_CHANCE_SECS)
        self._notifier.close(deadline, hurry)

    def _busy(self) -> bool:
        with self._lock:
            return self._unfinished > 0

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._follow(*item)
            finally:
                with self._lock:
                    self._unfinished -= 1

    def _follow(self, job: Job, run: Run, hooks: list[Hook]) -> None:
        for hook in hooks:
            index = len(run.hooks)  # this hook's entry: "running" first, then its outcome

            def record(entry: dict, index: int = index, hook: Hook = hook) -> None:
                run.hooks = [*run.hooks[:index], entry]  # replaced, never changed in place
                try:
                    self._store.record_followups(run, hooks=run.hooks)
                except StorageError as exc:
                    log.error("run %s: cannot record hook %s: %s", run.id, hook.event.value, exc)

            try:
                outcome = self._run_hook(job, run, hook, record)
            except Exception as exc:  # a bug must not lose the other hooks' records
                log.exception("run %s: hook %s", run.id, hook.event.value)
                now = now_ms()
                outcome = hook_outcome(hook.event, None, internal_error(exc).message, now, now)
            record(outcome)
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

    def _run_hook(self, job: Job, run: Run, hook: Hook, record: Callable[[dict], None]) -> dict:
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
                record(hook_running(hook.event, handle.to_dict(), now_ms()))
                result = handle.collect()
            finally:
                with self._lock:
                    self._handles.discard(handle)
        finally:
            log_file.close()
        if result.cancelled:
            # what escaped the hook's group goes too, as after a stopped task; only the hook's
            # own (its PETIT_TASK_ID): a daemon a task of the run left on purpose stays
            sweep_escaped(sweep_match(spec.env))
        error = SHUTDOWN if result.cancelled else result.error
        return hook_outcome(hook.event, result.exit_code, error, result.started_at, result.ended_at)
