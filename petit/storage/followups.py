"""The records of what follows a run's end (`Run.hooks`, `Run.notifications`), written after the
run's own end record, and the index recovery reads: the runs that have a hook recorded running
are listed in their job's doc as `hooks_running` (the runs themselves have ended, so they are
not in `active`)."""

from __future__ import annotations

import os

from ..core.model import Run
from .records import CHUNK_RUNS, MAIN_JOBS

HOOKS_RUNNING = "hooks_running"


class FollowupRecords:
    """Store's methods for the follow-ups of a run (a mixin: it works on the Store's files,
    under its lock)."""

    def record_followups(self, run: Run, **lists: list[dict]) -> None:
        """Replace `hooks` and/or `notifications` of a finished run's record, nothing else (its
        status never changes). A run retention already removed is left removed."""
        path = self._chunk_path(run.job_id, run.seq)
        with self.lock():
            table = self._table(path, CHUNK_RUNS) if os.path.exists(path) else None
            if table is None or not table.contains(doc_id=run.seq):
                return  # still listed running hooks, if any: the next start unlists it
            table.update({key: list(value) for key, value in lists.items()}, doc_ids=[run.seq])
            if "hooks" in lists:
                running = any(h["status"] == "running" for h in lists["hooks"])
                self._update_job(run.job_id, lambda doc: _list_run(doc, run.id, running))

    def runs_with_running_hooks(self) -> list[Run]:
        """The runs with a hook recorded running: what a dead petit may have left alive."""
        with self.lock(exclusive=False):
            listed = [
                (doc["id"], run_id)
                for doc in self._table(self.db_path, MAIN_JOBS).all()
                for run_id in doc.get(HOOKS_RUNNING, [])
            ]
        runs = []
        for job_id, run_id in listed:
            run = self.get_run(run_id)
            if run is not None:
                runs.append(run)
                continue
            with self.lock():  # retention removed it meanwhile: nothing of it is left to kill
                self._update_job(job_id, lambda doc, run_id=run_id: _list_run(doc, run_id, False))
        return runs


def _list_run(doc: dict, run_id: str, listed: bool) -> None:
    others = [r for r in doc.get(HOOKS_RUNNING, []) if r != run_id]
    doc[HOOKS_RUNNING] = [*others, run_id] if listed else others
