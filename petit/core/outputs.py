"""Task outputs, the GitHub Actions convention: an attempt writes `key=value` lines (and
`key<<DELIMITER` ... `DELIMITER` for a value of several lines) to the file named by PETIT_OUTPUT;
after a success the values are recorded on the task, and every task downstream sees them as
PETIT_OUT_<TASK>_<KEY>. Pure: bytes in, a dict or OutputError out."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from .text import short_repr

OUTPUT_LIMIT = 64 * 1024  # bytes of one task's output file
# Bytes of PETIT_OUT_* variables (names, values, "=" and the NUL of each) one task may receive:
# Linux's ARG_MAX is 2 MiB for argv and the whole environment together, and the inherited
# environment, the job's and the task's arguments need their share of it.
RECEIVE_LIMIT = 1024 * 1024
# Bytes of keys and values a run may store over all its tasks: they are part of the run's record,
# which the store rewrites whole at each change of the run (32 tasks at the full OUTPUT_LIMIT).
RUN_LIMIT = 2 * 1024 * 1024
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_PREFIX = "PETIT_OUT_"
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")
_WHERE = "PETIT_OUTPUT"


class OutputError(ValueError):
    """The output file is not what the convention says; the message names the line."""


def parse_outputs(data: bytes) -> dict[str, str]:
    """The values of an output file: the last value of a repeated key wins, blank lines are
    skipped. Raises OutputError for a file over OUTPUT_LIMIT bytes, one that is not UTF-8, a
    line that is neither `key=value` nor `key<<DELIMITER`, a bad key, or a heredoc never closed
    (named by its first line)."""
    if len(data) > OUTPUT_LIMIT:
        raise OutputError(f"{_WHERE}: more than the limit of {OUTPUT_LIMIT} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OutputError(f"{_WHERE} line {line}: not valid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise OutputError(f"{_WHERE} line {line}: contains a NUL byte, which no variable can hold")
    values: dict[str, str] = {}
    number = 0
    while number < len(lines):
        line = lines[number].removesuffix("\r")
        number += 1
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        heredoc_key, marker, delimiter = line.partition("<<")
        if marker and (not sep or len(heredoc_key) < len(key)):
            key = _key(heredoc_key, number)
            if not delimiter:
                raise OutputError(f"{_WHERE} line {number}: {key}<< needs a delimiter")
            start = number
            body: list[str] = []
            while number < len(lines) and lines[number].removesuffix("\r") != delimiter:
                body.append(lines[number].removesuffix("\r"))
                number += 1
            if number == len(lines):
                raise OutputError(
                    f"{_WHERE} line {start}: {key}<<{short_repr(delimiter, 40)} is never closed "
                    f"by a line {short_repr(delimiter, 40)}"
                )
            number += 1  # the delimiter line
            values[key] = "\n".join(body)
        elif sep:
            values[_key(key, number)] = value
        else:
            raise OutputError(
                f"{_WHERE} line {number}: expected key=value or key<<DELIMITER, got "
                f"{short_repr(line, 60)}"
            )
    return values


def _key(key: str, number: int) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise OutputError(
            f"{_WHERE} line {number}: {short_repr(key, 60)} is not a valid key: expected "
            "letters, digits and _, not starting with a digit"
        )
    return key


def task_part(task_id: str) -> str:
    """The TASK of PETIT_OUT_<TASK>_<KEY>: the task id with every character a variable name
    cannot hold replaced by "_" (so `a-b` and `a.b` collide: the loader refuses that)."""
    return _NOT_IN_NAME.sub("_", task_id)


def output_environment(outputs: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """PETIT_OUT_<TASK>_<KEY> for every value of every task in `outputs` (task id -> values).
    Raises OutputError when two (task, key) pairs give one name (task `a` key `b_c` and task
    `a_b` key `c`): which value wins must not depend on which task ended last; and when the
    variables total over RECEIVE_LIMIT bytes, which the task could not even be started with."""
    env: dict[str, str] = {}
    owner: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    for task_id, values in outputs.items():
        for key, value in values.items():
            name = f"{ENV_PREFIX}{task_part(task_id)}_{key}"
            if name in owner:  # named in sorted order: the same message whichever ended last
                (task_1, key_1), (task_2, key_2) = sorted([owner[name], (task_id, key)])
                problems.append(
                    f"{name} would be both task {task_1!r} key {key_1!r} and task {task_2!r} "
                    f"key {key_2!r}: rename a key (or a task)"
                )
            owner[name] = (task_id, key)
            env[name] = value
    total = sum(len(name.encode()) + len(value.encode()) + 2 for name, value in env.items())
    if total > RECEIVE_LIMIT:
        problems.append(
            f"the outputs of its upstream tasks total {total} bytes, over the "
            f"{_amount(RECEIVE_LIMIT)} a task may receive"
        )
    if problems:
        raise OutputError("; ".join(problems))
    return env


class RunOutputs:
    """The outputs of a run's completed tasks (task id -> values), at most RUN_LIMIT bytes of
    keys and values in all."""

    def __init__(self) -> None:
        self.by_task: dict[str, dict[str, str]] = {}
        self.size = 0

    def check(self, values: Mapping[str, str]) -> None:
        """OutputError when storing `values` too would take the run over RUN_LIMIT."""
        total = self.size + _stored_size(values)
        if total > RUN_LIMIT:
            raise OutputError(
                f"{_WHERE}: these outputs would bring the run's to {total} bytes, over the "
                f"{_amount(RUN_LIMIT)} a run may store"
            )

    def add(self, task_id: str, values: Mapping[str, str]) -> None:
        self.by_task[task_id] = dict(values)
        self.size += _stored_size(values)

    def of(self, task_ids: Collection[str]) -> dict[str, dict[str, str]]:
        """The outputs of those of `task_ids` that wrote some."""
        return {task_id: values for task_id, values in self.by_task.items() if task_id in task_ids}


def _stored_size(values: Mapping[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in values.items())


def _amount(size: int) -> str:
    return f"{size // 2**20} MiB" if size % 2**20 == 0 else f"{size} bytes"
