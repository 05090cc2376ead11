"""Recovery at start: runs a dead worker left pending or running become interrupted, and whatever
their tasks left alive is killed."""

from __future__ import annotations

import logging

import psutil

from ..core.model import Run, RunStatus, TaskStatus, now_ms
from ..execution.runners.local import kill_group, sweep_escaped
from ..storage.store import Store

log = logging.getLogger("petit.recovery")


def recover(store: Store) -> int:
    """Runs left pending/running by a dead worker become interrupted; their processes die."""
    count = 0
    for run in store.active_runs():
        if run.status.is_terminal:
            store.forget_active(run)
            continue
        killed = _kill_leftovers(run, store.db_path)
        ended = now_ms()
        for state in run.tasks:
            if not state.status.is_terminal:
                state.status = TaskStatus.FAILED if state.attempts else TaskStatus.SKIPPED
                state.error = "run was interrupted"
                state.ended_at = ended if state.attempts else None
                state.pid = None
        run.status = RunStatus.INTERRUPTED
        run.error = "run was interrupted"
        run.ended_at = ended
        run.duration_ms = ended - (run.started_at or run.created_at or ended)
        store.save_runs([run])
        log.warning(
            "recovered run %s: interrupted%s",
            run.id,
            f", killed {killed} leftover process(es)" if killed else "",
        )
        count += 1
    return count


def _kill_leftovers(run: Run, db_path: str) -> int:
    """Kill recorded task process groups (pid + create time must match: a reused pid is never
    killed), then any process that still carries this run's PETIT_RUN_ID and this db's PETIT_DB
    (another petit on another db has its own `job-1`)."""
    killed = 0
    for state in run.tasks:
        if state.pid and state.pid_created:
            try:
                proc = psutil.Process(state.pid)
                if abs(proc.create_time() - state.pid_created) < 0.01:
                    killed += kill_group(state.pid)
            except psutil.Error:
                pass
    # also kills an escapee's own process group (children that cleared their environment)
    return killed + sweep_escaped({"PETIT_RUN_ID": run.id, "PETIT_DB": db_path})
