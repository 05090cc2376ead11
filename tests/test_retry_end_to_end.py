"""Retries with backoff end to end: through the real `bin/petit trigger` and `bin/petit run` with
its API, a task that exits 75 twice and then succeeds, its delays recorded on its attempts, the
next attempt's start visible while it waits; and the failures the policy does not retry."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime

import pytest
from jobfiles import write_job
from processes import MARK, run_petit, wait_until

from petit.core.model import RunStatus, TaskStatus
from petit.storage.store import Store


def flaky_job(counter, retry: str, fails: int = 2) -> str:
    """A job `flaky` whose task `t` exits 75 on its first `fails` attempts, counted in a file."""
    return f"""\
id: flaky
name: Flaky
tasks:
  - id: t
    type: shell
    retry: {retry}
    script: |
      n=$(( $(cat '{counter}' 2>/dev/null || echo 0) + 1 ))
      echo "$n" > '{counter}'
      echo "attempt $PETIT_ATTEMPT"
      if [ "$n" -le {fails} ]; then exit 75; fi
"""


def one_task_job(script: str, retry: str, timeout: str | None = None) -> str:
    lines = ["id: once", "name: Once", "tasks:", "  - id: t", "    type: shell"]
    lines += [f"    retry: {retry}", f'    script: "{script}"']
    if timeout:
        lines.append(f"    timeout: {timeout}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def trigger(tmp_path, marker):
    """`petit trigger` of one job file; its output and the run it recorded. Its tasks carry
    the test's marker, so none may outlive the test."""

    def run(text: str, job_id: str):
        jobs = tmp_path / "jobs"
        jobs.mkdir()
        write_job(jobs, f"{job_id}.yaml", text)
        db = str(tmp_path / "petit.db")
        env = {**os.environ, MARK: marker}
        result = run_petit("--db", db, "trigger", str(jobs), job_id, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        (recorded,) = Store(db).list_runs(job_id, 10)
        return result, recorded

    return run


def gaps_ms(history: list[dict]) -> list[int]:
    """How long each retry waited: from an attempt's end to the next one's start."""
    return [after["started_at"] - before["ended_at"] for before, after in zip(history, history[1:])]


# -- petit trigger --------------------------------------------------------------------------------


def test_trigger_backs_off_and_records_each_delay(trigger, tmp_path):
    retry = "{max_attempts: 3, delay: 0.2s, backoff: 2, on_exit_codes: [75]}"
    result, run = trigger(flaky_job(tmp_path / "count", retry), "flaky")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert run.status is RunStatus.COMPLETED
    task = run.task("t")
    assert task.attempts == 3 and task.next_attempt_at is None
    history = task.attempt_history
    assert [entry["exit_code"] for entry in history] == [75, 75, 0]
    assert [entry["retry_delay_ms"] for entry in history] == [200, 400, None]
    first, second = gaps_ms(history)  # lower bounds only: a loaded machine only adds to them
    assert first >= 180 and second >= 360, gaps_ms(history)
    assert "failed: exited with code 75; retrying in 200ms" in result.stdout
    assert "failed: exited with code 75; retrying in 400ms" in result.stdout


def test_an_exit_code_not_listed_is_not_retried(trigger):
    retry = "{max_attempts: 3, delay: 0.2s, on_exit_codes: [75, 111]}"
    result, run = trigger(one_task_job("exit 3", retry), "once")
    assert result.returncode == 1
    task = run.task("t")
    assert (task.status, task.attempts, task.exit_code) == (TaskStatus.FAILED, 1, 3)
    assert task.attempt_history[0]["retry_delay_ms"] is None


@pytest.mark.parametrize(
    "retry, attempts",
    [
        ("{max_attempts: 1, on_exit_codes: [75], retry_on_timeout: false}", 1),
        ("{max_attempts: 1, on_exit_codes: [75]}", 2),  # a timeout is retryable by default
    ],
    ids=["retry-on-timeout-false", "default"],
)
def test_a_timeout_is_retried_unless_retry_on_timeout_is_false(trigger, retry, attempts):
    result, run = trigger(one_task_job("sleep 30", retry, timeout="0.3s"), "once")
    assert result.returncode == 1
    task = run.task("t")
    assert task.status is TaskStatus.FAILED and task.timed_out
    assert task.attempts == attempts
    assert all(entry["timed_out"] for entry in task.attempt_history)


# -- petit run and its API ------------------------------------------------------------------------


def test_the_api_shows_when_a_waiting_retry_starts(service, tmp_path):
    """Delays of 2 s then 2.5 s (backoff 2, capped by max_delay): long enough to catch each
    wait through the API (the recorder writes within a quarter of a second)."""
    retry = "{max_attempts: 2, delay: 2s, backoff: 2, max_delay: 2.5s, on_exit_codes: [75]}"
    svc = service({"flaky": flaky_job(tmp_path / "count", retry)}, api=True)
    run_id = svc.trigger("flaky")

    def waiting(attempts: int):
        def seen() -> dict | None:
            (task,) = svc.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
            ok = task["status"] == "pending" and task["attempts"] == attempts
            return task if ok and task["next_attempt_at"] is not None else None

        return wait_until(seen, timeout=15, message=f"the retry after attempt {attempts}")

    for attempt, delay_ms in ((1, 2000), (2, 2500)):
        task = waiting(attempt)
        failed = task["attempt_history"][-1]
        assert (failed["exit_code"], failed["retry_delay_ms"]) == (75, delay_ms)
        assert task["next_attempt_at"] >= failed["ended_at"] + delay_ms
        if attempt == 1:  # petit show says it too, from the db
            shown = run_petit("show", run_id, "--db", svc.db)
            assert re.search(r"next: attempt 2 at \S+ \S+ \((in \d+ sec|just now)\)", shown.stdout)
    assert svc.wait_run(run_id)["status"] == "completed"
    (task,) = svc.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
    assert task["next_attempt_at"] is None
    assert [entry["retry_delay_ms"] for entry in task["attempt_history"]] == [2000, 2500, None]
    assert min(gaps_ms(task["attempt_history"])) >= 1800


def test_validate_names_file_job_task_and_field_of_each_bad_retry_value(tmp_path):
    retry = "{max_attempts: 2, backoff: 0.5, max_delay: 1m1h, on_exit_codes: [75, 300], jitter: 1}"
    path = write_job(tmp_path, "bad.yaml", one_task_job("exit 1", retry, timeout="1.5.s"))
    result = run_petit("validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    where = f"{path}: job 'once': task 't'"
    assert result.stderr.splitlines()[:-1] == [
        f"{where}: timeout: invalid duration '1.5.s': '1.5.s' is not a number with a unit: "
        "expected numbers with units d, h, m, s or ms, like '30s', '1m30s' or '0.5s'",
        f"{where}: retry: backoff: expected a number from 1 (a fixed delay) to 100, the factor "
        "of each delay over the previous one, got 0.5",
        f"{where}: retry: max_delay: invalid duration '1m1h': unit 'h' after 'm': write the "
        "units largest first",
        f"{where}: retry: jitter: expected true or false, got 1",
        f"{where}: retry: on_exit_codes: 300: an exit code is an integer from 0 to 255 (a "
        "death by signal has none)",
    ]


def test_trigger_with_jitter_waits_a_random_part_of_each_delay(trigger, tmp_path):
    """Full jitter: each delay is drawn from [0, the computed delay), and the wait honours it."""
    retry = "{max_attempts: 2, delay: 0.4s, backoff: 2, jitter: true, on_exit_codes: [75]}"
    result, run = trigger(flaky_job(tmp_path / "count", retry), "flaky")
    assert result.returncode == 0, (result.stdout, result.stderr)
    history = run.task("t").attempt_history
    assert [entry["exit_code"] for entry in history] == [75, 75, 0]
    *delays, last = [entry["retry_delay_ms"] for entry in history]
    assert last is None
    assert 0 <= delays[0] < 400 and 0 <= delays[1] < 800, delays
    # each time is truncated to the millisecond: a gap may read 1 ms short of its delay
    assert all(gap >= delay - 1 for gap, delay in zip(gaps_ms(history), delays)), (
        gaps_ms(history),
        delays,
    )
    for delay in delays:
        assert f"failed: exited with code 75; retrying in {delay}ms" in result.stdout


COMPOUND = """\
id: compound
name: Compound durations
schedule: "@every 1m30s"
tasks:
  - id: t
    type: shell
    timeout: "1m30s"
    retry: {{max_attempts: 1, delay: "0.2s", on_exit_codes: [75]}}
    script: |
      n=$(( $(cat '{counter}' 2>/dev/null || echo 0) + 1 ))
      echo "$n" > '{counter}'
      if [ "$n" -le 1 ]; then exit 75; fi
"""


def test_compound_and_decimal_durations_are_read_as_people_write_them(trigger, tmp_path):
    jobs = tmp_path / "jobs"
    text = COMPOUND.format(counter=tmp_path / "count")
    result, run = trigger(text, "compound")  # writes jobs/compound.yaml
    assert result.returncode == 0, (result.stdout, result.stderr)
    validated = run_petit("validate", str(jobs))
    assert validated.returncode == 0 and "@every 1m30s" in validated.stdout, validated
    before = time.time()
    listed = run_petit("list", str(jobs), "--json")
    after = time.time()
    (job,) = json.loads(listed.stdout)
    task = job["tasks"][0]
    assert (task["timeout_secs"], task["retry"]["delay_secs"]) == (90, 0.2)
    next_fire = datetime.fromisoformat(job["next_fire"]).timestamp()
    assert before + 90 - 1 <= next_fire <= after + 90 + 1  # 1m30s from the listing
    history = run.task("t").attempt_history
    assert [entry["retry_delay_ms"] for entry in history] == [200, None]
    assert gaps_ms(history)[0] >= 180


@pytest.mark.parametrize(
    "line, field, value, error",
    [
        ('    timeout: "1m1h"', "task 't': timeout", "1m1h", "unit 'h' after 'm'"),
        ('    timeout: "1x"', "task 't': timeout", "1x", "'1x' is not a number with a unit"),
        ('    retry: {delay: "1x"}', "task 't': retry: delay", "1x", "'1x' is not a number"),
    ],
    ids=["timeout-order", "timeout-unit", "delay-unit"],
)
def test_a_bad_compound_duration_is_refused_with_its_line(tmp_path, line, field, value, error):
    text = one_task_job("true", "{max_attempts: 1}").replace("    retry: {max_attempts: 1}", line)
    path = write_job(tmp_path, "bad.yaml", text)
    result = run_petit("validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    (problem, count) = result.stderr.splitlines()
    assert problem.startswith(
        f"{path}: job 'once': {field}: invalid duration '{value}': {error}"
    ), problem
    assert count == f"1 error(s) in {tmp_path}"


@pytest.mark.parametrize("every", ["1m1h", "1x"])
def test_a_bad_every_schedule_is_refused_with_its_line(tmp_path, every):
    text = one_task_job("true", "{max_attempts: 1}").replace(
        "name: Once", f'name: Once\nschedule: "@every {every}"'
    )
    path = write_job(tmp_path, "bad.yaml", text)
    result = run_petit("validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    (problem, count) = result.stderr.splitlines()
    assert problem.startswith(f"{path}: job 'once': schedule"), problem
    assert every in problem, problem
