"""Task outputs, the GitHub Actions convention: an attempt writes `key=value` lines (and
`key<<DELIMITER` ... `DELIMITER` for a value of several lines) to the file named by PETIT_OUTPUT;
after a success the values are recorded on the task, and every task downstream sees them as
PETIT_OUT_<TASK>_<KEY>. Pure: bytes in, a dict or OutputError out."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .text import short_repr

OUTPUT_LIMIT = 64 * 1024  # bytes of one task's output file
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
    """PETIT_OUT_<TASK>_<KEY> for every value of every task in `outputs` (task id -> values)."""
    return {
        f"{ENV_PREFIX}{task_part(task_id)}_{key}": value
        for task_id, values in outputs.items()
        for key, value in values.items()
    }
