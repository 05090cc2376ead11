"""Wall time of a 200-task fan-out of `true` (no dependencies, concurrency 4), three ways:
  (a) bare asyncio: create_subprocess_exec('true') under Semaphore(4), output to DEVNULL
  (b) petit's RunEngine in-process (Store in a temp dir + RunRecorder), timed around execute(),
      plus the run's recorded duration_ms
  (c) the real CLI: `bin/petit trigger JOBS_DIR fanout --db <tmp>.db` as a subprocess (wall time,
      interpreter start included), plus duration_ms as recorded in that db
The three are interleaved (a, b, c, a, b, c, ...) so VM noise hits them alike; REPEAT rounds.
Usage: .venv/bin/python bench/fanout.py   (writes bench/results/fanout.json)
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from petit.core.events import EventBus  # noqa: E402
from petit.core.model import Job, RunStatus, Task, Trigger  # noqa: E402
from petit.execution.engine import RunEngine  # noqa: E402
from petit.execution.recorder import RunRecorder  # noqa: E402
from petit.storage.store import Store  # noqa: E402

N_TASKS = 200
CONCURRENCY = 4
REPEAT = 5
JOB_ID = "fanout"


def bare_asyncio() -> float:
    async def one(sem):
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                "true", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            await proc.wait()

    async def all_tasks():
        sem = asyncio.Semaphore(CONCURRENCY)  # created inside the running loop
        await asyncio.gather(*(one(sem) for _ in range(N_TASKS)))

    start = time.perf_counter()
    asyncio.run(all_tasks())
    return time.perf_counter() - start


def engine_in_process(tmp: str, rnd: int) -> tuple[float, int]:
    job = Job(
        id=JOB_ID,
        name="Fan-out",
        tasks=tuple(Task(id=f"t{i}", name=f"t{i}", command="true") for i in range(N_TASKS)),
    )
    store = Store(os.path.join(tmp, f"engine-{rnd}.db"))
    store.check()
    run = store.create_run(job.id, [t.id for t in job.tasks], Trigger.MANUAL)
    bus = EventBus()
    recorder = RunRecorder(store, bus)
    recorder.track(run)
    engine = RunEngine(job, run, store, bus, max_tasks=CONCURRENCY)
    start = time.perf_counter()
    engine.execute()
    wall = time.perf_counter() - start
    recorder.close()
    assert run.status is RunStatus.COMPLETED, run.error
    return wall, run.duration_ms


def cli(jobs_dir: str, tmp: str, rnd: int) -> tuple[float, int]:
    db = os.path.join(tmp, f"cli-{rnd}.db")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            os.path.join(ROOT, "bin", "petit"),
            "trigger",
            jobs_dir,
            JOB_ID,
            "--db",
            db,
            "--max-tasks",
            str(CONCURRENCY),
        ],
        capture_output=True,
    )
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    recorded = Store(db).list_runs(JOB_ID, 1)[0]
    assert recorded.status is RunStatus.COMPLETED
    return wall, recorded.duration_ms


def summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "all": [round(v, 4) for v in values],
    }


def main() -> None:
    samples = {
        k: []
        for k in (
            "a_asyncio_s",
            "b_engine_wall_s",
            "b_engine_recorded_s",
            "c_cli_wall_s",
            "c_cli_recorded_s",
        )
    }
    with tempfile.TemporaryDirectory(prefix="petit-fanout-") as tmp:
        jobs_dir = os.path.join(tmp, "jobs")
        os.mkdir(jobs_dir)
        with open(os.path.join(jobs_dir, "fanout.yaml"), "w") as handle:
            handle.write(f"id: {JOB_ID}\nname: Fan-out\ntasks:\n")
            handle.writelines(f'  - id: t{i}\n    command: "true"\n' for i in range(N_TASKS))
        bare_asyncio()  # warm-up: page cache, imports, first-spawn costs
        for rnd in range(REPEAT):
            samples["a_asyncio_s"].append(bare_asyncio())
            wall, recorded_ms = engine_in_process(tmp, rnd)
            samples["b_engine_wall_s"].append(wall)
            samples["b_engine_recorded_s"].append(recorded_ms / 1000)
            wall, recorded_ms = cli(jobs_dir, tmp, rnd)
            samples["c_cli_wall_s"].append(wall)
            samples["c_cli_recorded_s"].append(recorded_ms / 1000)
            print(
                f"round {rnd + 1}: " + ", ".join(f"{k}={v[-1]:.3f}" for k, v in samples.items()),
                flush=True,
            )
    stats = {k: summary(v) for k, v in samples.items()}
    base = stats["a_asyncio_s"]["median"]
    ratios = {
        f"{k}_over_a": round(stats[k]["median"] / base, 2)
        for k in ("b_engine_wall_s", "b_engine_recorded_s", "c_cli_recorded_s", "c_cli_wall_s")
    }
    print(f"\n{N_TASKS} x `true`, concurrency {CONCURRENCY}, {REPEAT} rounds (seconds)")
    print(f"{'method':<24}{'median':>9}{'min':>9}{'max':>9}{'tasks/s':>10}")
    for k, s in stats.items():
        print(
            f"{k:<24}{s['median']:>9.3f}{s['min']:>9.3f}{s['max']:>9.3f}"
            f"{N_TASKS / s['median']:>10.0f}"
        )
    print("\nratios of medians to (a): " + ", ".join(f"{k}={v}" for k, v in ratios.items()))
    out = os.path.join(ROOT, "bench", "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "fanout.json"), "w") as handle:
        json.dump(
            {
                "tasks": N_TASKS,
                "concurrency": CONCURRENCY,
                "repeat": REPEAT,
                "python": sys.version,
                "stats": stats,
                "ratios_of_medians": ratios,
            },
            handle,
            indent=2,
        )
    print(f"wrote {os.path.join(out, 'fanout.json')}")


if __name__ == "__main__":
    main()
