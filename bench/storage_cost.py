"""Cost of one Store write / read as one job's run history grows (0, 1,000, 10,000 runs).

Each run has 5 task records. History is filled through the public Store API with fsync=False
(fast), then measured through a second Store on the same files with the default fsync=True.
Measured per size (100 ops each, median / p90 in ms):
  create_run       Store.create_run(job, 5 task ids, MANUAL)
  save_running     Store.save_runs([run]) after run -> running (all tasks running)
  save_completed   Store.save_runs([run]) after run -> completed (the main-file write too)
  list_runs(20)    warm: same Store (parsed-file cache hit); cold: a fresh Store per call
  get_run          warm / cold, for a random stored run
Usage: .venv/bin/python bench/storage_cost.py   (writes bench/results/storage_cost.json)
"""

import json
import os
import random
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from petit.core.model import RunStatus, TaskStatus, Trigger, now_ms  # noqa: E402
from petit.storage.store import Store  # noqa: E402

JOB = "bench_job"
TASKS = [f"task_{i}" for i in range(5)]
SIZES = [0, 1_000, 10_000]
OPS = 100  # ops per size and kind; 100 = one whole history chunk (RUNS_PER_CHUNK),
# so the writes see every chunk fill level from empty to full
KEEP = 100_000  # keep everything: no retention during the benchmark


def mark(run, status):
    """Give the run (and its tasks) a realistic running or completed state."""
    t = now_ms()
    if status is RunStatus.RUNNING:
        run.status, run.started_at = RunStatus.RUNNING, t
        for task in run.tasks:
            task.status, task.attempts, task.started_at = TaskStatus.RUNNING, 1, t
            task.handle = {"runner": "local", "pid": 12345, "created": 1700000000.12}
    else:
        run.status, run.ended_at, run.duration_ms = RunStatus.COMPLETED, t + 5, 5
        for task in run.tasks:
            task.status, task.exit_code, task.ended_at, task.duration_ms = (
                TaskStatus.COMPLETED,
                0,
                t + 5,
                5,
            )
            task.handle = None


def fill(store, count):
    """Add `count` finished runs, 100 at a time (one save_runs per batch keeps filling fast)."""
    while count > 0:
        batch = [store.create_run(JOB, TASKS, Trigger.MANUAL) for _ in range(min(100, count))]
        for run in batch:
            mark(run, RunStatus.RUNNING)
            mark(run, RunStatus.COMPLETED)
        store.save_runs(batch)
        count -= len(batch)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def stats(samples):
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "n": len(ordered),
    }


def measure(db, size):
    store = Store(db, keep_runs=KEEP)  # default fsync=True
    store.list_runs(JOB, 1)  # prime this Store's parsed-file cache
    samples = {
        k: []
        for k in (
            "create_run",
            "save_running",
            "save_completed",
            "list_runs_warm",
            "list_runs_cold",
            "get_run_warm",
            "get_run_cold",
        )
    }
    for _ in range(OPS):
        ms, run = timed(lambda: store.create_run(JOB, TASKS, Trigger.MANUAL))
        samples["create_run"].append(ms)
        mark(run, RunStatus.RUNNING)
        samples["save_running"].append(timed(lambda: store.save_runs([run]))[0])
        mark(run, RunStatus.COMPLETED)
        samples["save_completed"].append(timed(lambda: store.save_runs([run]))[0])
    stored = store.list_runs(JOB, 1)[0].seq
    for _ in range(OPS):
        run_id = f"{JOB}-{random.randint(1, stored)}"
        ms, runs = timed(lambda: store.list_runs(JOB, 20))
        assert len(runs) == 20
        samples["list_runs_warm"].append(ms)
        samples["list_runs_cold"].append(timed(lambda: Store(db).list_runs(JOB, 20))[0])
        ms, run = timed(lambda: store.get_run(run_id))
        assert run is not None and len(run.tasks) == 5
        samples["get_run_warm"].append(ms)
        samples["get_run_cold"].append(timed(lambda: Store(db).get_run(run_id))[0])
    biggest = max(os.path.getsize(p) for p in store._job_chunks(JOB))  # a full 100-run chunk
    return {
        "size": size,
        "stored_after": stored,
        "chunk_kb": round(biggest / 1024, 1),
        "main_kb": round(os.path.getsize(db) / 1024, 1),
        **{k: stats(v) for k, v in samples.items()},
    }


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix="petit-bench-") as tmp:
        db = os.path.join(tmp, "petit.db")
        filler = Store(db, keep_runs=KEEP, fsync=False)
        filler.check()
        have = 0
        for size in SIZES:
            start = time.perf_counter()
            fill(filler, size - have)
            fill_s = time.perf_counter() - start
            print(f"filled to {size} runs in {fill_s:.1f}s", flush=True)
            results.append(measure(db, size))
            have = results[-1]["stored_after"]  # measuring added OPS runs
    kinds = [k for k in results[0] if isinstance(results[0][k], dict)]
    print(
        f"\n{'operation (ms, fsync on)':<24}"
        + "".join(f"{'runs=' + str(r['size']):>22}" for r in results)
    )
    print(f"{'':<24}" + f"{'median / p90':>22}" * len(results))
    for kind in kinds:
        print(
            f"{kind:<24}"
            + "".join(f"{r[kind]['median_ms']:>12.2f} / {r[kind]['p90_ms']:<7.2f}" for r in results)
        )
    print(
        f"{'(max chunk KB, main KB)':<24}"
        + "".join(f"{str((r['chunk_kb'], r['main_kb'])):>22}" for r in results)
    )
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "storage_cost.json"), "w") as handle:
        json.dump(
            {"tasks_per_run": len(TASKS), "ops_per_size": OPS, "results": results}, handle, indent=2
        )
    print(f"\nwrote {os.path.join(out, 'storage_cost.json')}")


if __name__ == "__main__":
    main()
