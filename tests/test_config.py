"""Job-file validation (DESIGN section 3): every rule, every error reported in one pass, each
error one line starting with the file path and naming job, task and field."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from conftest import EXAMPLES, write_job

from petit.core.model import Condition, DependencyCondition, TaskType
from petit.core.retry import RetryCondition
from petit.core.timing import ScheduleSpec
from petit.errors import ConfigError
from petit.jobs.loader import load_jobs
from petit.jobs.reader import MAX_FILE_BYTES

BASE_JOB = {"id": "demo", "name": "Demo", "tasks": [{"id": "t", "command": "echo"}]}


def job(**changes) -> dict:
    """BASE_JOB with top-level keys replaced; a value of DELETE removes the key."""
    data = copy.deepcopy(BASE_JOB)
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def with_task(**task) -> dict:
    return job(tasks=[task])


DELETE = object()


def write(directory, data, name: str = "job.yaml") -> str:
    return write_job(directory, name, yaml.safe_dump(data, sort_keys=False))


def errors_for(directory) -> list[str]:
    """Load a folder that must be invalid; check the line format every error must follow."""
    with pytest.raises(ConfigError) as info:
        load_jobs(str(directory))
    errors = info.value.errors
    assert errors, "ConfigError without any error line"
    paths = [os.path.join(str(directory), n) for n in os.listdir(directory)]
    for line in errors:
        assert "\n" not in line and "\r" not in line, f"multi-line error: {line!r}"
        assert any(line.startswith(p + ": ") for p in paths), (
            f"error does not start with a file path: {line!r}"
        )
    assert info.value.message == "\n".join(errors)
    return errors


def only_error(directory, data) -> tuple[str, str]:
    """Write one job file that must yield exactly one error; return (error, path)."""
    path = write(directory, data)
    errors = errors_for(directory)
    assert len(errors) == 1, errors
    return errors[0], path


def load_one(directory, data):
    write(directory, data)
    jobs = load_jobs(str(directory))
    assert list(jobs) == [data["id"]]
    return jobs[data["id"]]


# --- valid files ---------------------------------------------------------------------------------


def test_examples_load_without_error():
    jobs = load_jobs(EXAMPLES)
    files = sorted(n for n in os.listdir(EXAMPLES) if n.endswith((".yaml", ".yml")))
    assert len(jobs) == len(files)
    assert sorted(os.path.basename(j.source) for j in jobs.values()) == files
    assert jobs["paris_morning"].schedules[0].timezone == "Europe/Paris"
    assert jobs["paris_morning"].depends_on[0].window_secs == 86400
    assert jobs["ten_seconds"].schedules == (ScheduleSpec("*/10 * * * * *"),)


def test_minimal_job_gets_the_documented_defaults(tmp_path):
    loaded = load_one(tmp_path, BASE_JOB)
    assert (loaded.name, loaded.enabled, loaded.schedules) == ("Demo", True, ())
    assert (loaded.max_concurrency, loaded.config, loaded.environment, loaded.depends_on) == (
        None,
        {},
        {},
        (),
    )
    assert loaded.source == os.path.join(str(tmp_path), "job.yaml")
    task = loaded.tasks[0]
    assert (task.id, task.name, task.type, task.command, task.args) == (
        "t",
        "t",
        TaskType.COMMAND,
        "echo",
        (),
    )
    assert (task.condition, task.timeout_secs, task.depends_on) == (Condition.ALL_SUCCESS, None, ())
    assert (task.retry.max_attempts, task.retry.delay_secs, task.retry.condition) == (
        0,
        0.0,
        RetryCondition.ALWAYS,
    )


def test_full_job_is_parsed_into_the_model(tmp_path):
    data = job(
        description="all keys",
        enabled=False,
        max_concurrency=2,
        config={"k": [1, 2]},
        schedule={"cron": "30 7 * * 1-5", "timezone": "Europe/Paris"},
        environment={"A": "x", "N": 5, "F": 1.5, "B": True},
        tasks=[
            {
                "id": "run",
                "name": "Run it",
                "command": "echo",
                "args": ["a", 1],
                "retry": {"max_attempts": 3, "delay": "10s", "condition": "transient_only"},
                "timeout": "5m",
                "environment": {"T": "task"},
                "working_dir": "/tmp",
            },
            {
                "id": "sh",
                "type": "shell",
                "script": "exit 0",
                "depends_on": "run",
                "condition": "on_failure",
                "retry": {"max_attempts": 1, "delay_secs": 2.5},
                "timeout_secs": 30,
            },
            {
                "id": "py",
                "type": "python",
                "inline": "print(1)",
                "depends_on": ["run", "sh"],
                "condition": "always",
            },
            {"id": "pyfile", "type": "python", "script": "tool.py", "condition": "all_done"},
        ],
    )
    loaded = load_one(tmp_path, data)
    assert (loaded.description, loaded.enabled, loaded.max_concurrency) == ("all keys", False, 2)
    assert (loaded.schedules, loaded.config) == (
        (ScheduleSpec("30 7 * * 1-5", "Europe/Paris"),),
        {"k": [1, 2]},
    )
    assert loaded.environment == {"A": "x", "N": "5", "F": "1.5", "B": "true"}
    run, sh, py, pyfile = (loaded.task(i) for i in ("run", "sh", "py", "pyfile"))
    assert (run.name, run.args, run.timeout_secs, run.environment, run.working_dir) == (
        "Run it",
        ("a", "1"),
        300.0,
        {"T": "task"},
        "/tmp",
    )
    assert (run.retry.max_attempts, run.retry.delay_secs, run.retry.condition) == (
        3,
        10.0,
        RetryCondition.TRANSIENT_ONLY,
    )
    assert (sh.type, sh.script, sh.depends_on, sh.condition, sh.timeout_secs) == (
        TaskType.SHELL,
        "exit 0",
        ("run",),
        Condition.ON_FAILURE,
        30.0,
    )
    assert (sh.retry.max_attempts, sh.retry.delay_secs) == (1, 2.5)
    assert (py.type, py.inline, py.script, py.condition) == (
        TaskType.PYTHON,
        "print(1)",
        None,
        Condition.ALWAYS,
    )
    assert (pyfile.script, pyfile.inline, pyfile.condition) == ("tool.py", None, Condition.ALL_DONE)


@pytest.mark.parametrize(
    "job_id",
    ["a", "A.b-c_9", ".hidden", "a..b", "x" * 128, "0"],
    ids=["one-char", "mixed-charset", "leading-dot", "inner-dots", "128-chars", "digit"],
)
def test_valid_ids_accepted(tmp_path, job_id):
    assert load_one(tmp_path, job(id=job_id)).id == job_id


def test_forward_references_are_honoured_and_tasks_come_in_topological_order(tmp_path):
    data = job(
        tasks=[
            {"id": "report", "command": "echo", "depends_on": ["load"], "condition": "all_done"},
            {"id": "load", "command": "echo", "depends_on": ["transform"]},
            {"id": "audit", "command": "echo"},
            {"id": "transform", "command": "echo", "depends_on": ["extract"]},
            {"id": "extract", "command": "echo"},
        ]
    )
    loaded = load_one(tmp_path, data)
    assert [t.id for t in loaded.tasks] == ["audit", "extract", "transform", "load", "report"]
    assert loaded.task("report").depends_on == ("load",)  # the forward reference was kept


def test_jobs_are_returned_sorted_by_id_from_yaml_and_yml(tmp_path):
    write(tmp_path, job(id="zeta"), "a.yaml")
    write(tmp_path, job(id="alpha"), "b.yml")
    write(tmp_path, job(id="ignored-txt"), "c.txt")
    write(tmp_path, job(id="ignored-hidden"), ".hidden.yaml")
    write(tmp_path, job(id="ignored-backup"), "d.yaml~")
    assert list(load_jobs(str(tmp_path))) == ["alpha", "zeta"]


def test_empty_folder_loads_no_jobs(tmp_path):
    assert load_jobs(str(tmp_path)) == {}


def test_not_a_directory(tmp_path):
    missing = os.path.join(str(tmp_path), "nope")
    with pytest.raises(ConfigError) as info:
        load_jobs(missing)
    assert info.value.errors == [f"{missing}: not a directory of job files"]


@pytest.mark.parametrize(
    "schedule, expression, zone",
    [
        ("*/5 * * * *", "*/5 * * * *", "UTC"),
        ("0 0 2 * * *", "0 0 2 * * *", "UTC"),
        ("@every 1h30m", "@every 1h30m", "UTC"),
        ("@daily", "@daily", "UTC"),
        (
            {"cron": "0 9 * * MON-FRI", "timezone": "America/New_York"},
            "0 9 * * MON-FRI",
            "America/New_York",
        ),
        ({"cron": "0 9 * * *"}, "0 9 * * *", "UTC"),
    ],
    ids=["string", "six-fields", "every", "shortcut", "map-with-zone", "map-default-zone"],
)
def test_schedule_forms(tmp_path, schedule, expression, zone):
    loaded = load_one(tmp_path, job(schedule=schedule))
    assert loaded.schedules == (ScheduleSpec(expression, zone),)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("text", "text"),
        (5, "5"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        ("", ""),
    ],
    ids=["string", "int", "float", "true", "false", "empty"],
)
def test_environment_values_become_strings(tmp_path, value, expected):
    loaded = load_one(
        tmp_path,
        job(
            environment={"VAR": value},
            tasks=[{"id": "t", "command": "echo", "environment": {"VAR": value}}],
        ),
    )
    assert loaded.environment == {"VAR": expected}
    assert loaded.tasks[0].environment == {"VAR": expected}


@pytest.mark.parametrize(
    "retry, attempts, delay",
    [
        ({"max_attempts": 0}, 0, 0.0),
        ({"max_attempts": 100}, 100, 0.0),
        ({"max_attempts": 2, "delay_secs": 10}, 2, 10.0),
        ({"max_attempts": 2, "delay": "10s"}, 2, 10.0),
        ({"max_attempts": 1, "delay": "1m30s"}, 1, 90.0),
        ({"delay": "250ms"}, 0, 0.25),
    ],
    ids=["zero", "max", "delay_secs", "delay-string", "delay-compound", "delay-ms"],
)
def test_retry_values(tmp_path, retry, attempts, delay):
    task = load_one(tmp_path, with_task(id="t", command="echo", retry=retry)).tasks[0]
    assert (task.retry.max_attempts, task.retry.delay_secs) == (attempts, delay)


@pytest.mark.parametrize(
    "keys, seconds",
    [
        ({"timeout_secs": 30}, 30.0),
        ({"timeout_secs": 0.5}, 0.5),
        ({"timeout": "5m"}, 300.0),
        ({"timeout": "1h30m"}, 5400.0),
    ],
    ids=["secs-int", "secs-float", "string-5m", "string-compound"],
)
def test_timeout_values(tmp_path, keys, seconds):
    assert (
        load_one(tmp_path, with_task(id="t", command="echo", **keys)).tasks[0].timeout_secs
        == seconds
    )


@pytest.mark.parametrize("concurrency", [1, 5], ids=["one", "five"])
def test_max_concurrency_accepted(tmp_path, concurrency):
    assert load_one(tmp_path, job(max_concurrency=concurrency)).max_concurrency == concurrency


# --- one error per rule --------------------------------------------------------------------------
# (job data, where the error is, a fragment of the message). `where` follows the file path.

JOB_ERRORS = [
    ("missing-id", job(id=DELETE), "id", "required key is missing"),
    ("missing-name", job(name=DELETE), "job 'demo': name", "required key is missing"),
    ("blank-name", job(name="  "), "job 'demo': name", "non-empty string"),
    ("missing-tasks", job(tasks=DELETE), "job 'demo': tasks", "non-empty list"),
    ("empty-tasks", job(tasks=[]), "job 'demo': tasks", "non-empty list"),
    ("tasks-not-a-list", job(tasks={"id": "t"}), "job 'demo': tasks", "non-empty list"),
    ("id-with-space", job(id="my job"), "id", "not a valid id"),
    ("id-with-slash", job(id="a/b"), "id", "not a valid id"),
    ("id-unicode", job(id="café"), "id", "not a valid id"),
    ("id-single-dot", job(id="."), "id", "not only dots"),
    ("id-only-dots", job(id="..."), "id", "not only dots"),
    ("id-too-long", job(id="x" * 129), "id", "not a valid id"),
    ("id-empty", job(id=""), "id", "non-empty string"),
    ("id-number", job(id=5), "id", "non-empty string"),
    (
        "unknown-key",
        job(shedule="* * * * *"),
        "job 'demo': unknown key 'shedule' in a job",
        "expected one of",
    ),
    ("enabled-not-bool", job(enabled="yes"), "job 'demo': enabled", "true or false"),
    ("concurrency-zero", job(max_concurrency=0), "job 'demo': max_concurrency", ">= 1"),
    ("concurrency-negative", job(max_concurrency=-2), "job 'demo': max_concurrency", ">= 1"),
    ("concurrency-string", job(max_concurrency="2"), "job 'demo': max_concurrency", ">= 1"),
    ("concurrency-bool", job(max_concurrency=True), "job 'demo': max_concurrency", ">= 1"),
    ("concurrency-float", job(max_concurrency=1.5), "job 'demo': max_concurrency", ">= 1"),
    ("config-not-map", job(config=[1]), "job 'demo': config", "expected a map"),
    ("description-not-string", job(description=5), "job 'demo': description", "string"),
    ("environment-not-map", job(environment=["A=1"]), "job 'demo': environment", "map"),
    (
        "environment-list-value",
        job(environment={"A": [1]}),
        "job 'demo': environment: 'A'",
        "string or number",
    ),
    (
        "environment-null-value",
        job(environment={"A": None}),
        "job 'demo': environment: 'A'",
        "string or number",
    ),
    (
        "environment-map-value",
        job(environment={"A": {"b": 1}}),
        "job 'demo': environment: 'A'",
        "string or number",
    ),
    (
        "environment-name-with-equals",
        job(environment={"A=B": "x"}),
        "job 'demo': environment: 'A=B'",
        "not a valid variable name",
    ),
    (
        "environment-nul-value",
        job(environment={"A": "x\0y"}),
        "job 'demo': environment: 'A'",
        "NUL",
    ),
    (
        "schedule-bad-cron",
        job(schedule="61 * * * *"),
        "job 'demo': schedule",
        "invalid cron expression",
    ),
    ("schedule-7-fields", job(schedule="* * * * * * *"), "job 'demo': schedule", "7 fields"),
    ("schedule-bad-every", job(schedule="@every 5x"), "job 'demo': schedule", "invalid duration"),
    (
        "schedule-unknown-shortcut",
        job(schedule="@sometimes"),
        "job 'demo': schedule",
        "unknown shortcut",
    ),
    (
        "schedule-impossible-date",
        job(schedule="0 0 31 2 *"),
        "job 'demo': schedule",
        "invalid cron",
    ),
    (
        "schedule-bad-zone",
        job(schedule={"cron": "0 * * * *", "timezone": "Mars/Base"}),
        "job 'demo': schedule",
        "unknown time zone 'Mars/Base'",
    ),
    (
        "schedule-map-unknown-key",
        job(schedule={"cron": "0 * * * *", "tz": "UTC"}),
        "job 'demo': unknown key 'tz' in schedule",
        "cron, timezone",
    ),
    (
        "schedule-map-without-cron",
        job(schedule={"timezone": "UTC"}),
        "job 'demo': schedule",
        "cron string, a map",
    ),
    ("schedule-number", job(schedule=5), "job 'demo': schedule", "cron string, a map"),
    ("schedule-empty", job(schedule=""), "job 'demo': schedule", "non-empty"),
]


@pytest.mark.parametrize(
    "data, where, fragment", [c[1:] for c in JOB_ERRORS], ids=[c[0] for c in JOB_ERRORS]
)
def test_job_level_errors(tmp_path, data, where, fragment):
    error, path = only_error(tmp_path, data)
    assert error.startswith(f"{path}: {where}"), error
    assert fragment in error


TASK_ERRORS = [
    ("task-missing-id", {"command": "echo"}, "tasks[0]: id", "required key is missing"),
    ("task-bad-id", {"id": "a b", "command": "echo"}, "tasks[0]: id", "not a valid id"),
    ("task-only-dots-id", {"id": "..", "command": "echo"}, "tasks[0]: id", "not only dots"),
    (
        "unknown-key",
        {"id": "t", "command": "echo", "retries": 3},
        "task 't': unknown key 'retries' in a task",
        "expected one of",
    ),
    (
        "bad-type",
        {"id": "t", "type": "perl", "script": "x"},
        "task 't': type",
        "'perl' is not valid",
    ),
    ("command-missing", {"id": "t"}, "task 't': command", "required key is missing"),
    ("command-empty", {"id": "t", "command": ""}, "task 't': command", "non-empty string"),
    (
        "args-not-list",
        {"id": "t", "command": "echo", "args": "a b"},
        "task 't': args",
        "list of strings",
    ),
    (
        "args-nested",
        {"id": "t", "command": "echo", "args": [["a"]]},
        "task 't': args",
        "list of strings",
    ),
    (
        "args-null-item",
        {"id": "t", "command": "echo", "args": [None]},
        "task 't': args",
        "list of strings",
    ),
    (
        "command-with-script",
        {"id": "t", "command": "echo", "script": "x"},
        "task 't': script",
        "not used by a task of type 'command'",
    ),
    (
        "command-with-inline",
        {"id": "t", "command": "echo", "inline": "x"},
        "task 't': inline",
        "not used by a task of type 'command'",
    ),
    (
        "shell-missing-script",
        {"id": "t", "type": "shell"},
        "task 't': script",
        "required key is missing",
    ),
    (
        "shell-blank-script",
        {"id": "t", "type": "shell", "script": " "},
        "task 't': script",
        "non-empty",
    ),
    (
        "shell-with-command",
        {"id": "t", "type": "shell", "script": "x", "command": "ls"},
        "task 't': command",
        "not used by a task of type 'shell'",
    ),
    (
        "shell-with-args",
        {"id": "t", "type": "shell", "script": "x", "args": ["a"]},
        "task 't': args",
        "not used by a task of type 'shell'",
    ),
    (
        "shell-with-inline",
        {"id": "t", "type": "shell", "script": "x", "inline": "y"},
        "task 't': inline",
        "not used by a task of type 'shell'",
    ),
    ("python-neither", {"id": "t", "type": "python"}, "task 't': script/inline", "exactly one"),
    (
        "python-both",
        {"id": "t", "type": "python", "script": "a.py", "inline": "x"},
        "task 't': script/inline",
        "exactly one",
    ),
    (
        "python-with-command",
        {"id": "t", "type": "python", "inline": "x", "command": "ls"},
        "task 't': command",
        "not used by a task of type 'python'",
    ),
    (
        "python-with-args",
        {"id": "t", "type": "python", "script": "a.py", "args": ["a"]},
        "task 't': args",
        "not used by a task of type 'python'",
    ),
    (
        "python-inline-not-string",
        {"id": "t", "type": "python", "inline": ["x"]},
        "task 't': inline",
        "string",
    ),
    (
        "bad-condition",
        {"id": "t", "command": "echo", "condition": "sometimes"},
        "task 't': condition",
        "all_success, on_failure, all_done, always",
    ),
    (
        "depends-not-list",
        {"id": "t", "command": "echo", "depends_on": {"a": 1}},
        "task 't': depends_on",
        "list of task ids",
    ),
    (
        "depends-number-item",
        {"id": "t", "command": "echo", "depends_on": [1]},
        "task 't': depends_on",
        "list of task ids",
    ),
    (
        "depends-unknown",
        {"id": "t", "command": "echo", "depends_on": ["ghost"]},
        "task 't': depends_on",
        "unknown task 'ghost'",
    ),
    (
        "depends-self",
        {"id": "t", "command": "echo", "depends_on": ["t"]},
        "task 't': depends_on",
        "cannot depend on itself",
    ),
    ("name-not-string", {"id": "t", "command": "echo", "name": 5}, "task 't': name", "string"),
    (
        "working-dir-not-string",
        {"id": "t", "command": "echo", "working_dir": 5},
        "task 't': working_dir",
        "string",
    ),
    (
        "task-environment-bad",
        {"id": "t", "command": "echo", "environment": {"A": [1]}},
        "task 't': environment: 'A'",
        "string or number",
    ),
    (
        "retry-not-map",
        {"id": "t", "command": "echo", "retry": 3},
        "task 't': retry",
        "expected a map",
    ),
    (
        "retry-unknown-key",
        {"id": "t", "command": "echo", "retry": {"attempts": 3}},
        "task 't': retry: unknown key 'attempts' in retry",
        "max_attempts",
    ),
    (
        "retry-negative",
        {"id": "t", "command": "echo", "retry": {"max_attempts": -1}},
        "task 't': retry: max_attempts",
        "0 to 100",
    ),
    (
        "retry-too-many",
        {"id": "t", "command": "echo", "retry": {"max_attempts": 101}},
        "task 't': retry: max_attempts",
        "0 to 100",
    ),
    (
        "retry-string",
        {"id": "t", "command": "echo", "retry": {"max_attempts": "3"}},
        "task 't': retry: max_attempts",
        "integer",
    ),
    (
        "retry-bool",
        {"id": "t", "command": "echo", "retry": {"max_attempts": True}},
        "task 't': retry: max_attempts",
        "integer",
    ),
    (
        "retry-float",
        {"id": "t", "command": "echo", "retry": {"max_attempts": 1.5}},
        "task 't': retry: max_attempts",
        "integer",
    ),
    (
        "retry-both-delays",
        {"id": "t", "command": "echo", "retry": {"delay_secs": 10, "delay": "10s"}},
        "task 't': retry: delay_secs/delay",
        "not both",
    ),
    (
        "retry-bad-delay",
        {"id": "t", "command": "echo", "retry": {"delay": "10"}},
        "task 't': retry: delay",
        "invalid duration '10'",
    ),
    (
        "retry-delay-secs-string",
        {"id": "t", "command": "echo", "retry": {"delay_secs": "10s"}},
        "task 't': retry: delay_secs",
        "number of seconds",
    ),
    (
        "retry-delay-secs-negative",
        {"id": "t", "command": "echo", "retry": {"delay_secs": -1}},
        "task 't': retry: delay_secs",
        "number of seconds",
    ),
    (
        "retry-bad-condition",
        {"id": "t", "command": "echo", "retry": {"condition": "sometimes"}},
        "task 't': retry: condition",
        "always, transient_only, never",
    ),
    (
        "timeout-both",
        {"id": "t", "command": "echo", "timeout_secs": 10, "timeout": "5m"},
        "task 't': timeout_secs/timeout",
        "not both",
    ),
    (
        "timeout-secs-zero",
        {"id": "t", "command": "echo", "timeout_secs": 0},
        "task 't': timeout_secs",
        "> 0",
    ),
    (
        "timeout-secs-negative",
        {"id": "t", "command": "echo", "timeout_secs": -5},
        "task 't': timeout_secs",
        "> 0",
    ),
    (
        "timeout-secs-string",
        {"id": "t", "command": "echo", "timeout_secs": "30"},
        "task 't': timeout_secs",
        "number of seconds",
    ),
    (
        "timeout-secs-bool",
        {"id": "t", "command": "echo", "timeout_secs": True},
        "task 't': timeout_secs",
        "number of seconds",
    ),
    (
        "timeout-secs-too-long",
        {"id": "t", "command": "echo", "timeout_secs": 367 * 86400},
        "task 't': timeout_secs",
        "366 days",
    ),
    (
        "timeout-bad-string",
        {"id": "t", "command": "echo", "timeout": "5x"},
        "task 't': timeout",
        "invalid duration '5x'",
    ),
    (
        "timeout-zero-string",
        {"id": "t", "command": "echo", "timeout": "0s"},
        "task 't': timeout",
        "greater than zero",
    ),
    (
        "timeout-truncated-string",
        {"id": "t", "command": "echo", "timeout": "1h30"},
        "task 't': timeout",
        "invalid duration '1h30'",
    ),
]


@pytest.mark.parametrize(
    "task, where, fragment", [c[1:] for c in TASK_ERRORS], ids=[c[0] for c in TASK_ERRORS]
)
def test_task_level_errors(tmp_path, task, where, fragment):
    error, path = only_error(tmp_path, job(tasks=[task]))
    assert error.startswith(f"{path}: job 'demo': {where}"), error
    assert fragment in error


def test_task_that_is_not_a_map(tmp_path):
    error, path = only_error(tmp_path, job(tasks=["echo hi"]))
    assert error == f"{path}: job 'demo': tasks[0]: expected a map with at least 'id', got str"


def test_duplicate_task_id(tmp_path):
    error, path = only_error(
        tmp_path, job(tasks=[{"id": "t", "command": "a"}, {"id": "t", "command": "b"}])
    )
    assert error == f"{path}: job 'demo': task 't': duplicate task id"


def test_duplicate_task_dependency(tmp_path):
    data = job(
        tasks=[{"id": "a", "command": "x"}, {"id": "b", "command": "x", "depends_on": ["a", "a"]}]
    )
    error, path = only_error(tmp_path, data)
    assert error == f"{path}: job 'demo': task 'b': depends_on: 'a' is listed more than once"


@pytest.mark.parametrize(
    "edges, cycle_tasks",
    [
        ({"a": ["b"], "b": ["a"]}, {"a", "b"}),
        ({"a": ["c"], "b": ["a"], "c": ["b"], "free": []}, {"a", "b", "c"}),
    ],
    ids=["two-tasks", "three-tasks"],
)
def test_task_cycle_names_the_tasks(tmp_path, edges, cycle_tasks):
    data = job(tasks=[{"id": t, "command": "x", "depends_on": ups} for t, ups in edges.items()])
    error, path = only_error(tmp_path, data)
    prefix = f"{path}: job 'demo': tasks: dependency cycle: "
    assert error.startswith(prefix)
    named = error[len(prefix) :].split(" -> ")
    assert named[0] == named[-1] and set(named) == cycle_tasks


def test_invalid_type_does_not_cascade_into_type_specific_errors(tmp_path):
    # a typo in `type` is one problem, not also "command missing" and "inline not used"
    error, path = only_error(tmp_path, with_task(id="t", type="pyhton", inline="print(1)"))
    assert error.startswith(f"{path}: job 'demo': task 't': type: 'pyhton' is not valid")


def test_dependents_of_an_incomplete_task_are_not_told_it_is_unknown(tmp_path):
    data = job(tasks=[{"id": "a"}, {"id": "b", "command": "x", "depends_on": ["a"]}])
    error, path = only_error(tmp_path, data)
    assert error == f"{path}: job 'demo': task 'a': command: required key is missing"


# --- cross-job depends_on ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "depends_on, condition, window",
    [
        ("upstream", DependencyCondition.LAST_SUCCESS, None),
        (["upstream"], DependencyCondition.LAST_SUCCESS, None),
        ({"job": "upstream"}, DependencyCondition.LAST_SUCCESS, None),
        ({"job_id": "upstream"}, DependencyCondition.LAST_SUCCESS, None),
        (
            [{"job": "upstream", "condition": "last_complete"}],
            DependencyCondition.LAST_COMPLETE,
            None,
        ),
        (
            [{"job_id": "upstream", "condition": "within_window", "window": "1h"}],
            DependencyCondition.WITHIN_WINDOW,
            3600.0,
        ),
        (
            [{"job": "upstream", "condition": "within_window", "window": "1d"}],
            DependencyCondition.WITHIN_WINDOW,
            86400.0,
        ),
    ],
    ids=[
        "string",
        "list-of-string",
        "map-job",
        "map-job_id-alias",
        "last_complete",
        "within_window-1h",
        "within_window-1d",
    ],
)
def test_cross_job_dependency_forms(tmp_path, depends_on, condition, window):
    write(tmp_path, job(id="upstream"), "upstream.yaml")
    write(tmp_path, job(id="downstream", depends_on=depends_on), "downstream.yaml")
    (dep,) = load_jobs(str(tmp_path))["downstream"].depends_on
    assert (dep.job_id, dep.condition, dep.window_secs) == ("upstream", condition, window)


CROSS_JOB_ERRORS = [
    ("unknown-job", "ghost", "depends_on: unknown job 'ghost'"),
    ("self", "downstream", "depends_on: a job cannot depend on itself"),
    (
        "window-missing",
        {"job": "upstream", "condition": "within_window"},
        "depends_on: job 'upstream': condition within_window needs a 'window'",
    ),
    (
        "window-without-within",
        {"job": "upstream", "window": "1h"},
        "depends_on: job 'upstream': 'window' only applies to condition within_window",
    ),
    (
        "window-bad",
        {"job": "upstream", "condition": "within_window", "window": "1x"},
        "depends_on: window: invalid duration '1x'",
    ),
    (
        "bad-condition",
        {"job": "upstream", "condition": "whenever"},
        "depends_on: condition: 'whenever' is not valid",
    ),
    ("map-without-job", {"condition": "last_success"}, "depends_on: 'job' is required"),
    (
        "job-and-job_id",
        {"job": "upstream", "job_id": "upstream"},
        "depends_on: job/job_id: give one of them",
    ),
    ("unknown-key", {"job": "upstream", "when": "daily"}, "unknown key 'when' in depends_on"),
    ("number", 5, "depends_on: expected a job id or a map"),
]


@pytest.mark.parametrize(
    "depends_on, message", [c[1:] for c in CROSS_JOB_ERRORS], ids=[c[0] for c in CROSS_JOB_ERRORS]
)
def test_cross_job_dependency_errors(tmp_path, depends_on, message):
    write(tmp_path, job(id="upstream"), "upstream.yaml")
    path = write(tmp_path, job(id="downstream", depends_on=depends_on), "downstream.yaml")
    errors = errors_for(tmp_path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: job 'downstream': {message}"), errors[0]


def test_unknown_job_error_lists_the_known_jobs(tmp_path):
    write(tmp_path, job(id="b"), "b.yaml")
    write(tmp_path, job(id="a", depends_on="ghost"), "a.yaml")
    (error,) = errors_for(tmp_path)
    assert error.endswith("unknown job 'ghost': expected one of a, b")


@pytest.mark.parametrize(
    "links",
    [
        {"a": "b", "b": "a"},
        {"a": "b", "b": "c", "c": "a"},
    ],
    ids=["two-jobs", "three-jobs"],
)
def test_cycle_between_jobs(tmp_path, links):
    paths = {
        job_id: write(tmp_path, job(id=job_id, depends_on=target), f"{job_id}.yaml")
        for job_id, target in links.items()
    }
    (error,) = errors_for(tmp_path)
    head, _, chain = error.partition("depends_on: cycle between jobs: ")
    named = chain.split(" -> ")
    assert named[0] == named[-1] and set(named) == set(links)
    assert head == f"{paths[named[0]]}: job '{named[0]}': "


def test_duplicate_job_ids_across_files_name_both_files(tmp_path):
    first = write(tmp_path, job(id="same"), "a.yaml")
    second = write(tmp_path, job(id="same", name="Other"), "b.yaml")
    (error,) = errors_for(tmp_path)
    assert error == f"{second}: job 'same': duplicate job id (also defined in {first})"


# --- file-level problems -------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write_job(
        tmp_path, "broken.yaml", "id: broken\nname: Broken\ntasks:\n  - id: t\n   command: [\n"
    )
    (error,) = errors_for(tmp_path)
    assert error.startswith(f"{path}: YAML syntax error: line 5, column ")


def test_yaml_tab_indentation_names_the_line(tmp_path):
    path = write_job(tmp_path, "tabs.yaml", "id: t\nname: T\ntasks:\n\t- id: x\n")
    (error,) = errors_for(tmp_path)
    assert error.startswith(f"{path}: YAML syntax error: line 4, column 1: ")


def test_duplicate_yaml_key_is_an_error_not_a_silent_override(tmp_path):
    text = (
        "id: dup\nname: Dup\nschedule: '@daily'\ntasks: [{id: t, command: echo}]\n"
        "schedule: '@hourly'\n"
    )
    path = write_job(tmp_path, "dup.yaml", text)
    (error,) = errors_for(tmp_path)
    assert error.startswith(
        f"{path}: YAML syntax error: line 5, column 1: duplicate key 'schedule'"
    )


def test_yaml_merge_key_override_is_not_a_duplicate(tmp_path):
    text = "id: m\nname: M\ntasks:\n  - &base {id: a, command: echo}\n  - {<<: *base, id: b}\n"
    write_job(tmp_path, "merge.yaml", text)
    assert [t.id for t in load_jobs(str(tmp_path))["m"].tasks] == ["a", "b"]


def test_multiple_documents_in_one_file(tmp_path):
    path = write_job(tmp_path, "two.yaml", "id: a\n---\nid: b\n")
    (error,) = errors_for(tmp_path)
    assert error.startswith(f"{path}: YAML syntax error: line 2")


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# just a comment\n", "---\n", "null\n"],
    ids=["zero-bytes", "blank-lines", "comment-only", "document-marker", "null"],
)
def test_empty_file(tmp_path, text):
    path = write_job(tmp_path, "empty.yaml", text)
    assert errors_for(tmp_path) == [
        f"{path}: file is empty: expected one job (a map with id, name and tasks)"
    ]


@pytest.mark.parametrize(
    "text, kind",
    [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")],
    ids=["list", "scalar", "number"],
)
def test_top_level_must_be_a_map(tmp_path, text, kind):
    path = write_job(tmp_path, "odd.yaml", text)
    assert errors_for(tmp_path) == [
        f"{path}: expected a map with keys id, name and tasks, got {kind}"
    ]


def test_non_utf8_file(tmp_path):
    path = os.path.join(str(tmp_path), "latin1.yaml")
    with open(path, "wb") as handle:
        handle.write("id: café\nname: x\n".encode("latin-1"))
    assert errors_for(tmp_path) == [f"{path}: not valid UTF-8 text (byte 7)"]


def test_file_over_one_mib_is_rejected_without_parsing(tmp_path):
    body = yaml.safe_dump(BASE_JOB)
    padding = MAX_FILE_BYTES - len(body) + 1
    path = write_job(tmp_path, "big.yaml", body + "#" * (padding - 1) + "\n")
    assert os.path.getsize(path) == MAX_FILE_BYTES + 1
    (error,) = errors_for(tmp_path)
    assert error.startswith(f"{path}: file is larger than 1024 KiB")


def test_file_of_exactly_one_mib_is_accepted(tmp_path):
    body = yaml.safe_dump(BASE_JOB)
    path = write_job(tmp_path, "big.yaml", body + "#" * (MAX_FILE_BYTES - len(body) - 1) + "\n")
    assert os.path.getsize(path) == MAX_FILE_BYTES
    assert list(load_jobs(str(tmp_path))) == ["demo"]


def test_directory_named_like_a_job_file(tmp_path):
    os.mkdir(os.path.join(str(tmp_path), "folder.yaml"))
    (error,) = errors_for(tmp_path)
    assert error.startswith(os.path.join(str(tmp_path), "folder.yaml") + ": cannot read")


# --- every error in one pass ---------------------------------------------------------------------


def test_one_file_with_many_problems_reports_each_on_its_own_line(tmp_path):
    data = {
        "id": "multi",
        "name": "Multi",
        "shedule": "@daily",
        "max_concurrency": 0,
        "schedule": {"cron": "0 * * * *", "timezone": "Nowhere/City"},
        "environment": {"BAD": [1]},
        "depends_on": ["ghost"],
        "tasks": [
            {
                "id": "a",
                "retry": {"max_attempts": -1, "delay_secs": 1, "delay": "1s"},
                "timeout": "5x",
                "condition": "maybe",
            },
            {"id": "b", "type": "python", "depends_on": ["a", "nowhere", "b"]},
            {"id": "bad id", "command": "echo"},
        ],
    }
    path = write(tmp_path, data)
    errors = errors_for(tmp_path)
    expected = [
        ("job 'multi': unknown key 'shedule'", "in a job"),
        ("job 'multi': max_concurrency:", "got 0"),
        ("job 'multi': schedule:", "unknown time zone 'Nowhere/City'"),
        ("job 'multi': environment: 'BAD':", "string or number"),
        ("job 'multi': depends_on:", "unknown job 'ghost'"),
        ("job 'multi': task 'a': command:", "required key is missing"),
        ("job 'multi': task 'a': retry: max_attempts:", "got -1"),
        ("job 'multi': task 'a': retry: delay_secs/delay:", "not both"),
        ("job 'multi': task 'a': timeout:", "'5x'"),
        ("job 'multi': task 'a': condition:", "'maybe'"),
        ("job 'multi': task 'b': script/inline:", "exactly one"),
        ("job 'multi': task 'b': depends_on:", "unknown task 'nowhere'"),
        ("job 'multi': task 'b': depends_on:", "cannot depend on itself"),
        ("job 'multi': tasks[2]: id:", "'bad id' is not a valid id"),
    ]
    for where, fragment in expected:
        matching = [e for e in errors if e.startswith(f"{path}: {where}") and fragment in e]
        assert len(matching) == 1, (where, fragment, errors)
    assert len(errors) == len(expected), errors


def test_errors_from_every_file_are_reported_together(tmp_path):
    paths = [
        write_job(tmp_path, "a_syntax.yaml", "id: [\n"),
        write_job(tmp_path, "b_empty.yaml", ""),
        write(tmp_path, job(id="c_bad", max_concurrency=0), "c_bad.yaml"),
        write(
            tmp_path,
            job(id="d_bad", tasks=[{"id": "t", "command": "x", "timeout": "soon"}]),
            "d_bad.yaml",
        ),
        write(tmp_path, job(id="e_ok"), "e_ok.yaml"),
    ]
    errors = errors_for(tmp_path)
    assert [next(p for p in paths if e.startswith(p + ": ")) for e in errors] == paths[:4]


def test_error_lines_are_single_lines_even_for_hostile_values(tmp_path):
    data = job(
        environment={"LINE\nBREAK": [1]},
        **{"bad\nkey": 1},
        tasks=[{"id": "t", "command": "x", "condition": "a\nb", "timeout": "1\n2"}],
    )
    write(tmp_path, data)
    errors = errors_for(tmp_path)
    assert len(errors) == 4, errors
