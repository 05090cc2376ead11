"""The audit log, `<db>.audit.jsonl`: one JSON line for each state-changing operation asked of
petit through any of its doors (the HTTP API, the control socket, `petit ctl`, `petit trigger`),
with who asked, what, and what came of it. Several processes append to it (the API, the
supervisor, a `petit trigger`), each under an flock; a line is written with one write() and
fsynced before the reply goes out. Never rewritten: only appended to, and rotated by size."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import AuditUnavailable

AUDIT_SUFFIX = ".audit.jsonl"
DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_KEEP = 5
# below this much free space an operation is refused, rather than done and then not recorded
MIN_FREE_BYTES = 1 << 20
MASK = "***"
MAX_READ_LIMIT = 1000
# the doors, as the `door` field names them
HTTP, SOCKET, CTL, TRIGGER = "http", "socket", "ctl", "trigger"
FIELDS = (
    "time", "at", "door", "who", "remote", "pid", "op", "args", "outcome", "http_status", "run_id",
)  # fmt: skip


def audit_path(db: str) -> str:
    return db + AUDIT_SUFFIX


def audit_entry(
    now_ms: int,
    door: str,
    who: str | None,
    op: str,
    args: dict,
    outcome: str,
    *,
    run_id: str | None = None,
    remote: str | None = None,
    http_status: int | None = None,
    pid: int | None = None,
) -> dict:
    """One line of the log. `who` is the API key's name (None when the API asks for no key),
    or "socket uid N" / "process uid N"; `outcome` is "ok" or the error code of the reply;
    `args` must already be masked (masked())."""
    time = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return {
        "time": time.replace("+00:00", "Z"),
        "at": int(now_ms),
        "door": door,
        "who": who,
        "remote": remote,
        "pid": pid,
        "op": op,
        "args": args,
        "outcome": outcome,
        "http_status": http_status,
        "run_id": run_id,
    }


def masked(args: dict, secret_names: Collection[str]) -> dict:
    """`args` with the value of each param declared `secret: true` replaced by "***", both as
    JSON params ({"token": "..."}) and as `--param NAME=VALUE` words."""
    out = dict(args)
    params = out.get("params")
    if isinstance(params, dict):
        out["params"] = {k: MASK if k in secret_names else v for k, v in params.items()}
    words = out.get("param_words")
    if isinstance(words, list):
        out["param_words"] = [_masked_word(word, secret_names) for word in words]
    return out


def _masked_word(word, secret_names: Collection[str]):
    if not isinstance(word, str):
        return word
    name, equals, _ = word.partition("=")
    return f"{name}={MASK}" if equals and name.strip() in secret_names else word


@dataclass
class AuditPage:
    """What a read found: the entries (oldest first), whether older ones matched too, and one
    warning for each line that could not be read (a torn last line after a crash), for the
    caller to show: the reader logs nothing itself."""

    entries: list[dict] = field(default_factory=list)
    more: bool = False
    warnings: list[str] = field(default_factory=list)


class AuditLog:
    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP):
        self.path, self.max_bytes, self.keep = path, max_bytes, keep

    # -- writing ----------------------------------------------------------------------------

    def check(self) -> None:
        """Whether a line can be written now: raises AuditUnavailable (the operation is then
        refused) when the file cannot be opened for appending or its disk is nearly full."""
        fd = self._open()
        try:
            free = os.fstatvfs(fd)
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
            raise self._unavailable(f"less than {MIN_FREE_BYTES >> 20} MiB free on its disk")

    def append(self, entry: dict) -> None:
        """Write one line, fsynced. A file that this line would take past max_bytes is rotated
        first, so the line lands either in the log or nowhere: never written and then reported
        as lost. Raises AuditUnavailable when it could not be written."""
        line = (
            json.dumps(entry, ensure_ascii=True, separators=(",", ":"), default=str) + "\n"
        ).encode()
        while True:
            fd = self._locked()
            try:
                size = os.fstat(fd).st_size
                if size and size + len(line) > self.max_bytes:
                    self._rotate()
                    continue  # the file is a new one now, maybe already another writer's
                # a writer killed mid-line left it without its newline: end it, so this line is
                # not glued to it (readers skip the torn one)
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
                data = (b"\n" if torn else b"") + line
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
                return
            except OSError as exc:
                raise self._unavailable(exc.strerror or str(exc)) from None
            finally:
                os.close(fd)

    def _open(self) -> int:
        try:
            fd = os.open(
                self.path,
                os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            raise self._unavailable(exc.strerror or str(exc)) from None
        try:
            info = os.fstat(fd)
            # made wider by hand: the log holds who did what
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        except OSError as exc:  # not ours to narrow, for one (EPERM)
            os.close(fd)
            raise self._unavailable(exc.strerror or str(exc)) from None
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise self._unavailable("not a regular file")
        return fd

    def _locked(self) -> int:
        """The file open and flocked; reopened when another process rotated it meanwhile."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                # still the file at `path`: not renamed away, nor removed (keep = 0), whose
                # inode number a new file may already have
                if held.st_nlink and os.stat(self.path).st_ino == held.st_ino:
                    return fd
            except OSError:
                pass  # rotated away between the open and the stat: open the new one
            os.close(fd)

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.<keep>; the oldest beyond `keep` is removed. Called
        under the lock, so no writer appends to a file being renamed."""
        if self.keep == 0:
            os.unlink(self.path)
            return
        for number in range(self.keep, 0, -1):
            older = f"{self.path}.{number}"
            newer = self.path if number == 1 else f"{self.path}.{number - 1}"
            if os.path.exists(newer):
                os.replace(newer, older)
        directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _unavailable(self, reason: str) -> AuditUnavailable:
        return AuditUnavailable(
            f"the audit log {self.path} cannot be written ({reason}): petit refuses "
            "state-changing operations until it can be"
        )

    # -- reading ----------------------------------------------------------------------------

    def read(self, since_ms: int | None = None, limit: int = 100) -> AuditPage:
        """The newest `limit` entries at or after `since_ms` (all when None), oldest first,
        from the rotated files too. Lines that are not entries are skipped, each with a
        warning naming its file and line."""
        page = AuditPage()
        newest_first: list[dict] = []
        with self._read_lock():
            for path in self.files():  # newest file first
                entries, older_seen = self._entries(path, since_ms, page.warnings)
                newest_first.extend(reversed(entries))
                if len(newest_first) > limit:
                    page.more = True
                    break
                if older_seen:  # this file already goes back past `since`
                    break
        page.entries = list(reversed(newest_first[:limit]))
        return page

    @contextmanager
    def _read_lock(self) -> Iterator[None]:
        """A shared flock of the current file while the files are read: no writer appends a
        half-seen line to it or rotates the files (which would show a file twice) meanwhile.
        No lock while there is no current file."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:  # none yet, or unreadable: the read says so
                fd = None
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                held = os.fstat(fd)
                if held.st_nlink and os.stat(self.path).st_ino == held.st_ino:
                    break
            except OSError:
                pass  # rotated away between the open and the stat: lock the new one
            os.close(fd)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def files(self) -> list[str]:
        """The current file and the rotated ones that exist, newest first."""
        found = [self.path] if os.path.exists(self.path) else []
        number = 1
        while os.path.exists(f"{self.path}.{number}"):
            found.append(f"{self.path}.{number}")
            number += 1
        return found

    def _entries(
        self, path: str, since_ms: int | None, warnings: list[str]
    ) -> tuple[list[dict], bool]:
        """A file's readable entries at or after `since_ms`, and whether it holds older ones."""
        entries, older_seen = [], False
        for _number, entry in _lines(path, warnings):
            if since_ms is not None and entry["at"] < since_ms:
                older_seen = True
                continue
            entries.append(entry)
        return entries, older_seen


def _lines(path: str, warnings: list[str]) -> Iterator[tuple[int, dict]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:  # rotated away since it was listed
        return
    except OSError as exc:
        warnings.append(f"{path}: cannot read: {exc.strerror or exc}")
        return
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        last = number == len(lines)  # no newline after it: cut short by a crash
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if last:
            what = "a torn last line (cut short by a crash)"
        elif entry is None:
            what = "a line that is not JSON"
        elif not isinstance(entry, dict) or not isinstance(entry.get("at"), int):
            what = "a line that is not an audit entry"
        else:
            yield number, entry
            continue
        warnings.append(f"{path} line {number}: skipped {what}")
