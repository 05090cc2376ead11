"""The audit log file (petit/ipc/audit.py): its lines and their fields, the masking of secret
params, rotation by size, its mode and the files it refuses, a line torn by a crash, paging by
time and count across the rotated files, and two real processes appending at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from processes import ROOT

from petit.errors import AuditUnavailable
from petit.ipc.audit import (
    CTL,
    FIELDS,
    HTTP,
    MASK,
    SOCKET,
    TRIGGER,
    AuditLog,
    audit_entry,
    audit_path,
    masked,
)

pytestmark = pytest.mark.timeout(60)
T0 = 1_796_169_600_000  # 2026-12-02T00:00:00Z


def entry(seq: int, **extra) -> dict:
    """A trigger line whose `at` and run id follow `seq`, so the tests can tell lines apart."""
    return audit_entry(
        T0 + seq, HTTP, "ci", "trigger", {"job_id": "j", "params": {}}, "ok",
        run_id=f"j-{seq}", remote="127.0.0.1", http_status=200, **extra,
    )  # fmt: skip


def in_file(name: str) -> list[dict]:
    """The entries of one file of the log, the rotated ones not included."""
    with open(name, "rb") as handle:
        return [json.loads(line) for line in handle.read().splitlines()]


def seqs(entries: list[dict]) -> list[int]:
    return [e["at"] - T0 for e in entries]


@pytest.fixture
def path(tmp_path) -> str:
    return audit_path(str(tmp_path / "petit.db"))


# -- lines -------------------------------------------------------------------------------------


def test_the_log_sits_beside_the_db():
    assert audit_path("/var/lib/petit/petit.db") == "/var/lib/petit/petit.db.audit.jsonl"


def test_an_entry_has_every_field_in_order_and_its_time_in_utc():
    line = audit_entry(
        T0 + 18 * 3_600_000 + 40 * 60_000 + 123, SOCKET, "socket uid 0", "cancel",
        {"run_id": "j-3"}, "NOT_FOUND", pid=4242,
    )  # fmt: skip
    assert list(line) == list(FIELDS) == [
        "time", "at", "door", "who", "remote", "pid", "op", "args", "outcome", "http_status",
        "run_id",
    ]  # fmt: skip
    assert line == {
        "time": "2026-12-02T18:40:00.123Z",
        "at": T0 + 67_200_123,
        "door": "socket",
        "who": "socket uid 0",
        "remote": None,
        "pid": 4242,
        "op": "cancel",
        "args": {"run_id": "j-3"},
        "outcome": "NOT_FOUND",
        "http_status": None,
        "run_id": None,
    }
    assert (HTTP, SOCKET, CTL, TRIGGER) == ("http", "socket", "ctl", "trigger")


def test_a_line_is_written_whole_with_its_fields_in_order_and_read_back(path):
    log = AuditLog(path)
    log.check()
    log.append(entry(1))
    log.append(entry(2, pid=7))
    with open(path, "rb") as handle:
        raw = handle.read()
    lines = raw.split(b"\n")
    assert len(lines) == 3 and lines[-1] == b""  # each line ends with its newline
    first = json.loads(lines[0])
    assert list(first) == list(FIELDS) and first == entry(1)
    page = log.read()
    assert page.entries == [entry(1), entry(2, pid=7)]
    assert (page.more, page.warnings) == (False, [])
    assert log.files() == [path]


def test_reading_a_log_not_written_yet_finds_nothing(path):
    page = AuditLog(path).read()
    assert (page.entries, page.more, page.warnings) == ([], False, [])
    assert AuditLog(path).files() == []
    assert not os.path.exists(path)  # reading creates nothing


def test_secret_params_are_masked_as_json_params_and_as_param_words():
    args = {
        "job_id": "deploy",
        "params": {"token": "hunter2", "count": 3, "password": None},
        "param_words": ["token=hunter2", "count=3", " token =x", "token", "password=", 5],
    }
    assert masked(args, {"token", "password"}) == {
        "job_id": "deploy",
        "params": {"token": MASK, "count": 3, "password": MASK},
        "param_words": ["token=***", "count=3", " token =***", "token", "password=***", 5],
    }
    assert MASK == "***"
    assert args["params"]["token"] == "hunter2"  # the caller's args are left alone
    assert masked(args, ()) == args
    assert masked({"run_id": "x"}, {"token"}) == {"run_id": "x"}
    assert masked({"params": "not a dict", "param_words": "nor a list"}, {"params"}) == {
        "params": "not a dict",
        "param_words": "nor a list",
    }


# -- rotation ----------------------------------------------------------------------------------


def line_size() -> int:
    return len(json.dumps(entry(100), separators=(",", ":"))) + 1


def test_rotation_by_size_keeps_keep_files_and_drops_the_older_ones(path):
    per_file = 4
    log = AuditLog(path, max_bytes=per_file * line_size(), keep=2)
    for seq in range(100, 123):  # 23 lines: 5 full files and 3 lines
        log.append(entry(seq))
    assert log.files() == [path, f"{path}.1", f"{path}.2"]
    assert not os.path.exists(f"{path}.3")
    for name in log.files():
        assert os.path.getsize(name) <= log.max_bytes
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    page = log.read(limit=1000)
    assert seqs(page.entries) == list(range(112, 123))  # the newest 3 + 2 files of 4
    assert (page.more, page.warnings) == (False, [])


def test_keep_0_keeps_the_current_file_only(path):
    log = AuditLog(path, max_bytes=3 * line_size(), keep=0)
    for seq in range(100, 108):
        log.append(entry(seq))
    assert log.files() == [path]
    assert seqs(log.read().entries) == [106, 107]


def test_a_line_larger_than_the_limit_still_gets_a_file_of_its_own(path):
    log = AuditLog(path, max_bytes=line_size() // 2, keep=3)
    for seq in range(100, 103):
        log.append(entry(seq))
    assert [seqs(in_file(name)) for name in log.files()] == [[102], [101], [100]]


def test_a_rotation_that_fails_writes_nothing_and_says_so(path):
    log = AuditLog(path, max_bytes=2 * line_size(), keep=1)
    log.append(entry(100))
    log.append(entry(101))
    os.mkdir(f"{path}.1")  # where the full file must go
    with open(os.path.join(f"{path}.1", "x"), "w"):
        pass
    log.check()  # the file itself can be written to
    with pytest.raises(AuditUnavailable) as caught:
        log.append(entry(102))
    assert caught.value.message.startswith(f"the audit log {path} cannot be written (")
    assert seqs(AuditLog(path).read().entries) == [100, 101]  # the refused line is nowhere


# -- the file's mode, and what it refuses to write to -------------------------------------------


def test_the_file_is_made_mode_0600_even_when_it_was_wider(path):
    log = AuditLog(path)
    old_mask = os.umask(0)
    try:
        log.append(entry(1))
    finally:
        os.umask(old_mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)
    log.check()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o666)
    log.append(entry(2))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def assert_unavailable(log: AuditLog, reason: str) -> None:
    for attempt in (log.check, lambda: log.append(entry(1))):
        with pytest.raises(AuditUnavailable) as caught:
            attempt()
        error = caught.value
        assert error.message == (
            f"the audit log {log.path} cannot be written ({reason}): petit refuses "
            "state-changing operations until it can be"
        )
        assert (error.code, error.http_status, error.exit_code) == ("AUDIT_UNAVAILABLE", 503, 1)


def test_a_symlink_in_place_of_the_log_is_refused(path, tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.symlink(target, path)
    assert_unavailable(AuditLog(path), os.strerror(40))  # ELOOP: O_NOFOLLOW
    assert target.read_text() == ""


def test_a_directory_in_place_of_the_log_is_refused(path):
    os.mkdir(path)
    assert_unavailable(AuditLog(path), "Is a directory")


def test_a_log_in_a_folder_that_does_not_exist_is_refused(tmp_path):
    assert_unavailable(
        AuditLog(audit_path(str(tmp_path / "nowhere" / "petit.db"))), "No such file or directory"
    )


# -- lines that cannot be read -----------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning_and_the_next_line_starts_afresh(path):
    log = AuditLog(path)
    log.append(entry(1))
    with open(path, "ab") as handle:  # a writer killed in the middle of its line
        handle.write(json.dumps(entry(2)).encode()[:40])
    torn = log.read()
    assert seqs(torn.entries) == [1]
    assert torn.warnings == [f"{path} line 2: skipped a torn last line (cut short by a crash)"]
    log.append(entry(3))
    page = log.read()
    assert seqs(page.entries) == [1, 3]  # both entries around the torn line
    assert page.warnings == [f"{path} line 2: skipped a line that is not JSON"]
    with open(path, "rb") as handle:
        assert handle.read().endswith(
            b"\n" + json.dumps(entry(3), separators=(",", ":")).encode() + b"\n"
        )


def test_lines_that_are_not_entries_are_skipped_each_with_a_warning(path):
    log = AuditLog(path)
    log.append(entry(1))
    with open(path, "a") as handle:
        handle.write('not json\n[1, 2]\n{"at": "yesterday"}\n\n')
    log.append(entry(2))
    page = log.read()
    assert seqs(page.entries) == [1, 2]
    assert page.warnings == [
        f"{path} line 2: skipped a line that is not JSON",
        f"{path} line 3: skipped a line that is not an audit entry",
        f"{path} line 4: skipped a line that is not an audit entry",
    ]
    assert seqs(log.read(since_ms=T0 + 2).entries) == [2]


# -- paging ------------------------------------------------------------------------------------


@pytest.fixture
def rotated(path) -> AuditLog:
    """Lines 0 to 19, four to a file: path.4 holds 0-3, ..., path holds 16-19."""
    log = AuditLog(path, max_bytes=4 * line_size(), keep=10)
    for seq in range(20):
        log.append(entry(seq))
    assert len(log.files()) == 5
    return log


@pytest.mark.parametrize(
    ("since", "limit", "expected", "more"),
    [
        (None, 100, list(range(20)), False),
        (None, 20, list(range(20)), False),
        (None, 19, list(range(1, 20)), True),
        (None, 5, list(range(15, 20)), True),  # across the current file and path.1
        (None, 4, list(range(16, 20)), True),
        (None, 1, [19], True),
        (6, 100, list(range(6, 20)), False),  # since falls inside path.3
        (6, 14, list(range(6, 20)), False),
        (6, 13, list(range(7, 20)), True),
        (16, 100, list(range(16, 20)), False),  # since falls on a file's first line
        (19, 100, [19], False),
        (20, 100, [], False),
        (0, 100, list(range(20)), False),
    ],
)
def test_since_limit_and_more_across_the_rotated_files(rotated, since, limit, expected, more):
    page = rotated.read(since_ms=None if since is None else T0 + since, limit=limit)
    assert seqs(page.entries) == expected
    assert page.more is more
    assert page.warnings == []


# -- two processes at once ---------------------------------------------------------------------

WRITER = """
import os, sys, time
from petit.ipc.audit import AuditLog, audit_entry
path, writer, count, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
open(f"{path}.ready-{writer}", "w").close()
deadline = time.monotonic() + 20
while not all(os.path.exists(f"{path}.ready-{w}") for w in "ab"):
    assert time.monotonic() < deadline, "the other writer never started"
log = AuditLog(path, max_bytes=max_bytes, keep=100)
for seq in range(count):
    log.append(audit_entry(seq, "socket", f"writer {writer}", "trigger",
                           {"job_id": writer, "params": {"pad": "x" * (seq % 50)}}, "ok",
                           run_id=f"{writer}-{seq}", pid=os.getpid()))
"""


def test_two_processes_appending_with_rotation_lose_and_glue_no_line(path):
    count, max_bytes = 500, 8 << 10
    env = {**os.environ, "PYTHONPATH": ROOT}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, path, name, str(count), str(max_bytes)], env=env
        )
        for name in "ab"
    ]
    try:
        codes = [writer.wait(timeout=50) for writer in writers]
    finally:
        for writer in writers:
            writer.kill()
    assert codes == [0, 0]
    log = AuditLog(path, max_bytes=max_bytes, keep=100)
    files = log.files()
    assert 10 < len(files) <= 101  # it rotated, many times, while both wrote
    for name in files:
        assert os.path.getsize(name) <= max_bytes
        with open(name, "rb") as handle:
            raw = handle.read()
        assert raw.endswith(b"\n")
        for line in raw.split(b"\n")[:-1]:
            assert list(json.loads(line)) == list(FIELDS)  # one whole entry per line
    page = log.read(limit=10 * count)
    assert page.warnings == [] and page.more is False
    for name in "ab":
        mine = [e for e in page.entries if e["who"] == f"writer {name}"]
        assert [e["run_id"] for e in mine] == [f"{name}-{seq}" for seq in range(count)]
