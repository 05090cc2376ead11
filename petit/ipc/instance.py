"""The per-db instance lock: one process runs jobs on a db at a time."""

from __future__ import annotations

import fcntl
import os

from ..errors import Conflict, StorageError


def hold_instance_lock(db: str) -> int:
    """One process that runs jobs per db (`petit run`, or a one-shot `petit trigger`): an flock
    held for the holder's life, so one's recovery never kills the other's tasks."""
    try:
        fd = os.open(db + ".run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StorageError(
            f"{db}.run.lock: cannot create the instance lock: {exc.strerror}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(
            f"another petit is already running jobs on {db} (a `petit run`, or a "
            "`petit trigger` in progress); use `petit ctl trigger` against a running service"
        ) from None
    return fd
