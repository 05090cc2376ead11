"""`petit audit` and the `petit trigger` door, through the real bin/petit: the line a trigger
writes (who, its pid, the args with secret params masked, the run), written before the run
executes; the refusals recorded too; failing closed when the log cannot be written, before the
run is created and after; and `petit audit` reading the log and its rotated files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from jobfiles import job_yaml, write_job
from processes import MARK, PETIT, run_petit, wait_until

from petit.core.model import RunStatus, TaskStatus
from petit.ipc.audit import FIELDS, AuditLog, audit_entry, audit_path
from petit.storage.store import Store

pytestmark = pytest.mark.timeout(90)
SECRET = "hunter2-do-not-log"
T0 = 1_796_169_600_000  # 2026-12-02T00:00:00Z


@pytest.fixture
def env(marker):
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PETIT_")},
        MARK: marker,
        "TZ": "UTC",
    }


@pytest.fixture
def jobs(tmp_path) -> str:
    """`deploy`: a secret param and a plain one; its task proves that the run's audit line was
    on disk before it ran, and leaves a file behind when it ran at all."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    ran = tmp_path / "ran"
    log = audit_path(str(tmp_path / "petit.db"))
    write_job(
        folder,
        "deploy.yaml",
        "id: deploy\nname: deploy\nparams:\n"
        "  token: {type: string, secret: true, required: true}\n"
        "  count: {type: int, default: 1}\n"
        "tasks:\n  - id: t\n    type: shell\n    script: |\n"
        f"      touch '{ran}'\n"
        f"      grep -q '\"run_id\":\"deploy-1\"' '{log}'\n",
    )
    return str(folder)


def trigger(tmp_path, jobs: str, env: dict, *words: str, job_id: str = "deploy"):
    """`petit trigger` as a process whose pid the test knows (the launcher execs in place)."""
    proc = subprocess.Popen(
        [sys.executable, PETIT, "--db", str(tmp_path / "petit.db"), "trigger", jobs, job_id,
         *words],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path),
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    return proc.pid, proc.returncode, out, err


def lines(tmp_path) -> list[dict]:
    path = audit_path(str(tmp_path / "petit.db"))
    with open(path) as handle:
        text = handle.read()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def runs(tmp_path) -> list:
    return Store(str(tmp_path / "petit.db")).list_runs("deploy", 10)


# -- the trigger door --------------------------------------------------------------------------


def test_a_trigger_writes_its_line_before_the_run_executes(tmp_path, jobs, env):
    pid, code, out, err = trigger(
        tmp_path, jobs, env, "--param", f"token={SECRET}", "--param", "count=3"
    )
    assert code == 0, (out, err)  # the task found its line in the log
    assert (tmp_path / "ran").exists()
    [line] = lines(tmp_path)
    assert list(line) == list(FIELDS)
    assert {k: v for k, v in line.items() if k not in ("time", "at")} == {
        "door": "trigger",
        "who": f"process uid {os.getuid()}",
        "remote": None,
        "pid": pid,
        "op": "trigger",
        "args": {"job_id": "deploy", "params": {"token": "***", "count": "3"}},
        "outcome": "ok",
        "http_status": None,
        "run_id": "deploy-1",
    }
    assert runs(tmp_path)[0].status is RunStatus.COMPLETED
    with open(audit_path(str(tmp_path / "petit.db"))) as handle:
        assert SECRET not in handle.read()


def test_each_refusal_is_a_line_with_its_code_and_no_run(tmp_path, jobs, env):
    _, code, _, err = trigger(tmp_path, jobs, env, "--param", f"token={SECRET}", job_id="nope")
    assert code == 1 and err == "petit: unknown job 'nope'; known jobs: deploy\n"
    _, code, _, err = trigger(
        tmp_path, jobs, env, "--param", f"token={SECRET}", "--param", "count=x"
    )
    assert code == 1 and err == "petit: 'count': expected an int, got 'x'\n"
    _, code, _, err = trigger(tmp_path, jobs, env, "--param", "count=2")
    assert code == 1 and err == "petit: 'token': required param is missing\n"
    _, code, _, err = trigger(tmp_path, jobs, env, "--param", "oops")
    assert code == 1 and err == "petit: --param 'oops': expected NAME=VALUE\n"
    refused = lines(tmp_path)
    assert [(e["outcome"], e["run_id"], e["args"]) for e in refused] == [
        # the job is unknown: so is which param is secret, and every value is masked
        ("NOT_FOUND", None, {"job_id": "nope", "params": {"token": "***"}}),
        ("INVALID_PARAMS", None, {"job_id": "deploy", "params": {"token": "***", "count": "x"}}),
        ("INVALID_PARAMS", None, {"job_id": "deploy", "params": {"count": "2"}}),
        ("INVALID_PARAMS", None, {"job_id": "deploy", "params": {}}),
    ]
    assert runs(tmp_path) == [] and not (tmp_path / "ran").exists()


def test_a_trigger_on_a_db_another_petit_runs_jobs_on_is_a_conflict_line(tmp_path, jobs, env):
    slow = tmp_path / "slow"
    slow.mkdir()
    started = tmp_path / "started"
    write_job(slow, "slow.yaml", job_yaml("slow", f"touch '{started}'\nsleep 60"))
    holder = subprocess.Popen(  # another petit trigger, whose task is still running
        [sys.executable, PETIT, "--db", str(tmp_path / "petit.db"), "trigger", str(slow), "slow"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        wait_until(started.exists, timeout=20, message="the slow task started")
        _, code, _, err = trigger(tmp_path, jobs, env, "--param", "token=t")
        assert code == 1 and "another petit is already running jobs on" in err, err
    finally:  # SIGTERM: the trigger interrupts its run and kills its task
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=20)
    mine = [e for e in lines(tmp_path) if e["args"]["job_id"] == "deploy"]
    assert [(e["outcome"], e["run_id"]) for e in mine] == [("CONFLICT", None)]
    assert runs(tmp_path) == []


def test_no_run_is_created_when_the_log_cannot_be_written(tmp_path, jobs, env):
    log = audit_path(str(tmp_path / "petit.db"))
    os.mkdir(log)
    _, code, out, err = trigger(tmp_path, jobs, env, "--param", "token=t")
    assert code == 1
    assert err == (
        f"petit: the audit log {log} cannot be written (Is a directory): petit refuses "
        "state-changing operations until it can be\n"
    )
    assert out == "" and runs(tmp_path) == [] and not (tmp_path / "ran").exists()


def test_a_run_whose_line_cannot_be_written_is_ended_without_executing(tmp_path, jobs, env):
    db = str(tmp_path / "petit.db")
    (tmp_path / "petit.toml").write_text('[audit]\nmax_size = "1KiB"\nkeep = 1\n')
    full = AuditLog(audit_path(db), 1024, 1)
    while os.path.exists(full.path) is False or os.path.getsize(full.path) < 800:
        full.append(audit_entry(T0, "socket", "socket uid 0", "pause", {}, "ok"))
    os.mkdir(f"{full.path}.1")  # the full file cannot be rotated: the next line has no room
    (tmp_path / f"{os.path.basename(full.path)}.1" / "keep").write_text("")
    before = lines(tmp_path)
    _, code, out, err = trigger(tmp_path, jobs, env, "--param", "token=t")
    assert code == 1, (out, err)
    assert err.startswith(
        f"petit: run deploy-1 of job 'deploy' was not started, and is ended: the audit log "
        f"{full.path} cannot be written ("
    ), err
    assert len(err.splitlines()) == 1
    [run] = runs(tmp_path)
    assert run.status is RunStatus.INTERRUPTED
    assert run.error.startswith(f"not started: the audit log {full.path} cannot be written (")
    assert run.started_at is None
    assert [task.status for task in run.tasks] == [TaskStatus.SKIPPED]
    assert not (tmp_path / "ran").exists()
    assert lines(tmp_path) == before  # and no line claims it


def test_the_audit_table_of_petit_toml_rotates_the_trigger_lines(tmp_path, jobs, env):
    (tmp_path / "petit.toml").write_text('[audit]\nmax_size = "1KiB"\nkeep = 1\n')
    for _ in range(8):  # refusals are cheap lines: ~300 bytes each
        assert trigger(tmp_path, jobs, env, job_id="nope")[1] == 1
    log = AuditLog(audit_path(str(tmp_path / "petit.db")))
    assert log.files() == [log.path, f"{log.path}.1"]
    assert all(os.path.getsize(name) <= 1024 for name in log.files())


# -- petit audit -------------------------------------------------------------------------------


def audit(tmp_path, env, *args: str):
    result = run_petit(
        "--db", str(tmp_path / "petit.db"), "audit", *args, env=env, cwd=str(tmp_path)
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_no_log_yet_is_one_line_and_exit_0(tmp_path, env):
    path = audit_path(str(tmp_path / "petit.db"))
    result = audit(tmp_path, env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"no audit log yet at {path}: petit writes it at the first operation\n"
    result = audit(tmp_path, env, "--json")
    assert (result.returncode, result.stdout) == (0, "[]\n")
    assert (
        result.stderr
        == f"petit: no audit log yet at {path}: petit writes it at the first operation\n"
    )


def write_log(tmp_path, count: int, max_bytes: int = 1 << 20, keep: int = 5) -> AuditLog:
    """`count` lines, one a minute from T0, of each door in turn."""
    log = AuditLog(audit_path(str(tmp_path / "petit.db")), max_bytes, keep)
    doors = [
        ("http", "grafana", {"remote": "127.0.0.1", "http_status": 403}, "FORBIDDEN"),
        ("socket", "socket uid 0", {"pid": 41}, "ok"),
        ("ctl", "socket uid 1000", {"pid": 42}, "ok"),
        ("trigger", "process uid 0", {"pid": 43, "run_id": "deploy-3"}, "ok"),
        ("http", None, {"remote": "::1", "http_status": 200, "run_id": "deploy-4"}, "ok"),
    ]
    for seq in range(count):
        door, who, extra, outcome = doors[seq % len(doors)]
        args = (
            {"job_id": "deploy", "params": {"token": "***", "count": 3}} if door != "socket" else {}
        )
        op = "pause" if door == "socket" else "trigger"
        log.append(audit_entry(T0 + seq * 60_000, door, who, op, args, outcome, **extra))
    return log


def test_each_entry_is_one_line_in_local_time(tmp_path, env):
    write_log(tmp_path, 5)
    result = audit(tmp_path, {**env, "TZ": "Asia/Tokyo"})
    assert result.returncode == 0 and result.stderr == ""
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["TIME", "DOOR", "WHO", "OP", "ARGS", "OUTCOME", "RUN"]
    trigger_args = 'trigger job_id=deploy params={"token":"***","count":3}'
    assert [" ".join(row.split()) for row in rows[1:]] == [
        f"2026-12-02 09:00:00 http grafana from 127.0.0.1 {trigger_args} FORBIDDEN (403) -",
        "2026-12-02 09:01:00 socket socket uid 0, pid 41 pause - ok -",
        f"2026-12-02 09:02:00 ctl socket uid 1000, pid 42 {trigger_args} ok -",
        f"2026-12-02 09:03:00 trigger process uid 0, pid 43 {trigger_args} ok deploy-3",
        f"2026-12-02 09:04:00 http (no key) from ::1 {trigger_args} ok deploy-4",
    ]


def test_json_is_the_entries_oldest_first(tmp_path, env):
    log = write_log(tmp_path, 7)
    result = audit(tmp_path, env, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == log.read().entries
    result = audit(tmp_path, env, "--json", "--limit", "2")
    assert [e["at"] for e in json.loads(result.stdout)] == [T0 + 5 * 60_000, T0 + 6 * 60_000]


def test_limit_and_since_read_across_the_rotated_files(tmp_path, env):
    log = write_log(tmp_path, 30, max_bytes=1500, keep=20)
    assert len(log.files()) > 3
    result = audit(tmp_path, env, "--json", "--limit", "1000")
    assert [e["at"] for e in json.loads(result.stdout)] == [T0 + s * 60_000 for s in range(30)]
    result = audit(tmp_path, env, "--limit", "3")
    assert result.stdout.splitlines()[1].startswith("2026-12-02 00:27:00")
    assert len(result.stdout.splitlines()) == 1 + 3 + 1
    assert result.stdout.splitlines()[-1] == "(older entries not shown: --limit 3)"
    assert "older entries" not in audit(tmp_path, env, "--limit", "30").stdout


def test_since_keeps_the_recent_entries_only(tmp_path, env):
    from petit.core.model import now_ms

    log = AuditLog(audit_path(str(tmp_path / "petit.db")))
    now = now_ms()
    for minutes_ago in (180, 90, 30, 1):
        log.append(
            audit_entry(now - minutes_ago * 60_000, "ctl", "socket uid 0", "reload", {}, "ok")
        )
    ats = lambda *args: [e["at"] for e in json.loads(audit(tmp_path, env, "--json", *args).stdout)]  # noqa: E731
    assert ats("--since", "1h") == [now - 30 * 60_000, now - 60_000]
    assert ats("--since", "2h") == [now - 90 * 60_000, now - 30 * 60_000, now - 60_000]
    assert ats("--since", "1d", "--limit", "1") == [now - 60_000]
    assert ats("--since", "30s") == []
    result = audit(tmp_path, env, "--since", "30s")
    assert result.stdout == "no audit entries in the last 30s\n"


def test_a_torn_line_is_a_warning_on_stderr(tmp_path, env):
    log = write_log(tmp_path, 2)
    with open(log.path, "a") as handle:
        handle.write('{"time": "2026-12-02T00:0')
    result = audit(tmp_path, env, "--json")
    assert result.returncode == 0
    assert len(json.loads(result.stdout)) == 2
    assert result.stderr == (
        f"petit: warning: {log.path} line 3: skipped a torn last line (cut short by a crash)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "5x"), "petit: --since: invalid duration '5x'"),
        (("--since", "0s"), "petit: --since: invalid duration '0s': must be greater than zero"),
        (("--limit", "0"), "petit: --limit must be at least 1, got 0"),
        (("--limit", "many"), "petit: --limit expects a whole number, got 'many'"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path, env, args, message):
    result = audit(tmp_path, env, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1


def test_the_db_comes_from_petit_toml(tmp_path, env):
    (tmp_path / "var").mkdir()
    (tmp_path / "petit.toml").write_text('db = "var/service.db"\n')
    log = AuditLog(audit_path(str(tmp_path / "var" / "service.db")))
    log.append(audit_entry(T0, "ctl", "socket uid 0", "resume", {}, "ok"))
    result = run_petit("audit", "--json", env=env, cwd=str(tmp_path))
    assert [e["op"] for e in json.loads(result.stdout)] == ["resume"]
