"""When a failed attempt is tried again, and after how long: pure decisions on plain values
(the random draw of a jitter is passed in, like the clock elsewhere)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .schedule import MAX_DURATION_SECS
from .text import duration_words

# No delay is longer than the longest duration a job file may write (366 days): a backoff of 10
# after 100 attempts would otherwise be 1e99 times the delay, which no timer can wait.
MAX_DELAY_SECS = float(MAX_DURATION_SECS)


class RetryCondition(str, Enum):
    ALWAYS = "always"
    TRANSIENT_ONLY = "transient_only"  # only timeouts
    NEVER = "never"


class FailedAttempt(Protocol):
    """What the policy reads of an attempt's result (the model's AttemptOutcome is one)."""

    exit_code: int | None
    error: str | None
    timed_out: bool


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 0  # retries; total attempts = max_attempts + 1
    delay_secs: float = 0.0  # after the first failed attempt
    condition: RetryCondition = RetryCondition.ALWAYS
    backoff: float = 1.0  # each delay is the previous one times this (1: a fixed delay)
    max_delay_secs: float | None = None  # the cap of each delay, before the jitter
    jitter: bool = False  # full jitter: a uniform draw in [0, the computed delay)
    on_exit_codes: frozenset[int] = frozenset()  # empty: any failure (per `condition`)
    retry_on_timeout: bool = True  # a timeout is retried even when on_exit_codes are given

    def should_retry(self, attempt: int, result: FailedAttempt) -> bool:
        """Whether a task whose attempt number `attempt` just ended with `result` gets another
        one. Only failures of the task itself are asked about: a cancelled attempt or a bug
        inside petit is never retried, whatever the policy says."""
        if result.error is None or attempt > self.max_attempts:
            return False
        if self.condition is RetryCondition.NEVER:
            return False
        if result.timed_out:
            return self.retry_on_timeout
        if self.condition is RetryCondition.TRANSIENT_ONLY:
            return False
        # a death by signal (or a command that never started) has no exit code to match
        return not self.on_exit_codes or result.exit_code in self.on_exit_codes

    def delay_for(self, attempt: int, fraction: float = 1.0) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first) before the
        next one: delay_secs * backoff ** (attempt - 1), at most max_delay_secs (and never more
        than 366 days), then times `fraction` (a draw in [0, 1)) when the policy jitters."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        cap = min(self.max_delay_secs or MAX_DELAY_SECS, MAX_DELAY_SECS)
        steps = attempt - 1
        if self.delay_secs <= 0:
            delay = 0.0
        elif self.backoff > 1 and steps * math.log(self.backoff) >= math.log(cap / self.delay_secs):
            delay = cap  # compared in logs: the power itself may be too large for a float
        else:
            delay = min(self.delay_secs * self.backoff**steps, cap)
        return delay * fraction if self.jitter else delay

    def describe(self) -> str:
        """The policy in words, as `petit list` prints it ('' for no retries): 'retry 3 times,
        after 1.0s then x2 up to 1m, with jitter, on exit codes 75, 111 or a timeout'."""
        if not self.max_attempts or self.condition is RetryCondition.NEVER:
            return ""
        times = "once" if self.max_attempts == 1 else f"{self.max_attempts} times"
        parts = [f"retry {times}"]
        if self.delay_secs:
            pace = duration_words(self.delay_secs)
            if self.backoff > 1:
                pace += f" then x{self.backoff:g}"
                if self.max_delay_secs is not None:
                    pace += f" up to {duration_words(self.max_delay_secs)}"
            parts.append(f"after {pace}")
        if self.jitter:
            parts.append("with jitter")
        parts.append(self._when())
        return ", ".join(parts)

    def _when(self) -> str:
        if self.condition is RetryCondition.TRANSIENT_ONLY:
            return "on a timeout only"
        if not self.on_exit_codes:
            return "on any failure" if self.retry_on_timeout else "on any failure but a timeout"
        codes = ", ".join(str(code) for code in sorted(self.on_exit_codes))
        plural = "s" if len(self.on_exit_codes) > 1 else ""
        return f"on exit code{plural} {codes}" + (" or a timeout" if self.retry_on_timeout else "")
