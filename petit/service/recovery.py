"""Recovery at start: runs a dead worker left pending or running become interrupted, and whatever
their tasks left alive is killed, each through the runner that started it; so are the hooks it
left recorded running (and only those: a daemon a hook that ended left on purpose stays). Queued
runs never started: they stay queued, and the scheduler starts them in order."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..core.followups import running_hooks_stopped
from ..core.hooks import HookEvent
from ..core.model import INTERRUPTED, Run, RunStatus, now_ms
from ..execution.runners.base import TaskRunner
from ..execution.runners.local import LocalRunner, sweep_escaped
from ..storage.store import Store

log = logging.getLogger("petit.recovery")


def default_runners() -> dict[str, TaskRunner]:
    """The runners a handle may name, by their "runner" key."""
    runner = LocalRunner()
    return {runner.name: runner}


def recover(store: Store, runners: Mapping[str, TaskRunner] | None = None) -> int:
    """Runs left pending/running by a dead worker become interrupted; their attempts die, and
    so do the hooks it left running."""
    runners = default_runners() if runners is None else runners
    count = 0
    for run in store.active_runs():
        if run.status.is_terminal:
            store.forget_active(run)
            continue
        if run.status is RunStatus.QUEUED:
            continue
        killed = _kill_leftovers(run, store.db_path, runners)
        run.interrupt(INTERRUPTED, now_ms())
        store.save_runs([run])
        log.warning(
            "recovered run %s: interrupted%s",
            run.id,
            f", killed {killed} leftover process(es)" if killed else "",
        )
        count += 1
    orphans = sum(_stop_hooks(run, store, runners) for run in store.runs_with_running_hooks())
    if orphans:
        log.warning("killed %d hook process(es) a dead worker left running", orphans)
    return count


def _kill_leftovers(run: Run, db_path: str, runners: Mapping[str, TaskRunner]) -> int:
    """End the attempts recorded in flight, then let every runner sweep what still belongs to
    this run of this db (another petit on another db has its own `job-1`)."""
    killed = 0
    for state in run.tasks:
        handle = state.handle
        if not handle:
            continue
        runner = runners.get(handle.get("runner"))
        if runner is None:
            log.error(
                "run %s: task %s was left in flight by runner %r, which is not available",
                run.id,
                state.task_id,
                handle.get("runner"),
            )
            continue
        killed += runner.recover(handle)
    return killed + sum(runner.sweep_run(run.id, db_path) for runner in runners.values())


def _stop_hooks(run: Run, store: Store, runners: Mapping[str, TaskRunner]) -> int:
    """Kill the hooks of an ended run still recorded running (nothing enforces their timeout any
    more) by their recorded handle, and, when one still ran, what escaped its group (a hook that
    had ended meanwhile may have left a daemon on purpose); record them failed."""
    killed = 0
    for hook in run.hooks:
        handle = hook.get("handle") if hook["status"] == "running" else None
        runner = runners.get(handle.get("runner")) if handle else None
        if runner is None or not runner.recover(handle):
            continue
        task_id = HookEvent(hook["hook"]).log_name
        match = {"PETIT_RUN_ID": run.id, "PETIT_TASK_ID": task_id, "PETIT_DB": store.db_path}
        killed += 1 + sweep_escaped(match)
    run.hooks = running_hooks_stopped(run.hooks, now_ms())
    store.record_followups(run, hooks=run.hooks)
    return killed
