"""The field checks every part of a job file shares: a problem collector that prefixes each line
with where it was found, and validators for strings, ids, durations, choices and environments.
Each validator records what is wrong and returns a usable default, so one pass finds every error."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.schedule import parse_duration
from ..core.text import clip, one_line, short_repr

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class Problems:
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
        self.lines.append(": ".join([*self._where, clip(one_line(message))]))


def read_choice(problems: Problems, enum_cls, value, field: str, default):
    if value is None:
        return default
    # Only strings reach the enum: on a failed lookup it formats the full repr of the value
    # into its own ValueError, and the full repr of an alias bomb never ends.
    if isinstance(value, str) and value in {e.value for e in enum_cls}:
        return enum_cls(value)
    allowed = ", ".join(e.value for e in enum_cls)
    problems.add(f"{field}: {short_repr(value)} is not valid: expected one of {allowed}")
    return default


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_seconds(
    problems: Problems, data: dict, secs_key: str, text_key: str, allow_zero: bool = False
) -> float | None:
    """`<x>_secs: 30` or `<x>: "30s"`, not both; positive (or zero where allowed) and bounded."""
    if secs_key in data and text_key in data:
        problems.add(f"{secs_key}/{text_key}: give one of them, not both")
        return None
    if secs_key in data:
        value = data[secs_key]
        too_small = value < 0 or (value == 0 and not allow_zero) if is_number(value) else True
        if too_small or value > 366 * 86400:
            bound = ">= 0" if allow_zero else "> 0"
            problems.add(
                f"{secs_key}: expected a number of seconds {bound} (at most 366 days), "
                f"got {short_repr(value)}"
            )
            return None
        return float(value)
    if text_key in data:
        try:
            return parse_duration(data[text_key], allow_zero=allow_zero)
        except ValueError as exc:
            problems.add(f"{text_key}: {exc}")
    return None


def read_count(problems: Problems, data: dict, key: str, most: int, default: int | None):
    """`key: N`, an integer from 1 to `most`; `default` when absent (or null, where the default
    is "no limit") or unusable."""
    value = data.get(key)
    if key not in data or (value is None and default is None):
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        problems.add(f"{key}: expected an integer >= 1 (at most {most}), got {short_repr(value)}")
        return default
    return value


def read_flag(problems: Problems, data: dict, key: str, default: bool) -> bool:
    """`key: true` or `key: false`; `default` when absent (or unusable: a string "yes" is not
    silently read as either)."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        problems.add(f"{key}: expected true or false, got {short_repr(value)}")
        return default
    return value


def read_string(problems: Problems, data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            problems.add(f"{key}: required key is missing")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        problems.add(
            f"{key}: expected a non-empty string, got {type(value).__name__} {short_repr(value)}"
        )
        return None
    return value


def read_identifier(problems: Problems, data: dict, key: str = "id") -> str | None:
    value = read_string(problems, data, key, required=True)
    if value is not None and (not ID_PATTERN.fullmatch(value) or set(value) == {"."}):
        problems.add(
            f"{key}: {short_repr(value)} is not a valid id: expected 1-128 characters of "
            "A-Z a-z 0-9 _ . - (and not only dots)"
        )
        return None
    return value


def read_environment(problems: Problems, data: dict) -> dict[str, str]:
    value = data.get("environment")
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(f"environment: expected a map of NAME: value, got {type(value).__name__}")
        return {}
    env: dict[str, str] = {}
    for name, item in value.items():
        text = (
            None
            if isinstance(item, (dict, list, set, bytes)) or item is None
            else scalar_text(item)
        )
        unusable = text is not None and process_text_problem(text)
        if not isinstance(name, str) or not name or "=" in name or process_text_problem(name):
            problems.add(f"environment: {short_repr(name)} is not a valid variable name")
        elif text is None:
            problems.add(
                f"environment: {short_repr(name)}: expected a string or number, got "
                f"{type(item).__name__}{' too large to print' if isinstance(item, int) else ''}"
            )
        elif unusable:
            problems.add(f"environment: {short_repr(name)}: value {unusable}")
        else:
            env[name] = text.lower() if isinstance(item, bool) else text
    return env


def scalar_text(value) -> str | None:
    """str() of a YAML scalar; None for an int Python refuses to print (over 4300 digits)."""
    try:
        return str(value)
    except ValueError:
        return None


def process_text_problem(text: str) -> str | None:
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


def check_unknown_keys(problems: Problems, data: dict, allowed: set[str], what: str) -> None:
    for key in data:
        if key not in allowed:
            problems.add(
                f"unknown key {short_repr(key)} in {what}: expected one of "
                f"{', '.join(sorted(allowed))}"
            )
