"""Params on manual trigger, without processes: the resolver (core/params.py) as tables of what
a caller gives and what a run gets or which problems are named, the `params:` job key
(jobs/params.py), and the variables a task sees (build_env)."""

from __future__ import annotations

import pytest
from test_config import errors_for, job, load_one, only_error, write

from petit.core.model import Job, Task
from petit.core.params import (
    ParamSpec,
    ParamType,
    check_given,
    convert,
    param_environment,
    parse_assignments,
    resolve_params,
)
from petit.core.text import short_repr
from petit.errors import BadRequest, InvalidParams, from_wire
from petit.execution.runners.base import build_env

SPECS = (
    ParamSpec("name", ParamType.STRING, "world"),
    ParamSpec("count", ParamType.INT, 1),
    ParamSpec("ratio", ParamType.FLOAT, 0.5),
    ParamSpec("dry_run", ParamType.BOOL, False),
    ParamSpec("env", ParamType.CHOICE, None, ("dev", "prod"), required=True),
    ParamSpec("note", ParamType.STRING),  # optional, no default
)
DEFAULTS = {"name": "world", "count": 1, "ratio": 0.5, "dry_run": False}


@pytest.mark.parametrize(
    "given, as_text, expected",
    [
        ({"env": "dev"}, False, {**DEFAULTS, "env": "dev"}),
        ({"env": "prod", "note": "hi"}, False, {**DEFAULTS, "env": "prod", "note": "hi"}),
        (
            {"env": "dev", "count": 5, "ratio": 2},
            False,
            {**DEFAULTS, "env": "dev", "count": 5, "ratio": 2.0},
        ),
        ({"env": "dev", "count": 5.0}, False, {**DEFAULTS, "env": "dev", "count": 5}),
        ({"env": "dev", "dry_run": True}, False, {**DEFAULTS, "env": "dev", "dry_run": True}),
        (
            {"env": "dev", "count": "5", "ratio": "1e-3"},
            True,
            {**DEFAULTS, "env": "dev", "count": 5, "ratio": 0.001},
        ),
        ({"env": "dev", "dry_run": "yes"}, True, {**DEFAULTS, "env": "dev", "dry_run": True}),
        ({"env": "dev", "dry_run": "0"}, True, {**DEFAULTS, "env": "dev", "dry_run": False}),
        ({"env": "dev", "dry_run": "TRUE"}, True, {**DEFAULTS, "env": "dev", "dry_run": True}),
        ({"env": "dev", "name": "5"}, True, {**DEFAULTS, "env": "dev", "name": "5"}),
        (
            {"env": "dev", "name": "$(rm -rf ~); reboot"},
            False,
            {**DEFAULTS, "env": "dev", "name": "$(rm -rf ~); reboot"},
        ),
    ],
    ids=[
        "defaults-filled-in",
        "optional-given",
        "int-for-a-float",
        "integral-float-for-an-int",
        "json-bool",
        "text-numbers",
        "text-yes",
        "text-0",
        "text-bool-any-case",
        "text-string-stays-text",
        "shell-is-just-text",
    ],
)
def test_resolve_params_values(given, as_text, expected):
    assert resolve_params(SPECS, given, as_text) == expected


@pytest.mark.parametrize(
    "given, as_text, problems",
    [
        ({}, False, ["'env': required param is missing"]),
        (
            {"env": "dev", "cont": 1},
            False,
            ["unknown param 'cont': declared params are name, count, ratio, dry_run, env, note"],
        ),
        ({"env": "dev", "count": "abc"}, True, ["'count': expected an int, got 'abc'"]),
        ({"env": "dev", "count": "5"}, False, ["'count': expected an int, got '5'"]),
        ({"env": "dev", "count": 1.5}, False, ["'count': expected an int, got 1.5"]),
        ({"env": "dev", "count": True}, False, ["'count': expected an int, got True"]),
        ({"env": "dev", "ratio": False}, False, ["'ratio': expected a float, got False"]),
        ({"env": "dev", "ratio": "nan"}, True, ["'ratio': expected a float, got 'nan'"]),
        ({"env": "dev", "dry_run": 1}, False, ["'dry_run': expected a bool, got 1"]),
        (
            {"env": "dev", "dry_run": "maybe"},
            True,
            ["'dry_run': expected a bool, got 'maybe' (true/false, yes/no, 1/0)"],
        ),
        ({"env": "staging"}, False, ["'env': 'staging' is not one of the choices dev, prod"]),
        ({"env": "dev", "name": 5}, False, ["'name': expected a string, got 5"]),
        ({"env": "dev", "name": "a\0b"}, False, ["'name': contains a NUL byte"]),
        (
            {"env": "dev", "count": 10**400},
            False,
            [
                "'count': expected an int, got <integer of 1329 bits> (from "
                "-9223372036854775808 to 9223372036854775807)"
            ],
        ),
        (
            {"x": 1, "count": "abc"},
            True,
            [
                "unknown param 'x': declared params are name, count, ratio, dry_run, env, note",
                "'count': expected an int, got 'abc'",
                "'env': required param is missing",
            ],
        ),
    ],
    ids=[
        "missing-required",
        "unknown-name-lists-the-declared",
        "text-not-an-int",
        "json-string-for-an-int",
        "fraction-for-an-int",
        "bool-is-not-an-int",
        "bool-is-not-a-float",
        "nan-is-not-a-float",
        "number-is-not-a-bool",
        "text-not-a-bool",
        "not-a-choice",
        "number-for-a-string",
        "nul-byte",
        "huge-int-bounded-message",
        "every-problem-at-once",
    ],
)
def test_resolve_params_names_every_problem(given, as_text, problems):
    with pytest.raises(InvalidParams) as info:
        resolve_params(SPECS, given, as_text)
    assert info.value.problems == problems
    assert info.value.message == "; ".join(problems)
    assert (info.value.http_status, info.value.exit_code) == (400, 1)
    assert isinstance(info.value, BadRequest)


def test_invalid_params_cross_the_wire_with_every_problem():
    error = InvalidParams(["'a': expected an int, got 'x'", "'b': required param is missing"])
    again = from_wire(error.to_wire())
    assert isinstance(again, InvalidParams) and again.problems == error.problems
    assert error.to_wire()["code"] == "INVALID_PARAMS"


@pytest.mark.parametrize(
    "text, expected",
    [("+5", 5), ("-12", -12), (" 7 ", 7), ("007", 7)],
)
def test_text_ints_are_plain_ascii_digits(text, expected):
    assert convert(ParamSpec("n", ParamType.INT), text, as_text=True) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("1.5", 1.5), (".5", 0.5), ("5.", 5.0), ("-3", -3.0), ("1e3", 1000.0), ("+2.5E-3", 0.0025)],
)
def test_text_floats_are_plain_decimals_or_exponents(text, expected):
    assert convert(ParamSpec("x", ParamType.FLOAT), text, as_text=True) == expected


@pytest.mark.parametrize(
    "kind, text",
    [
        (ParamType.INT, "1_000"),
        (ParamType.INT, "\u0665"),  # ARABIC-INDIC DIGIT FIVE, which int() takes for 5
        (ParamType.INT, "\uff11\uff12"),  # fullwidth 12
        (ParamType.INT, "0x10"),
        (ParamType.INT, "1.0"),
        (ParamType.FLOAT, "1_000.5"),
        (ParamType.FLOAT, "\u0663.\u0665"),
        (ParamType.FLOAT, "inf"),
        (ParamType.FLOAT, "-Infinity"),
        (ParamType.FLOAT, "nan"),
        (ParamType.FLOAT, "1e999"),
        (ParamType.FLOAT, "0x1p3"),
        (ParamType.FLOAT, "."),
        (ParamType.FLOAT, "1e"),
    ],
)
def test_text_numbers_python_takes_but_people_do_not_write_are_refused(kind, text):
    with pytest.raises(ValueError) as info:
        convert(ParamSpec("n", kind), text, as_text=True)
    assert str(info.value).startswith(
        f"expected {'an int' if kind is ParamType.INT else 'a float'}"
    )


@pytest.mark.parametrize(
    "given, problems",
    [
        ("a=1", ["'params' must be a JSON object of name -> value, got 'a=1'"]),
        (None, ["'params' must be a JSON object of name -> value, got None"]),
        (
            {"a": [1], "b": None},
            [
                "'a': expected a string, number or bool, got [1]",
                "'b': expected a string, number or bool, got None",
            ],
        ),
        ({"x" * 129: 1}, [f"param name {short_repr('x' * 129, 60)} is longer than 128 characters"]),
        ({"a": "x" * (64 * 1024 + 1)}, ["'a': longer than 65536 characters"]),
        ({f"p{n}": n for n in range(101)}, ["101 params given: at most 100 are accepted"]),
    ],
    ids=["not-an-object", "null", "nested-and-null", "long-name", "long-value", "too-many"],
)
def test_check_given_names_every_problem_of_shape(given, problems):
    with pytest.raises(InvalidParams) as info:
        check_given(given)
    assert info.value.problems == problems


def test_check_given_keeps_a_flat_object():
    given = {"x" * 128: "v", "n": 5, "f": 1.5, "b": False}
    assert check_given(given) == given


def test_parse_assignments():
    assert parse_assignments(["a=1", "b=x=y", "c=", "a=2"]) == {"a": "2", "b": "x=y", "c": ""}
    with pytest.raises(InvalidParams) as info:
        parse_assignments(["ok=1", "novalue", "=5"])
    assert info.value.problems == [
        "--param 'novalue': expected NAME=VALUE",
        "--param '=5': expected NAME=VALUE",
    ]


def test_params_reach_the_task_only_as_variables():
    values = {"name": "$(touch X); reboot", "dry_run": True, "count": 3}
    task = Task(id="t", name="t", command="echo", args=("$PETIT_PARAM_name",))
    env = build_env(Job(id="j", name="j", tasks=(task,)), task, "j-1", 1, params=values)
    assert env["PETIT_PARAM_name"] == "$(touch X); reboot"
    assert env["PETIT_PARAM_dry_run"] == "true" and env["PETIT_PARAM_count"] == "3"
    assert param_environment({"flag": False}) == {"PETIT_PARAM_flag": "false"}
    assert task.args == ("$PETIT_PARAM_name",)  # nothing is templated


# -- the job key ----------------------------------------------------------------------------------


def test_params_key_is_parsed_into_specs(tmp_path):
    loaded = load_one(
        tmp_path,
        job(
            schedule="@daily",
            params={
                "mode": {"type": "choice", "choices": ["full", "delta"], "default": "full"},
                "count": {"type": "int", "default": 3, "description": "how many"},
                "ratio": {"type": "float", "default": 1},
                "target": {},  # a string, optional, no default
            },
        ),
    )
    assert loaded.params == (
        ParamSpec("mode", ParamType.CHOICE, "full", ("full", "delta")),
        ParamSpec("count", ParamType.INT, 3, description="how many"),
        ParamSpec("ratio", ParamType.FLOAT, 1.0),
        ParamSpec("target", ParamType.STRING),
    )


def test_a_manual_job_may_require_a_param(tmp_path):
    loaded = load_one(tmp_path, job(params={"who": {"required": True, "type": None}}))
    assert loaded.params == (ParamSpec("who", required=True),)  # a null type is a string


@pytest.mark.parametrize(
    "params, fragment",
    [
        ([1], "params: expected a map of name: {type: ..., default: ...}, got list"),
        ({"1x": {}}, "params: '1x' is not a valid param name"),
        ({"a-b": {}}, "params: 'a-b' is not a valid param name"),
        ({"x": "int"}, "params: x: expected a map with choices, default, description"),
        ({"x": {"type": "number"}}, "params: x: type: 'number' is not valid: expected one of"),
        ({"x": {"typo": 1}}, "params: x: unknown key 'typo' in a param"),
        ({"x": {"type": "int", "default": "5"}}, "params: x: default: expected an int, got '5'"),
        ({"x": {"type": "bool", "default": 1}}, "params: x: default: expected a bool, got 1"),
        ({"x": {"type": "choice"}}, "params: x: choices: type choice needs a non-empty list"),
        (
            {"x": {"type": "choice", "choices": ["a"], "default": "b"}},
            "params: x: default: 'b' is not one of the choices a",
        ),
        ({"x": {"choices": ["a"]}}, "params: x: choices: only for type choice, not string"),
        ({"x": {"required": "yes"}}, "params: x: required: expected true or false, got 'yes'"),
        (
            {"x": {"required": True, "default": "a"}},
            "params: x: required: a required param cannot have a default",
        ),
    ],
    ids=[
        "not-a-map",
        "name-starts-with-a-digit",
        "name-with-a-dash",
        "param-not-a-map",
        "unknown-type",
        "unknown-key",
        "default-of-another-type",
        "bool-default-not-a-number",
        "choice-without-choices",
        "default-not-a-choice",
        "choices-on-a-string",
        "required-not-a-bool",
        "required-and-default",
    ],
)
def test_params_key_errors(tmp_path, params, fragment):
    error, path = only_error(tmp_path, job(params=params))
    assert error.startswith(f"{path}: job 'demo': "), error
    assert fragment in error, error


def test_a_scheduled_job_cannot_require_a_param(tmp_path):
    error, path = only_error(tmp_path, job(schedule="@daily", params={"who": {"required": True}}))
    assert error == (
        f"{path}: job 'demo': params: who: required: the job has a schedule, and its scheduled "
        "runs (which use the defaults) could never start: give a default instead"
    )


def test_every_params_problem_is_reported_in_one_pass(tmp_path):
    write(tmp_path, job(params={"a": {"type": "int", "default": "x"}, "b": {"type": "nope"}}))
    errors = errors_for(tmp_path)
    assert len(errors) == 2 and "a: default" in errors[0] and "b: type" in errors[1]


def test_a_run_keeps_its_params_in_the_store(tmp_path):
    from petit.core.model import Trigger
    from petit.storage.store import Store

    store = Store(str(tmp_path / "petit.db"))
    values = {"name": "x", "count": 5, "ratio": 0.5, "dry_run": True}
    run = store.create_run("j", ["t"], Trigger.MANUAL, queued=True, params=values)
    assert run.params == values
    again = Store(str(tmp_path / "petit.db")).get_run(run.id)  # as a restarted worker reads it
    assert again.params == values and again.status.value == "queued"
    assert store.create_run("j", ["t"], Trigger.SCHEDULE).params == {}
