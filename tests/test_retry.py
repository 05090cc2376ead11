"""RetryPolicy: whether a failed attempt gets another one, and after how long; and the `retry:`
map of a job file that builds it, with one line per bad value."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from petit.core.retry import MAX_DELAY_SECS, RetryCondition, RetryPolicy
from petit.jobs.fields import Problems
from petit.jobs.tasks import _retry

ALWAYS, TRANSIENT, NEVER = (
    RetryCondition.ALWAYS,
    RetryCondition.TRANSIENT_ONLY,
    RetryCondition.NEVER,
)


def outcome(exit_code=None, timed_out=False, error="failed"):
    return SimpleNamespace(exit_code=exit_code, timed_out=timed_out, error=error)


EXIT_1, EXIT_75, TIMEOUT = outcome(1), outcome(75), outcome(timed_out=True)
SIGNAL = outcome(-9)  # how the local runner reports a death by SIGKILL
NOT_STARTED = outcome(None)  # command not found: no exit code at all
SUCCESS = outcome(0, error=None)


# -- should_retry ---------------------------------------------------------------------------------

SHOULD_RETRY = [
    # (id, policy, attempt, result, expected)
    ("none-configured", RetryPolicy(), 1, EXIT_1, False),
    ("always-first", RetryPolicy(2), 1, EXIT_1, True),
    ("always-last-retry", RetryPolicy(2), 2, TIMEOUT, True),
    ("always-exhausted", RetryPolicy(2), 3, EXIT_1, False),  # 1 + max_attempts attempts
    ("always-signal", RetryPolicy(2), 1, SIGNAL, True),
    ("always-not-started", RetryPolicy(2), 1, NOT_STARTED, True),
    ("success-is-never-retried", RetryPolicy(2), 1, SUCCESS, False),
    ("transient-exit", RetryPolicy(2, condition=TRANSIENT), 1, EXIT_1, False),
    ("transient-timeout", RetryPolicy(2, condition=TRANSIENT), 1, TIMEOUT, True),
    ("transient-exhausted", RetryPolicy(2, condition=TRANSIENT), 3, TIMEOUT, False),
    ("never-timeout", RetryPolicy(2, condition=NEVER), 1, TIMEOUT, False),
    ("never-exit", RetryPolicy(2, condition=NEVER), 1, EXIT_1, False),
    ("codes-listed", RetryPolicy(2, on_exit_codes=frozenset({75, 111})), 1, EXIT_75, True),
    ("codes-unlisted", RetryPolicy(2, on_exit_codes=frozenset({75, 111})), 1, EXIT_1, False),
    # a death by signal is not an exit code, even one whose number is listed
    ("codes-signal", RetryPolicy(2, on_exit_codes=frozenset({9})), 1, SIGNAL, False),
    ("codes-not-started", RetryPolicy(2, on_exit_codes=frozenset({75})), 1, NOT_STARTED, False),
    ("codes-timeout", RetryPolicy(2, on_exit_codes=frozenset({75})), 1, TIMEOUT, True),
    (
        "codes-timeout-off",
        RetryPolicy(2, on_exit_codes=frozenset({75}), retry_on_timeout=False),
        1,
        TIMEOUT,
        False,
    ),
    ("codes-exhausted", RetryPolicy(1, on_exit_codes=frozenset({75})), 2, EXIT_75, False),
    ("timeout-off", RetryPolicy(2, retry_on_timeout=False), 1, TIMEOUT, False),
    ("timeout-off-exit", RetryPolicy(2, retry_on_timeout=False), 1, EXIT_1, True),
]


@pytest.mark.parametrize(
    "policy, attempt, result, expected",
    [case[1:] for case in SHOULD_RETRY],
    ids=[case[0] for case in SHOULD_RETRY],
)
def test_should_retry(policy, attempt, result, expected):
    assert policy.should_retry(attempt, result) is expected


# -- delay_for ------------------------------------------------------------------------------------

DELAYS = [
    # (id, policy, attempt, fraction, seconds)
    ("fixed-1", RetryPolicy(9, 2.5), 1, 1.0, 2.5),
    ("fixed-7", RetryPolicy(9, 2.5), 7, 1.0, 2.5),
    ("no-delay", RetryPolicy(9, 0.0, backoff=10), 50, 1.0, 0.0),
    ("backoff-1", RetryPolicy(9, 0.2, backoff=2), 1, 1.0, 0.2),
    ("backoff-2", RetryPolicy(9, 0.2, backoff=2), 2, 1.0, 0.4),
    ("backoff-3", RetryPolicy(9, 0.2, backoff=2), 3, 1.0, 0.8),
    ("backoff-1.5", RetryPolicy(9, 10, backoff=1.5), 3, 1.0, 22.5),
    ("capped", RetryPolicy(9, 1, backoff=2, max_delay_secs=5), 4, 1.0, 5.0),
    ("under-the-cap", RetryPolicy(9, 1, backoff=2, max_delay_secs=5), 3, 1.0, 4.0),
    ("cap-without-backoff", RetryPolicy(9, 3, max_delay_secs=60), 5, 1.0, 3.0),
    # without jitter the draw is ignored
    ("no-jitter-ignores-the-draw", RetryPolicy(9, 4), 1, 0.25, 4.0),
    ("jitter", RetryPolicy(9, 4, jitter=True), 1, 0.25, 1.0),
    ("jitter-zero-draw", RetryPolicy(9, 4, jitter=True), 1, 0.0, 0.0),
    # the jitter is drawn in [0, the capped delay), never past the cap
    ("jitter-after-cap", RetryPolicy(9, 1, backoff=2, max_delay_secs=5, jitter=True), 9, 0.5, 2.5),
    # a backoff of 10 after 100 attempts is 1e99 times the delay: capped, not inf or an error
    ("overflow-capped", RetryPolicy(100, 1, backoff=10, max_delay_secs=60), 100, 1.0, 60.0),
    ("overflow-uncapped", RetryPolicy(100, 1, backoff=10), 100, 1.0, MAX_DELAY_SECS),
    ("overflow-past-floats", RetryPolicy(100, 1, backoff=100), 10_000, 1.0, MAX_DELAY_SECS),
    ("cap-above-the-ceiling", RetryPolicy(9, 1, backoff=100, max_delay_secs=1e12), 9, 1, 31622400),
]


@pytest.mark.parametrize(
    "policy, attempt, fraction, seconds",
    [case[1:] for case in DELAYS],
    ids=[case[0] for case in DELAYS],
)
def test_delay_for(policy, attempt, fraction, seconds):
    delay = policy.delay_for(attempt, fraction)
    assert math.isfinite(delay)
    assert delay == pytest.approx(seconds)


def test_attempt_numbers_start_at_one():
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy(2, 1).delay_for(0)


def test_the_default_policy_never_retries():
    assert RetryPolicy().should_retry(1, TIMEOUT) is False
    assert RetryPolicy().delay_for(1) == 0.0


DESCRIPTIONS = [
    (RetryPolicy(), ""),
    (RetryPolicy(3, condition=NEVER), ""),
    (RetryPolicy(1), "retry once, on any failure"),
    (RetryPolicy(2, 1.0), "retry 2 times, after 1.0s, on any failure"),
    (
        RetryPolicy(
            3, 1, backoff=2, max_delay_secs=60, jitter=True, on_exit_codes=frozenset({111, 75})
        ),
        "retry 3 times, after 1.0s then x2 up to 1m, with jitter, on exit codes 75, 111 or a "
        "timeout",
    ),
    (
        RetryPolicy(2, 30, on_exit_codes=frozenset({75}), retry_on_timeout=False),
        "retry 2 times, after 30s, on exit code 75",
    ),
    (RetryPolicy(2, retry_on_timeout=False), "retry 2 times, on any failure but a timeout"),
    (
        RetryPolicy(2, 5, backoff=1.5, condition=TRANSIENT),
        "retry 2 times, after 5.0s then x1.5, on a timeout only",
    ),
]


@pytest.mark.parametrize("policy, words", DESCRIPTIONS, ids=[w or "none" for _, w in DESCRIPTIONS])
def test_describe(policy, words):
    assert policy.describe() == words


# -- the `retry:` map of a job file ---------------------------------------------------------------


def parse(value) -> tuple[RetryPolicy, list[str]]:
    problems = Problems()
    policy = _retry(problems, value)
    return policy, problems.lines


GOOD = [
    ("none", None, RetryPolicy()),
    ("fixed", {"max_attempts": 2, "delay": "1s"}, RetryPolicy(2, 1.0)),
    (
        "everything",
        {
            "max_attempts": 5,
            "delay": "0.5s",
            "backoff": 2,
            "max_delay": "1m30s",
            "jitter": True,
            "on_exit_codes": [75, 111],
            "retry_on_timeout": False,
        },
        RetryPolicy(
            5,
            0.5,
            backoff=2.0,
            max_delay_secs=90.0,
            jitter=True,
            on_exit_codes=frozenset({75, 111}),
            retry_on_timeout=False,
        ),
    ),
    (
        "max-delay-secs",
        {"max_attempts": 1, "max_delay_secs": 2.5},
        RetryPolicy(1, max_delay_secs=2.5),
    ),
    ("fractional-backoff", {"max_attempts": 1, "backoff": 1.5}, RetryPolicy(1, backoff=1.5)),
    (
        "exit-code-0",
        {"max_attempts": 1, "on_exit_codes": [0, 255]},
        RetryPolicy(1, on_exit_codes=frozenset({0, 255})),
    ),
    (
        "transient-with-backoff",
        {"max_attempts": 1, "condition": "transient_only", "backoff": 3},
        RetryPolicy(1, condition=TRANSIENT, backoff=3.0),
    ),
]


@pytest.mark.parametrize(
    "value, policy", [case[1:] for case in GOOD], ids=[case[0] for case in GOOD]
)
def test_a_good_retry_map(value, policy):
    assert parse(value) == (policy, [])


BACKOFF = (
    "backoff: expected a number from 1 (a fixed delay) to 100, the factor of each delay over "
    "the previous one, got "
)
CODES_LIST = "expected a non-empty list of exit codes (integers 0 to 255), like [75, 111], got"
NOT_A_CODE = "an exit code is an integer from 0 to 255 (a death by signal has none)"
NO_EFFECT = "has no effect with condition never (nothing is retried): remove one or the other"
CAP = "a cap must be at least the first delay"
BAD = [
    ("backoff-below-1", {"backoff": 0.5}, BACKOFF + "0.5"),
    ("backoff-string", {"backoff": "2x"}, BACKOFF + "'2x'"),
    ("backoff-bool", {"backoff": True}, BACKOFF + "True"),
    ("backoff-inf", {"backoff": float("inf")}, BACKOFF + "inf"),
    ("backoff-nan", {"backoff": float("nan")}, BACKOFF + "nan"),
    ("backoff-huge", {"backoff": 1000}, BACKOFF + "1000"),
    (
        "max-delay-both",
        {"max_delay": "1m", "max_delay_secs": 60},
        "max_delay_secs/max_delay: give one of them, not both",
    ),
    (
        "max-delay-zero",
        {"max_delay": "0s"},
        "max_delay: invalid duration '0s': must be greater than zero",
    ),
    (
        "max-delay-negative",
        {"max_delay_secs": -1},
        "max_delay_secs: expected a number of seconds > 0 (at most 366 days), got -1",
    ),
    (
        "max-delay-typo",
        {"max_delay": "1m1h"},
        "max_delay: invalid duration '1m1h': unit 'h' after 'm': write the units largest first",
    ),
    (
        "max-delay-below-delay",
        {"delay": "10s", "max_delay": "5s"},
        f"max_delay: 5.0s is shorter than the delay itself (10s): {CAP}",
    ),
    (
        "max-delay-secs-below-delay",
        {"delay_secs": 10, "max_delay_secs": 5},
        f"max_delay_secs: 5.0s is shorter than the delay itself (10s): {CAP}",
    ),
    ("jitter-string", {"jitter": "yes"}, "jitter: expected true or false, got 'yes'"),
    ("jitter-number", {"jitter": 1}, "jitter: expected true or false, got 1"),
    (
        "timeout-flag-string",
        {"retry_on_timeout": "false"},
        "retry_on_timeout: expected true or false, got 'false'",
    ),
    ("codes-not-a-list", {"on_exit_codes": 75}, f"on_exit_codes: {CODES_LIST} 75"),
    ("codes-empty", {"on_exit_codes": []}, f"on_exit_codes: {CODES_LIST} []"),
    (
        "codes-out-of-range",
        {"on_exit_codes": [75, 256, -1]},
        f"on_exit_codes: 256, -1: {NOT_A_CODE}",
    ),
    (
        "codes-not-integers",
        {"on_exit_codes": ["75", 1.5, True, None]},
        f"on_exit_codes: '75', 1.5, True, None: {NOT_A_CODE}",
    ),
    (
        "codes-repeated",
        {"on_exit_codes": [75, 75, 1]},
        "on_exit_codes: 75 is listed more than once",
    ),
    (
        "never-with-codes",
        {"condition": "never", "on_exit_codes": [75]},
        f"on_exit_codes: {NO_EFFECT}",
    ),
    (
        "never-with-timeout-flag",
        {"condition": "never", "retry_on_timeout": True},
        f"retry_on_timeout: {NO_EFFECT}",
    ),
    (
        "transient-with-codes",
        {"condition": "transient_only", "on_exit_codes": [75]},
        "on_exit_codes: condition transient_only retries timeouts only, never an exit code: "
        "remove the condition to retry these exit codes",
    ),
    (
        "transient-without-timeouts",
        {"condition": "transient_only", "retry_on_timeout": False},
        "retry_on_timeout: false with condition transient_only (timeouts only) would retry "
        "nothing: use condition never",
    ),
    (
        "unknown-key",
        {"backof": 2},
        "unknown key 'backof' in retry: expected one of backoff, condition, delay, delay_secs, "
        "jitter, max_attempts, max_delay, max_delay_secs, on_exit_codes, retry_on_timeout",
    ),
]


@pytest.mark.parametrize("value, line", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_retry_value_is_one_line_naming_the_field(value, line):
    _, lines = parse({"max_attempts": 2, **value})
    assert lines == [f"retry: {line}"]


def test_every_bad_retry_value_is_reported_at_once():
    _, lines = parse({"backoff": 0, "jitter": "no", "on_exit_codes": [300], "max_delay": "x"})
    assert [line.split(":")[1].strip() for line in lines] == [
        "backoff",
        "max_delay",
        "jitter",
        "on_exit_codes",
    ]


def test_a_huge_list_of_bad_exit_codes_is_one_short_line():
    _, lines = parse({"on_exit_codes": list(range(1000, 200_000))})
    assert len(lines) == 1 and "(198990 more)" in lines[0] and len(lines[0]) < 300
