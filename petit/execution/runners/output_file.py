"""The PETIT_OUTPUT file of one attempt of the local runner: made fresh and private before the
process starts, read (bounded) once it ended, and removed whatever happened."""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import threading

from ...core.model import now_ms
from ...core.outputs import OUTPUT_LIMIT
from .base import AttemptHandle, AttemptResult

OUTPUT_VARIABLE = "PETIT_OUTPUT"


# A folder per process (and temp dir), made on first use and holding one file per attempt in
# flight: a folder per attempt cost ~85 us more on ext4 (its mkdir and rmdir are journaled), a
# fifth of a short task's whole cost in petit. Its name carries the pid, so that the folder of
# a process that died without removing it (a SIGKILL, or multiprocessing's os._exit) is removed
# by the next one that makes its own.
FOLDER_PREFIX = "petit-output-"
# (pid, temp dir) -> the folder: a forked child makes its own, never using its parent's
_folders: dict[tuple[int, str], str] = {}
_folders_lock = threading.Lock()


def _folder(renew: bool = False) -> str:
    """This process's private folder (mode 0700, from mkdtemp) in the current temp dir; made
    anew when `renew` (a cleaner of /tmp may have removed it). OSError when it cannot be made."""
    temp, pid = tempfile.gettempdir(), os.getpid()
    with _folders_lock:
        if renew or (pid, temp) not in _folders:
            _remove_dead_folders(temp)
            if not any(key[0] == pid for key in _folders):
                atexit.register(_remove_own_folders)
            _folders[pid, temp] = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{pid}-", dir=temp)
        return _folders[pid, temp]


def _remove_own_folders() -> None:
    with _folders_lock:
        for key in [key for key in _folders if key[0] == os.getpid()]:
            shutil.rmtree(_folders.pop(key), ignore_errors=True)


def _remove_dead_folders(temp: str) -> None:
    """The folders of petit processes that are gone, with whatever their attempts left."""
    me = os.getuid()
    try:
        entries = list(os.scandir(temp))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(FOLDER_PREFIX):
            continue
        pid = entry.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != me or _alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and its folder is not ours
        return True
    return True


class OutputFile:
    """An empty file, mode 0600, of a fresh random name in this process's private folder: no
    other user can read what the task writes, and no other attempt shares the path."""

    def __init__(self) -> None:
        try:
            self.path = _create(_folder())
        except FileNotFoundError:  # the folder was removed under us
            self.path = _create(_folder(renew=True))

    def read(self) -> bytes | None:
        """At most OUTPUT_LIMIT + 1 bytes (one more tells "too big"); None when the task removed
        the file or put something else there (a FIFO must not block the read, a link is not
        followed)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            chunks, left = [], OUTPUT_LIMIT + 1
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:  # the task removed it, or the folder went: nothing is left to remove
            pass


def _create(folder: str) -> str:
    # os.urandom rather than secrets: secrets loads hashlib and OpenSSL (MiBs) in the worker
    path = os.path.join(folder, os.urandom(8).hex())
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


class WithOutput:
    """An AttemptHandle whose result carries the attempt's output file, removed once read (also
    after a timeout, a cancel or a failed start: collect() is always called)."""

    def __init__(self, inner: AttemptHandle, output: OutputFile) -> None:
        self._inner = inner
        self._output = output

    def __getattr__(self, name: str):
        # the rest (the local runner's pid and pid_created, which its tests read) is the inner
        # handle's: this adds the output file and changes nothing else
        return getattr(self._inner, name)

    def to_dict(self) -> dict | None:
        return self._inner.to_dict()

    def cancel(self) -> None:
        self._inner.cancel()

    def collect(self) -> AttemptResult:
        try:
            result = self._inner.collect()
            result.output = self._output.read()
            return result
        finally:
            self._output.remove()


class NotStarted:
    """The AttemptHandle of an attempt that could not even be given its output file (the temp
    dir unwritable or full): a failed attempt like a command not found, which the task's retry
    policy decides about, not an error inside petit."""

    def __init__(self, error: OSError) -> None:
        self._error = f"cannot create the {OUTPUT_VARIABLE} file: {error.strerror or error}"
        self._at = now_ms()

    def to_dict(self) -> None:
        return None  # nothing was started, so nothing to recover

    def cancel(self) -> None:
        pass

    def collect(self) -> AttemptResult:
        return AttemptResult(None, self._error, False, False, self._at, now_ms())
