"""When a failed attempt is tried again, and after how long: pure decisions on plain values."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class RetryCondition(str, Enum):
    ALWAYS = "always"
    TRANSIENT_ONLY = "transient_only"  # only timeouts
    NEVER = "never"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 0  # retries; total attempts = max_attempts + 1
    delay_secs: float = 0.0
    condition: RetryCondition = RetryCondition.ALWAYS

    def should_retry(self, attempts_done: int, timed_out: bool) -> bool:
        """Whether a task whose attempt number `attempts_done` just failed gets another one.
        Only failures of the task itself are asked about: a cancelled attempt or a bug inside
        petit is never retried, whatever the policy says."""
        if attempts_done > self.max_attempts or self.condition is RetryCondition.NEVER:
            return False
        return self.condition is RetryCondition.ALWAYS or timed_out

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` before the next one starts."""
        return self.delay_secs
