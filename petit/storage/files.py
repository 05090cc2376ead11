"""The file layer under the store: TinyDB storage that writes atomically and re-reads only what
changed, the cross-process lock, and the one message for a file petit cannot use."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tinydb.storages import Storage

from ..errors import StorageError


def temp_prefix(path: str) -> str:
    """Temp files carry the name of the file they replace, so cleaning up never touches another
    program's `.tmp-*` files when the db sits in a shared folder such as /tmp."""
    return f".tmp-{os.path.basename(path)}-"


class FileCache:
    """Parsed file contents keyed by file identity. Writers give every version a strictly newer
    mtime, so (inode, mtime_ns, size) changes on every write even when an inode is reused."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple, object]] = {}


class AtomicJSONStorage(Storage):
    """TinyDB storage that re-reads only when the file changed and writes via temp + fsync +
    os.replace, so a kill at any instant leaves the old or the new file, never a torn one."""

    def __init__(self, path: str, cache: FileCache, fsync: bool = True) -> None:
        self.path = path
        self._cache = cache.entries
        self._fsync = fsync

    def read(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache.pop(self.path, None)
            return None
        identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._cache.get(self.path)
        if hit is not None and hit[0] == identity:
            return hit[1]
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read()
            data = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise corrupt_file(self.path, str(exc)) from exc
        except RecursionError:  # "[[[[..." nested deeper than the parser's stack
            raise corrupt_file(self.path, "JSON nested too deeply") from None
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot read: {exc.strerror}") from exc
        if data is not None and not _is_tinydb_shape(data):
            raise corrupt_file(self.path, "expected a map of tables of documents")
        self._cache[self.path] = (identity, data)
        return data

    def write(self, data) -> None:
        # TinyDB changed the cached object in place before calling us: on any failure the cache
        # must go, or later reads would serve changes that never reached the disk.
        try:
            self._write(data)
        except BaseException:
            self._cache.pop(self.path, None)
            raise

    def _write(self, data) -> None:
        try:
            try:
                previous = os.stat(self.path).st_mtime_ns
            except FileNotFoundError:
                previous = 0
            atomic_write(
                self.path,
                json.dumps(data, separators=(",", ":")).encode(),
                self._fsync,
                not_before_ns=previous + 1,
            )
            st = os.stat(self.path)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        self._cache[self.path] = ((st.st_ino, st.st_mtime_ns, st.st_size), data)

    def close(self) -> None:
        pass


def corrupt_file(path: str, detail: str) -> StorageError:
    """The one message for a db file petit cannot use: it names the file and the way out, and
    promises the file was not touched (petit never overwrites what it cannot read)."""
    return StorageError(
        f"{path}: not a valid petit database ({detail}). It was left untouched: "
        f"move it aside (mv {path} {path}.corrupt) to start with empty history "
        "there, or restore it from a backup"
    )


def _is_tinydb_shape(data) -> bool:
    """{table: {doc_id: {...}}}: anything else would crash TinyDB with an unhelpful error (a doc
    id that is not a number included: TinyDB turns every key into an int)."""
    return isinstance(data, dict) and all(
        isinstance(table, dict)
        and all(_is_doc_id(key) and isinstance(doc, dict) for key, doc in table.items())
        for table in data.values()
    )


def _is_doc_id(key: str) -> bool:
    try:
        int(key)
        return True
    except ValueError:
        return False


def atomic_write(path: str, raw: bytes, fsync: bool, not_before_ns: int = 0) -> None:
    """Write `raw` to a temp file beside `path` and rename it over `path`: a kill at any instant
    leaves the old file or the new one. `not_before_ns` gives the new file an mtime later than
    the old one's (the read cache tells versions apart by it). Raises OSError."""
    directory = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        if not_before_ns:
            stamp = max(time.time_ns(), not_before_ns)
            os.utime(tmp, ns=(stamp, stamp))
        os.replace(tmp, path)
        tmp = None
        if fsync:
            _fsync_dir(directory)
    finally:
        if tmp is not None:  # a full disk must not also leave half a file behind
            unlink_quietly(tmp)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DbLock:
    """flock on a sidecar file (the db file itself is replaced on every write) plus an RLock,
    since flock does not exclude threads sharing one descriptor. Re-entrant per process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._fd: int | None = None
        self._depth = 0

    @contextmanager
    def __call__(self, exclusive: bool = True) -> Iterator[None]:
        with self._thread_lock:
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as exc:
                    raise StorageError(
                        f"{self.path}: cannot open the lock file: {exc.strerror}"
                    ) from exc
            outer = self._depth == 0
            if outer:
                fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if outer:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


def remove_stale_temps(db_path: str, data_dir: str) -> None:
    """Called under the exclusive lock, where no writer is mid-write, so every temp file is a
    dead one. In the db's own folder only ours go; the folders under `data_dir` (run history per
    job, the drop records) belong to petit entirely."""
    directory = os.path.dirname(db_path)
    mine = temp_prefix(db_path)
    for name in os.listdir(directory):
        if name.startswith(mine):
            unlink_quietly(os.path.join(directory, name))
    root = os.path.join(data_dir, "runs")
    try:
        folders = [os.path.join(root, name) for name in os.listdir(root)]
    except FileNotFoundError:
        folders = []
    # a job folder may hold nothing but the temp of its first write
    for folder in [*folders, os.path.join(data_dir, "drops")]:
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.startswith(".tmp-"):
                unlink_quietly(os.path.join(folder, name))
