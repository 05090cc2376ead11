"""A page of a job's run history with a status filter: what `GET /api/jobs/{id}/runs?status=`
and `petit runs --status` list. The store reads newest first; a filter reads on back, a growing
batch at a time, until the page is full or the history ends."""

from __future__ import annotations

from ..core.model import Run, RunStatus
from .store import Store

FIRST_BATCH = 100  # most filters are met near the top of the history


def runs_page(
    store: Store,
    job_id: str,
    limit: int,
    status: RunStatus | None = None,
    before_seq: int | None = None,
    with_tasks: bool = True,
) -> list[Run]:
    """The job's newest `limit` runs whose seq is below `before_seq` (when given) and whose
    status is `status` (when given), newest first. Raises StorageError like Store.list_runs."""
    if status is None:
        return store.list_runs(job_id, limit, before_seq, with_tasks)
    found: list[Run] = []
    batch = max(limit, FIRST_BATCH)
    while True:
        runs = store.list_runs(job_id, batch, before_seq, with_tasks)
        found += [run for run in runs if run.status is status]
        if len(found) >= limit or len(runs) < batch:
            return found[:limit]
        before_seq = runs[-1].seq  # the next batch starts below the last run read
        batch *= 4
