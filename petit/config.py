"""Job files -> validated model. Every problem is collected (not just the first), one line each:
`<file>: job '<id>': task '<id>': <field>: <what is wrong and what was expected>`."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import yaml

from .dag import find_cycle, topological_order
from .errors import ConfigError
from .model import (Condition, DependencyCondition, Job, JobDependency, RetryCondition,
                    RetryPolicy, Task, TaskType)
from .schedule import Schedule, parse_duration

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_FILE_BYTES = 1024 * 1024
MAX_TASKS = 10_000
MAX_ATTEMPTS = 100
JOB_KEYS = {"id", "name", "description", "schedule", "enabled", "max_concurrency", "config",
            "environment", "depends_on", "tasks"}
TASK_KEYS = {"id", "name", "type", "depends_on", "condition", "retry", "timeout_secs", "timeout",
             "environment", "working_dir", "command", "args", "script", "inline"}
TYPE_KEYS = {TaskType.COMMAND: {"command", "args"}, TaskType.SHELL: {"script"},
             TaskType.PYTHON: {"script", "inline"}}
RETRY_KEYS = {"max_attempts", "delay_secs", "delay", "condition"}
SCHEDULE_KEYS = {"cron", "timezone"}
DEPENDENCY_KEYS = {"job", "job_id", "condition", "window"}


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):   # C parser when built
    """PyYAML keeps the last of two equal keys, so a repeated `retry:` or `schedule:` would
    silently replace the first: the kind of typo the unknown-key check exists to catch."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` then an explicit key is a deliberate override
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable key: the base class reports it
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r:.60}: each key may appear once", key_node.start_mark)
        return super().construct_mapping(node, deep)


class _Problems:
    """Collects error lines, each prefixed with the file / job / task being checked."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._where: list[str] = []

    @contextmanager
    def within(self, label: str) -> Iterator[None]:
        self._where.append(label)
        try:
            yield
        finally:
            self._where.pop()

    def add(self, message: str) -> None:
        self.lines.append(": ".join([*self._where, message]))


def _choice(problems: _Problems, enum_cls, value, field: str, default):
    if value is None:
        return default
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum_cls)
        problems.add(f"{field}: {value!r} is not valid: expected one of {allowed}")
        return default


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(problems: _Problems, data: dict, secs_key: str, text_key: str,
             allow_zero: bool = False) -> float | None:
    """`<x>_secs: 30` or `<x>: "30s"`, not both; positive (or zero where allowed) and bounded."""
    if secs_key in data and text_key in data:
        problems.add(f"{secs_key}/{text_key}: give one of them, not both")
        return None
    if secs_key in data:
        value = data[secs_key]
        too_small = value < 0 or (value == 0 and not allow_zero) if _is_number(value) else True
        if too_small or value > 366 * 86400:
            bound = ">= 0" if allow_zero else "> 0"
            problems.add(f"{secs_key}: expected a number of seconds {bound} (at most 366 days), got {value!r}")
            return None
        return float(value)
    if text_key in data:
        try:
            return parse_duration(data[text_key], allow_zero=allow_zero)
        except ValueError as exc:
            problems.add(f"{text_key}: {exc}")
    return None


def _string(problems: _Problems, data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            problems.add(f"{key}: required key is missing")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        problems.add(f"{key}: expected a non-empty string, got {type(value).__name__} {value!r:.60}")
        return None
    return value


def _identifier(problems: _Problems, data: dict, key: str = "id") -> str | None:
    value = _string(problems, data, key, required=True)
    if value is not None and (not ID_PATTERN.fullmatch(value) or set(value) == {"."}):
        problems.add(f"{key}: {value!r:.80} is not a valid id: expected 1-128 characters of "
                     "A-Z a-z 0-9 _ . - (and not only dots)")
        return None
    return value


def _environment(problems: _Problems, data: dict) -> dict[str, str]:
    value = data.get("environment")
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(f"environment: expected a map of NAME: value, got {type(value).__name__}")
        return {}
    env: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            problems.add(f"environment: {name!r:.60} is not a valid variable name")
        elif isinstance(item, (dict, list)) or item is None:
            problems.add(f"environment: {name!r:.60}: expected a string or number, got {type(item).__name__}")
        elif "\0" in str(item):
            problems.add(f"environment: {name!r:.60}: value contains a NUL byte")
        else:
            env[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return env


def _unknown_keys(problems: _Problems, data: dict, allowed: set[str], what: str) -> None:
    for key in data:
        if key not in allowed:
            problems.add(f"unknown key {key!r:.60} in {what}: expected one of {', '.join(sorted(allowed))}")


def _retry(problems: _Problems, value) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    with problems.within("retry"):
        if not isinstance(value, dict):
            problems.add(f"expected a map with {', '.join(sorted(RETRY_KEYS))}")
            return RetryPolicy()
        _unknown_keys(problems, value, RETRY_KEYS, "retry")
        attempts = value.get("max_attempts", 0)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= MAX_ATTEMPTS:
            problems.add(f"max_attempts: expected an integer from 0 to {MAX_ATTEMPTS} (retries "
                         f"after the first attempt), got {attempts!r}")
            attempts = 0
        delay = _seconds(problems, value, "delay_secs", "delay", allow_zero=True) or 0.0
        condition = _choice(problems, RetryCondition, value.get("condition"), "condition",
                            RetryCondition.ALWAYS)
        return RetryPolicy(attempts, delay, condition)


def _task_body(problems: _Problems, data: dict, task_type: TaskType | None) -> dict:
    """The type-specific keys. `task_type` is None when `type` itself is invalid: then the
    per-type checks are skipped, since they would only repeat that one typo in other words."""
    body: dict = {"command": None, "args": (), "script": None, "inline": None}
    if task_type is None:
        return body
    for key in sorted((TYPE_KEYS[TaskType.COMMAND] | TYPE_KEYS[TaskType.SHELL]
                       | TYPE_KEYS[TaskType.PYTHON]) - TYPE_KEYS[task_type]):
        if key in data:
            problems.add(f"{key}: not used by a task of type '{task_type.value}'")
    if task_type is TaskType.COMMAND:
        body["command"] = _string(problems, data, "command", required=True)
        raw_args = data.get("args", [])
        if not isinstance(raw_args, list) or any(isinstance(a, (dict, list)) or a is None for a in raw_args):
            problems.add("args: expected a list of strings")
        else:
            body["args"] = tuple(str(a) for a in raw_args)
    elif task_type is TaskType.SHELL:
        body["script"] = _string(problems, data, "script", required=True)
    else:
        body["script"] = _string(problems, data, "script")
        body["inline"] = _string(problems, data, "inline")
        if (body["script"] is None) == (body["inline"] is None) and ("script" in data) == ("inline" in data):
            problems.add("script/inline: a python task needs exactly one of 'script' (a file) or 'inline' (code)")
    return body


def _task_depends(problems: _Problems, data: dict) -> tuple[str, ...]:
    depends = data.get("depends_on", [])
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        problems.add("depends_on: expected a list of task ids")
        return ()
    for dup in sorted({d for d in depends if depends.count(d) > 1}):
        problems.add(f"depends_on: {dup!r} is listed more than once")
    return tuple(dict.fromkeys(depends))


def _task(problems: _Problems, data, index: int) -> Task | None:
    if not isinstance(data, dict):
        problems.add(f"tasks[{index}]: expected a map with at least 'id', got {type(data).__name__}")
        return None
    # A bad or missing task id is reported under `tasks[i]`: a bare "id:" right after the job
    # label would read as if the job's own id were wrong.
    with problems.within(f"tasks[{index}]"):
        task_id = _identifier(problems, data)
    with problems.within(f"task '{task_id}'" if task_id else f"tasks[{index}]"):
        _unknown_keys(problems, data, TASK_KEYS, "a task")
        raw_type = data.get("type")
        task_type = (TaskType.COMMAND if raw_type is None
                     else _choice(problems, TaskType, raw_type, "type", None))
        body = _task_body(problems, data, task_type)
        # Every field is checked before deciding whether a Task can be built, so one missing
        # key does not hide the other problems of the same task.
        fields = dict(
            name=_string(problems, data, "name"),
            depends_on=_task_depends(problems, data),
            condition=_choice(problems, Condition, data.get("condition"), "condition", Condition.ALL_SUCCESS),
            retry=_retry(problems, data.get("retry")),
            timeout_secs=_seconds(problems, data, "timeout_secs", "timeout"),
            environment=_environment(problems, data),
            working_dir=_string(problems, data, "working_dir"),
        )
        if task_id is None:
            return None
        # Kept even when incomplete (the problems above already reject the file), so the tasks
        # that depend on it are not also told that it does not exist.
        fields["name"] = fields["name"] or task_id
        return Task(id=task_id, type=task_type or TaskType.COMMAND, **body, **fields)


def _check_task_graph(problems: _Problems, tasks: list[Task]) -> list[Task]:
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            problems.add(f"task '{task.id}': duplicate task id")
        seen.add(task.id)
    graph: dict[str, tuple[str, ...]] = {}
    for task in tasks:
        with problems.within(f"task '{task.id}'"):
            for dep in task.depends_on:
                if dep == task.id:
                    problems.add("depends_on: a task cannot depend on itself")
                elif dep not in seen:
                    problems.add(f"depends_on: unknown task {dep!r:.80}: expected one of this job's task ids")
            graph[task.id] = tuple(d for d in task.depends_on if d in seen and d != task.id)
    cycle = find_cycle(graph)
    if cycle:
        problems.add(f"tasks: dependency cycle: {' -> '.join(cycle)}")
        return tasks
    order = topological_order([t.id for t in tasks], graph)
    by_id = {t.id: t for t in tasks}
    return [by_id[task_id] for task_id in order]


def _schedule(problems: _Problems, value) -> tuple[str | None, str]:
    if value is None:
        return None, "UTC"
    expression, zone = value, "UTC"
    if isinstance(value, dict):
        _unknown_keys(problems, value, SCHEDULE_KEYS, "schedule")
        expression, zone = value.get("cron"), value.get("timezone", "UTC")
    if not isinstance(expression, str) or not isinstance(zone, str):
        problems.add("schedule: expected a cron string or a map {cron: '...', timezone: 'Area/City'}")
        return None, "UTC"
    try:
        Schedule.parse(expression, zone)
    except ValueError as exc:
        problems.add(f"schedule: {exc}")
        return None, "UTC"
    return expression, zone


def _job_dependencies(problems: _Problems, value) -> tuple[JobDependency, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    deps: list[JobDependency] = []
    for item in items:
        if isinstance(item, str):
            deps.append(JobDependency(item))
            continue
        if not isinstance(item, dict):
            problems.add("depends_on: expected a job id or a map {job: id, condition: ..., window: ...}")
            continue
        _unknown_keys(problems, item, DEPENDENCY_KEYS, "depends_on")
        if "job" in item and "job_id" in item:
            # like delay/delay_secs: two spellings of one key, and nothing says which wins
            problems.add("depends_on: job/job_id: give one of them, not both")
            continue
        job_id = item.get("job", item.get("job_id"))
        if not isinstance(job_id, str):
            problems.add("depends_on: 'job' is required and must be a job id")
            continue
        condition = _choice(problems, DependencyCondition, item.get("condition"), "depends_on: condition",
                            DependencyCondition.LAST_SUCCESS)
        window = None
        if condition is DependencyCondition.WITHIN_WINDOW:
            if "window" not in item:
                problems.add(f"depends_on: job {job_id!r}: condition within_window needs a 'window' like '1h'")
            else:
                try:
                    window = parse_duration(item["window"])
                except ValueError as exc:
                    problems.add(f"depends_on: window: {exc}")
        elif "window" in item:
            problems.add(f"depends_on: job {job_id!r}: 'window' only applies to condition within_window")
        deps.append(JobDependency(job_id, condition, window))
    return tuple(deps)


def parse_job(problems: _Problems, data, source: str) -> Job | None:
    if not isinstance(data, dict):
        problems.add(f"expected a map with keys id, name and tasks, got {type(data).__name__}")
        return None
    job_id = _identifier(problems, data)
    with problems.within(f"job '{job_id}'" if job_id else "job"):
        _unknown_keys(problems, data, JOB_KEYS, "a job")
        name = _string(problems, data, "name", required=True)
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.add(f"enabled: expected true or false, got {enabled!r:.60}")
        concurrency = data.get("max_concurrency")
        if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                        or not 1 <= concurrency <= 10_000):
            problems.add(f"max_concurrency: expected an integer >= 1, got {concurrency!r:.60}")
            concurrency = None
        config = data.get("config", {})
        if not isinstance(config, dict):
            problems.add("config: expected a map")
        schedule, zone = _schedule(problems, data.get("schedule"))
        raw_tasks = data.get("tasks")
        tasks: list[Task] = []
        if not isinstance(raw_tasks, list) or not raw_tasks:
            problems.add("tasks: required: a non-empty list of tasks")
        elif len(raw_tasks) > MAX_TASKS:
            problems.add(f"tasks: {len(raw_tasks)} tasks is more than the limit of {MAX_TASKS}")
        else:
            parsed = [_task(problems, item, i) for i, item in enumerate(raw_tasks)]
            tasks = _check_task_graph(problems, [t for t in parsed if t is not None])
        description = _string(problems, data, "description") or ""
        environment = _environment(problems, data)
        depends_on = _job_dependencies(problems, data.get("depends_on"))
    if job_id is None or name is None or not tasks:
        return None
    return Job(id=job_id, name=name, tasks=tuple(tasks), description=description, schedule=schedule,
               timezone=zone, enabled=enabled is not False, max_concurrency=concurrency,
               config=config if isinstance(config, dict) else {}, environment=environment,
               depends_on=depends_on, source=source)


def _read_yaml(problems: _Problems, path: str):
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            problems.add(f"file is larger than {MAX_FILE_BYTES // 1024} KiB; a job file should be small")
            return None
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(f"not valid UTF-8 text (byte {exc.start})")
        return None
    except OSError as exc:
        problems.add(f"cannot read: {exc.strerror}")
        return None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problems.add(f"YAML syntax error: {where}{exc.problem or exc.context}")
    except (yaml.YAMLError, RecursionError) as exc:
        problems.add(f"YAML error: {str(exc) or 'nesting too deep'}")
    return None


def job_files(jobs_dir: str) -> list[str]:
    return sorted(os.path.join(jobs_dir, name) for name in os.listdir(jobs_dir)
                  if name.endswith((".yaml", ".yml")) and not name.startswith("."))


def load_jobs(jobs_dir: str) -> dict[str, Job]:
    """Load and validate every job file in `jobs_dir`. Raises ConfigError listing every problem."""
    problems = _Problems()
    if not os.path.isdir(jobs_dir):
        raise ConfigError([f"{jobs_dir}: not a directory of job files"])
    try:
        paths = job_files(jobs_dir)
    except OSError as exc:
        raise ConfigError([f"{jobs_dir}: cannot list job files: {exc.strerror}"]) from exc
    jobs: dict[str, Job] = {}
    for path in paths:
        with problems.within(path):
            before = len(problems.lines)
            data = _read_yaml(problems, path)
            if data is None and len(problems.lines) == before:
                problems.add("file is empty: expected one job (a map with id, name and tasks)")
            job = parse_job(problems, data, path) if data is not None else None
            if job is not None and job.id in jobs:
                problems.add(f"job '{job.id}': duplicate job id (also defined in {jobs[job.id].source})")
            elif job is not None:
                jobs[job.id] = job
    _check_job_graph(problems, jobs)
    if problems.lines:
        raise ConfigError(problems.lines)
    return dict(sorted(jobs.items()))


def _check_job_graph(problems: _Problems, jobs: dict[str, Job]) -> None:
    for job in jobs.values():
        for dep in job.depends_on:
            with problems.within(f"{job.source}: job '{job.id}'"):
                if dep.job_id == job.id:
                    problems.add("depends_on: a job cannot depend on itself")
                elif dep.job_id not in jobs:
                    problems.add(f"depends_on: unknown job {dep.job_id!r:.80}: expected one of "
                                 f"{', '.join(jobs) or 'no jobs defined'}")
    graph = {job.id: [d.job_id for d in job.depends_on if d.job_id in jobs and d.job_id != job.id]
             for job in jobs.values()}
    cycle = find_cycle(graph)
    if cycle:
        problems.add(f"{jobs[cycle[0]].source}: job '{cycle[0]}': depends_on: cycle between jobs: "
                     f"{' -> '.join(cycle)}")
