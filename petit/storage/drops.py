"""The record of scheduled fires that did not become runs: one JSON line per drop (a fire, or a
span of fires), appended and fsynced per job in `<db>.d/drops/<job>.jsonl`, before petit moves
on. With the runs' fire times it is the fire ledger: every fire handed out is a run or a line
here. A kill mid-append leaves at most a torn last line, which readers skip."""

from __future__ import annotations

import json
import logging
import os

from ..errors import StorageError
from .files import DbLock, atomic_write

log = logging.getLogger("petit.store")

# A file past this is cut to its newer half: the record of drops stays bounded.
MAX_DROP_FILE_BYTES = 1 << 20
_TAIL_BYTES = 4096  # enough for the last line of any drop record


class DropLog:
    """Under the store's lock: exclusive to append, shared to read."""

    def __init__(self, root: str, lock: DbLock, fsync: bool = True) -> None:
        self.root = root
        self._lock = lock
        self._fsync = fsync

    def _path(self, job_id: str) -> str:
        return os.path.join(self.root, f"{job_id}.jsonl")

    def append(self, job_id: str, records: list[dict]) -> None:
        """Durable on return. Raises StorageError when the disk refuses."""
        if records:
            with self._lock():
                self._append(job_id, records)

    def _append(self, job_id: str, records: list[dict]) -> None:
        path = self._path(job_id)
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        try:
            os.makedirs(self.root, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size and not self._ends_with_newline(fd):
                    data = b"\n" + data  # a torn line stays alone on its line
                os.write(fd, data)
                if self._fsync:
                    os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > MAX_DROP_FILE_BYTES:
                self._trim(path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot record a dropped fire: {exc.strerror}") from exc

    @staticmethod
    def _ends_with_newline(fd: int) -> bool:
        return os.pread(fd, 1, os.fstat(fd).st_size - 1) == b"\n"

    def _trim(self, path: str) -> None:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines(keepends=True)
        atomic_write(path, b"".join(lines[len(lines) // 2 :]), self._fsync)

    def read(self, job_id: str, limit: int, before: int | None = None) -> list[dict]:
        """The newest `limit` records, newest first (those scheduled before `before` when
        given); a line that does not read back (torn by a kill) is skipped with a warning."""
        try:
            with self._lock(exclusive=False), open(self._path(job_id), "rb") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"{self._path(job_id)}: cannot read: {exc.strerror}") from exc
        records = []
        for line in reversed(lines):
            record = self._parse(job_id, line)
            if record is None or (before is not None and record["scheduled_at"] >= before):
                continue
            records.append(record)
            if len(records) >= limit:
                break
        return records

    def handled(self) -> dict[str, int]:
        """Each job's newest fire time its drops hand out (epoch ms): with the runs' fire times
        (`last_fire_at` in the job summaries), the fire ledger."""
        with self._lock(exclusive=False):
            ledger = {job_id: self._handled_through(job_id) for job_id in self._job_ids()}
        return {job_id: through for job_id, through in ledger.items() if through is not None}

    def _handled_through(self, job_id: str) -> int | None:
        """The newest fire time the drops hand out (the end of a span: the fire before its
        `until`); None without drops."""
        try:
            with open(self._path(job_id), "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - _TAIL_BYTES))
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{self._path(job_id)}: cannot read: {exc.strerror}") from exc
        for line in reversed(lines):
            record = self._parse(job_id, line)
            if record is not None:
                until = record.get("until")
                return until - 1 if isinstance(until, int) else record["scheduled_at"]
        return None

    def _job_ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".jsonl")] for n in names if n.endswith(".jsonl"))

    def _parse(self, job_id: str, line: bytes) -> dict | None:
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except ValueError:
            log.warning("%s: skipped a torn or unreadable drop record", self._path(job_id))
            return None
        if not isinstance(record, dict) or not isinstance(record.get("scheduled_at"), int):
            log.warning("%s: skipped a drop record without a fire time", self._path(job_id))
            return None
        return record
