"""`petit runs`, `show` and `logs` end to end: the real bin/petit read the history of real runs
from the db, while the service that made them runs (the shared module service, with the API to
compare the JSON against) and with no service at all (a db `petit trigger` wrote); and
`ctl status` says its times in words."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from harness import Service
from jobfiles import write_job
from processes import run_petit

from petit.cli.history import usage_words
from petit.cli.main import main
from petit.core.text import duration_words

LOCAL_ZONE = "Asia/Tokyo"  # not the machine's: the table must follow TZ
JOBS = {
    # out and err alternate, with a pause between them so their order is the order they came in
    "hello": """\
id: hello
name: Hello
tasks:
  - id: greet
    type: shell
    script: |
      echo "out one"
      sleep 0.2
      echo "err one" >&2
      sleep 0.2
      echo "out two"
  - id: bye
    depends_on: [greet]
    type: shell
    script: echo "bye from $PETIT_RUN_ID"
""",
    "flaky": """\
id: flaky
name: Flaky
tasks:
  - id: t
    type: shell
    retry: {max_attempts: 1}
    script: |
      echo "attempt $PETIT_ATTEMPT"
      exit 3
  - id: after
    depends_on: [t]
    command: echo
""",
    "big": """\
id: big
name: Big
tasks:
  - id: t
    command: seq
    args: ["-f", "%01000g", "1", "3000"]
""",
    "paris": """\
id: paris
name: Paris
schedule: {cron: "30 8 1 1 *", timezone: Europe/Paris}
tasks:
  - id: t
    command: "true"
""",
}
ORDER = ["hello", "hello", "flaky", "big"]  # triggered one after the other: hello-1 first
TABLE_SPLIT = re.compile(r"\s{2,}")


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    """A service with the API, and a finished run of each job in ORDER."""
    with Service(str(tmp_path_factory.mktemp("history")), jobs=JOBS).running() as service:
        for job_id in ORDER:
            service.wait_run(service.trigger(job_id))
        yield service


def petit(svc_or_db, *args: str, zone: str = LOCAL_ZONE):
    db = svc_or_db if isinstance(svc_or_db, str) else svc_or_db.db
    return run_petit(*args, "--db", db, env={**os.environ, "TZ": zone})


def ok(result) -> list[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout.splitlines()


def rows(lines: list[str]) -> list[list[str]]:
    return [TABLE_SPLIT.split(line) for line in lines]


def local(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, ZoneInfo(LOCAL_ZONE)).strftime("%Y-%m-%d %H:%M:%S")


# -- petit runs -----------------------------------------------------------------------------------


def test_runs_lists_every_job_newest_first_with_local_times_and_durations(svc):
    header, *table = rows(ok(petit(svc, "runs")))
    assert header == ["RUN", "JOB", "STATUS", "TRIGGER", "STARTED", "DURATION"]
    assert [row[0] for row in table] == ["big-1", "flaky-1", "hello-2", "hello-1"]
    for row in table:
        run = svc.run(row[0])
        assert row[1:4] == [run.job_id, run.status.value, "manual"]
        started, ago = re.fullmatch(r"(.+) \((.+)\)", row[4]).groups()
        assert started == local(run.started_at)
        assert re.fullmatch(r"just now|\d+ sec ago|1 min ago", ago), ago
        assert row[5] == duration_words(run.duration_ms / 1000)
    assert [row[2] for row in table] == ["completed", "failed", "completed", "completed"]
    # the same moment in another local zone
    utc_rows = rows(ok(petit(svc, "runs", "hello", "--limit", "1", zone="UTC")))[1:]
    started = datetime.fromtimestamp(svc.run("hello-2").started_at / 1000, ZoneInfo("UTC"))
    assert utc_rows[0][4].startswith(started.strftime("%Y-%m-%d %H:%M:%S ("))


@pytest.mark.parametrize(
    "args, run_ids",
    [
        (("hello",), ["hello-2", "hello-1"]),
        (("--limit", "2"), ["big-1", "flaky-1"]),
        (("hello", "--limit", "1"), ["hello-2"]),
        (("--status", "failed"), ["flaky-1"]),
        (("hello", "--status", "completed", "--limit", "5"), ["hello-2", "hello-1"]),
        (("paris",), []),
        (("hello", "--status", "running"), []),
    ],
    ids=" ".join,
)
def test_runs_filters(svc, args, run_ids):
    listed = json.loads("\n".join(ok(petit(svc, "runs", *args, "--json"))))
    assert [run["id"] for run in listed["runs"]] == run_ids
    assert listed["count"] == len(run_ids)


def test_runs_without_any_prints_one_line(svc):
    assert ok(petit(svc, "runs", "paris")) == ["no runs"]


# -- the same JSON as the API ---------------------------------------------------------------------


def test_json_is_what_the_api_serves(svc):
    listed = json.loads(petit(svc, "runs", "hello", "--json").stdout)
    served = svc.get("/api/jobs/hello/runs").json()
    assert served.pop("next_before") is None  # the API's paging; the command does not page
    assert listed == served
    shown = json.loads(petit(svc, "show", "flaky-1", "--json").stdout)
    tasks = svc.get("/api/runs/flaky-1/tasks").json()["tasks"]
    assert shown == {**svc.get("/api/runs/flaky-1").json(), "tasks": tasks}
    assert [task["task_id"] for task in tasks] == ["t", "after"]


# -- petit show -----------------------------------------------------------------------------------


def test_show_gives_the_run_and_a_table_of_its_tasks(svc):
    lines = ok(petit(svc, "show", "flaky-1"))
    run = svc.run("flaky-1")
    assert lines[0] == "run flaky-1 of job flaky: failed (manual)"
    facts = dict(line.split(None, 1) for line in lines[1 : lines.index("")])
    assert list(facts) == ["created", "started", "ended", "duration", "used", "error"]
    assert facts["started"].startswith(f"{local(run.started_at)} (")
    assert facts["ended"].startswith(f"{local(run.ended_at)} (")
    assert facts["duration"] == duration_words(run.duration_ms / 1000)
    assert facts["error"] == run.error == "failed tasks: t"
    # the run's totals: both attempts of t, measured by the local runner
    assert facts["used"] == usage_words(run.cpu_secs, run.max_rss_bytes)
    assert re.fullmatch(r"cpu \d+\.\d\ds, peak \d+(\.\d)? MiB", facts["used"]), facts["used"]
    table_start = lines.index("") + 1
    attempts_start = lines.index("", table_start) + 1
    header, *tasks = rows(lines[table_start : attempts_start - 1])
    assert header == ["TASK", "STATUS", "ATTEMPTS", "EXIT", "DURATION", "USED", "ERROR"]
    t = run.task("t")
    took = duration_words(t.duration_ms / 1000)
    used = usage_words(t.cpu_secs, t.max_rss_bytes)
    assert tasks == [
        ["t", "failed", "2", "3", took, used, "exited with code 3"],
        ["after", "skipped", "0", "-", "-", "-", run.task("after").error],
    ]
    # a retried task, attempt by attempt: the delay chosen after each failed one (none here)
    assert lines[attempts_start] == "task t, attempt by attempt:"
    header, *attempts = rows([line.strip() for line in lines[attempts_start + 1 :]])
    assert header == ["ATTEMPT", "STARTED", "EXIT", "DURATION", "RETRY AFTER", "ERROR"]
    first, second = t.attempt_history
    assert attempts == [
        [
            "1",
            local(first["started_at"]),
            "3",
            duration_words(first["duration_ms"] / 1000),
            "0ms",
            "exited with code 3",
        ],
        [
            "2",
            local(second["started_at"]),
            "3",
            duration_words(second["duration_ms"] / 1000),
            "-",
            "exited with code 3",
        ],
    ]


# -- petit logs (the log storage of issue 10: every attempt, lines in order) -----------------------


def test_logs_of_a_task_an_attempt_and_a_whole_run(svc):
    assert ok(petit(svc, "logs", "hello-1", "greet")) == ["out one", "! err one", "out two"]
    assert ok(petit(svc, "logs", "hello-2")) == [
        "[greet] out one",
        "[greet] ! err one",
        "[greet] out two",
        "[bye] bye from hello-2",
    ]
    assert ok(petit(svc, "logs", "flaky-1", "t")) == ["attempt 2"]  # the latest by default
    assert ok(petit(svc, "logs", "flaky-1", "t", "--attempt", "1")) == ["attempt 1"]
    assert ok(petit(svc, "logs", "flaky-1")) == ["[t] attempt 2"]  # `after` was skipped
    assert ok(petit(svc, "logs", "flaky-1", "--attempt", "1")) == ["[t] attempt 1"]
    # 3 MB of lines: more than the 1 to 2 MiB the store keeps of an attempt's log
    big = ok(petit(svc, "logs", "big-1", "t"))
    assert big[0] == "[truncated]" and int(big[1]) > 1
    assert big[1:] == [f"{n:01000d}" for n in range(int(big[1]), 3001)]
    skipped = petit(svc, "logs", "flaky-1", "after")
    assert (skipped.returncode, skipped.stdout) == (0, "")
    assert skipped.stderr == "no output recorded for task 'after' of run 'flaky-1' (skipped)\n"


# -- ctl status in words --------------------------------------------------------------------------


def test_ctl_status_says_uptimes_and_next_fires_in_words(svc):
    status = svc.status()
    due = status["scheduler"]["next_fires"]["paris"]
    assert status["scheduler"]["next_fire_timezones"] == {"paris": "Europe/Paris"}
    lines = ok(run_petit("ctl", "status", "--socket", svc.socket))
    up = r"up (\d\.\ds|\d\ds|\d+m( \d+s)?)"  # "3.2s", not "3s" as before
    assert re.fullmatch(rf"petit supervisor pid \d+, {up}, db .+", lines[0]), lines[0]
    assert re.fullmatch(rf"  scheduler +running +pid \d+  {up}, 0 restart\(s\)", lines[2])
    paris = datetime.fromtimestamp(due / 1000, ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d")
    pattern = rf"  next paris in (\d+d \d+h|\d+d) \({paris} 08:30 Europe/Paris\)"
    assert re.fullmatch(pattern, lines[-1]), lines[-1]


# -- errors ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triggered(tmp_path_factory) -> str:
    """A db that `petit trigger` wrote: one run, hello-1, and no service."""
    root = tmp_path_factory.mktemp("triggered")
    jobs = root / "jobs"
    jobs.mkdir()
    write_job(jobs, "hello.yaml", JOBS["hello"])
    db = str(root / "petit.db")
    result = run_petit("--db", db, "trigger", str(jobs), "hello")
    assert result.returncode == 0, result.stdout + result.stderr
    return db


def test_history_without_a_service(triggered):
    header, row = rows(ok(petit(triggered, "runs")))
    assert row[:4] == ["hello-1", "hello", "completed", "manual"]
    assert (
        ok(petit(triggered, "show", "hello-1"))[0] == "run hello-1 of job hello: completed (manual)"
    )


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("runs", "nope"), 1, "job 'nope' not found in {db}; known jobs: hello"),
        (
            ("runs", "--status", "done"),
            2,
            "--status must be one of queued, pending, running, completed, failed, interrupted, "
            "cancelled, got 'done'",
        ),
        (("runs", "--limit", "0"), 2, "--limit must be at least 1, got 0"),
        (("runs", "--limit", "many"), 2, "--limit expects a whole number, got 'many'"),
        (("show", "nope-1"), 1, "run 'nope-1' not found"),
        (("show", "bad\nid"), 1, "run 'bad\\nid' not found"),  # one line, whatever the id holds
        (("logs", "hello-9"), 1, "run 'hello-9' not found"),
        (("logs", "hello-1", "nope"), 1, "task 'nope' not found in run 'hello-1'"),
        (("logs", "hello-1", "greet", "--attempt", "0"), 2, "--attempt must be at least 1, got 0"),
        (
            ("logs", "hello-1", "greet", "--attempt", "2"),
            1,
            "task 'greet' of run 'hello-1' has no attempt 2: it made 1",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_bad_input_is_one_line_and_an_exit_code(triggered, capsys, args, code, message):
    assert main([*args, "--db", triggered]) == code
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"petit: {message.format(db=triggered)}\n")


def test_a_missing_or_corrupt_db_is_one_line_from_the_launcher(tmp_path):
    missing = str(tmp_path / "none.db")
    result = petit(missing, "runs")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"petit: {missing}: no petit database there; give --db the same path as to petit run "
        "or petit trigger\n"
    )
    assert not os.path.exists(missing)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_text("{not json")
    result = petit(str(corrupt), "show", "hello-1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"petit: {corrupt}: not a valid petit database (")
    assert len(result.stderr.splitlines()) == 1
    assert corrupt.read_text() == "{not json"
