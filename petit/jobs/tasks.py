"""One task of a job file -> a validated core.model.Task, and the checks on a job's task graph
(unknown and duplicate ids, cycles)."""

from __future__ import annotations

from collections import Counter

from ..core.dag import find_cycle, topological_order
from ..core.model import Condition, Task, TaskType
from ..core.outputs import task_part
from ..core.retry import RetryCondition, RetryPolicy
from ..core.text import duration_words, short_repr
from .fields import (
    Problems,
    check_unknown_keys,
    is_number,
    process_text_problem,
    read_choice,
    read_environment,
    read_flag,
    read_identifier,
    read_seconds,
    read_string,
)

MAX_ATTEMPTS = 100
# the keys read_command reads: a task's, and a hook's whole map
COMMAND_KEYS = {
    "type",
    "timeout_secs",
    "timeout",
    "environment",
    "working_dir",
    "command",
    "args",
    "script",
    "inline",
}
TASK_KEYS = {"id", "name", "depends_on", "condition", "retry", *COMMAND_KEYS}
TYPE_KEYS = {
    TaskType.COMMAND: {"command", "args"},
    TaskType.SHELL: {"script"},
    TaskType.PYTHON: {"script", "inline"},
}
RETRY_KEYS = {
    "max_attempts",
    "delay_secs",
    "delay",
    "condition",
    "backoff",
    "max_delay_secs",
    "max_delay",
    "jitter",
    "on_exit_codes",
    "retry_on_timeout",
}
MAX_BACKOFF = 100  # x100 per attempt reaches the 366-day ceiling of a delay in 6 steps


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
        backoff = value.get("backoff", 1.0)
        if not is_number(backoff) or not 1 <= backoff <= MAX_BACKOFF:
            problems.add(
                f"backoff: expected a number from 1 (a fixed delay) to {MAX_BACKOFF}, the "
                f"factor of each delay over the previous one, got {short_repr(backoff)}"
            )
            backoff = 1.0
        policy = RetryPolicy(
            max_attempts=attempts,
            delay_secs=read_seconds(problems, value, "delay_secs", "delay", allow_zero=True) or 0.0,
            condition=read_choice(
                problems, RetryCondition, value.get("condition"), "condition", RetryCondition.ALWAYS
            ),
            backoff=float(backoff),
            max_delay_secs=read_seconds(problems, value, "max_delay_secs", "max_delay"),
            jitter=read_flag(problems, value, "jitter", False),
            on_exit_codes=_exit_codes(problems, value),
            retry_on_timeout=read_flag(problems, value, "retry_on_timeout", True),
        )
        _check_retry_combination(problems, value, policy)
        return policy


def _exit_codes(problems: Problems, value: dict) -> frozenset[int]:
    codes = value.get("on_exit_codes")
    if codes is None:
        return frozenset()
    if not isinstance(codes, list) or not codes:
        problems.add(
            "on_exit_codes: expected a non-empty list of exit codes (integers 0 to 255), like "
            f"[75, 111], got {short_repr(codes)}"
        )
        return frozenset()
    good = [c for c in codes if _is_exit_code(c)]
    if len(good) < len(codes):
        bad = [c for c in codes if not _is_exit_code(c)]
        problems.add(
            f"on_exit_codes: {few(short_repr(c) for c in bad)}: an exit code is an integer "
            "from 0 to 255 (a death by signal has none)"
        )
    for dup in sorted(c for c, n in Counter(good).items() if n > 1):
        problems.add(f"on_exit_codes: {dup} is listed more than once")
    return frozenset(good)


def _is_exit_code(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def _check_retry_combination(problems: Problems, value: dict, policy: RetryPolicy) -> None:
    """Keys that contradict each other: the file says two things and petit would do only one."""
    condition = policy.condition
    if condition is RetryCondition.NEVER:
        for key in ("on_exit_codes", "retry_on_timeout"):
            if key in value:
                problems.add(
                    f"{key}: has no effect with condition never (nothing is retried): "
                    "remove one or the other"
                )
    elif condition is RetryCondition.TRANSIENT_ONLY:
        if "on_exit_codes" in value:
            problems.add(
                "on_exit_codes: condition transient_only retries timeouts only, never an exit "
                "code: remove the condition to retry these exit codes"
            )
        if value.get("retry_on_timeout") is False:
            problems.add(
                "retry_on_timeout: false with condition transient_only (timeouts only) would "
                "retry nothing: use condition never"
            )
    cap = policy.max_delay_secs
    if cap is not None and cap < policy.delay_secs:
        key = "max_delay" if "max_delay" in value else "max_delay_secs"
        problems.add(
            f"{key}: {duration_words(cap)} is shorter than the delay itself "
            f"({duration_words(policy.delay_secs)}): a cap must be at least the first delay"
        )


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


def parse_task(problems: Problems, data, index: int) -> Task | None:
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
        # Every field is checked before deciding whether a Task can be built, so one missing
        # key does not hide the other problems of the same task.
        command = read_command(problems, data)
        fields = dict(
            name=read_string(problems, data, "name"),
            depends_on=_task_depends(problems, data),
            condition=read_choice(
                problems, Condition, data.get("condition"), "condition", Condition.ALL_SUCCESS
            ),
            retry=_retry(problems, data.get("retry")),
        )
        if task_id is None:
            return None
        # Kept even when incomplete (the problems above already reject the file), so the tasks
        # that depend on it are not also told that it does not exist.
        fields["name"] = fields["name"] or task_id
        return Task(id=task_id, **command, **fields)


def read_command(problems: Problems, data: dict, default_timeout: float | None = None) -> dict:
    """What a task and a hook share, as Task fields: `type` and its keys (command/args,
    script, inline), timeout, environment and working_dir."""
    raw_type = data.get("type")
    task_type = (
        TaskType.COMMAND
        if raw_type is None
        else read_choice(problems, TaskType, raw_type, "type", None)
    )
    command = _task_body(problems, data, task_type)
    timeout = read_seconds(problems, data, "timeout_secs", "timeout")
    command.update(
        type=task_type or TaskType.COMMAND,
        timeout_secs=default_timeout if timeout is None else timeout,
        environment=read_environment(problems, data),
        working_dir=read_string(problems, data, "working_dir"),
    )
    unusable = command["working_dir"] is not None and process_text_problem(command["working_dir"])
    if unusable:
        problems.add(f"working_dir: {unusable}")
    return command


def check_task_graph(problems: Problems, tasks: list[Task]) -> list[Task]:
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            problems.add(f"task '{task.id}': duplicate task id")
        seen.add(task.id)
    _check_output_names(problems, tasks)
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
        problems.add(f"tasks: dependency cycle: {cycle_text(cycle)}")
        return tasks
    order = topological_order([t.id for t in tasks], graph)
    by_id = {t.id: t for t in tasks}
    return [by_id[task_id] for task_id in order]


def _check_output_names(problems: Problems, tasks: list[Task]) -> None:
    """Two tasks whose ids differ only outside [A-Za-z0-9_] would set the same
    PETIT_OUT_<TASK>_<KEY> variables downstream."""
    by_part: dict[str, str] = {}
    for task in tasks:
        other = by_part.setdefault(task_part(task.id), task.id)
        if other != task.id:
            problems.add(
                f"task '{task.id}': its id and task '{other}' both name outputs "
                f"PETIT_OUT_{task_part(task.id)}_<KEY>: rename one"
            )


def cycle_text(cycle: list[str]) -> str:
    """A cycle through 5,000 tasks (or 1,000 jobs) would make a line of 50 KB: keep both ends."""
    if len(cycle) <= 12:
        return " -> ".join(cycle)
    return f"{' -> '.join(cycle[:6])} -> ... ({len(cycle) - 11} more) -> {' -> '.join(cycle[-5:])}"


def few(names, limit: int = 10) -> str:
    names = list(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
