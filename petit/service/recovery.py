"""Recovery at start: runs a dead worker left pending or running become interrupted, and whatever
their tasks left alive is killed, each through the runner that started it. Queued runs never
started: they stay queued, and the scheduler starts them in order."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..core.model import INTERRUPTED, Run, RunStatus, now_ms
from ..execution.runners.base import TaskRunner
from ..execution.runners.local import LocalRunner
from ..storage.store import Store
from .hooks import sweep_orphan_hooks

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
    orphans = sweep_orphan_hooks(store.db_path)
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
