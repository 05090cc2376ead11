"""Captured task output, one JSON file per task of a run, kept out of the hot TinyDB files and
removed by retention with its run."""

from __future__ import annotations

import json
import os
import shutil

from ..errors import StorageError
from .files import atomic_write


class TaskLogs:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, run_id: str, task_id: str) -> str:
        return os.path.join(self.root, run_id, f"{task_id}.json")

    def write(self, run_id: str, task_id: str, record: dict) -> None:
        """Logs are written atomically but without fsync: losing the tail of a log to a power cut
        is acceptable, a torn log file is not."""
        path = self.path(run_id, task_id)
        try:
            atomic_write(path, json.dumps(record).encode(), fsync=False)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write task log: {exc.strerror or exc}") from exc

    def read(self, run_id: str, task_id: str) -> dict | None:
        path = self.path(run_id, task_id)
        try:
            with open(path) as handle:
                return json.load(handle)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"{path}: cannot read task log: {exc}") from exc

    def remove_run(self, run_id: str) -> None:
        shutil.rmtree(os.path.join(self.root, run_id), ignore_errors=True)
