"""The fire ledger's guarantee, under SIGKILL: an every-second job with `catchup: all` runs while
a chaos loop kills the scheduler worker (the supervisor restarts it) and, now and then, the whole
process tree (petit is started again on the same db). Afterwards every second between the first
fire and the last one handed out is exactly one recorded run (`schedule` or `catchup`) or one
recorded drop with its reason: never missing, never twice. Once with a quick task and the
default overlap, once with `overlap: queue`, `max_queued: 3` and a task that takes 1.5 s (so the
queue fills and fires are dropped as max_queued, and queued runs live through the kills).

About 20 s each in `make test`, where one run mixes both kinds of kill; PETIT_SOAK=1 (`make
soak`) runs each job for 2 minutes with only worker kills, then 2 minutes with only tree kills."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
from harness import Service
from processes import wait_until

from petit.service.supervisor import BACKOFF_MAX_SECS
from petit.storage.store import Store

pytestmark = pytest.mark.xdist_group("cpu")  # its kills must not meet another module's load

SOAK = os.environ.get("PETIT_SOAK") == "1"
DURATION_SECS = 120.0 if SOAK else 16.0
# what the chaos kills: the worker alone (the supervisor restarts it), the whole tree (petit is
# started again), or either at random
KILLS = ["worker", "tree"] if SOAK else ["mixed"]
SEED = int(os.environ.get("PETIT_SOAK_SEED", "20261202"))

QUICK = """id: tick
name: every second, caught up
schedule: "* * * * * *"
catchup: all
catchup_window: 10m
tasks:
  - {id: t, command: "true"}
"""
QUEUED = """id: tick
name: every second, queued behind a 1.5 s task
schedule: "* * * * * *"
catchup: all
catchup_window: 10m
overlap: queue
max_queued: 3
tasks:
  - {id: t, type: shell, script: "sleep 1.5"}
"""


def seconds_handed_out(store: Store) -> tuple[Counter, list, list]:
    """Every fire second (epoch s) the ledger accounts for, counted; and the runs and drops."""
    runs = store.list_runs("tick", 1_000_000, with_tasks=False)
    drops = store.drops.read("tick", 1_000_000)
    seen: Counter = Counter()
    for run in runs:
        assert run.trigger.value in ("schedule", "catchup"), run
        seen[run.scheduled_at // 1000] += 1
    for drop in drops:
        first = drop["scheduled_at"] // 1000
        last = (drop["until"] - 1) // 1000 if drop["until"] is not None else first
        assert drop["count"] == last - first + 1, drop  # a span says how many it holds
        for second in range(first, last + 1):
            seen[second] += 1
    return seen, runs, drops


def worker_pid(svc: Service) -> int | None:
    status = svc.status(check=False)
    child = next((c for c in (status or {}).get("children", []) if c["name"] == "scheduler"), None)
    return child["pid"] if child and child["state"] == "running" else None


def kill_tree(svc: Service) -> None:
    """SIGKILL the supervisor's process group (supervisor, worker, API) at once; their task
    processes, in groups of their own, are left for the next start's recovery."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(DURATION_SECS + 240)
@pytest.mark.parametrize("kill", KILLS)
@pytest.mark.parametrize("job", [QUICK, QUEUED], ids=["quick-task", "overlap-queue"])
def test_every_second_is_one_run_or_one_recorded_drop_across_kills(service, job, kill):
    rng = random.Random(SEED)
    svc = service({"tick": job}, "--keep-runs", "100000", shutdown_timeout=1)
    kills = {"worker": 0, "tree": 0}
    pace = threading.Event()  # never set: the chaos waits random spans, it syncs with nothing
    started = time.monotonic()
    while time.monotonic() - started < DURATION_SECS:
        pace.wait(rng.uniform(1.0, 3.5))
        if kill == "tree" or (kill == "mixed" and rng.random() < 0.25):
            kill_tree(svc)
            kills["tree"] += 1
            pace.wait(rng.uniform(0.5, 2.5))  # fires fall while nothing runs
            svc = service(
                None,
                "--keep-runs",
                "100000",
                jobs_dir=svc.jobs_dir,
                db=svc.db,
                socket=svc.socket,
                shutdown_timeout=1,
            )
            continue
        pid = worker_pid(svc)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kills["worker"] += 1
            wait_until(  # kills in a row grow the supervisor's restart backoff, up to its cap
                lambda old=pid: worker_pid(svc) not in (None, old),
                timeout=BACKOFF_MAX_SECS + 15,
                interval=0.05,
                message="the worker restarted after its SIGKILL",
            )
    assert svc.stop() == 0

    seen, runs, drops = seconds_handed_out(Store(svc.db))
    first, last = min(seen), max(seen)
    missing = [s for s in range(first, last + 1) if s not in seen]
    doubled = sorted(s for s, n in seen.items() if n > 1)
    by_reason = Counter(d["reason"] for d in drops for _ in range(d["count"]))
    triggers = Counter(run.trigger.value for run in runs)
    print(
        f"\nfire ledger {DURATION_SECS:.0f}s seed {SEED}, {kill} kills: "
        f"{last - first + 1} seconds covered, "
        f"kills {kills}, {len(runs)} runs {dict(triggers)}, drops {dict(by_reason)}, "
        f"missing {len(missing)}, duplicates {len(doubled)}"
    )
    assert not missing, f"seconds neither run nor dropped: {missing[:20]}"
    assert not doubled, f"seconds handed out twice: {doubled[:20]}"
    assert kills["worker"] + kills["tree"] >= 3, kills
    assert kill == "mixed" or kills["tree" if kill == "worker" else "worker"] == 0
    assert triggers["catchup"] >= 1, "no kill left a fire for catch-up: the test proved nothing"
    if job is QUEUED:
        assert by_reason["max_queued"] >= 1, "the queue never filled"
        statuses = Counter(run.status.value for run in runs)
        assert statuses["queued"] + statuses["completed"] >= 5, statuses
