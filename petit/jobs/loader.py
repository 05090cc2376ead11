"""Job files -> validated model. Every problem is collected (not just the first), one line each:
`<file>: job '<id>': task '<id>': <field>: <what is wrong and what was expected>`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from ..core.dag import find_cycle
from ..core.model import (
    DependencyCondition,
    Job,
    JobDependency,
    OverlapPolicy,
    Task,
)
from ..core.schedule import parse_duration
from ..core.text import short_repr
from ..errors import ConfigError
from .defaults import JOB_KEYS as JOB_DEFAULT_KEYS
from .defaults import KEYS as DEFAULT_KEYS
from .defaults import TASK_KEYS, DefaultsSource, located, with_defaults
from .fields import (
    Problems,
    check_unknown_keys,
    read_choice,
    read_count,
    read_environment,
    read_flag,
    read_identifier,
    read_string,
)
from .hooks import HOOK_KEYS, read_hooks, read_notify
from .params import read_params
from .reader import UnreadableJobFile, read_job_file
from .tasks import check_task_graph, cycle_text, few, parse_task
from .timing import TIMING_KEYS, read_timing

MAX_TASKS = 10_000
JOB_KEYS = {
    "id",
    "name",
    "description",
    "enabled",
    "max_concurrency",
    "config",
    "environment",
    "params",
    "depends_on",
    "tasks",
    "notify",
    *HOOK_KEYS,
    *TIMING_KEYS,
}
DEPENDENCY_KEYS = {"job", "job_id", "condition", "window"}


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
        enabled = read_flag(problems, data, "enabled", True)
        concurrency = read_count(problems, data, "max_concurrency", 10_000, None)
        config = data.get("config", {})
        if not isinstance(config, dict):
            problems.add("config: expected a map")
        timing = read_timing(problems, data)
        if concurrency is None and timing.overlap in (OverlapPolicy.QUEUE, OverlapPolicy.REPLACE):
            concurrency = 1  # queueing or replacing behind no limit would never happen
        raw_tasks = data.get("tasks")
        tasks: list[Task] = []
        if not isinstance(raw_tasks, list) or not raw_tasks:
            problems.add("tasks: required: a non-empty list of tasks")
        elif len(raw_tasks) > MAX_TASKS:
            problems.add(f"tasks: {len(raw_tasks)} tasks is more than the limit of {MAX_TASKS}")
        else:
            parsed = [parse_task(problems, item, i) for i, item in enumerate(raw_tasks)]
            tasks = check_task_graph(problems, [t for t in parsed if t is not None])
        description = read_string(problems, data, "description") or ""
        environment = read_environment(problems, data)
        params = read_params(problems, data.get("params"), bool(timing.schedules))
        depends_on = _job_dependencies(problems, data.get("depends_on"))
        hooks = read_hooks(problems, data)
        notify = read_notify(problems, data)
    if job_id is None or name is None or not tasks:
        return None
    return Job(
        id=job_id,
        name=name,
        tasks=tuple(tasks),
        description=description,
        schedules=timing.schedules,
        enabled=enabled is not False,
        max_concurrency=concurrency,
        catchup=timing.catchup,
        catchup_window_secs=timing.catchup_window_secs,
        overlap=timing.overlap,
        max_queued=timing.max_queued,
        jitter_secs=timing.jitter_secs,
        timeout_secs=timing.timeout_secs,
        config=config if isinstance(config, dict) else {},
        environment=environment,
        params=params,
        depends_on=depends_on,
        hooks=hooks,
        notify=notify,
        source=source,
    )


def job_files(jobs_dir: str) -> list[str]:
    return sorted(
        os.path.join(jobs_dir, name)
        for name in os.listdir(jobs_dir)
        if name.endswith((".yaml", ".yml")) and not name.startswith(".")
    )


class _ProbeProblems(Problems):
    """The problems of the probe job that stands for the defaults, without the job and task
    labels parse_job adds: those name nothing a user wrote."""

    @contextmanager
    def within(self, label: str) -> Iterator[None]:
        with nullcontext() if _PROBE in label else super().within(label):
            yield


_PROBE = "petit.toml-defaults"


def _defaults_table(problems: Problems, source: DefaultsSource | None) -> dict:
    """petit.toml's [defaults], checked once by the readers of the job and task keys they fill
    (a probe job made of them); {} when absent or unusable, each problem on its file line."""
    table = source.defaults if source is not None else {}
    if not table:
        return {}
    found = _ProbeProblems()
    for key in table:
        if key not in DEFAULT_KEYS:
            import difflib  # only for a bad key: kept out of the worker's memory

            close = difflib.get_close_matches(key, DEFAULT_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            found.add(f"{key}: unknown key{hint}: expected one of {', '.join(DEFAULT_KEYS)}")
    task = {"id": _PROBE, "command": "true", **{k: table[k] for k in TASK_KEYS if k in table}}
    job = {"id": _PROBE, "name": _PROBE, "tasks": [task]}
    job.update({k: table[k] for k in JOB_DEFAULT_KEYS if k in table})
    parse_job(found, job, source.path)
    problems.lines += [located(source, line) for line in found.lines]
    return {} if found.lines else dict(table)


def check_defaults(source: DefaultsSource | None) -> None:
    """Raises ConfigError naming every problem of petit.toml's [defaults]."""
    problems = Problems()
    _defaults_table(problems, source)
    if problems.lines:
        raise ConfigError(problems.lines)


def load_jobs(jobs_dir: str, defaults: DefaultsSource | None = None) -> dict[str, Job]:
    """Load and validate every job file in `jobs_dir`, with petit.toml's [defaults] (when given)
    filled in where a job leaves them out. Raises ConfigError listing every problem."""
    problems = Problems()
    if not os.path.isdir(jobs_dir):
        raise ConfigError([f"{jobs_dir}: not a directory of job files"])
    try:
        paths = job_files(jobs_dir)
    except OSError as exc:
        raise ConfigError([f"{jobs_dir}: cannot list job files: {exc.strerror}"]) from exc
    table = _defaults_table(problems, defaults)
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
            job = parse_job(problems, with_defaults(data, table), path)
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
                        f"{few(jobs) or 'no jobs defined'}"
                    )
    graph = {
        job.id: [d.job_id for d in job.depends_on if d.job_id in jobs and d.job_id != job.id]
        for job in jobs.values()
    }
    cycle = find_cycle(graph)
    if cycle:
        with problems.within(f"{jobs[cycle[0]].source}: job '{cycle[0]}'"):
            problems.add(f"depends_on: cycle between jobs: {cycle_text(cycle)}")
