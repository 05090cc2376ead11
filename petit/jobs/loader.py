"""Job files -> validated model. Every problem is collected (not just the first), one line each:
`<file>: job '<id>': task '<id>': <field>: <what is wrong and what was expected>`."""

from __future__ import annotations

import os
from collections import Counter

from ..core.dag import find_cycle, topological_order
from ..core.model import (
    Condition,
    DependencyCondition,
    Job,
    JobDependency,
    Task,
    TaskType,
)
from ..core.retry import RetryCondition, RetryPolicy
from ..core.schedule import Schedule, parse_duration
from ..core.text import short_repr
from ..errors import ConfigError
from .fields import (
    Problems,
    check_unknown_keys,
    process_text_problem,
    read_choice,
    read_environment,
    read_identifier,
    read_seconds,
    read_string,
)
from .reader import UnreadableJobFile, read_job_file

MAX_TASKS = 10_000
MAX_ATTEMPTS = 100
JOB_KEYS = {
    "id",
    "name",
    "description",
    "schedule",
    "enabled",
    "max_concurrency",
    "config",
    "environment",
    "depends_on",
    "tasks",
}
TASK_KEYS = {
    "id",
    "name",
    "type",
    "depends_on",
    "condition",
    "retry",
    "timeout_secs",
    "timeout",
    "environment",
    "working_dir",
    "command",
    "args",
    "script",
    "inline",
}
TYPE_KEYS = {
    TaskType.COMMAND: {"command", "args"},
    TaskType.SHELL: {"script"},
    TaskType.PYTHON: {"script", "inline"},
}
RETRY_KEYS = {"max_attempts", "delay_secs", "delay", "condition"}
SCHEDULE_KEYS = {"cron", "timezone"}
DEPENDENCY_KEYS = {"job", "job_id", "condition", "window"}


def _retry(problems: Problems, value) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    with problems.within("retry"):
        if not isinstance(value, dict):
            problems.add(f"expected a map with {', '.join(sorted(RETRY_KEYS))}")
            return RetryPolicy()
        check_unknown_keys(problems, value, RETRY_KEYS, "retry")
        attempts = value.get("max_attempts", 0)
        if (
            not isinstance(attempts, int)
            or isinstance(attempts, bool)
            or not 0 <= attempts <= MAX_ATTEMPTS
        ):
            problems.add(
                f"max_attempts: expected an integer from 0 to {MAX_ATTEMPTS} (retries "
                f"after the first attempt), got {short_repr(attempts)}"
            )
            attempts = 0
        delay = read_seconds(problems, value, "delay_secs", "delay", allow_zero=True) or 0.0
        condition = read_choice(
            problems, RetryCondition, value.get("condition"), "condition", RetryCondition.ALWAYS
        )
        return RetryPolicy(attempts, delay, condition)


def _task_body(problems: Problems, data: dict, task_type: TaskType | None) -> dict:
    """The type-specific keys. `task_type` is None when `type` itself is invalid: then the
    per-type checks are skipped, since they would only repeat that one typo in other words."""
    body: dict = {"command": None, "args": (), "script": None, "inline": None}
    if task_type is None:
        return body
    for key in sorted(
        (TYPE_KEYS[TaskType.COMMAND] | TYPE_KEYS[TaskType.SHELL] | TYPE_KEYS[TaskType.PYTHON])
        - TYPE_KEYS[task_type]
    ):
        if key in data:
            problems.add(f"{key}: not used by a task of type '{task_type.value}'")
    if task_type is TaskType.COMMAND:
        body["command"] = read_string(problems, data, "command", required=True)
        raw_args = data.get("args", [])
        if not isinstance(raw_args, list) or any(
            isinstance(a, (dict, list, set, bytes)) or a is None for a in raw_args
        ):
            problems.add("args: expected a list of strings")
        else:
            try:
                body["args"] = tuple(str(a) for a in raw_args)
            except ValueError:  # str() refuses an int of more than 4300 digits
                problems.add("args: expected a list of strings, got an integer too large to print")
            problem = process_text_problem("\n".join(body["args"]))  # one pass for them all
            if problem:
                problems.add(f"args: an argument {problem}")
    elif task_type is TaskType.SHELL:
        body["script"] = read_string(problems, data, "script", required=True)
    else:
        body["script"] = read_string(problems, data, "script")
        body["inline"] = read_string(problems, data, "inline")
        if (body["script"] is None) == (body["inline"] is None) and ("script" in data) == (
            "inline" in data
        ):
            problems.add(
                "script/inline: a python task needs exactly one of 'script' (a file) "
                "or 'inline' (code)"
            )
    for key in ("command", "script", "inline"):
        problem = body[key] is not None and process_text_problem(body[key])
        if problem:
            problems.add(f"{key}: {problem}")
    return body


def _task_depends(problems: Problems, data: dict) -> tuple[str, ...]:
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


def _task(problems: Problems, data, index: int) -> Task | None:
    if not isinstance(data, dict):
        problems.add(
            f"tasks[{index}]: expected a map with at least 'id', got {type(data).__name__}"
        )
        return None
    # A bad or missing task id is reported under `tasks[i]`: a bare "id:" right after the job
    # label would read as if the job's own id were wrong.
    with problems.within(f"tasks[{index}]"):
        task_id = read_identifier(problems, data)
    with problems.within(f"task '{task_id}'" if task_id else f"tasks[{index}]"):
        check_unknown_keys(problems, data, TASK_KEYS, "a task")
        raw_type = data.get("type")
        task_type = (
            TaskType.COMMAND
            if raw_type is None
            else read_choice(problems, TaskType, raw_type, "type", None)
        )
        body = _task_body(problems, data, task_type)
        # Every field is checked before deciding whether a Task can be built, so one missing
        # key does not hide the other problems of the same task.
        fields = dict(
            name=read_string(problems, data, "name"),
            depends_on=_task_depends(problems, data),
            condition=read_choice(
                problems, Condition, data.get("condition"), "condition", Condition.ALL_SUCCESS
            ),
            retry=_retry(problems, data.get("retry")),
            timeout_secs=read_seconds(problems, data, "timeout_secs", "timeout"),
            environment=read_environment(problems, data),
            working_dir=read_string(problems, data, "working_dir"),
        )
        unusable = fields["working_dir"] is not None and process_text_problem(fields["working_dir"])
        if unusable:
            problems.add(f"working_dir: {unusable}")
        if task_id is None:
            return None
        # Kept even when incomplete (the problems above already reject the file), so the tasks
        # that depend on it are not also told that it does not exist.
        fields["name"] = fields["name"] or task_id
        return Task(id=task_id, type=task_type or TaskType.COMMAND, **body, **fields)


def _check_task_graph(problems: Problems, tasks: list[Task]) -> list[Task]:
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
                    problems.add(
                        f"depends_on: unknown task {short_repr(dep)}: expected one of this "
                        "job's task ids"
                    )
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


def _schedule(problems: Problems, value) -> tuple[str | None, str]:
    if value is None:
        return None, "UTC"
    expression, zone = value, "UTC"
    if isinstance(value, dict):
        check_unknown_keys(problems, value, SCHEDULE_KEYS, "schedule")
        expression, zone = value.get("cron"), value.get("timezone", "UTC")
    if not isinstance(expression, str) or not isinstance(zone, str):
        problems.add(
            "schedule: expected a cron string or a map {cron: '...', timezone: 'Area/City'}"
        )
        return None, "UTC"
    try:
        Schedule.parse(expression, zone)
    except ValueError as exc:
        problems.add(f"schedule: {exc}")
        return None, "UTC"
    return expression, zone


def _job_dependencies(problems: Problems, value) -> tuple[JobDependency, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    deps: list[JobDependency] = []
    for item in items:
        if isinstance(item, str):
            deps.append(JobDependency(item))
            continue
        if not isinstance(item, dict):
            problems.add(
                "depends_on: expected a job id or a map {job: id, condition: ..., window: ...}"
            )
            continue
        check_unknown_keys(problems, item, DEPENDENCY_KEYS, "depends_on")
        if "job" in item and "job_id" in item:
            # like delay/delay_secs: two spellings of one key, and nothing says which wins
            problems.add("depends_on: job/job_id: give one of them, not both")
            continue
        job_id = item.get("job", item.get("job_id"))
        if not isinstance(job_id, str):
            problems.add("depends_on: 'job' is required and must be a job id")
            continue
        condition = read_choice(
            problems,
            DependencyCondition,
            item.get("condition"),
            "depends_on: condition",
            DependencyCondition.LAST_SUCCESS,
        )
        window = None
        if condition is DependencyCondition.WITHIN_WINDOW:
            if "window" not in item:
                problems.add(
                    f"depends_on: job {short_repr(job_id)}: condition within_window needs a "
                    "'window' like '1h'"
                )
            else:
                try:
                    window = parse_duration(item["window"])
                except ValueError as exc:
                    problems.add(f"depends_on: window: {exc}")
        elif "window" in item:
            problems.add(
                f"depends_on: job {short_repr(job_id)}: 'window' only applies to condition "
                "within_window"
            )
        deps.append(JobDependency(job_id, condition, window))
    return tuple(deps)


def parse_job(problems: Problems, data, source: str) -> Job | None:
    if not isinstance(data, dict):
        problems.add(f"expected a map with keys id, name and tasks, got {type(data).__name__}")
        return None
    job_id = read_identifier(problems, data)
    with problems.within(f"job '{job_id}'" if job_id else "job"):
        check_unknown_keys(problems, data, JOB_KEYS, "a job")
        name = read_string(problems, data, "name", required=True)
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            problems.add(f"enabled: expected true or false, got {short_repr(enabled)}")
        concurrency = data.get("max_concurrency")
        if concurrency is not None and (
            not isinstance(concurrency, int)
            or isinstance(concurrency, bool)
            or not 1 <= concurrency <= 10_000
        ):
            problems.add(
                f"max_concurrency: expected an integer >= 1 (at most 10000), "
                f"got {short_repr(concurrency)}"
            )
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
        description = read_string(problems, data, "description") or ""
        environment = read_environment(problems, data)
        depends_on = _job_dependencies(problems, data.get("depends_on"))
    if job_id is None or name is None or not tasks:
        return None
    return Job(
        id=job_id,
        name=name,
        tasks=tuple(tasks),
        description=description,
        schedule=schedule,
        timezone=zone,
        enabled=enabled is not False,
        max_concurrency=concurrency,
        config=config if isinstance(config, dict) else {},
        environment=environment,
        depends_on=depends_on,
        source=source,
    )


def job_files(jobs_dir: str) -> list[str]:
    return sorted(
        os.path.join(jobs_dir, name)
        for name in os.listdir(jobs_dir)
        if name.endswith((".yaml", ".yml")) and not name.startswith(".")
    )


def load_jobs(jobs_dir: str) -> dict[str, Job]:
    """Load and validate every job file in `jobs_dir`. Raises ConfigError listing every problem."""
    problems = Problems()
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
                problems.add(
                    f"job '{job.id}': duplicate job id (also defined in {jobs[job.id].source})"
                )
            elif job is not None:
                jobs[job.id] = job
    _check_job_graph(problems, jobs)
    if problems.lines:
        raise ConfigError(problems.lines)
    return dict(sorted(jobs.items()))


def _check_job_graph(problems: Problems, jobs: dict[str, Job]) -> None:
    for job in jobs.values():
        for dep in job.depends_on:
            with problems.within(f"{job.source}: job '{job.id}'"):
                if dep.job_id == job.id:
                    problems.add("depends_on: a job cannot depend on itself")
                elif dep.job_id not in jobs:
                    problems.add(
                        f"depends_on: unknown job {short_repr(dep.job_id)}: expected one of "
                        f"{_few(jobs) or 'no jobs defined'}"
                    )
    graph = {
        job.id: [d.job_id for d in job.depends_on if d.job_id in jobs and d.job_id != job.id]
        for job in jobs.values()
    }
    cycle = find_cycle(graph)
    if cycle:
        with problems.within(f"{jobs[cycle[0]].source}: job '{cycle[0]}'"):
            problems.add(f"depends_on: cycle between jobs: {_cycle_text(cycle)}")
