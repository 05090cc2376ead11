"""Job files -> validated model. Every problem is collected (not just the first), one line each:
`<file>: job '<id>': task '<id>': <field>: <what is wrong and what was expected>`."""

from __future__ import annotations

import math
import os
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from .dag import find_cycle, topological_order
from .errors import ConfigError
from .jobfile import UnreadableJobFile, read_job_file
from .model import (Condition, DependencyCondition, Job, JobDependency, RetryCondition,
                    RetryPolicy, Task, TaskType)
from .schedule import Schedule, parse_duration, short_repr

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_TASKS = 10_000
MAX_ATTEMPTS = 100
MAX_MESSAGE_CHARS = 500
JOB_KEYS = {"id", "name", "description", "schedule", "enabled", "max_concurrency", "config",
            "environment", "depends_on", "tasks"}
TASK_KEYS = {"id", "name", "type", "depends_on", "condition", "retry", "timeout_secs", "timeout",
             "environment", "working_dir", "command", "args", "script", "inline"}
TYPE_KEYS = {TaskType.COMMAND: {"command", "args"}, TaskType.SHELL: {"script"},
             TaskType.PYTHON: {"script", "inline"}}
RETRY_KEYS = {"max_attempts", "delay_secs", "delay", "condition"}
SCHEDULE_KEYS = {"cron", "timezone"}
DEPENDENCY_KEYS = {"job", "job_id", "condition", "window"}


def one_line(text: str) -> str:
    """Error lines go to terminals, logs and JSON replies: escape what would break the line
    (newlines, U+2028), drive the terminal (ESC), reorder the text (bidi marks) or fail to
    encode (lone surrogates, from escapes or undecodable file names)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else ascii(ch)[1:-1]
                   for ch in text)


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class _Problems:
    """Collects error lines, each prefixed with the file / job / task being checked. Every line is
    one printable line, its message at most MAX_MESSAGE_CHARS long, whatever the input held."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._where: list[str] = []

    @contextmanager
    def within(self, label: str) -> Iterator[None]:
        self._where.append(one_line(label))
        try:
            yield
        finally:
            self._where.pop()

    def add(self, message: str) -> None:
        self.lines.append(": ".join([*self._where, _clip(one_line(message))]))


def _choice(problems: _Problems, enum_cls, value, field: str, default):
    if value is None:
        return default
    # Only strings reach the enum: on a failed lookup it formats the full repr of the value
    # into its own ValueError, and the full repr of an alias bomb never ends.
    if isinstance(value, str) and value in {e.value for e in enum_cls}:
        return enum_cls(value)
    allowed = ", ".join(e.value for e in enum_cls)
    problems.add(f"{field}: {short_repr(value)} is not valid: expected one of {allowed}")
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
            problems.add(f"{secs_key}: expected a number of seconds {bound} (at most 366 days), "
                         f"got {short_repr(value)}")
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
        problems.add(f"{key}: expected a non-empty string, got {type(value).__name__} {short_repr(value)}")
        return None
    return value


def _identifier(problems: _Problems, data: dict, key: str = "id") -> str | None:
    value = _string(problems, data, key, required=True)
    if value is not None and (not ID_PATTERN.fullmatch(value) or set(value) == {"."}):
        problems.add(f"{key}: {short_repr(value)} is not a valid id: expected 1-128 characters of "
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
        text = None if isinstance(item, (dict, list, set, bytes)) or item is None else _scalar_text(item)
        unusable = text is not None and _process_text_problem(text)
        if not isinstance(name, str) or not name or "=" in name or _process_text_problem(name):
            problems.add(f"environment: {short_repr(name)} is not a valid variable name")
        elif text is None:
            problems.add(f"environment: {short_repr(name)}: expected a string or number, got "
                         f"{type(item).__name__}{' too large to print' if isinstance(item, int) else ''}")
        elif unusable:
            problems.add(f"environment: {short_repr(name)}: value {unusable}")
        else:
            env[name] = text.lower() if isinstance(item, bool) else text
    return env


def _scalar_text(value) -> str | None:
    """str() of a YAML scalar; None for an int Python refuses to print (over 4300 digits)."""
    try:
        return str(value)
    except ValueError:
        return None


def _process_text_problem(text: str) -> str | None:
    """Why exec() would refuse this string (a command, argument, env entry or working_dir) when
    the run starts, if it would: a NUL byte, or a lone surrogate written as a YAML escape. Checked
    here so the job is refused up front instead of failing at every run."""
    if "\0" in text:
        return "contains a NUL byte"
    try:
        text.encode(sys.getfilesystemencoding(), "surrogateescape")
    except UnicodeEncodeError:
        return "contains characters that cannot be passed to a process (a lone surrogate)"
    return None


def _unknown_keys(problems: _Problems, data: dict, allowed: set[str], what: str) -> None:
    for key in data:
        if key not in allowed:
            problems.add(f"unknown key {short_repr(key)} in {what}: expected one of "
                         f"{', '.join(sorted(allowed))}")


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
                         f"after the first attempt), got {short_repr(attempts)}")
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
        if not isinstance(raw_args, list) or any(isinstance(a, (dict, list, set, bytes)) or a is None
                                                 for a in raw_args):
            problems.add("args: expected a list of strings")
        else:
            try:
                body["args"] = tuple(str(a) for a in raw_args)
            except ValueError:   # str() refuses an int of more than 4300 digits
                problems.add("args: expected a list of strings, got an integer too large to print")
            problem = _process_text_problem("\n".join(body["args"]))   # one pass for them all
            if problem:
                problems.add(f"args: an argument {problem}")
    elif task_type is TaskType.SHELL:
        body["script"] = _string(problems, data, "script", required=True)
    else:
        body["script"] = _string(problems, data, "script")
        body["inline"] = _string(problems, data, "inline")
        if (body["script"] is None) == (body["inline"] is None) and ("script" in data) == ("inline" in data):
            problems.add("script/inline: a python task needs exactly one of 'script' (a file) or 'inline' (code)")
    for key in ("command", "script", "inline"):
        problem = body[key] is not None and _process_text_problem(body[key])
        if problem:
            problems.add(f"{key}: {problem}")
    return body


def _task_depends(problems: _Problems, data: dict) -> tuple[str, ...]:
    depends = data.get("depends_on", [])
    if isinstance(depends, str):
        depends = [depends]
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        problems.add("depends_on: expected a list of task ids")
        return ()
    # Counted once: list.count per entry was quadratic, hours for a 1 MiB list of one repeated id.
    for dup in sorted(d for d, n in Counter(depends).items() if n > 1):
        problems.add(f"depends_on: {short_repr(dup)} is listed more than once")
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
        unusable = fields["working_dir"] is not None and _process_text_problem(fields["working_dir"])
        if unusable:
            problems.add(f"working_dir: {unusable}")
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
                    problems.add(f"depends_on: unknown task {short_repr(dep)}: expected one of this "
                                 "job's task ids")
            graph[task.id] = tuple(d for d in task.depends_on if d in seen and d != task.id)
    cycle = find_cycle(graph)
    if cycle:
        problems.add(f"tasks: dependency cycle: {_cycle_text(cycle)}")
        return tasks
    order = topological_order([t.id for t in tasks], graph)
    by_id = {t.id: t for t in tasks}
    return [by_id[task_id] for task_id in order]


def _cycle_text(cycle: list[str]) -> str:
    """A cycle through 5,000 tasks (or 1,000 jobs) would make a line of 50 KB: keep both ends."""
    if len(cycle) <= 12:
        return " -> ".join(cycle)
    return f"{' -> '.join(cycle[:6])} -> ... ({len(cycle) - 11} more) -> {' -> '.join(cycle[-5:])}"


def _few(names, limit: int = 10) -> str:
    names = list(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


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
                problems.add(f"depends_on: job {short_repr(job_id)}: condition within_window needs a "
                             "'window' like '1h'")
            else:
                try:
                    window = parse_duration(item["window"])
                except ValueError as exc:
                    problems.add(f"depends_on: window: {exc}")
        elif "window" in item:
            problems.add(f"depends_on: job {short_repr(job_id)}: 'window' only applies to condition "
                         "within_window")
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
            problems.add(f"enabled: expected true or false, got {short_repr(enabled)}")
        concurrency = data.get("max_concurrency")
        if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                        or not 1 <= concurrency <= 10_000):
            problems.add(f"max_concurrency: expected an integer >= 1 (at most 10000), "
                         f"got {short_repr(concurrency)}")
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
            try:
                data = read_job_file(path)
            except UnreadableJobFile as exc:
                problems.add(str(exc))
                continue
            if data is None:
                problems.add("file is empty: expected one job (a map with id, name and tasks)")
                continue
            job = parse_job(problems, data, path)
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
                    problems.add(f"depends_on: unknown job {short_repr(dep.job_id)}: expected one of "
                                 f"{_few(jobs) or 'no jobs defined'}")
    graph = {job.id: [d.job_id for d in job.depends_on if d.job_id in jobs and d.job_id != job.id]
             for job in jobs.values()}
    cycle = find_cycle(graph)
    if cycle:
        with problems.within(f"{jobs[cycle[0]].source}: job '{cycle[0]}'"):
            problems.add(f"depends_on: cycle between jobs: {_cycle_text(cycle)}")
