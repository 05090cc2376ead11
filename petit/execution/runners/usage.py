"""What one attempt's process tree used: CPU time (user + system) and peak memory. The leader's
rusage from wait4 counts it and every descendant it waited for; sampling the tree's resident
memory now and then also catches a peak spread over processes alive at once. What escaped the
group (a daemon), or a descendant nobody waited for, is not counted (docs/jobs.md says so)."""

from __future__ import annotations

import os
import resource
import sys

# The first sample soon, so that a task of a fraction of a second is seen too; then twice as
# long after each, up to every half second: rarely enough to cost nothing beside the task. An
# attempt that ends before the first sample (`true`) is never sampled at all.
FIRST_SAMPLE_SECS = 0.05
SAMPLE_SECS = 0.5
# ru_maxrss is in KiB on Linux and in bytes on macOS
MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# Without /proc (macOS) there is nothing to sample: the peak is wait4's alone, or unknown.
HAS_PROC = os.path.isdir("/proc/self")
# The samples add up RSS, not PSS: /proc/<pid>/smaps_rollup walks the page tables, about 8 ms for
# a process of 500 MiB (statm: 0.01 ms), too dear to read twice a second. So pages a forked child
# shares copy-on-write with its parent count once in each (docs/jobs.md says so).


class TreeUsage:
    """The usage of the process tree led by `pid`, started at `started` (monotonic seconds),
    read just after its leader's exec."""

    def __init__(self, pid: int, started: float) -> None:
        self._pid = pid
        self._interval = FIRST_SAMPLE_SECS
        self.next_sample_at = started + FIRST_SAMPLE_SECS
        # bytes: the largest sum of the tree's RSS seen at once, from the leader's own just
        # after its exec (one small read, so that even a task shorter than a sample has a peak)
        self._sampled_peak = _rss(pid) if HAS_PROC else 0

    def sample(self, now: float) -> None:
        """Add up the resident memory of the leader and its descendants, as they are now."""
        self._interval = min(self._interval * 2, SAMPLE_SECS)
        self.next_sample_at = now + self._interval
        if HAS_PROC:
            self._sampled_peak = max(self._sampled_peak, _tree_rss(self._pid))

    def totals(self, rusage: resource.struct_rusage) -> tuple[float, int | None]:
        """(CPU seconds, peak bytes) from the reaped leader's rusage and the samples: the peak
        is the larger of the sampled tree sum and the largest single process wait4 saw; None
        without /proc when wait4's figure says nothing of the task (unknown, not 0 bytes)."""
        cpu = round(rusage.ru_utime + rusage.ru_stime, 3)
        largest = rusage.ru_maxrss * MAXRSS_UNIT
        # Linux keeps, as a process's maxrss, the memory it had before its exec: the leader was
        # spawned from petit's own memory, so up to petit's size its maxrss says nothing of the
        # task; past it, it can only be the task's (petit's maxrss only grows: read it after).
        if largest <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * MAXRSS_UNIT:
            largest = 0
        peak = max(self._sampled_peak, largest)
        return cpu, peak if peak or HAS_PROC else None


def _rss(pid: int) -> int:
    """The resident bytes of `pid` now; 0 when it already ended (a zombie has no memory)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):  # no /proc (macOS), or gone
        return 0


def _tree_rss(pid: int) -> int:
    """The resident bytes of `pid` and its descendants, found through each thread's children
    in /proc (a walk of the tree alone: psutil's would read every process of the machine)."""
    total, todo = 0, [pid]
    while todo:
        member = todo.pop()
        total += _rss(member)
        try:
            for thread in os.listdir(f"/proc/{member}/task"):
                with open(f"/proc/{member}/task/{thread}/children", "rb") as children:
                    todo.extend(map(int, children.read().split()))
        except (OSError, ValueError):  # ended meanwhile: its children are the kernel's now
            continue
    return total
