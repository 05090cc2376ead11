"""The request/reply plumbing shared by the supervisor, the API and petit ctl."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from petit.errors import BadRequest, Conflict, InvalidParams
from petit.ipc.commands import ok_reply, validate_request
from petit.ipc.instance import hold_instance_lock
from petit.ipc.queues import ReplyMatcher


def test_a_reply_to_a_caller_that_gave_up_is_dropped_quietly():
    # the API's deadline cancels the future while the reply is on its way: the thread that
    # delivers replies must survive it, or every later command gets 503
    matcher = ReplyMatcher()
    future = matcher.expect("late")
    future.cancel()
    matcher.resolve(ok_reply("late", {"run_id": "job-1"}))
    fresh = matcher.expect("next")
    matcher.resolve(ok_reply("next", {"run_id": "job-2"}))
    assert fresh.result(timeout=1)["result"] == {"run_id": "job-2"}


def test_fail_all_answers_waiting_callers_and_skips_cancelled_ones():
    matcher = ReplyMatcher()
    waiting, gone = matcher.expect("a"), matcher.expect("b")
    gone.cancel()
    matcher.fail_all("the scheduler process exited")
    assert waiting.result(timeout=1)["code"] == "SERVICE_UNAVAILABLE"


def test_only_declared_arguments_are_forwarded():
    message = validate_request({"id": "1", "cmd": "trigger", "args": {"job_id": "a", "x": [[[]]]}})
    # the declared defaults
    assert message["args"] == {"job_id": "a", "queue": False, "params": None, "param_words": None}
    with pytest.raises(BadRequest):
        validate_request({"id": "1", "cmd": "trigger", "args": {}})
    with pytest.raises(BadRequest, match="'queue' must be true or false"):
        validate_request({"id": "1", "cmd": "trigger", "args": {"job_id": "a", "queue": "yes"}})


@pytest.mark.parametrize(
    "params, problem",
    [
        ({"a": [1]}, "'a': expected a string, number or bool, got [1]"),
        ({"a": {"b": 1}}, "'a': expected a string, number or bool, got {'b': 1}"),
        ({"a": None}, "'a': expected a string, number or bool, got None"),
        ([1], "'params' must be a JSON object of name -> value, got [1]"),
        ({str(i): 1 for i in range(101)}, "101 params given: at most 100 are accepted"),
        ({"a": "x" * 70_000}, "'a': longer than 65536 characters"),
    ],
    ids=["nested-list", "nested-object", "null-value", "not-an-object", "too-many", "too-long"],
)
def test_trigger_params_are_flat_and_bounded(params, problem):
    # the same check as the API's body: every problem named, as INVALID_PARAMS
    with pytest.raises(InvalidParams) as caught:
        validate_request({"cmd": "trigger", "args": {"job_id": "a", "params": params}})
    assert caught.value.problems == [problem]


@pytest.mark.parametrize(
    "words",
    ["a=1", [1], ["a=1"] * 101],
    ids=["words-not-a-list", "word-not-a-string", "too-many-words"],
)
def test_trigger_param_words_are_a_bounded_list_of_strings(words):
    with pytest.raises(BadRequest, match="must be a list of strings"):
        validate_request({"cmd": "trigger", "args": {"job_id": "a", "param_words": words}})


def test_trigger_params_pass_through():
    args = {"job_id": "a", "params": {"n": 5, "f": 1.5, "b": True, "s": "x"}}
    assert validate_request({"cmd": "trigger", "args": args})["args"]["params"] == args["params"]
    words = {"job_id": "a", "param_words": ["n=5"]}
    assert validate_request({"cmd": "trigger", "args": words})["args"]["param_words"] == ["n=5"]


def test_the_instance_lock_admits_one_holder_per_db(tmp_path):
    db = str(tmp_path / "petit.db")
    fd = hold_instance_lock(db)
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from petit.ipc.instance import hold_instance_lock;hold_instance_lock({db!r})",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert other.returncode != 0 and "already running jobs" in other.stderr
        with pytest.raises(Conflict):  # flock excludes other descriptors in this process too
            hold_instance_lock(db)
    finally:
        os.close(fd)
    os.close(hold_instance_lock(db))  # free again once released
