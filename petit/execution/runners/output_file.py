"""The PETIT_OUTPUT file of one attempt of the local runner: made fresh and private before the
process starts, read (bounded) once it ended, and removed with its folder whatever happened."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

from ...core.model import now_ms
from ...core.outputs import OUTPUT_LIMIT
from .base import AttemptHandle, AttemptResult

OUTPUT_VARIABLE = "PETIT_OUTPUT"


class OutputFile:
    """An empty file, mode 0600, alone in a folder of its own (mode 0700, from mkdtemp): no other
    user can read what the task writes, and no other attempt shares the path."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="petit-output-")
        self.path = os.path.join(self.folder, "output")
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            self.remove()
            raise

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
        shutil.rmtree(self.folder, ignore_errors=True)  # with whatever else the task put there


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
