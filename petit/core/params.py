"""The params a job declares for its manual triggers, and the one resolver that turns what a
caller gave (JSON from the API, text from the command line) into every param's value, or into
InvalidParams naming every problem. Params are data: tasks see them only as PETIT_PARAM_<NAME>
environment variables, never templated into a command."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from ..errors import InvalidParams
from .text import short_repr

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_PREFIX = "PETIT_PARAM_"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_PARAMS = 100  # given to one trigger: the names cross process boundaries and reach the env
MAX_NAME_CHARS = 128
MAX_VALUE_CHARS = 64 * 1024
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
SECRET_MASK = "***"  # what petit shows in place of the value of a param declared secret
# What a number on a command line may look like: plain ASCII digits, as a shell script or a
# human writes them. Python's int() and float() also take "1_000", "\u0665" (an Arabic-Indic 5),
# "inf" and "nan", which no reader of the variable would expect.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class ParamType(str, Enum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"


@dataclass(frozen=True)
class ParamSpec:
    """One declared param. `default` is None when there is none: an optional param without a
    default has no value (and no variable) unless the trigger gives one."""

    name: str
    type: ParamType = ParamType.STRING
    default: str | int | float | bool | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    description: str = ""
    # its value is shown as "***" wherever petit shows a trigger's params (the audit log, run
    # views); the tasks still get it
    secret: bool = False


def _article(param_type: ParamType) -> str:
    return "an" if param_type is ParamType.INT else "a"


def convert(spec: ParamSpec, value: object, as_text: bool) -> str | int | float | bool:
    """`value` as the JSON-native value of `spec`'s type; ValueError with what was expected.
    Text (`as_text`) is parsed: "5" is an int, "yes" a bool. JSON must already have the type
    (an int is fine for a float; a bool is never a number). The error never quotes a secret
    param's value: it reaches logs and replies."""
    kind = spec.type
    shown = SECRET_MASK if spec.secret else short_repr(value, 60)
    expected = f"expected {_article(kind)} {kind.value}, got {shown}"
    if kind in (ParamType.STRING, ParamType.CHOICE):
        if not isinstance(value, str):
            raise ValueError(expected)
        _check_passable(value)
        if kind is ParamType.CHOICE and value not in spec.choices:
            raise ValueError(f"{shown} is not one of the choices {', '.join(spec.choices)}")
        return value
    if as_text and isinstance(value, str):
        return _parse_text(kind, value.strip(), expected)
    if kind is ParamType.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(expected)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(expected)
    if kind is ParamType.INT:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(expected)
        return _bounded(int(value), expected)
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        raise ValueError(expected) from None
    if not math.isfinite(number):
        raise ValueError(expected)
    return number


def _check_passable(text: str) -> None:
    """An environment variable cannot hold a NUL byte or a lone surrogate (from a JSON escape):
    refused here, or the task would fail to start instead of the trigger being refused."""
    if "\0" in text:
        raise ValueError("contains a NUL byte")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate, which a process cannot be given") from None


def _parse_text(kind: ParamType, text: str, expected: str) -> int | float | bool:
    if kind is ParamType.BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{expected} (true/false, yes/no, 1/0)")
    if kind is ParamType.INT:
        if not _INT_TEXT.fullmatch(text):
            raise ValueError(expected)
        return _bounded(int(text), expected)
    number = float(text) if _FLOAT_TEXT.fullmatch(text) else math.inf
    if not math.isfinite(number):  # "1e999" overflows to inf
        raise ValueError(expected)
    return number


def _bounded(number: int, expected: str) -> int:
    """An int is a 64-bit one, as most readers of the variable (and of the JSON) expect."""
    if not INT_MIN <= number <= INT_MAX:
        raise ValueError(f"{expected} (from {INT_MIN} to {INT_MAX})")
    return number


def check_given(given: object) -> dict[str, object]:
    """What a caller gave as params (JSON from the API) as a flat dict: an object of at most
    MAX_PARAMS names of at most MAX_NAME_CHARS characters -> a string, number or bool. Raises
    InvalidParams naming each problem, before the job's declared params are even looked at."""
    if not isinstance(given, dict):
        raise InvalidParams(
            [f"'params' must be a JSON object of name -> value, got {short_repr(given, 60)}"]
        )
    problems = []
    if len(given) > MAX_PARAMS:
        problems.append(f"{len(given)} params given: at most {MAX_PARAMS} are accepted")
    for name, value in list(given.items())[: MAX_PARAMS + 1]:  # a reply of bounded length
        if len(name) > MAX_NAME_CHARS:
            problems.append(
                f"param name {short_repr(name, 60)} is longer than {MAX_NAME_CHARS} characters"
            )
        elif not isinstance(value, (str, int, float, bool)):
            problems.append(
                f"{name!r}: expected a string, number or bool, got {short_repr(value, 60)}"
            )
        elif isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            problems.append(f"{name!r}: longer than {MAX_VALUE_CHARS} characters")
    if problems:
        raise InvalidParams(problems)
    return dict(given)


def resolve_params(
    specs: Sequence[ParamSpec], given: Mapping[str, object], as_text: bool
) -> dict[str, str | int | float | bool]:
    """Every declared param's value: what `given` says, else its default (an optional param
    with neither is left out). Raises InvalidParams listing every problem: unknown names, wrong
    types, a choice not among the choices, a missing required value."""
    by_name = {spec.name: spec for spec in specs}
    problems: list[str] = []
    declared = ", ".join(by_name) or "none"
    for name in given:
        if name not in by_name:
            problems.append(f"unknown param {short_repr(name, 60)}: declared params are {declared}")
    values: dict[str, str | int | float | bool] = {}
    for spec in specs:
        if spec.name in given:
            try:
                values[spec.name] = convert(spec, given[spec.name], as_text)
            except ValueError as exc:
                problems.append(f"{spec.name!r}: {exc}")
        elif spec.default is not None:
            values[spec.name] = spec.default
        elif spec.required:
            problems.append(f"{spec.name!r}: required param is missing")
    if problems:
        raise InvalidParams(problems)
    return values


def parse_assignments(words: Sequence[str]) -> dict[str, str]:
    """`--param K=V` words -> {K: V} (text, for resolve_params with as_text); InvalidParams
    naming each word without an `=`. A repeated name keeps its last value, like the shell."""
    given: dict[str, str] = {}
    problems = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            problems.append(f"--param {short_repr(word, 60)}: expected NAME=VALUE")
        else:
            given[name] = value
    if problems:
        raise InvalidParams(problems)
    return given


def param_text(value: object) -> str:
    """A value as a task's variable holds it: a bool is "true"/"false", as YAML spells it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def param_environment(values: Mapping[str, object]) -> dict[str, str]:
    """PETIT_PARAM_<NAME> for each value."""
    return {f"{ENV_PREFIX}{name}": param_text(value) for name, value in values.items()}


def secret_names(specs: Sequence[ParamSpec]) -> tuple[str, ...]:
    """The names of the params declared `secret: true`, as a run records them."""
    return tuple(spec.name for spec in specs if spec.secret)


def masked_params(values: Mapping[str, object], secret: Collection[str]) -> dict:
    """`values` as petit shows them: the value of each name in `secret` is SECRET_MASK."""
    return {name: SECRET_MASK if name in secret else value for name, value in values.items()}


def param_definition(spec: ParamSpec) -> dict:
    """A declared param as the job JSON shows it (a secret one's default masked: the JSON is
    served to every reader of the API)."""
    return {
        "name": spec.name,
        "type": spec.type.value,
        "default": SECRET_MASK if spec.secret and spec.default is not None else spec.default,
        "choices": list(spec.choices),
        "required": spec.required,
        "description": spec.description,
        "secret": spec.secret,
    }
