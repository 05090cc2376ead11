"""Resource accounting: each attempt's CPU time and peak memory as the local runner measures its
process tree (wait4's rusage, sampled RSS), the totals of a task and of a run, and the fields
end to end: through `bin/petit trigger` into the db, and through `bin/petit run`'s API. (The
/metrics series are in tests/test_metrics.py, `petit show`'s words in test_cli_history.py.)"""

from __future__ import annotations

import json
import os
import resource
import sys
from dataclasses import dataclass

import pytest
from conftest import MARK, write_job
from processes import run_petit

from petit.core.model import Run, RunStatus, TaskRun, TaskStatus
from petit.execution.runners.base import AttemptSpec
from petit.execution.runners.local import LocalRunner
from petit.storage.store import Store

MIB = 2**20
# a child that burns 0.3 s of CPU (process time, whatever the machine's load) and is waited for
BURN = (
    "import subprocess, sys\n"
    'child = "import time\\nstart = time.process_time()\\n'
    'while time.process_time() - start < 0.3: pass"\n'
    "subprocess.run([sys.executable, '-c', child], check=True)\n"
)
HOLD_60_MIB = "b = bytearray(60*2**20); import time; time.sleep(1.5)"


@dataclass
class Outcome:
    exit_code: int | None = 0
    error: str | None = None
    timed_out: bool = False
    ended_at: int = 1000
    cpu_secs: float | None = None
    max_rss_bytes: int | None = None


# -- the model: totals over attempts and tasks ----------------------------------------------------


def test_a_task_sums_the_cpu_of_its_attempts_and_keeps_their_largest_peak():
    state = TaskRun("t", "job-1")
    state.start_attempt(0)
    state.wait_for_retry(
        Outcome(1, "exited with code 1", cpu_secs=0.25, max_rss_bytes=8 * MIB), 5, 0
    )
    assert (state.cpu_secs, state.max_rss_bytes) == (0.25, 8 * MIB)
    state.start_attempt(100)
    assert (state.cpu_secs, state.max_rss_bytes) == (0.25, 8 * MIB)  # kept while it retries
    state.finish(Outcome(cpu_secs=0.5, max_rss_bytes=3 * MIB))
    assert (state.cpu_secs, state.max_rss_bytes) == (0.75, 8 * MIB)
    used = [(e["cpu_secs"], e["max_rss_bytes"]) for e in state.attempt_history]
    assert used == [(0.25, 8 * MIB), (0.5, 3 * MIB)]


def test_an_unmeasured_attempt_counts_for_nothing_and_none_measured_is_none():
    state = TaskRun("t", "job-1")
    state.start_attempt(0)
    state.wait_for_retry(Outcome(1, "exited with code 1"), 5, 0)  # a runner that does not measure
    assert (state.cpu_secs, state.max_rss_bytes) == (None, None)
    state.start_attempt(100)
    state.finish(Outcome(cpu_secs=0.5, max_rss_bytes=MIB))
    assert (state.cpu_secs, state.max_rss_bytes) == (0.5, MIB)
    abandoned = TaskRun("u", "job-1")
    abandoned.start_attempt(0)
    abandoned.abandon("run was interrupted", 50)  # its attempt never reported
    assert abandoned.attempt_history[-1]["cpu_secs"] is None
    assert (abandoned.cpu_secs, abandoned.max_rss_bytes) == (None, None)


@pytest.mark.parametrize("end", ["finish", "cancel", "interrupt"])
def test_a_run_that_ends_sums_its_tasks_cpu_and_keeps_the_largest_peak(end):
    run = Run("job-1", "job", 1, tasks=[TaskRun(t, "job-1") for t in ("a", "b", "c")])
    run.start(0)
    for task_id, cpu, rss in (("a", 1.25, 5 * MIB), ("b", 0.5, 9 * MIB)):
        run.task(task_id).start_attempt(1)
        run.task(task_id).finish(Outcome(cpu_secs=cpu, max_rss_bytes=rss))
    assert (run.cpu_secs, run.max_rss_bytes) == (None, None)  # set when it ends
    {"finish": lambda: run.finish(10), "cancel": lambda: run.cancel(10)}.get(
        end, lambda: run.interrupt("run was interrupted", 10)
    )()
    assert run.task("c").status is TaskStatus.SKIPPED
    assert (run.cpu_secs, run.max_rss_bytes) == (1.75, 9 * MIB)


def test_records_stored_before_accounting_read_back_with_nulls():
    old_attempt = {"attempt": 1, "started_at": 1, "ended_at": 2, "duration_ms": 1}
    task = TaskRun.from_dict(
        {"task_id": "t", "run_id": "job-1", "status": "completed", "attempts": 1,
         "attempt_history": [{**old_attempt, "exit_code": 0, "timed_out": False, "error": None}]}
    )  # fmt: skip
    assert (task.cpu_secs, task.max_rss_bytes) == (None, None)
    assert task.attempt_history[0]["cpu_secs"] is task.attempt_history[0]["max_rss_bytes"] is None
    run = Run.from_dict({"id": "job-1", "job_id": "job", "seq": 1, "status": "completed"})
    assert (run.cpu_secs, run.max_rss_bytes, run.status) == (None, None, RunStatus.COMPLETED)


# -- the local runner -----------------------------------------------------------------------------


def attempt(marker: str, *argv: str, timeout: float | None = None):
    spec = AttemptSpec("job", "job-1", "t", 1, argv, {MARK: marker}, timeout_secs=timeout)
    return LocalRunner().start(spec).collect()


def test_the_cpu_of_a_child_the_task_waited_for_is_counted(marker):
    result = attempt(marker, sys.executable, "-c", BURN)
    assert result.error is None, result.error
    assert result.cpu_secs >= 0.2  # a lower bound: interpreters' start-up comes on top


def test_a_peak_held_by_two_processes_at_once_is_their_sampled_sum(marker):
    # each holds 40 MiB, no single one 80: only samples of the whole tree see 80
    hold = "b = bytearray(40*2**20); import time; time.sleep(1.5)"
    both = f"import subprocess, sys; [p.wait() for p in [subprocess.Popen([sys.executable, '-c', {hold!r}]) for _ in '12']]"  # noqa: E501
    result = attempt(marker, sys.executable, "-c", both)
    assert result.error is None, result.error
    assert result.max_rss_bytes >= 75 * MIB, result.max_rss_bytes


def test_an_attempt_killed_at_its_timeout_still_has_its_numbers(marker):
    result = attempt(marker, "sleep", "30", timeout=0.3)
    assert result.timed_out
    assert 0 <= result.cpu_secs < 0.5 and 0 <= result.max_rss_bytes < 50 * MIB, result


def test_without_proc_an_unknown_peak_is_none_not_zero(marker, monkeypatch):
    from petit.execution.runners import usage

    monkeypatch.setattr(usage, "HAS_PROC", False)
    result = attempt(marker, "sleep", "0.2")
    assert result.error is None, result.error
    assert result.max_rss_bytes is None and result.cpu_secs >= 0, result
    # a peak wait4 can vouch for (larger than petit itself, here pytest) is kept, /proc or not
    # (larger than this process's own peak, which grows as a worker runs tests)
    size = max(150 * MIB, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + 50 * MIB)
    result = attempt(marker, sys.executable, "-c", f"b = bytearray({size})")
    assert result.max_rss_bytes >= size, result


def test_an_attempt_that_never_started_measured_nothing(marker):
    result = attempt(marker, "no-such-command-petit")
    assert result.error == "command not found: 'no-such-command-petit'"
    assert (result.cpu_secs, result.max_rss_bytes) == (None, None)


# -- end to end -----------------------------------------------------------------------------------

# (JSON strings are YAML's double-quoted strings)
JOB = f"""\
id: usage
name: usage
tasks:
  - id: burn
    type: python
    inline: {json.dumps(BURN)}
  - id: hold
    command: {json.dumps(sys.executable)}
    args: ["-c", {json.dumps(HOLD_60_MIB)}]
  - id: quick
    command: sleep
    args: ["0"]
  - id: stuck
    command: sleep
    args: ["30"]
    timeout_secs: 0.5
"""


def test_trigger_records_each_tasks_usage_and_the_runs_totals(tmp_path, marker):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "usage.yaml", JOB)
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", str(jobs), "usage", env={**os.environ, MARK: marker})
    assert result.returncode == 1, (result.stdout, result.stderr)  # `stuck` timed out
    run = Store(db).get_run("usage-1")
    tasks = {task.task_id: task for task in run.tasks}
    burn, hold, quick, stuck = (tasks[t] for t in ("burn", "hold", "quick", "stuck"))
    assert burn.status is TaskStatus.COMPLETED and burn.cpu_secs >= 0.2
    assert hold.status is TaskStatus.COMPLETED and hold.max_rss_bytes >= 50 * MIB
    assert quick.cpu_secs is not None and quick.cpu_secs < 0.5
    assert quick.max_rss_bytes is not None and quick.max_rss_bytes < 50 * MIB
    assert stuck.timed_out and stuck.cpu_secs is not None and stuck.max_rss_bytes is not None
    for task in run.tasks:  # one attempt each: the task's totals are its attempt's
        entry = task.attempt_history[-1]
        assert (entry["cpu_secs"], entry["max_rss_bytes"]) == (task.cpu_secs, task.max_rss_bytes)
    assert run.cpu_secs == pytest.approx(sum(task.cpu_secs for task in run.tasks), abs=0.002)
    assert run.max_rss_bytes == max(task.max_rss_bytes for task in run.tasks)


def test_the_api_serves_the_usage_of_runs_tasks_and_attempts(service):
    svc = service(
        {"quick": "id: quick\nname: quick\ntasks:\n  - {id: t, command: 'true'}\n"}, api=True
    )
    run_id = svc.trigger("quick")
    svc.wait_run(run_id)
    recorded = svc.run(run_id)
    run = svc.get(f"/api/runs/{run_id}").json()
    (task,) = svc.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
    assert (run["cpu_secs"], run["max_rss_bytes"]) == (recorded.cpu_secs, recorded.max_rss_bytes)
    assert run["cpu_secs"] is not None and run["max_rss_bytes"] is not None
    assert (task["cpu_secs"], task["max_rss_bytes"]) == (run["cpu_secs"], run["max_rss_bytes"])
    (entry,) = task["attempt_history"]
    assert (entry["cpu_secs"], entry["max_rss_bytes"]) == (task["cpu_secs"], task["max_rss_bytes"])
    schemas = svc.get("/api/openapi.json").json()["components"]["schemas"]
    for name in ("Run", "TaskState", "Attempt"):
        assert {"cpu_secs", "max_rss_bytes"} <= set(schemas[name]["required"]), name
