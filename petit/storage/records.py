"""What stored records must look like: run ids, the checks that tell a usable main file from a
corrupt one, and runs rebuilt from their documents."""

from __future__ import annotations

import re

from tinydb.table import Document

from ..core.model import Run, RunStatus, Trigger
from .files import corrupt_file

MAIN_JOBS = "jobs"  # the table of the main file: one summary doc per job
CHUNK_RUNS = "runs"  # the table of each history file
# No leading zero: "job-01" must not read back as "job-1" under another name.
_RUN_ID = re.compile(r"([A-Za-z0-9_.-]{1,128})-([1-9][0-9]{0,11})")


def split_run_id(run_id: str) -> tuple[str, int] | None:
    """'<job_id>-<seq>' -> (job_id, seq); None when malformed."""
    match = _RUN_ID.fullmatch(run_id) if isinstance(run_id, str) else None
    if match is None or match.group(1) in (".", ".."):  # would name a folder above the job's
        return None
    return match.group(1), int(match.group(2))


def make_run_id(job_id: str, seq: int) -> str:
    return f"{job_id}-{seq}"


def main_file_problem(meta: list[dict], jobs: list[dict]) -> str | None:
    """Documents of the right shape but the wrong content would crash later, far from the cause
    (a job doc without an id, an active list holding a number)."""
    for doc in meta:
        if not isinstance(doc.get("paused", False), bool):
            return "table 'meta': 'paused' is not true or false"
    for doc in jobs:
        job_id = doc.get("id")
        if not isinstance(job_id, str) or not job_id:
            return f"table 'jobs': document {doc.doc_id} has no string 'id'"
        seq = doc.get("next_seq", 1)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            return f"table 'jobs': job {job_id!r} has an invalid 'next_seq' {seq!r:.40}"
        active = doc.get("active", [])
        if not isinstance(active, list) or not all(split_run_id(r) for r in active):
            return f"table 'jobs': job {job_id!r} has an invalid 'active' list"
    return None


def run_from_doc(doc: dict, path: str, with_tasks: bool = True) -> Run:
    """A history record that does not read back as a run is a corrupt file, said as such.
    Without its tasks (`with_tasks` False) it reads several times faster: a list of outcomes."""
    try:
        return Run.from_dict(doc if with_tasks else {k: v for k, v in doc.items() if k != "tasks"})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise corrupt_file(
            path,
            f"run record {doc.doc_id if isinstance(doc, Document) else '?'} "
            f"is malformed: {exc!r:.80}",
        ) from None


def unrecorded_run(run_id: str, claim) -> Run:
    """The run a kill left claimed but unwritten, with the trigger and fire time its claim
    noted (an interrupted scheduled fire must not read back as a manual trigger)."""
    job_id, seq = split_run_id(run_id)
    run = Run(id=run_id, job_id=job_id, seq=seq, status=RunStatus.PENDING)
    if isinstance(claim, dict) and claim.get("run_id") == run_id:
        if claim.get("trigger") in {t.value for t in Trigger}:
            run.trigger = Trigger(claim["trigger"])
        if isinstance(claim.get("scheduled_at"), int):
            run.scheduled_at = claim["scheduled_at"]
    return run
