"""End to end through the real bin/petit: validate, list, trigger and bad usage, with the run
read back from the TinyDB file on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from jobfiles import EXAMPLES, write_job
from processes import MARK, PETIT, marked_alive, run_petit, wait_until

from petit.core.model import RunStatus, TaskStatus
from petit.jobs.loader import load_jobs
from petit.storage.store import Store

EXAMPLE_IDS = sorted(load_jobs(EXAMPLES))
UNSCHEDULED = sorted(job.id for job in load_jobs(EXAMPLES).values() if not job.scheduled)


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path, marker):
    """The launcher's environment: a marker every task inherits, and a private TMPDIR so the
    examples' scratch files (retry_demo's counter) cannot collide with another run's."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return {**os.environ, MARK: marker, "TMPDIR": str(scratch)}


def assert_clean_failure(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def only_run(db: str, job_id: str):
    runs = Store(db).list_runs(job_id, 10)
    assert len(runs) == 1
    return runs[0]


# -- validate -----------------------------------------------------------------------------------


def test_validate_examples(env):
    result = run_petit("validate", EXAMPLES, env=env)
    assert result.returncode == 0, result.stderr
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == len(EXAMPLE_IDS) == len(os.listdir(EXAMPLES))
    for job_id, line in zip(EXAMPLE_IDS, ok_lines):
        assert f" {job_id}:" in line
    assert f"{len(EXAMPLE_IDS)} job(s) valid" in result.stdout


BROKEN = {
    "typo.yaml": "id: typo\nname: Typo\ntasks:\n  - id: a\n    command: echo\n"
    "    retyr: {max_attempts: 2}\n",
    "cron.yaml": "id: cron\nname: Cron\nschedule: '61 * * * *'\ntasks:\n"
    "  - id: a\n    command: echo\n",
    "syntax.yaml": "id: syntax\nname: [unclosed\ntasks: []\n",
    "cycle.yaml": (
        "id: cycle\nname: Cycle\ntasks:\n  - id: a\n    command: echo\n    depends_on: [b]\n"
        "  - id: b\n    command: echo\n    depends_on: [a]\n"
    ),
    "good.yaml": "id: good\nname: Good\ntasks:\n  - id: a\n    command: echo\n",
}


def test_validate_reports_every_broken_file_without_a_traceback(tmp_path, env):
    for name, text in BROKEN.items():
        write_job(tmp_path, name, text)
    result = run_petit("validate", str(tmp_path), env=env)
    assert_clean_failure(result, 1)
    for name in ("typo.yaml", "cron.yaml", "syntax.yaml", "cycle.yaml"):
        assert os.path.join(str(tmp_path), name) in result.stderr, name
    assert "good.yaml" not in result.stderr
    assert "retyr" in result.stderr and "cycle" in result.stderr and "61" in result.stderr
    assert "error(s)" in result.stderr


def test_validate_a_missing_folder(tmp_path, env):
    result = run_petit("validate", str(tmp_path / "nowhere"), env=env)
    assert_clean_failure(result, 1)
    assert "nowhere" in result.stderr


# -- list ---------------------------------------------------------------------------------------


def test_list_shows_every_job_and_task(env):
    result = run_petit("list", EXAMPLES, env=env)
    assert result.returncode == 0, result.stderr
    for job in load_jobs(EXAMPLES).values():
        assert f"{job.id}  (" in result.stdout
        for task in job.tasks:
            assert f"  - {task.id}" in result.stdout


def test_list_json_has_tasks_in_topological_order(tmp_path, env):
    write_job(
        tmp_path,
        "fwd.yaml",
        "id: fwd\nname: Forward\ntasks:\n"
        "  - id: last\n    command: echo\n    depends_on: [middle]\n"
        "  - id: middle\n    command: echo\n    depends_on: [first]\n"
        "  - id: first\n    command: echo\n",
    )
    result = run_petit("list", str(tmp_path), "--json", env=env)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert [job["id"] for job in jobs] == ["fwd"]
    assert [task["id"] for task in jobs[0]["tasks"]] == ["first", "middle", "last"]

    examples = {
        job["id"]: job for job in json.loads(run_petit("list", EXAMPLES, "--json", env=env).stdout)
    }
    assert sorted(examples) == EXAMPLE_IDS
    assert [t["id"] for t in examples["data_pipeline"]["tasks"]] == [
        "extract",
        "transform",
        "validate",
        "load",
        "notify",
    ]
    for job in examples.values():
        seen: set[str] = set()
        for task in job["tasks"]:
            assert set(task["depends_on"]) <= seen, (job["id"], task["id"])
            seen.add(task["id"])
    assert (
        examples["hello_world"]["schedule"] is None and examples["hello_world"]["next_fire"] is None
    )
    assert examples["minute_tick"]["next_fire"] is not None


# -- trigger ------------------------------------------------------------------------------------


def test_trigger_data_pipeline_records_a_completed_run(tmp_path, env):
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", EXAMPLES, "data_pipeline", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run data_pipeline-1 completed" in result.stdout
    run = only_run(db, "data_pipeline")
    assert (run.id, run.status, run.error) == ("data_pipeline-1", RunStatus.COMPLETED, None)
    assert len(run.tasks) == 5
    assert all(t.status is TaskStatus.COMPLETED and t.attempts == 1 for t in run.tasks)
    assert run.started_at and run.ended_at and run.duration_ms is not None
    assert "extracted 3 rows" in Store(db).logs.read(run.id, "extract")["stdout"]
    assert Store(db).active_runs() == []


def test_trigger_failing_job_exits_1(tmp_path, env):
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", EXAMPLES, "failing_job", env=env)
    assert_clean_failure(result, 1)
    run = only_run(db, "failing_job")
    assert run.status is RunStatus.FAILED and "broken_step" in run.error
    assert {t.task_id: t.status.value for t in run.tasks} == {
        "prepare": "completed",
        "broken_step": "failed",
        "never_runs": "skipped",
        "cleanup": "completed",
        "alert": "completed",
    }


def test_trigger_unknown_job_lists_the_known_ones(tmp_path, env):
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", EXAMPLES, "no_such_job", env=env)
    assert_clean_failure(result, 1)
    assert "no_such_job" in result.stderr
    for job_id in EXAMPLE_IDS:
        assert job_id in result.stderr
    assert not os.path.exists(db + ".d")  # nothing was recorded


EXPECTED = {  # every example without a schedule: (status, {task: attempts})
    "data_pipeline": (RunStatus.COMPLETED, {}),
    "failing_job": (RunStatus.FAILED, {"broken_step": 1}),
    "hello_world": (RunStatus.COMPLETED, {"greet": 1}),
    "hooks_demo": (RunStatus.FAILED, {"fetch": 1}),
    "release_notes": (RunStatus.COMPLETED, {"build": 1, "announce": 1}),
    "retry_demo": (RunStatus.COMPLETED, {"flaky": 3}),
    "run_timeout": (RunStatus.FAILED, {"quick": 1, "slow": 1}),
    "timeout_demo": (RunStatus.FAILED, {"too_slow": 1}),
}


def test_expectations_cover_every_unscheduled_example():
    assert sorted(EXPECTED) == UNSCHEDULED


@pytest.mark.parametrize("job_id", UNSCHEDULED)
def test_every_unscheduled_example_runs_through_trigger(tmp_path, env, job_id):
    status, attempts = EXPECTED.get(job_id, (RunStatus.COMPLETED, {}))
    db = str(tmp_path / "petit.db")
    began = time.monotonic()
    result = run_petit("--db", db, "trigger", EXAMPLES, job_id, env=env)
    elapsed = time.monotonic() - began
    assert_clean_failure(result, 0 if status is RunStatus.COMPLETED else 1)
    run = only_run(db, job_id)
    assert run.status is status, (run.error, result.stdout, result.stderr)
    for task_id, count in attempts.items():
        assert run.task(task_id).attempts == count
    assert all(t.status.is_terminal for t in run.tasks)
    if job_id == "timeout_demo":  # a 2 s timeout, and sleep dies on SIGTERM: no 60 s wait
        too_slow = run.task("too_slow")
        assert too_slow.timed_out and too_slow.status is TaskStatus.FAILED
        assert run.task("report").status is TaskStatus.COMPLETED
        assert elapsed < 10
    if job_id == "run_timeout":  # the job's 2 s bound on the whole run
        assert run.error == "run timed out after 2.0s"
        assert run.task("publish").status is TaskStatus.SKIPPED
        assert elapsed < 10
    if job_id == "retry_demo":
        assert run.task("flaky").error is None
        assert os.listdir(env["TMPDIR"]) == []  # the counter file was cleaned up by the job


def test_trigger_twice_allocates_new_run_ids(tmp_path, env):
    db = str(tmp_path / "petit.db")
    for expected in ("hello_world-1", "hello_world-2"):
        result = run_petit("--db", db, "trigger", EXAMPLES, "hello_world", env=env)
        assert result.returncode == 0 and f"run {expected} completed" in result.stdout
    assert [r.id for r in Store(db).list_runs("hello_world", 10)] == [
        "hello_world-2",
        "hello_world-1",
    ]


def test_trigger_survives_its_reader_going_away(tmp_path, env):
    """`petit trigger ... | head -1`: the tasks must not fail because nobody reads their echo."""
    db = str(tmp_path / "petit.db")
    proc = subprocess.Popen(
        [sys.executable, PETIT, "--db", db, "trigger", EXAMPLES, "data_pipeline"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout.readline().startswith(b"run data_pipeline-1")
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    run = only_run(db, "data_pipeline")
    assert run.status is RunStatus.COMPLETED and all(
        t.status is TaskStatus.COMPLETED for t in run.tasks
    )


def test_sigterm_interrupts_a_triggered_run_and_kills_its_tasks(tmp_path, env):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    started = tmp_path / "started"
    write_job(
        jobs,
        "slow.yaml",
        "id: slow\nname: Slow\ntasks:\n  - id: nap\n    type: shell\n"
        f"    script: 'touch {started}; sleep 30 & sleep 31'\n"
        "  - id: after\n    command: echo\n    depends_on: [nap]\n",
    )
    db = str(tmp_path / "petit.db")
    proc = subprocess.Popen(
        [sys.executable, PETIT, "--db", db, "trigger", str(jobs), "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_until(started.exists, timeout=15, message="the task started")
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - began < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "Traceback" not in err, err
    wait_until(lambda: not marked_alive(env[MARK]), timeout=3, message="task processes gone")
    run = only_run(db, "slow")
    assert run.status is RunStatus.INTERRUPTED
    assert {t.task_id: t.status.value for t in run.tasks} == {"nap": "failed", "after": "skipped"}
    assert "interrupted" in out


def test_trigger_with_a_db_in_a_missing_folder_is_one_clear_line(tmp_path, env):
    result = run_petit(
        "--db", str(tmp_path / "nowhere" / "petit.db"), "trigger", EXAMPLES, "hello_world", env=env
    )
    assert_clean_failure(result, 1)
    assert "nowhere" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_trigger_on_a_corrupt_db_keeps_the_file(tmp_path, env):
    db = tmp_path / "petit.db"
    db.write_text("{ this is not json")
    result = run_petit("--db", str(db), "trigger", EXAMPLES, "hello_world", env=env)
    assert_clean_failure(result, 1)
    assert str(db) in result.stderr
    assert db.read_text() == "{ this is not json"


# -- bad usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["validate"],
        ["list"],
        ["trigger", EXAMPLES],
        ["validate", EXAMPLES, "--bogus"],
        ["trigger", EXAMPLES, "hello_world", "--max-tasks", "zero"],
        ["trigger", EXAMPLES, "hello_world", "--max-tasks", "0"],
        ["trigger", EXAMPLES, "hello_world", "--keep-runs", "many"],
    ],
    ids=[
        "nothing",
        "unknown-command",
        "validate-no-dir",
        "list-no-dir",
        "trigger-no-job",
        "unknown-option",
        "max-tasks-word",
        "max-tasks-zero",
        "keep-runs-word",
    ],
)
def test_bad_usage_exits_2_without_a_traceback(tmp_path, env, argv):
    db = str(tmp_path / "petit.db")
    result = (
        run_petit("--db", db, *argv, env=env)
        if argv[:1] == ["trigger"]
        else run_petit(*argv, env=env)
    )
    assert_clean_failure(result, 2)
    assert result.stderr.strip()
    assert not os.path.exists(db + ".d")  # no run was recorded and abandoned


def test_python_dash_m_petit_is_the_same_command_line():
    """`python -m petit` runs the CLI, version from the package (setup.py reads the same)."""
    from petit import __version__

    env = {**os.environ, "PYTHONPATH": os.path.dirname(PETIT) + "/.."}
    version = subprocess.run(
        [sys.executable, "-m", "petit", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert (version.returncode, version.stdout.strip()) == (0, f"petit {__version__}")
    listed = subprocess.run(
        [sys.executable, "-m", "petit", "validate", EXAMPLES],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    through_launcher = run_petit("validate", EXAMPLES).stdout.splitlines()
    assert listed.returncode == 0
    # the same jobs in the same order (next fire times move with the clock)
    assert [line.split(",")[0] for line in listed.stdout.splitlines()] == [
        line.split(",")[0] for line in through_launcher
    ]
