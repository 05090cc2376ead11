"""RetryPolicy: whether a failed attempt gets another one, and after how long."""

from __future__ import annotations

import pytest

from petit.core.retry import RetryCondition, RetryPolicy

ALWAYS, TRANSIENT, NEVER = (
    RetryCondition.ALWAYS,
    RetryCondition.TRANSIENT_ONLY,
    RetryCondition.NEVER,
)


@pytest.mark.parametrize(
    "max_attempts, condition, attempts_done, timed_out, expected",
    [
        (0, ALWAYS, 1, False, False),  # no retries configured
        (2, ALWAYS, 1, False, True),
        (2, ALWAYS, 2, True, True),
        (2, ALWAYS, 3, False, False),  # 1 + max_attempts attempts, then no more
        (2, TRANSIENT, 1, False, False),  # an exit code is not transient
        (2, TRANSIENT, 1, True, True),  # a timeout is
        (2, TRANSIENT, 3, True, False),
        (2, NEVER, 1, True, False),
        (2, NEVER, 1, False, False),
    ],
    ids=[
        "none-configured",
        "always-first",
        "always-last-retry",
        "always-exhausted",
        "transient-exit",
        "transient-timeout",
        "transient-exhausted",
        "never-timeout",
        "never-exit",
    ],
)
def test_should_retry(max_attempts, condition, attempts_done, timed_out, expected):
    policy = RetryPolicy(max_attempts=max_attempts, delay_secs=1.0, condition=condition)
    assert policy.should_retry(attempts_done, timed_out) is expected


@pytest.mark.parametrize("attempt", [1, 2, 7])
def test_the_delay_is_the_same_after_every_attempt(attempt):
    assert RetryPolicy(max_attempts=9, delay_secs=2.5).delay_for(attempt) == 2.5


def test_the_default_policy_never_retries():
    assert RetryPolicy().should_retry(1, True) is False
    assert RetryPolicy().delay_for(1) == 0.0
