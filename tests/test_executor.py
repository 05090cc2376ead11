"""One task attempt through the local runner, with real subprocesses: exit codes, output passed
on in batches of lines, start failures, timeouts that kill the whole process group, bounded lines,
cancel, the environment, and the handle recovery uses."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
import pytest
from conftest import MARK, assert_none_left, marked_alive, wait_until

from petit.core.model import Job, Task, TaskType
from petit.execution.runners.base import (
    DEFAULT_LOG_LIMIT,
    AttemptResult,
    AttemptSpec,
    build_argv,
    build_env,
)
from petit.execution.runners.lines import LineSplitter
from petit.execution.runners.local import KILL_GRACE_SECS, LocalRunner, TaskProcess

# -- helpers ------------------------------------------------------------------------------------


def shell(script: str, **kw) -> Task:
    return Task(id=kw.pop("id", "t"), name="t", type=TaskType.SHELL, script=script, **kw)


def command(program: str, *args: str, **kw) -> Task:
    return Task(id=kw.pop("id", "t"), name="t", command=program, args=args, **kw)


def job_of(task: Task, marker: str, environment: dict | None = None) -> Job:
    return Job(
        id="job", name="job", tasks=(task,), environment={MARK: marker, **(environment or {})}
    )


def start(
    task: Task,
    marker: str,
    base_dir: str = "/",
    job_env: dict | None = None,
    run_id: str = "job-1",
    attempt: int = 1,
    log_limit: int = DEFAULT_LOG_LIMIT,
    on_lines: Callable[[str, list[str]], None] | None = None,
) -> TaskProcess:
    job = job_of(task, marker, job_env)
    cwd = None if task.working_dir is None else os.path.join(base_dir, task.working_dir)
    spec = AttemptSpec(
        job_id=job.id,
        run_id=run_id,
        task_id=task.id,
        attempt=attempt,
        argv=build_argv(task, base_dir),
        env=build_env(job, task, run_id, attempt),
        cwd=cwd,
        timeout_secs=task.timeout_secs,
        log_limit=log_limit,
        on_lines=on_lines,
    )
    return LocalRunner().start(spec)


@dataclass
class Ran(AttemptResult):
    """An attempt's result with the lines its on_lines received."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def text(self, stream: str) -> str:
        return "".join(f"{line}\n" for name, line in self.lines if name == stream)

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")


def run(task: Task, marker: str, **kw) -> Ran:
    lines: list[tuple[str, str]] = []
    result = start(
        task, marker, on_lines=lambda stream, batch: lines.extend((stream, b) for b in batch), **kw
    ).collect()
    return Ran(**vars(result), lines=lines)


# -- exit codes and output ----------------------------------------------------------------------


def test_exit_code_and_both_streams_are_captured(marker):
    result = run(shell("echo to-out; echo to-err >&2; exit 3"), marker)
    assert result.exit_code == 3
    assert result.error == "exited with code 3"
    assert result.stdout == "to-out\n"
    assert result.stderr == "to-err\n"
    assert not result.timed_out and not result.cancelled
    assert result.started_at <= result.ended_at


def test_success_has_no_error(marker):
    result = run(command("echo", "hello", "world"), marker)
    assert (result.exit_code, result.error, result.stdout) == (0, None, "hello world\n")


def test_death_by_signal_is_named(marker):
    result = run(shell("kill -KILL $$"), marker)
    assert result.exit_code == -signal.SIGKILL
    assert result.error == "killed by signal SIGKILL"


def test_python_inline_and_script_tasks(tmp_path, marker):
    inline = Task(
        id="t", name="t", type=TaskType.PYTHON, inline="import sys; print(sys.version_info[0])"
    )
    assert run(inline, marker).stdout == f"{sys.version_info[0]}\n"
    (tmp_path / "step.py").write_text("print('from a script file')\n")
    script = Task(id="t", name="t", type=TaskType.PYTHON, script="step.py")
    result = run(script, marker, base_dir=str(tmp_path))  # relative to the job file's folder
    assert (result.exit_code, result.stdout) == (0, "from a script file\n")


# -- failures to start are recorded, never raised -------------------------------------------------


def test_command_not_found_is_an_error_not_an_exception(marker):
    proc = start(command("petit-no-such-program-3f9a"), marker)
    assert proc.pid is None and proc.to_dict() is None  # nothing for recovery to aim at
    result = proc.collect()
    assert result.exit_code is None
    assert "command not found" in result.error and "petit-no-such-program-3f9a" in result.error


def test_permission_denied_is_an_error_not_an_exception(tmp_path, marker):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho should not run\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)  # no x bit: even root cannot execve it
    result = run(command(str(script)), marker)
    assert result.exit_code is None
    assert "permission denied" in result.error and str(script) in result.error
    assert result.stdout == ""


def test_missing_working_dir_is_an_error(tmp_path, marker):
    result = run(command("pwd", working_dir="no-such-dir"), marker, base_dir=str(tmp_path))
    assert result.exit_code is None
    assert "working_dir" in result.error and "no-such-dir" in result.error


def test_working_dir_is_relative_to_the_base_dir(tmp_path, marker):
    (tmp_path / "work").mkdir()
    result = run(command("pwd", working_dir="work"), marker, base_dir=str(tmp_path))
    assert result.stdout.strip() == str(tmp_path / "work")


# -- timeouts and process groups ------------------------------------------------------------------


def test_timeout_kills_the_whole_group_including_grandchildren(marker):
    # a background child, an orphaned grandchild (reparented away from sh) and the foreground sleep
    began = time.monotonic()
    proc = start(shell("sleep 30 & (sleep 31 &); sleep 32", timeout_secs=0.3), marker)
    wait_until(lambda: len(marked_alive(marker)) >= 4, timeout=5, message="sh + three sleeps")
    result = proc.collect()
    elapsed = time.monotonic() - began
    assert result.timed_out
    assert result.error == "timed out after 0.3s"
    assert elapsed < 0.3 + KILL_GRACE_SECS  # sleep dies on SIGTERM: no need for the SIGKILL grace
    assert_none_left(marker)


def test_task_ignoring_sigterm_gets_sigkill_after_the_grace(marker):
    began = time.monotonic()
    result = run(shell("trap '' TERM; echo armed; sleep 30 & sleep 30", timeout_secs=0.3), marker)
    elapsed = time.monotonic() - began
    assert result.timed_out
    assert result.exit_code == -signal.SIGKILL
    assert result.stdout == "armed\n"
    assert 0.3 + KILL_GRACE_SECS - 0.2 <= elapsed < 0.3 + KILL_GRACE_SECS + 3
    assert_none_left(marker)


def test_background_child_of_a_finished_task_does_not_survive(marker):
    # one child keeps the output pipe open, one does not: neither may outlive the task
    began = time.monotonic()
    result = run(shell("sleep 30 & sleep 31 >/dev/null 2>&1 & echo done"), marker)
    assert time.monotonic() - began < 5  # did not wait for the sleeper holding stdout
    assert (result.exit_code, result.error, result.stdout) == (0, None, "done\n")
    assert_none_left(marker)


def test_setsid_escapee_holding_the_pipe_does_not_hang_collect(marker):
    # Escaping the group is a documented limitation; the attempt must still end promptly.
    # Popen returns only after the child's exec, so the escapee owns its session before we exit.
    code = (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "print('started', flush=True)\n"
    )
    began = time.monotonic()
    result = run(Task(id="t", name="t", type=TaskType.PYTHON, inline=code), marker)
    assert time.monotonic() - began < 5
    assert (result.exit_code, result.stdout) == (0, "started\n")
    escapees = marked_alive(marker)
    assert len(escapees) == 1  # the limitation is real: prove the drain path was exercised
    for pid in escapees:
        os.kill(pid, signal.SIGKILL)
    assert_none_left(marker)


# -- bounded lines ------------------------------------------------------------------------------


def test_ten_megabytes_on_both_streams_does_not_deadlock_and_every_line_arrives(marker):
    lines = 750_000  # "line 00000000\n" is 14 bytes: 10.5 MB per stream
    code = (
        "import sys\n"
        f"for i in range({lines}):\n"
        "    sys.stdout.write(f'line {i:08d}\\n')\n"
        "    if i % 2 == 0: sys.stderr.write(f'err {i:08d}\\n')\n"
        "sys.stdout.write('THE-END')\n"  # no newline: it still arrives, at the end
    )
    seen = {"stdout": [], "stderr": []}

    def on_lines(stream: str, lines: list[str]) -> None:
        assert lines  # a read that completed no line is no call
        seen[stream] += lines[: 2 - len(seen[stream])]
        seen[stream + " count"] = seen.get(stream + " count", 0) + len(lines)
        seen[stream + " last"] = lines[-1]

    began = time.monotonic()
    task = Task(id="t", name="t", type=TaskType.PYTHON, inline=code, timeout_secs=40)
    result = start(task, marker, on_lines=on_lines).collect()
    assert time.monotonic() - began < 30
    assert (result.exit_code, result.timed_out) == (0, False)
    assert seen["stdout"] == ["line 00000000", "line 00000001"]
    assert (seen["stdout count"], seen["stdout last"]) == (lines + 1, "THE-END")
    assert seen["stderr"] == ["err 00000000", "err 00000002"]
    assert (seen["stderr count"], seen["stderr last"]) == (lines // 2, f"err {lines - 2:08d}")


def test_a_line_over_the_limit_comes_in_pieces_cut_between_characters(marker):
    # "é" is two bytes: a cut after 5 bytes would split the third one in two
    code = "import sys; sys.stdout.write('é' * 10 + '\\nshort\\n' + 'x' * 12)"
    result = run(Task(id="t", name="t", type=TaskType.PYTHON, inline=code), marker, log_limit=5)
    assert result.exit_code == 0
    assert result.lines == [("stdout", "éé")] * 5 + [
        ("stdout", "short"),
        ("stdout", "xxxxx"),
        ("stdout", "xxxxx"),
        ("stdout", "xx"),
    ]


# Every case at a cut or a chunk boundary: 2-, 3- and 4-byte characters, an invalid byte, a
# character whose end is missing before its newline, empty lines, no newline at the end.
STREAM = "é€𝄞é€\n\nabcdefgh€\nok\n".encode() + b"\xffab\xe2\x82\nxy\xe2\x82\xacz\xe2"
CUT_AT_5 = ["é€", "𝄞", "é€", "", "abcde", "fgh", "€", "ok", "\ufffdab\ufffd", "xy€", "z\ufffd"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)], ids=lambda size: f"chunks-of-{size}")
def test_lines_are_cut_the_same_whatever_the_chunks_and_each_chunk_is_one_batch(size):
    batches: list[list[str]] = []
    splitter = LineSplitter(5, batches.append)
    chunks = [STREAM[at : at + size] for at in range(0, len(STREAM), size)]
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close()
    assert [line for batch in batches for line in batch] == CUT_AT_5
    assert all(batches) and len(batches) <= len(chunks) + 1  # no empty call, one per chunk at most


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_from_another_thread_kills_the_group_promptly(marker):
    proc = start(shell("sleep 30 & sleep 31"), marker)

    def cancel_when_running() -> None:
        wait_until(lambda: len(marked_alive(marker)) >= 3, timeout=5, message="sh + two sleeps")
        proc.cancel()

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    began = time.monotonic()
    result = proc.collect()
    canceller.join(timeout=5)
    assert time.monotonic() - began < KILL_GRACE_SECS + 3
    assert result.cancelled and result.error == "cancelled"
    assert result.exit_code == -signal.SIGTERM
    assert_none_left(marker)


def test_cancel_before_collect_is_honoured(marker):
    proc = start(command("sleep", "30"), marker)
    proc.cancel()
    result = proc.collect()
    assert result.cancelled and result.error == "cancelled"
    assert_none_left(marker)


def test_cancel_after_collect_writes_into_no_other_file(tmp_path, marker):
    """A late cancel (the engine stopping a run as an attempt ends) must not write into whatever
    file has since reused the attempt's descriptor numbers."""
    proc = start(command("true"), marker)
    proc.collect()
    # POSIX hands out the lowest free descriptors: these reuse the ones collect() closed
    fds = [os.open(tmp_path / f"victim-{i}", os.O_RDWR | os.O_CREAT) for i in range(16)]
    try:
        proc.cancel()
        sizes = {i: os.fstat(fd).st_size for i, fd in enumerate(fds)}
    finally:
        for fd in fds:
            os.close(fd)
    assert all(size == 0 for size in sizes.values()), sizes


# -- environment --------------------------------------------------------------------------------


def test_environment_injection_and_precedence(marker, monkeypatch):
    monkeypatch.setenv("PETIT_TEST_INHERITED", "from-parent")
    monkeypatch.setenv("PETIT_API_TOKEN", "secret")
    monkeypatch.setenv("PETIT_API_TOKEN_FILE", "/etc/petit/token")
    task = command(
        "env",
        id="extract",
        environment={"SHARED": "task", "TASK_ONLY": "t", "PETIT_RUN_ID": "spoofed"},
    )
    result = run(
        task, marker, job_env={"SHARED": "job", "JOB_ONLY": "j"}, run_id="job-7", attempt=2
    )
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    # a secret of the service, not of its tasks, and where it is kept
    assert "PETIT_API_TOKEN" not in env and "PETIT_API_TOKEN_FILE" not in env
    assert env["PETIT_JOB_ID"] == "job"
    assert env["PETIT_RUN_ID"] == "job-7"  # the task cannot impersonate another run
    assert env["PETIT_TASK_ID"] == "extract"
    assert env["PETIT_ATTEMPT"] == "2"
    assert env["SHARED"] == "task"  # task wins over job
    assert (env["JOB_ONLY"], env["TASK_ONLY"]) == ("j", "t")
    assert env["PETIT_TEST_INHERITED"] == "from-parent"


def test_the_handle_names_the_runner_pid_and_create_time(marker):
    proc = start(command("sleep", "30"), marker)
    try:
        handle = proc.to_dict()
        assert handle == {"runner": "local", "pid": proc.pid, "created": proc.pid_created}
        assert psutil.Process(proc.pid).create_time() == proc.pid_created
        assert os.getpgid(proc.pid) == proc.pid  # its own process group, for killpg
    finally:
        proc.cancel()
        proc.collect()
    assert_none_left(marker)


# -- recovery and sweeps ------------------------------------------------------------------------


def test_recover_kills_the_group_a_handle_names(marker):
    proc = start(shell("sleep 30 & sleep 31"), marker)
    try:
        wait_until(lambda: len(marked_alive(marker)) >= 3, timeout=5, message="sh + two sleeps")
        assert LocalRunner().recover(proc.to_dict()) == 1
        assert_none_left(marker)
    finally:
        proc.cancel()
        proc.collect()


def test_recover_never_kills_a_reused_pid(marker):
    proc = start(command("sleep", "30"), marker)
    try:
        stale = {**proc.to_dict(), "created": proc.pid_created - 100}  # another process's pid
        assert LocalRunner().recover(stale) == 0
        assert marked_alive(marker) == [proc.pid]
        assert LocalRunner().recover({"runner": "local", "pid": None, "created": None}) == 0
    finally:
        proc.cancel()
        proc.collect()
    assert_none_left(marker)


def test_sweep_run_kills_what_escaped_the_group_of_that_run_only(tmp_path, marker):
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen(['sleep', '30'], start_new_session=True)\n"
        "print('started', flush=True)\n"
    )
    task = Task(id="t", name="t", type=TaskType.PYTHON, inline=code)
    db = str(tmp_path / "petit.db")
    job = job_of(task, marker)
    spec = AttemptSpec(
        job_id="job",
        run_id="job-1",
        task_id="t",
        attempt=1,
        argv=build_argv(task, "/"),
        env=build_env(job, task, "job-1", 1, {"PETIT_DB": db}),
    )
    assert LocalRunner().start(spec).collect().exit_code == 0
    wait_until(lambda: len(marked_alive(marker)) == 1, timeout=5, message="the setsid escapee")
    runner = LocalRunner()
    assert runner.sweep_run("job-2", db) == 0  # another run of the same db
    assert runner.sweep_run("job-1", db + "-other") == 0  # the same run id of another db
    assert len(marked_alive(marker)) == 1
    assert runner.sweep_run("job-1", db) == 1
    assert_none_left(marker)
