"""Task output on disk, beside the db and out of the hot TinyDB files: one append-only file per
attempt, written while the task runs, read by the API and the CLI while it still runs.

Layout under `<db>.d/logs/<run_id>/`:
  <task_id>/<attempt>.log     the current segment; `<attempt>.log.1` the one before it
  <task_id>.json              a log written by an older petit: the last attempt's, whole

A segment holds one line per output line, `o text` (stdout) or `e text` (stderr), in the order
the task printed them, so `tail -f` reads it as it grows. A segment that reached the limit
becomes `.1` (the `.1` before it is dropped) and the next one starts with a marker line,
`# rotated: L lines, B bytes before this segment`: the position of its first line in the
attempt's whole log, which tells a reader what was dropped and a follower where it is."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Sequence
from typing import BinaryIO

from ..errors import StorageError

FLUSH_INTERVAL_SECS = 0.5  # how far the file may lag behind the task's output
FLUSH_BYTES = 64 * 1024  # a buffer this big is written at once, not at the next tick
STREAM_TAGS = {"stdout": "o", "stderr": "e"}
TAG_STREAMS = {tag: stream for stream, tag in STREAM_TAGS.items()}
_MARKER = re.compile(rb"# rotated: (\d+) lines, (\d+) bytes before this segment")
_SEGMENT = re.compile(r"([1-9][0-9]{0,8})\.log(?:\.1)?")

log = logging.getLogger("petit.logs")


class TaskLogs:
    """The logs of every run of one db: writers for attempts, readers for everybody else."""

    def __init__(self, root: str) -> None:
        self.root = root

    def attempt_path(self, run_id: str, task_id: str, attempt: int) -> str:
        """The current segment of an attempt's log (`.1` beside it is the previous one)."""
        return os.path.join(self.root, run_id, task_id, f"{attempt}.log")

    def legacy_path(self, run_id: str, task_id: str) -> str:
        return os.path.join(self.root, run_id, f"{task_id}.json")

    def writer(self, run_id: str, task_id: str, attempt: int, limit: int) -> LogWriter:
        """The writer of one attempt's log; nothing reaches the disk before its first line."""
        return LogWriter(self.attempt_path(run_id, task_id, attempt), limit)

    def attempts(self, run_id: str, task_id: str) -> list[int]:
        """The attempts of a task that have a log, in order."""
        try:
            names = os.listdir(os.path.join(self.root, run_id, task_id))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        except OSError as exc:
            raise StorageError(f"{self.root}/{run_id}: cannot list task logs: {exc}") from exc
        found = {int(match[1]) for match in map(_SEGMENT.fullmatch, names) if match}
        legacy = self._legacy(run_id, task_id)
        if legacy is not None:
            found.add(legacy["attempt"])
        return sorted(found)

    def read(self, run_id: str, task_id: str, attempt: int | None = None) -> dict | None:
        """One attempt's log as far as it is written: {"attempt", "lines": [[stream, text]],
        "stdout", "stderr", "truncated"}. `attempt` None is the latest attempt with a log; None
        when that attempt has none. Raises StorageError when a file exists but cannot be read."""
        if attempt is None:
            known = self.attempts(run_id, task_id)
            if not known:
                return None
            attempt = known[-1]
        path = self.attempt_path(run_id, task_id, attempt)
        # the current segment first: a rotation between the two opens then shows up as a
        # `.1` that does not end where the current segment starts, and is left out
        current, previous = _read_segment(path), _read_segment(path + ".1")
        if current is None and previous is None:
            return self._legacy(run_id, task_id, attempt)
        segments = [s for s in (previous, current) if s is not None]
        if previous is not None and current is not None:
            if previous.inode == current.inode or previous.end_line != current.first_line:
                segments = [current]
        lines = [[stream, text] for segment in segments for stream, text in segment.lines]
        return _record(attempt, lines, truncated=segments[0].first_byte > 0)

    def tail(self, run_id: str, task_id: str, attempt: int, start_line: int = 0) -> LogTail:
        """A follower of one attempt's log, from line `start_line` (0: the oldest kept)."""
        legacy = self._legacy(run_id, task_id, attempt)
        backlog = [(stream, text) for stream, text in legacy["lines"]] if legacy else []
        return LogTail(self.attempt_path(run_id, task_id, attempt), start_line, backlog)

    def remove_run(self, run_id: str) -> None:
        shutil.rmtree(os.path.join(self.root, run_id), ignore_errors=True)

    def _legacy(self, run_id: str, task_id: str, attempt: int | None = None) -> dict | None:
        """An older petit's log of the task (None unless of `attempt`, when given), as read()
        returns a log."""
        path = self.legacy_path(run_id, task_id)
        try:
            with open(path) as handle:
                record = json.load(handle)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise StorageError(f"{path}: cannot read task log: {exc}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("attempt"), int):
            raise StorageError(f"{path}: cannot read task log: not a task log record")
        return _legacy_record(record) if attempt in (None, record["attempt"]) else None


def _record(attempt: int, lines: list[list[str]], truncated: bool) -> dict:
    def text(stream: str) -> str:
        return "".join(f"{line}\n" for name, line in lines if name == stream)

    return {
        "attempt": attempt,
        "lines": lines,
        "stdout": text("stdout"),
        "stderr": text("stderr"),
        "truncated": truncated,
    }


def _legacy_record(legacy: dict) -> dict:
    """An older petit kept each stream whole and apart: their order is lost, stdout comes first."""
    lines = []
    for stream in ("stdout", "stderr"):
        pieces = str(legacy.get(stream) or "").split("\n")
        if pieces[-1] == "":  # the newline that ended the last line
            pieces.pop()
        lines += [[stream, line] for line in pieces]
    record = _record(legacy["attempt"], lines, bool(legacy.get("truncated")))
    # the text as it was stored, even a last line without its newline
    record.update(stdout=legacy.get("stdout") or "", stderr=legacy.get("stderr") or "")
    return record


# -- the format -----------------------------------------------------------------------------------


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # a lone surrogate must not stop the log


def _decode(raw: bytes) -> tuple[str, str] | None:
    """(stream, text) of one record without its newline; None for a marker or anything else."""
    stream = TAG_STREAMS.get(raw[:1].decode("ascii", "replace"))
    if stream is None or raw[1:2] != b" ":
        return None
    return stream, raw[2:].decode("utf-8", "replace")


def _marker(lines: int, size: int) -> bytes:
    return f"# rotated: {lines} lines, {size} bytes before this segment\n".encode()


class _Segment:
    """One segment file as read at one moment: complete records only."""

    def __init__(self, raw: bytes, inode: int) -> None:
        self.inode = inode
        self.first_line = self.first_byte = 0
        records = raw.split(b"\n")[:-1]  # the last piece is empty or a record still being written
        if records and (match := _MARKER.fullmatch(records[0])):
            self.first_line, self.first_byte = int(match[1]), int(match[2])
            records = records[1:]
        self.lines = [line for line in map(_decode, records) if line is not None]
        self.end_line = self.first_line + len(self.lines)


def _read_segment(path: str) -> _Segment | None:
    try:
        with open(path, "rb") as handle:
            return _Segment(handle.read(), os.fstat(handle.fileno()).st_ino)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise StorageError(f"{path}: cannot read task log: {exc.strerror or exc}") from exc


# -- writing --------------------------------------------------------------------------------------


class LogWriter:
    """Appends one attempt's output lines to its log. `append_lines()` comes from the attempt's
    thread, `flush()` from the flusher's as well: one lock keeps the records in order. Nothing
    is fsynced: the page cache outlives a SIGKILL of the worker, and a power cut may cost the
    end of a log, never the db. A log that cannot be written stops there; the task goes on."""

    def __init__(self, path: str, limit: int) -> None:
        self.path = path
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self._pending: list[str] = []  # batches of records, encoded at the flush: one encode each
        self._pending_chars = 0
        self._fd: int | None = None
        self._size = self._lines = 0  # of the current segment
        self._bytes_before = self._lines_before = 0  # of the attempt's log, before this segment
        self._registered = self._closed = self._broken = False

    def append_lines(self, stream: str, lines: Sequence[str]) -> None:
        """Append `lines` of one stream, in order, under one lock: a task printing millions of
        lines costs a lock and a string join per batch, not per line. Raises TypeError for a
        str (a str is a sequence too: it would become one line per character)."""
        if isinstance(lines, str):
            raise TypeError("append_lines() takes a sequence of lines, not a str")
        if not lines:
            return
        tag = f"{STREAM_TAGS[stream]} "
        # A newline inside a line (never from the runner) starts a record of its own: one would
        # otherwise make a line of the file without its tag.
        records = tag + "\n".join(lines).replace("\n", "\n" + tag) + "\n"
        with self._lock:
            if self._closed or self._broken:
                return
            self._pending.append(records)
            self._pending_chars += len(records)
            big = self._pending_chars >= FLUSH_BYTES
            if self._registered and not big:  # the usual case: the flusher writes it soon
                return
            register, self._registered = not self._registered, True
        if register:
            FLUSHER.add(self)
        if big:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._pending_chars = self._pending, [], 0
            if not pending or self._broken:
                return
            try:
                self._write(pending)
            except OSError as exc:
                self._broken = True
                log.error("%s: cannot write task log, the rest is lost: %s", self.path, exc)
                self._close_fd()

    def close(self) -> None:
        """Write what is buffered and stop; later lines are dropped."""
        self.flush()
        with self._lock:
            self._closed = True
            self._close_fd()
        FLUSHER.discard(self)

    def _write(self, chunks: list[str]) -> None:
        if self._fd is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._fd = _create(self.path)
        raw = _encode("".join(chunks))
        while raw:
            room = max(0, self.limit - self._size)
            # all of it (the usual case), else up to the end of the last whole record that fits
            cut = len(raw) if len(raw) <= room else raw.rfind(b"\n", 0, room) + 1
            if not cut and not self._size:  # a record longer than the limit: a segment of its own
                cut = raw.index(b"\n") + 1
            if not cut:
                self._rotate()
                continue
            _write_all(self._fd, raw[:cut])
            self._size += cut
            self._lines += raw.count(b"\n", 0, cut)
            raw = raw[cut:]

    def _rotate(self) -> None:
        """The full segment becomes `.1` (the one before it goes) and a new one begins with the
        position of its first line: a crash in between leaves `.1` alone, which readers take."""
        self._close_fd()
        os.replace(self.path, self.path + ".1")
        self._bytes_before += self._size
        self._lines_before += self._lines
        self._size = self._lines = 0
        self._fd = _create(self.path)
        _write_all(self._fd, _marker(self._lines_before, self._bytes_before))

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _create(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Flusher:
    """One daemon thread for every open writer of the process: each writer's buffer reaches its
    file at most FLUSH_INTERVAL_SECS after its line came. It sleeps while no writer is open."""

    def __init__(self) -> None:
        self._writers: set[LogWriter] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, writer: LogWriter) -> None:
        with self._wake:
            self._writers.add(writer)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="petit-log-flusher", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def discard(self, writer: LogWriter) -> None:
        with self._wake:
            self._writers.discard(writer)

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._writers)
                self._wake.wait(FLUSH_INTERVAL_SECS)  # an add() during the wait wakes it early
                writers = list(self._writers)
            for writer in writers:
                try:
                    writer.flush()
                except Exception:  # a bug must not stop the flushing of every other log
                    log.exception("%s: flushing the task log failed", writer.path)


FLUSHER = _Flusher()


# -- following ------------------------------------------------------------------------------------


class LogTail:
    """Follows one attempt's log like `tail -F`: it keeps reading the file it has open until the
    path names a newer segment, so a rotation loses nothing unless two happen between two reads.
    `position` is the number, in the attempt's whole log, of the line after the last one
    returned; the lines of one read_new() come from one segment, so they are consecutive."""

    def __init__(self, path: str, start_line: int, backlog: list[tuple[str, str]]) -> None:
        self.path = path
        self.position = 0
        self._start = start_line  # lines before it are never returned (again)
        self._backlog = backlog  # an older petit's log of the attempt, complete
        self._file: BinaryIO | None = None
        self._inode: int | None = None
        self._partial = b""
        self._at_start = False  # no complete record read yet from the open segment
        self._open(path + ".1")  # the previous segment first, when there is one

    def read_new(self) -> list[tuple[str, str]]:
        """The complete lines written since the last call."""
        out = self._read_available()
        while True:
            try:
                inode = os.stat(self.path).st_ino
            except FileNotFoundError:  # not written yet, or between the two steps of a rotation
                break
            if inode == self._inode:
                break
            if self._file is not None:  # the writer has moved on: what it left here is complete
                out += self._read_available()
                if out:  # the next segment at the next call: one segment per call
                    return out
            if not self._open(self.path):
                break
            out = self._read_available()
        if self._backlog:
            out, self._backlog = out + self._take(self._backlog), []
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, path: str) -> bool:
        try:
            handle = open(path, "rb")  # noqa: SIM115 (kept open across reads, closed by close())
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"{path}: cannot read task log: {exc.strerror or exc}") from exc
        self.close()
        self._file, self._inode = handle, os.fstat(handle.fileno()).st_ino
        self._partial, self._at_start = b"", True
        return True

    def _read_available(self) -> list[tuple[str, str]]:
        if self._file is None:
            return []
        *records, self._partial = (self._partial + self._file.read()).split(b"\n")
        if records and self._at_start:
            self._at_start = False
            match = _MARKER.fullmatch(records[0])
            if match:  # the segment says where it starts: past a gap, or on lines already sent
                records = records[1:]
                self._start = max(self._start, self.position)
                self.position = int(match[1])
        return self._take(line for line in map(_decode, records) if line is not None)

    def _take(self, lines: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        out = []
        for line in lines:
            if self.position >= self._start:
                out.append(line)
            self.position += 1
        return out
