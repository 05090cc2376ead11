"""Faults during work: jobs firing every second plus a stream of manual triggers, while a chaos
loop SIGKILLs the scheduler worker and the API process at random moments and, at the end, the
supervisor. Then petit starts again on the same db and nothing may be lost, stuck or left alive.

15 s in `make test`; PETIT_SOAK=1 (`make soak`) runs it for 10 minutes."""

from __future__ import annotations

import http.client
import os
import random
import signal
import statistics
import threading
import time

import psutil
import pytest
from harness import TERMINAL, Service
from processes import marked_processes, wait_until

from petit.storage.store import Store

# the CPU-heaviest modules share one pytest-xdist worker (make test: --dist loadgroup), so
# their time bounds never meet each other's load
pytestmark = pytest.mark.xdist_group("cpu")

SOAK = os.environ.get("PETIT_SOAK") == "1"
DURATION_SECS = 600.0 if SOAK else 15.0
SEED = int(os.environ.get("PETIT_SOAK_SEED", "20261125"))

FIRING_JOBS = {
    "tick_a.yaml": """id: tick_a
name: tick a
schedule: "*/1 * * * * *"
tasks:
  - {id: only, command: "true"}
""",
    "tick_b.yaml": """id: tick_b
name: tick b
schedule: "*/1 * * * * *"
tasks:
  - {id: first, type: shell, script: "sleep 0.2"}
  - {id: second, command: "true", depends_on: [first]}
""",
    "tick_c.yaml": """id: tick_c
name: tick c
schedule: "*/1 * * * * *"
tasks:
  - {id: slow, type: shell, script: "sleep 0.6"}
""",
    "manual.yaml": """id: manual
name: manual stream
tasks:
  - {id: a, type: shell, script: "sleep 0.05"}
  - {id: b, command: "true", depends_on: [a]}
""",
}


class TriggerStream(threading.Thread):
    """POSTs triggers back to back; remembers every run id that was acknowledged with a 200."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.acknowledged: list[str] = []
        self.unanswered = 0  # connection broken or refused: petit may or may not have the run

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("POST", "/api/jobs/manual/trigger")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    import json

                    self.acknowledged.append(json.loads(body)["run_id"])
            except (OSError, http.client.HTTPException):
                self.unanswered += 1
            finally:
                conn.close()
            self.stop.wait(0.05)


def child_pid(svc: Service, name: str) -> int | None:
    status = svc.status(check=False)
    child = next((c for c in (status or {}).get("children", []) if c["name"] == name), None)
    return child["pid"] if child and child["state"] == "running" else None


@pytest.mark.slow
@pytest.mark.timeout(DURATION_SECS + 180)
def test_nothing_is_lost_under_random_kills(service):
    rng = random.Random(SEED)
    svc = service(None, "--keep-runs", "100000", api=True, start=False)
    for name, text in FIRING_JOBS.items():
        with open(os.path.join(svc.jobs_dir, name), "w") as handle:
            handle.write(text)
    svc.start()
    supervisor = psutil.Process(svc.proc.pid)
    stop = threading.Event()
    stream = TriggerStream(svc.port, stop)
    stream.start()
    kills = {"scheduler": 0, "api": 0}
    memory: list[tuple[float, int]] = []  # (elapsed, supervisor RSS)
    started = time.monotonic()
    try:
        while time.monotonic() - started < DURATION_SECS:
            stop.wait(rng.uniform(1.0, 5.0))
            memory.append((time.monotonic() - started, supervisor.memory_info().rss))
            victim = rng.choice(["scheduler", "scheduler", "api"])
            pid = child_pid(svc, victim)
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills[victim] += 1
        os.kill(svc.proc.pid, signal.SIGKILL)  # at the end, the supervisor itself
        svc.proc.wait(10)
    finally:
        stop.set()
        stream.join(15)
    # the children notice their parent died and take their task processes with them
    wait_until(
        lambda: not marked_processes(svc.marker),
        timeout=10,
        interval=0.1,
        message="every petit and task process gone after the supervisor was killed",
    )

    # -- restart on the same db: recovery finishes what the kills interrupted ------------------
    for name in FIRING_JOBS:  # no new fires during the audit
        if name != "manual.yaml":
            os.unlink(os.path.join(svc.jobs_dir, name))
    again = service(None, "--keep-runs", "100000", jobs_dir=svc.jobs_dir, db=svc.db)
    try:
        store = Store(svc.db)
        runs = {
            job: store.list_runs(job, 1_000_000) for job in ("tick_a", "tick_b", "tick_c", "manual")
        }
    finally:
        again.stop()

    all_runs = [run for job_runs in runs.values() for run in job_runs]
    stuck = [run.id for run in all_runs if run.status.value not in TERMINAL]
    assert not stuck, f"runs not in a terminal status: {stuck}"
    manual_ids = {run.id for run in runs["manual"]}
    lost = [run_id for run_id in stream.acknowledged if run_id not in manual_ids]
    assert not lost, f"acknowledged triggers missing from the db: {lost}"
    # a trigger whose reply was cut by a kill may have run without an acknowledgement
    assert len(manual_ids) - len(stream.acknowledged) <= stream.unanswered
    for job in ("tick_a", "tick_b", "tick_c"):
        fires = [run.scheduled_at for run in runs[job]]
        assert all(run.trigger.value == "schedule" for run in runs[job])
        assert len(fires) == len(set(fires)), f"{job}: a scheduled instant fired twice"
    interrupted = [run for run in all_runs if run.status.value == "interrupted"]
    for run in interrupted:
        assert run.error == "run was interrupted"
        assert all(t.status.value in ("failed", "skipped", "completed") for t in run.tasks)
    assert kills["scheduler"] >= 3 and stream.acknowledged, (kills, len(stream.acknowledged))

    window = min(10.0, DURATION_SECS / 4)
    first = [rss for at, rss in memory if at <= window]
    last = [rss for at, rss in memory if at >= DURATION_SECS - window]
    growth = statistics.median(last) / statistics.median(first) - 1 if first and last else 0.0
    print(
        f"\nsoak {DURATION_SECS:.0f}s seed {SEED}: kills {kills} + supervisor, "
        f"{len(stream.acknowledged)} acknowledged triggers ({stream.unanswered} unanswered), "
        f"{len(all_runs)} runs checked ({len(interrupted)} interrupted), "
        f"supervisor RSS growth {growth:+.1%}"
    )
    assert growth <= 0.10, f"supervisor memory grew {growth:.1%} between the first and last window"
