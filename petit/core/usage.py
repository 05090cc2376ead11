"""What attempts used (CPU seconds, peak memory) added up: over a task's attempts, over a
run's tasks. The local runner measures (execution/runners/usage.py); this only adds."""

from __future__ import annotations

# what an attempt used, as its AttemptOutcome and its attempt_history entry name it
USAGE_KEYS = ("cpu_secs", "max_rss_bytes")


def usage_totals(cpu: list[float | None], rss: list[int | None]) -> tuple[float | None, int | None]:
    """CPU seconds summed and the largest peak, over what was measured (None: nothing was)."""
    cpu_measured = [secs for secs in cpu if secs is not None]
    rss_measured = [size for size in rss if size is not None]
    return (
        round(sum(cpu_measured), 3) if cpu_measured else None,
        max(rss_measured) if rss_measured else None,
    )
