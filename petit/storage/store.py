"""TinyDB behind a cross-process file lock, with atomic writes, sharded history and retention.
The only module that imports tinydb.

Layout for `--db petit.db`:
  petit.db                      main file: scheduler state + one summary doc per job (small, hot)
  petit.db.lock                 flock sidecar (shared for reads, exclusive for writes)
  petit.db.d/runs/<job>/<n>.json  run history, RUNS_PER_CHUNK runs per file, so a write costs the
                                same with 10 or 10,000 runs stored
  petit.db.d/logs/<run_id>/<task>/<attempt>.log  task output, appended live (storage/logs.py)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tinydb import TinyDB
from tinydb.table import Document

from ..core.model import Run, RunStatus, TaskRun, Trigger, now_ms
from ..errors import StorageError
from .drops import DropLog
from .files import (
    AtomicJSONStorage,
    DbLock,
    FileCache,
    corrupt_file,
    remove_stale_temps,
    unlink_quietly,
)
from .followups import HOOKS_RUNNING, FollowupRecords
from .logs import TaskLogs
from .records import (
    CHUNK_RUNS,
    MAIN_JOBS,
    main_file_problem,
    make_run_id,
    run_from_doc,
    split_run_id,
    unrecorded_run,
)

RUNS_PER_CHUNK = 100
DEFAULT_KEEP_RUNS = 200
_MAIN_META = "meta"
# Kept by the store itself in each job doc; a definition passed to sync_jobs never overrides them.
JOB_STATE_KEYS = frozenset(
    {
        "id",
        "next_seq",
        "active",
        "last_fire_at",
        "last_claim",
        "queued",
        "last_run_id",
        "last_status",
        "last_ended_at",
        "last_success_at",
        "last_complete_at",
        "defined",
        HOOKS_RUNNING,
    }
)


def _without_state(definition: dict) -> dict:
    return {k: v for k, v in definition.items() if k not in JOB_STATE_KEYS}


class Store(FollowupRecords):
    """The one gateway to stored state. The scheduler worker (or a one-shot trigger) writes;
    the API and CLI only read. Every call holds the lock for its whole read-modify-write."""

    def __init__(
        self, db_path: str, keep_runs: int = DEFAULT_KEEP_RUNS, fsync: bool = True
    ) -> None:
        self.db_path = os.path.abspath(db_path)
        self.data_dir = self.db_path + ".d"
        self.keep_runs = keep_runs
        self.lock = DbLock(self.db_path + ".lock")
        self.logs = TaskLogs(os.path.join(self.data_dir, "logs"))
        self.drops = DropLog(os.path.join(self.data_dir, "drops"), self.lock, fsync)
        self._cache = FileCache()
        self._fsync = fsync
        self._dbs: dict[str, TinyDB] = {}
        # Highest seq this process handed out per job: a db deleted under a running service
        # must not hand out again a run id that a caller already holds.
        self._issued: dict[str, int] = {}

    # -- files --------------------------------------------------------------------------------

    def _db(self, path: str) -> TinyDB:
        db = self._dbs.get(path)
        if db is None:
            if len(self._dbs) > 64:
                self._dbs.clear()
            db = self._dbs[path] = TinyDB(
                path, storage=AtomicJSONStorage, cache=self._cache, fsync=self._fsync
            )
        return db

    def _table(self, path: str, name: str):
        table = self._db(path).table(name)
        table.clear_cache()  # another process may have written since this process last looked
        return table

    def _chunk_path(self, job_id: str, seq: int) -> str:
        return os.path.join(self.data_dir, "runs", job_id, f"{seq // RUNS_PER_CHUNK:08d}.json")

    def _job_chunks(self, job_id: str) -> list[str]:
        directory = os.path.join(self.data_dir, "runs", job_id)
        try:
            names = sorted(
                n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith(".")
            )
        except FileNotFoundError:
            return []
        return [os.path.join(directory, n) for n in names]

    def check(self) -> None:
        """Fail early, with the file named, when the db cannot be read or written; remove temp
        files left by a writer that was killed."""
        directory = os.path.dirname(self.db_path)
        if not os.path.isdir(directory):
            raise StorageError(f"{self.db_path}: the directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise StorageError(f"{self.db_path}: the directory {directory} is not writable")
        with self.lock():
            remove_stale_temps(self.db_path, self.data_dir)
            problem = main_file_problem(
                self._table(self.db_path, _MAIN_META).all(),
                self._table(self.db_path, MAIN_JOBS).all(),
            )
        if problem is not None:
            raise corrupt_file(self.db_path, problem)

    # -- scheduler state ----------------------------------------------------------------------

    def is_paused(self) -> bool:
        with self.lock(exclusive=False):
            docs = self._table(self.db_path, _MAIN_META).all()
        return bool(docs and docs[0].get("paused"))

    def set_paused(self, paused: bool) -> None:
        with self.lock():
            table = self._table(self.db_path, _MAIN_META)
            table.upsert(Document({"paused": paused, "updated_at": now_ms()}, doc_id=1))

    # -- job summaries ------------------------------------------------------------------------

    def job_summaries(self) -> dict[str, dict]:
        with self.lock(exclusive=False):
            return {doc["id"]: dict(doc) for doc in self._table(self.db_path, MAIN_JOBS).all()}

    def sync_jobs(self, definitions: dict[str, dict]) -> None:
        """Store what the API shows of each job (definition + next fire), in one write. Jobs that
        left the folder keep their doc (their history stays readable) but are marked undefined."""
        with self.lock():
            table = self._table(self.db_path, MAIN_JOBS)
            stored = {doc["id"]: doc for doc in table.all()}

            def refresh(doc: dict) -> None:
                definition = definitions.get(doc["id"])
                if definition is None:
                    doc.update(defined=False, next_run_at=None)
                else:
                    doc.update(_without_state(definition), defined=True)

            # One write for the jobs already known, in place: a kill between two writes must not
            # leave a table without the run counters and active lists (truncate + insert did).
            if stored:
                table.update(refresh, doc_ids=[doc.doc_id for doc in stored.values()])
            next_id = max((doc.doc_id for doc in stored.values()), default=0) + 1
            new = []
            for job_id, definition in definitions.items():
                if job_id not in stored:
                    doc = {
                        **_without_state(definition),
                        "id": job_id,
                        "next_seq": 1,
                        "active": [],
                        "defined": True,
                    }
                    new.append(Document(doc, doc_id=next_id))
                    next_id += 1
            if new:
                table.insert_multiple(new)

    def _update_job(self, job_id: str, change) -> dict:
        table = self._table(self.db_path, MAIN_JOBS)
        doc = next((d for d in table.all() if d["id"] == job_id), None)
        if doc is None:
            new = {"id": job_id, "next_seq": 1, "active": [], "defined": True}
            change(new)
            # explicit doc id: TinyDB's cached next id is stale when another process wrote
            table.insert(Document(new, doc_id=max((d.doc_id for d in table.all()), default=0) + 1))
            return new
        updated = dict(doc)
        change(updated)
        table.update(lambda d: d.update(updated), doc_ids=[doc.doc_id])
        return updated

    # -- runs ---------------------------------------------------------------------------------

    def create_run(
        self,
        job_id: str,
        task_ids: Iterable[str],
        trigger: Trigger,
        scheduled_at: int | None = None,
        next_run_at: int | None = None,
        queued: bool = False,
        jitter_ms: int | None = None,
        params: dict | None = None,
        secret_params: Iterable[str] = (),
    ) -> Run:
        """Allocate the next run id and record the run as pending (or queued), with its resolved
        `params` (those named in `secret_params` are masked in its views). It is durable on
        return, and so is its fire time in the job's ledger: in the same write as the claim."""
        status = RunStatus.QUEUED if queued else RunStatus.PENDING
        with self.lock():
            chunks = self._job_chunks(job_id)
            newest = (
                max((d.doc_id for d in self._table(chunks[-1], CHUNK_RUNS).all()), default=0)
                if chunks
                else 0
            )
            holder: dict = {}

            def claim(doc: dict) -> None:
                seq = max(doc.get("next_seq", 1), newest + 1, self._issued.get(job_id, 0) + 1)
                holder["seq"] = seq
                run_id = make_run_id(job_id, seq)
                doc["next_seq"] = seq + 1
                doc["active"] = [*doc.get("active", []), run_id]
                if queued:
                    doc["queued"] = [*doc.get("queued", []), run_id]
                # What the history record would say, for a kill before it is written. Only the
                # newest claim can lack its record: the claim and the write share one lock hold.
                doc["last_claim"] = {
                    "run_id": run_id,
                    "trigger": trigger.value,
                    "scheduled_at": scheduled_at,
                }
                if scheduled_at is not None:
                    doc["last_fire_at"] = max(scheduled_at, doc.get("last_fire_at") or 0)
                if trigger is not Trigger.MANUAL:
                    doc["next_run_at"] = next_run_at

            self._update_job(job_id, claim)
            seq = self._issued[job_id] = holder["seq"]
            run_id = make_run_id(job_id, seq)
            run = Run(
                id=run_id,
                job_id=job_id,
                seq=seq,
                trigger=trigger,
                status=status,
                created_at=now_ms(),
                scheduled_at=scheduled_at,
                jitter_ms=jitter_ms,
                params=dict(params or {}),
                secret_params=tuple(secret_params),
                tasks=[TaskRun(task_id=t, run_id=run_id) for t in task_ids],
            )
            try:
                self._table(self._chunk_path(job_id, seq), CHUNK_RUNS).insert(
                    Document(run.to_dict(), doc_id=seq)
                )
            except StorageError:
                self._undo_claim(job_id, seq)
                raise
            return run

    def _undo_claim(self, job_id: str, seq: int) -> None:
        """Best effort after a failed history write (disk full): a run id left in the active
        list would come back at the next start as an interrupted run nobody was ever told about.
        Only when the record is surely not on disk: a record whose id left the active list would
        stay pending for ever."""
        run_id = make_run_id(job_id, seq)
        try:
            if self._table(self._chunk_path(job_id, seq), CHUNK_RUNS).get(doc_id=seq) is not None:
                return
            self._update_job(
                job_id, lambda d: d.update(active=[r for r in d.get("active", []) if r != run_id])
            )
        except StorageError:
            pass  # the disk still refuses: recovery settles the run at the next start

    def save_runs(self, runs: Iterable[Run]) -> None:
        """Write the current state of several runs: one write per history file touched, plus one
        main-file write if any of them finished. Each run's snapshot is taken under the lock:
        a follow-up (record_followups, which changes the live run before it writes) is then
        either in the snapshot or written after it, never overwritten by an older one."""
        runs = list(runs)
        if not runs:
            return
        by_chunk: dict[str, dict[int, dict]] = {}
        finished: list[Run] = []
        with self.lock():
            for run in runs:
                doc = run.to_dict()
                by_chunk.setdefault(self._chunk_path(run.job_id, run.seq), {})[run.seq] = doc
                if RunStatus(doc["status"]).is_terminal:
                    # the snapshot just written, not the live run an engine thread may change
                    finished.append(Run.from_dict(doc))
            for path, docs in by_chunk.items():
                table = self._table(path, CHUNK_RUNS)
                present = {d.doc_id for d in table.all()}
                known = [seq for seq in docs if seq in present]
                table.update(lambda d, docs=docs: d.update(docs[d["seq"]]), doc_ids=known)
                missing = [
                    Document(doc, doc_id=seq) for seq, doc in docs.items() if seq not in present
                ]
                if missing:  # the history file was deleted under us: write the run again
                    table.insert_multiple(missing)
            for run in finished:
                self._finish_job_run(run)

    def _finish_job_run(self, run: Run) -> None:
        def record(doc: dict) -> None:
            doc["active"] = [r for r in doc.get("active", []) if r != run.id]
            doc["queued"] = [r for r in doc.get("queued", []) if r != run.id]
            doc["last_run_id"] = run.id
            doc["last_status"] = run.status.value
            doc["last_ended_at"] = run.ended_at
            if run.status is RunStatus.COMPLETED:
                doc["last_success_at"] = run.ended_at
            if run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
                doc["last_complete_at"] = run.ended_at

        doc = self._update_job(run.job_id, record)
        self._apply_retention(run.job_id, doc)

    def _apply_retention(self, job_id: str, doc: dict) -> None:
        cutoff = doc.get("next_seq", 1) - 1 - self.keep_runs  # runs with seq <= cutoff go
        if cutoff < 1:
            return
        active = {split_run_id(r)[1] for r in doc.get("active", []) if split_run_id(r)}
        for path in self._job_chunks(job_id):
            first = int(os.path.basename(path).split(".")[0]) * RUNS_PER_CHUNK
            if first > cutoff:
                break
            table = self._table(path, CHUNK_RUNS)
            seqs = [d.doc_id for d in table.all()]
            doomed = [s for s in seqs if s <= cutoff and s not in active]
            if not doomed:
                continue
            if len(doomed) == len(seqs):
                unlink_quietly(path)
                self._cache.entries.pop(path, None)
            else:
                table.remove(doc_ids=doomed)
            for seq in doomed:
                self.logs.remove_run(make_run_id(job_id, seq))

    def get_run(self, run_id: str) -> Run | None:
        parts = split_run_id(run_id)
        if parts is None:
            return None
        job_id, seq = parts
        path = self._chunk_path(job_id, seq)
        with self.lock(exclusive=False):
            if not os.path.exists(path):
                return None
            doc = self._table(path, CHUNK_RUNS).get(doc_id=seq)
        return run_from_doc(doc, path) if doc is not None else None

    def list_runs(
        self, job_id: str, limit: int, before_seq: int | None = None, with_tasks: bool = True
    ) -> list[Run]:
        """Newest first (only those whose seq is below `before_seq` when given: the next page),
        reading only as many history files as needed: none of those holding newer runs. Without
        their tasks (`with_tasks` False: their `tasks` is empty) for lists of outcomes."""
        runs: list[Run] = []
        if limit <= 0:
            return runs
        with self.lock(exclusive=False):
            for path in reversed(self._job_chunks(job_id)):
                first = int(os.path.basename(path).split(".")[0]) * RUNS_PER_CHUNK
                if before_seq is not None and first >= before_seq:
                    continue  # every run in it is newer than the page asked for
                docs = self._table(path, CHUNK_RUNS).all()
                for doc in sorted(docs, key=lambda d: d.doc_id, reverse=True):
                    if before_seq is not None and doc.doc_id >= before_seq:
                        continue
                    runs.append(run_from_doc(doc, path, with_tasks))
                    if len(runs) >= limit:
                        return runs
        return runs

    def active_runs(self) -> list[Run]:
        """Runs recorded as started but not finished (what recovery looks at)."""
        with self.lock(exclusive=False):
            docs = self._table(self.db_path, MAIN_JOBS).all()
        runs = []
        for doc in docs:
            for run_id in doc.get("active", []):
                run = self.get_run(run_id)
                if run is None:  # created in the main file, but killed before its history write
                    run = unrecorded_run(run_id, doc.get("last_claim"))
                runs.append(run)
        return runs

    def forget_active(self, run: Run) -> None:
        """Drop a run from the active list when its history record is already terminal or gone."""
        with self.lock():
            self._update_job(
                run.job_id,
                lambda d: d.update(active=[r for r in d.get("active", []) if r != run.id]),
            )

    def dequeue(self, run: Run) -> None:
        """Record that a queued run starts now (`run.dequeue()` done): off the job's queue."""
        with self.lock():
            self._update_job(
                run.job_id,
                lambda d: d.update(queued=[r for r in d.get("queued", []) if r != run.id]),
            )
        self.save_runs([run])
