"""`make bench`: petit's overhead against the bare limit on this machine, measured in one run.

Every DAG workload is timed three ways in the same invocation: a bare asyncio runner (the
baseline), `petit trigger`, and a running `petit run` triggered over HTTP. Figures are medians
of >= 5 repetitions with min and max. Prints one table; writes bench/results/latest.json.
Services are started, checked ready and stopped by the tests' harness (tests/harness.py), so a
benchmark also fails when petit leaves a process behind.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import dashboard  # noqa: E402
import psutil  # noqa: E402
from api_client import try_request  # noqa: E402
from browser import Browser, missing  # noqa: E402
from catchup import bench_catchup, catchup_rows  # noqa: E402
from harness import Service  # noqa: E402
from processes import PETIT, wait_until  # noqa: E402
from schedule_speed import schedule_speed  # noqa: E402
from streams import StreamCrowd, arrivals, first_arrival, open_stream  # noqa: E402

from petit.core.model import Run, RunStatus, TaskRun, TaskStatus, Trigger  # noqa: E402
from petit.service.forwarder import FLUSH_INTERVAL_SECS  # noqa: E402
from petit.storage.store import RUNS_PER_CHUNK, Store  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "5"))
FIRES = int(os.environ.get("BENCH_FIRES", "62"))
CONCURRENCY = 4
STREAM_CLIENTS = 100
FOLLOW_LINES = 50
DASH_JOBS = 1000
DASH_RUNS_PER_JOB = 10
DAG_VIEWS = ("svg#dag g.node", "ol#dag-list li")  # one element per task: a graph, or a list
# the 500 and 5,000 tasks, and 400: the most the page draws as a graph (LIST_THRESHOLD)
DAG_TARGETS = {400: "", 500: "< 2000 ms", 5000: "responsive"}
RESULTS = {}


# -- workloads ------------------------------------------------------------------------------------


def workloads() -> dict[str, list[tuple[str, list[str]]]]:
    layers = [[f"l{layer}_{i}" for i in range(20)] for layer in range(10)]
    return {
        "W1_fanout_200": [(f"t{i}", []) for i in range(200)],
        "W2_chain_50": [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(50)],
        "W3_layers_10x20": [
            (task, layers[n - 1] if n else []) for n, layer in enumerate(layers) for task in layer
        ],
    }


def job_yaml(
    job_id: str,
    tasks: list[tuple[str, list[str]]],
    command: str = "true",
    args: list[str] | None = None,
    extra: str = "",
) -> str:
    lines = [f"id: {job_id}", f"name: {job_id}", extra, "tasks:"]
    for task_id, deps in tasks:
        lines.append(
            f"  - {{id: {task_id}, command: {json.dumps(command)}, args: {json.dumps(args or [])}, "
            f"depends_on: {json.dumps(deps)}}}"
        )
    return "\n".join(line for line in lines if line) + "\n"


async def _baseline(tasks: list[tuple[str, list[str]]]) -> float:
    """The bare limit: asyncio.create_subprocess_exec, a semaphore, the same dependency order."""
    gate = asyncio.Semaphore(CONCURRENCY)
    done = {task_id: asyncio.Event() for task_id, _ in tasks}

    async def one(task_id: str, deps: list[str]) -> None:
        for dep in deps:
            await done[dep].wait()
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                "true", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            await proc.wait()
        done[task_id].set()

    start = time.perf_counter()
    await asyncio.gather(*(one(t, d) for t, d in tasks))
    return time.perf_counter() - start


def spread(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


# -- the service under measurement ----------------------------------------------------------------


def petit_service(root: str, jobs_dir: str, db: str, *extra: str) -> Service:
    """`petit run` with the API on `jobs_dir`; use as `with petit_service(...).running() as svc`."""
    return Service(root, jobs_dir=jobs_dir, db=db, extra_args=("--log-level", "warning", *extra))


def finished(service: Service, run_id: str) -> dict:
    """The run once it ended, polled often enough not to blur the timings."""
    return service.wait_run(run_id, timeout=60, interval=0.002)


class KeepAlive:
    """One keep-alive connection (what a script or dashboard holds), for the timed requests."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str) -> tuple[int, dict]:
        try:
            self.conn.request(method, path)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # the server closes keep-alive connections idle for 60 s: open a new one, once
            self.conn.close()
            self.conn.request(method, path)
            response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def trigger(self, job_id: str) -> str:
        status, body = self.request("POST", f"/api/jobs/{job_id}/trigger")
        if status != 200:
            raise RuntimeError(f"trigger {job_id}: {status} {body}")
        return body["run_id"]

    def close(self) -> None:
        self.conn.close()


def petit_tree(service: Service, with_tracker: bool = True) -> list[psutil.Process]:
    """Supervisor, scheduler, API and (unless excluded) multiprocessing's resource tracker:
    every process petit itself keeps alive (task processes come and go, and are left out)."""
    root = psutil.Process(service.pid)
    children = [p for p in root.children() if "multiprocessing" in " ".join(p.cmdline())]
    return [
        root,
        *(p for p in children if with_tracker or "resource_tracker" not in " ".join(p.cmdline())),
    ]


def rss_mib(processes: list[psutil.Process]) -> float:
    return sum(p.memory_info().rss for p in processes) / 2**20


def pss_mib(processes: list[psutil.Process]) -> float:
    return sum(p.memory_full_info().pss for p in processes) / 2**20


# -- measurements ---------------------------------------------------------------------------------


def bench_dags(work: str) -> None:
    jobs_dir = os.path.join(work, "dag_jobs")
    os.makedirs(jobs_dir)
    for name, tasks in workloads().items():
        with open(os.path.join(jobs_dir, f"{name}.yaml"), "w") as handle:
            handle.write(job_yaml(name, tasks))
    with petit_service(
        os.path.join(work, "dag_http"), jobs_dir, os.path.join(work, "dag_http.db")
    ).running() as service:
        for name, tasks in workloads().items():
            base, cli, http = [], [], []
            for rep in range(REPS):
                base.append(asyncio.run(_baseline(tasks)))
                db = os.path.join(work, f"{name}-{rep}.db")
                subprocess.run(
                    [
                        sys.executable,
                        PETIT,
                        "trigger",
                        jobs_dir,
                        name,
                        "--db",
                        db,
                        "--max-tasks",
                        str(CONCURRENCY),
                    ],
                    check=True,
                    capture_output=True,
                )
                cli.append(Store(db).list_runs(name, 1)[0].duration_ms / 1000)
                http.append(finished(service, service.trigger(name))["duration_ms"] / 1000)
            RESULTS[name] = {
                "baseline_s": spread(base),
                "trigger_s": spread(cli),
                "http_s": spread(http),
                "trigger_ratio": statistics.median(cli) / statistics.median(base),
                "http_ratio": statistics.median(http) / statistics.median(base),
            }
            log(
                f"{name}: baseline {statistics.median(base):.3f}s  "
                f"trigger {statistics.median(cli):.3f}s  "
                f"http {statistics.median(http):.3f}s"
            )


def stamp_job(jobs_dir: str, job_id: str, extra: str = "") -> None:
    """One task that prints its own start time: `date +%s%N` (the task records when it began)."""
    with open(os.path.join(jobs_dir, f"{job_id}.yaml"), "w") as handle:
        handle.write(job_yaml(job_id, [("stamp", [])], command="date", args=["+%s%N"], extra=extra))


def stamp_of(service: Service, run_id: str) -> float:
    """The task's own start time, in epoch ms."""
    return int(service.get(f"/api/runs/{run_id}/tasks/stamp/logs").json()["stdout"]) / 1e6


def bench_trigger_latency(work: str) -> None:
    jobs_dir = os.path.join(work, "latency_jobs")
    os.makedirs(jobs_dir)
    stamp_job(jobs_dir, "stamp")
    p50s, p99s = [], []
    with petit_service(
        os.path.join(work, "latency"), jobs_dir, os.path.join(work, "latency.db")
    ).running() as service:
        client = KeepAlive(service.port)
        for _ in range(REPS):
            samples = []
            for _ in range(100):
                sent = time.time_ns() / 1e6
                run_id = client.trigger("stamp")
                finished(service, run_id)
                samples.append(stamp_of(service, run_id) - sent)
            p50s.append(percentile(samples, 50))
            p99s.append(percentile(samples, 99))
        client.close()
    RESULTS["trigger_latency_ms"] = {
        "p50": spread(p50s),
        "p99": spread(p99s),
        "triggers": 100 * REPS,
    }
    log(
        f"trigger latency: p50 {statistics.median(p50s):.2f} ms  "
        f"p99 {statistics.median(p99s):.2f} ms"
    )


def bench_event_latency(work: str) -> None:
    """A task's own start stamp -> its `task` event (running) parsed by a client of
    GET /api/events, one trigger at a time."""
    jobs_dir = os.path.join(work, "event_jobs")
    os.makedirs(jobs_dir)
    stamp_job(jobs_dir, "stamp")
    p50s, p99s = [], []
    with petit_service(
        os.path.join(work, "event"), jobs_dir, os.path.join(work, "event.db")
    ).running() as service:
        client = KeepAlive(service.port)
        stream = open_stream(service.port, "/api/events?job_id=stamp")
        for _ in range(REPS):
            samples = []
            for _ in range(100):
                # The worker sends its events in batches every FLUSH_INTERVAL_SECS: a trigger
                # sent as soon as the previous run's event came would start its task at the same
                # point of that cycle each time; a random pause spreads them over all of it.
                time.sleep(random.uniform(0, FLUSH_INTERVAL_SECS))
                run_id = client.trigger("stamp")
                received = first_arrival(
                    stream,
                    lambda e: (
                        e.event == "task"
                        and (d := e.json())["run_id"] == run_id
                        and d["status"] == "running"
                    ),
                    timeout=10,
                )
                finished(service, run_id)
                samples.append(received - stamp_of(service, run_id))
            p50s.append(percentile(samples, 50))
            p99s.append(percentile(samples, 99))
        stream.close()
        client.close()
    RESULTS["event_latency_ms"] = {"p50": spread(p50s), "p99": spread(p99s), "events": 100 * REPS}
    log(
        f"event latency: p50 {statistics.median(p50s):.1f} ms  p99 {statistics.median(p99s):.1f} ms"
    )


def bench_stream_clients(work: str) -> None:
    """W1 over HTTP with STREAM_CLIENTS clients of GET /api/events connected and reading, against
    W1 with none, interleaved on one service; then the API process's memory with and without
    them."""
    name = "W1_fanout_200"
    tasks = workloads()[name]
    jobs_dir = os.path.join(work, "crowd_jobs")
    os.makedirs(jobs_dir)
    with open(os.path.join(jobs_dir, f"{name}.yaml"), "w") as handle:
        handle.write(job_yaml(name, tasks))
    # each task's running and completed events are ~250 bytes apiece: a client that got less
    # than this of a run did not read its events
    least_bytes = 200 * len(tasks)
    with petit_service(
        os.path.join(work, "crowd"), jobs_dir, os.path.join(work, "crowd.db")
    ).running() as service:
        api = psutil.Process(service.child("api")["pid"])
        client = KeepAlive(service.port)
        timed_run(service, client, name)  # warm-up: the first run also pays for new files
        idle_fds = api.num_fds()
        # memory first: the API's allocator keeps what earlier clients freed, and reuses it
        memory = {"rss_none": rss_mib([api]), "pss_none": pss_mib([api])}
        with StreamCrowd(service.port, "/api/events", STREAM_CLIENTS) as crowd:
            memory.update(rss_connected=rss_mib([api]), pss_connected=pss_mib([api]))
            timed_run(service, client, name, crowd, least_bytes)
            memory.update(rss_streamed=rss_mib([api]), pss_streamed=pss_mib([api]))
        alone, crowded = [], []
        for _ in range(REPS):
            wait_until(  # a run alone must really be alone
                lambda: api.num_fds() <= idle_fds,
                timeout=10,
                message="the API to close the stream clients' connections",
            )
            alone.append(timed_run(service, client, name))
            with StreamCrowd(service.port, "/api/events", STREAM_CLIENTS) as crowd:
                crowded.append(timed_run(service, client, name, crowd, least_bytes))
        client.close()
    RESULTS["stream_clients"] = {
        "clients": STREAM_CLIENTS,
        "w1_http_none_s": spread(alone),
        "w1_http_clients_s": spread(crowded),
        "ratio": statistics.median(crowded) / statistics.median(alone),
        "api_memory_mib": memory,
    }
    log(
        f"{name} with {STREAM_CLIENTS} stream clients: {statistics.median(crowded):.3f}s "
        f"vs {statistics.median(alone):.3f}s alone; API memory {memory}"
    )


def timed_run(
    service: Service,
    client: KeepAlive,
    job_id: str,
    crowd: StreamCrowd | None = None,
    least_bytes: int = 0,
) -> float:
    """One run of `job_id` triggered over HTTP: its duration in seconds. With `crowd`, returns
    once each of its clients received `least_bytes` more (the run's events), and fails when the
    server dropped any of them."""
    before = list(crowd.received) if crowd else []
    seconds = finished(service, client.trigger(job_id))["duration_ms"] / 1000
    if crowd:
        wait_until(
            lambda: min(now - then for now, then in zip(crowd.received, before)) >= least_bytes,
            timeout=30,
            message=f"every stream client to receive the {job_id} run's events",
        )
        if crowd.closed_by_server:
            raise RuntimeError(f"the API dropped {crowd.closed_by_server} reading client(s)")
    return seconds


def bench_follow_latency(work: str) -> None:
    """A line a task prints (its own `date +%s%N`) -> that line parsed by a client following the
    task's log (GET .../logs?follow=true), FOLLOW_LINES lines a run, one run per repetition."""
    jobs_dir = os.path.join(work, "follow_jobs")
    os.makedirs(jobs_dir)
    # 0.11 s apart: not a divisor of the log's write and poll periods, so the lines land at
    # every point of their cycles
    script = f"for i in $(seq {FOLLOW_LINES}); do date +%s%N; sleep 0.11; done"
    with open(os.path.join(jobs_dir, "printer.yaml"), "w") as handle:
        handle.write(job_yaml("printer", [("print", [])], command="sh", args=["-c", script]))
    p50s, p99s = [], []
    with petit_service(
        os.path.join(work, "follow"), jobs_dir, os.path.join(work, "follow.db")
    ).running() as service:
        client = KeepAlive(service.port)
        for _ in range(REPS):
            run_id = client.trigger("printer")
            stream = open_stream(service.port, f"/api/runs/{run_id}/tasks/print/logs?follow=true")
            samples, end = [], None
            for received, event in arrivals(stream, timeout=FOLLOW_LINES * 0.11 + 30):
                if event.event == "log":
                    samples += [received - int(line) / 1e6 for line in event.json()["lines"]]
                elif event.event == "end":
                    end = event.json()
                    break
            stream.close()
            if len(samples) != FOLLOW_LINES or end["status"] != "completed":
                raise RuntimeError(f"followed {len(samples)} of {FOLLOW_LINES} lines, end {end}")
            p50s.append(percentile(samples, 50))
            p99s.append(percentile(samples, 99))
        client.close()
    RESULTS["follow_latency_ms"] = {
        "p50": spread(p50s),
        "p99": spread(p99s),
        "lines": FOLLOW_LINES * REPS,
    }
    log(
        f"log follow latency: p50 {statistics.median(p50s):.0f} ms  "
        f"p99 {statistics.median(p99s):.0f} ms"
    )


def bench_fire_accuracy(work: str) -> None:
    jobs_dir = os.path.join(work, "fire_jobs")
    os.makedirs(jobs_dir)
    stamp_job(jobs_dir, "every_second", extra='schedule: "*/1 * * * * *"')
    with petit_service(
        os.path.join(work, "fire"), jobs_dir, os.path.join(work, "fire.db")
    ).running() as service:
        first = time.time()
        while time.time() - first < FIRES + 1.5:
            time.sleep(0.5)
        body = service.get(f"/api/jobs/every_second/runs?limit={FIRES * 3}").json()
        runs = [r for r in body["runs"] if r["status"] in ("completed", "failed")]
        scheduled = sorted(r["scheduled_at"] for r in runs)
        lateness = [stamp_of(service, r["id"]) - r["scheduled_at"] for r in runs]
    expected = (scheduled[-1] - scheduled[0]) // 1000 + 1
    RESULTS["fire_lateness_ms"] = {
        "fires": len(runs),
        "p50": percentile(lateness, 50),
        "p99": percentile(lateness, 99),
        "max": max(lateness),
        "missed": expected - len(set(scheduled)),
        "duplicates": len(scheduled) - len(set(scheduled)),
    }
    log(f"fire lateness: {RESULTS['fire_lateness_ms']}")


def fill_history(db: str, job_id: str, count: int) -> None:
    """Write `count` finished 5-task runs straight into the history files, as the store lays
    them out (one TinyDB JSON file per RUNS_PER_CHUNK runs), to skip 10,000 real runs."""
    directory = os.path.join(db + ".d", "runs", job_id)
    os.makedirs(directory, exist_ok=True)
    now = int(time.time() * 1000) - count * 1000
    chunks: dict[int, dict] = {}
    for seq in range(1, count + 1):
        run_id = f"{job_id}-{seq}"
        run = Run(
            id=run_id,
            job_id=job_id,
            seq=seq,
            trigger=Trigger.MANUAL,
            status=RunStatus.COMPLETED,
            created_at=now + seq,
            started_at=now + seq,
            ended_at=now + seq + 5,
            duration_ms=5,
            tasks=[
                TaskRun(
                    task_id=f"t{i}",
                    run_id=run_id,
                    status=TaskStatus.COMPLETED,
                    attempts=1,
                    exit_code=0,
                    started_at=now + seq,
                    ended_at=now + seq + 5,
                    duration_ms=5,
                )
                for i in range(5)
            ],
        )
        chunks.setdefault(seq // RUNS_PER_CHUNK, {})[str(seq)] = run.to_dict()
    for number, docs in chunks.items():
        with open(os.path.join(directory, f"{number:08d}.json"), "w") as handle:
            json.dump({"runs": docs}, handle)


def bench_history(work: str) -> None:
    RESULTS["history"] = {}
    for size in (0, 1000, 10000):
        jobs_dir = os.path.join(work, f"history_jobs_{size}")
        os.makedirs(jobs_dir)
        with open(os.path.join(jobs_dir, "one.yaml"), "w") as handle:
            handle.write(job_yaml("one", [("only", [])]))
        db = os.path.join(work, f"history_{size}.db")
        fill_history(db, "one", size)
        service = petit_service(
            os.path.join(work, f"history_{size}"), jobs_dir, db, "--keep-runs", "100000"
        )
        with service.running():
            client = KeepAlive(service.port)
            run_times = []
            for _ in range(max(REPS, 20)):
                start = time.perf_counter()
                finished(service, client.trigger("one"))
                run_times.append((time.perf_counter() - start) * 1000)
            p50s, p99s, rates = [], [], []
            for _ in range(REPS):
                samples = []
                begin = time.perf_counter()
                for _ in range(200):
                    t0 = time.perf_counter()
                    client.request("GET", "/api/jobs/one/runs?limit=20")
                    samples.append((time.perf_counter() - t0) * 1000)
                rates.append(200 / (time.perf_counter() - begin))
                p50s.append(percentile(samples, 50))
                p99s.append(percentile(samples, 99))
            loaded = [
                load_test(service.port, "/api/jobs/one/runs?limit=20", seconds=2.0)
                for _ in range(REPS)
            ]
            client.close()
        RESULTS["history"][str(size)] = {
            "one_task_run_ms": spread(run_times),
            "runs_list_p50_ms": spread(p50s),
            "runs_list_p99_ms": spread(p99s),
            "runs_list_rps": spread(rates),
            "runs_list_10conns": {
                "rps": spread([r for r, _, _ in loaded]),
                "p50_ms": spread([p for _, p, _ in loaded]),
                "p99_ms": spread([p for _, _, p in loaded]),
            },
        }
        log(
            f"history {size}: run {statistics.median(run_times):.1f} ms, "
            f"list p99 {statistics.median(p99s):.2f} ms"
        )
    base = RESULTS["history"]["0"]["one_task_run_ms"]["median"]
    RESULTS["history"]["ratio_10000_vs_0"] = (
        RESULTS["history"]["10000"]["one_task_run_ms"]["median"] / base
    )


def load_test(
    port: int, path: str, seconds: float = 3.0, connections: int = 10
) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) with `connections` concurrent keep-alive clients: wrk when
    present, else Python threads (which measure the client as much as the server)."""
    if shutil.which("wrk"):
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "--latency",
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
        ).stdout
        rate = float(
            next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec"))
        )
        p50, p99 = (
            next(line.split()[1] for line in out.splitlines() if line.strip().startswith(pct))
            for pct in ("50%", "99%")
        )
        return rate, _wrk_ms(p50), _wrk_ms(p99)
    import http.client

    samples: list[float] = []
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            conn.request("GET", path)
            conn.getresponse().read()
            samples.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(samples) / seconds, percentile(samples, 50), percentile(samples, 99)


def _wrk_ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def bench_api_and_memory(work: str) -> None:
    jobs_dir = os.path.join(work, "api_jobs")
    shutil.copytree(os.path.join(ROOT, "examples", "jobs"), jobs_dir)
    with open(os.path.join(jobs_dir, "one.yaml"), "w") as handle:
        handle.write(job_yaml("one", [("only", [])]))
    with petit_service(
        os.path.join(work, "api"), jobs_dir, os.path.join(work, "api.db")
    ).running() as service:
        time.sleep(1.0)  # let the children finish their imports before measuring idle memory
        idle_rss, idle_pss, idle_petit = (
            rss_mib(petit_tree(service)),
            pss_mib(petit_tree(service)),
            rss_mib(petit_tree(service, with_tracker=False)),
        )
        for path in ("/api/health", "/api/jobs"):
            rates, p50s, p99s = [], [], []
            for _ in range(REPS):
                rate, p50, p99 = load_test(service.port, path)
                rates.append(rate)
                p50s.append(p50)
                p99s.append(p99)
            RESULTS[f"api {path}"] = {
                "rps": spread(rates),
                "p50_ms": spread(p50s),
                "p99_ms": spread(p99s),
            }
            log(
                f"{path}: {statistics.median(rates):.0f} req/s, "
                f"p99 {statistics.median(p99s):.2f} ms"
            )
        sequential = [health_sequential(service.port) for _ in range(REPS)]
        RESULTS["api /api/health sequential"] = {
            "rps": spread([r for r, _, _ in sequential]),
            "p50_ms": spread([p for _, p, _ in sequential]),
            "p99_ms": spread([p for _, _, p in sequential]),
        }
        _many_runs(service, "one", 5000)
        after_rss, after_pss, after_petit = (
            rss_mib(petit_tree(service)),
            pss_mib(petit_tree(service)),
            rss_mib(petit_tree(service, with_tracker=False)),
        )
    RESULTS["memory_mib"] = {
        "idle_rss_petit": idle_petit,
        "idle_rss": idle_rss,
        "idle_pss": idle_pss,
        "after_5000_runs_rss_petit": after_petit,
        "after_5000_runs_rss": after_rss,
        "after_5000_runs_pss": after_pss,
        "growth_pct_rss_petit": 100 * (after_petit / idle_petit - 1),
        "growth_pct_rss": 100 * (after_rss / idle_rss - 1),
    }
    log(f"memory: {RESULTS['memory_mib']}")


def health_sequential(port: int, requests: int = 2000) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of GET /api/health, one client, sequential keep-alive
    requests after a warm-up."""
    client = KeepAlive(port)
    try:
        for _ in range(50):
            client.request("GET", "/api/health")
        samples = []
        begin = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            status, _ = client.request("GET", "/api/health")
            samples.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"GET /api/health: {status}")
        elapsed = time.perf_counter() - begin
    finally:
        client.close()
    return requests / elapsed, percentile(samples, 50), percentile(samples, 99)


def bench_worker_restart(work: str) -> None:
    """SIGKILL of the scheduler worker -> the first trigger the API accepts again (the
    supervisor's first restart backoff, a fresh worker's start-up and recovery), one fresh
    service per repetition so each kill meets the first backoff."""
    jobs_dir = os.path.join(work, "restart_jobs")
    os.makedirs(jobs_dir)
    with open(os.path.join(jobs_dir, "one.yaml"), "w") as handle:
        handle.write(job_yaml("one", [("only", [])]))
    samples = []
    for rep in range(REPS):
        root = os.path.join(work, f"restart_{rep}")
        with petit_service(root, jobs_dir, os.path.join(root, "petit.db")).running() as service:
            os.kill(service.worker_pid(), signal.SIGKILL)
            killed = time.perf_counter()
            wait_until(
                lambda: (
                    (r := try_request(service.port, "POST", "/api/jobs/one/trigger"))
                    and r.status == 200
                ),
                timeout=30,
                interval=0.01,
                message="a trigger accepted after the worker was killed",
            )
            samples.append(time.perf_counter() - killed)
    RESULTS["worker_restart_s"] = spread(samples)
    log(f"worker restart: first accepted trigger {statistics.median(samples):.3f}s after SIGKILL")


def _many_runs(service: Service, job_id: str, count: int) -> None:
    """`count` runs through the running service, four triggers in flight at a time."""
    import http.client

    remaining = iter(range(count))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            conn.request("POST", f"/api/jobs/{job_id}/trigger")
            response = conn.getresponse()
            response.read()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    service.get("/api/health")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and service.get("/api/scheduler/state").status == 200:
        runs = service.get(f"/api/jobs/{job_id}/runs?limit=1").json()["runs"]
        if runs and runs[0]["status"] in ("completed", "failed"):
            break
        time.sleep(0.1)


def bench_dashboard(work: str) -> None:
    """The dashboard in headless Chromium (bench/dashboard.py): the overview of DASH_JOBS jobs
    with DASH_RUNS_PER_JOB stored runs each, then the job page of DAGs of DAG_TARGETS tasks."""
    reason = missing()
    if reason:
        log(f"dashboard: skipped, {reason} (apt-get install -y chromium chromium-driver)")
        RESULTS["dashboard"] = {"skipped": reason}
        return
    jobs_dir = os.path.join(work, "dash_jobs")
    os.makedirs(jobs_dir)
    db = os.path.join(work, "dash.db")
    for number in range(DASH_JOBS):
        job_id = f"job{number:04d}"
        with open(os.path.join(jobs_dir, f"{job_id}.yaml"), "w") as handle:
            every = "1h" if number % 2 else "6h"
            handle.write(job_yaml(job_id, [("only", [])], extra=f'schedule: "@every {every}"'))
        fill_history(db, job_id, DASH_RUNS_PER_JOB)
    # the main file's per-job outcome (what the overview's status column reads): one write per
    # job of its newest run, as the scheduler does when a run ends
    store = Store(db, fsync=False)
    store.save_runs(store.list_runs(f"job{n:04d}", 1)[0] for n in range(DASH_JOBS))
    dags_dir = os.path.join(work, "dash_dags")
    os.makedirs(dags_dir)
    for size in DAG_TARGETS:
        with open(os.path.join(dags_dir, f"dag{size}.yaml"), "w") as handle:
            handle.write(job_yaml(f"dag{size}", layered_dag(size)))
    figures: dict = {"jobs": DASH_JOBS, "runs": DASH_JOBS * DASH_RUNS_PER_JOB}
    browser = Browser()
    try:
        with petit_service(
            os.path.join(work, "dash"), jobs_dir, db, "--keep-runs", "100000"
        ).running() as service:
            loads = [dashboard.load(browser, service.port, "/", "overview") for _ in range(REPS)]
            figures["overview"] = {
                "paint_ms": spread([x["paint_ms"] for x in loads]),
                "ready_ms": spread([x["ready_ms"] for x in loads]),
                "longest_task_ms": spread([x["longest_task_ms"] for x in loads]),
                "heap_mib": dashboard.heap_mib(browser),
            }
        with petit_service(os.path.join(work, "dash_dag"), dags_dir, db + "-dags").running() as svc:
            for size in DAG_TARGETS:
                loads = [
                    dashboard.load(browser, svc.port, f"/jobs/dag{size}", "job")
                    for _ in range(REPS)
                ]
                # the page draws a graph up to its list threshold, a list above it
                view = next((v for v in DAG_VIEWS if len(browser.css(v)) == size), None)
                if view is None:
                    raise RuntimeError(f"the job page of dag{size} shows neither of {DAG_VIEWS}")
                figures[f"dag{size}"] = {
                    "view": view,
                    "ready_ms": spread([x["ready_ms"] for x in loads]),
                    "longest_task_ms": spread([x["longest_task_ms"] for x in loads]),
                    "heap_mib": dashboard.heap_mib(browser),
                    "scroll_ms": spread(
                        [dashboard.scroll_ms(browser, view.split()[0]) for _ in range(REPS)]
                    ),
                    "round_trip_ms": spread(
                        [dashboard.round_trip_ms(browser) for _ in range(REPS)]
                    ),
                }
    finally:
        browser.quit()
    RESULTS["dashboard"] = figures
    log(f"dashboard: {figures}")


def layered_dag(size: int, width: int = 20) -> list[tuple[str, list[str]]]:
    """`size` tasks in layers of `width`; each depends on two neighbours of the layer above."""
    tasks = []
    for n in range(size):
        layer, i = divmod(n, width)
        deps = [f"t{(layer - 1) * width + (i + k) % width}" for k in (0, 1)] if layer else []
        tasks.append((f"t{n}", deps))
    return tasks


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table() -> str:
    rows = [("figure", "petit", "baseline / target", "ratio")]
    for name in workloads():
        r = RESULTS[name]
        base = r["baseline_s"]["median"]
        rows.append(
            (
                f"{name} petit trigger",
                _s(r["trigger_s"]),
                f"{base:.3f}s",
                f"{r['trigger_ratio']:.2f}x",
            )
        )
        rows.append((f"{name} HTTP", _s(r["http_s"]), f"{base:.3f}s", f"{r['http_ratio']:.2f}x"))
    lat = RESULTS["trigger_latency_ms"]
    rows.append(
        (
            "trigger latency p50 / p99",
            f"{lat['p50']['median']:.1f} / {lat['p99']['median']:.1f} ms",
            "<= 15 / 50 ms",
            "",
        )
    )
    events = RESULTS["event_latency_ms"]
    rows.append(
        (
            "event latency p50 / p99 (stamp -> SSE task)",
            f"{events['p50']['median']:.1f} / {events['p99']['median']:.1f} ms",
            "p99 <= 50 ms",
            "",
        )
    )
    crowd = RESULTS["stream_clients"]
    rows.append(
        (
            f"W1 HTTP, {crowd['clients']} SSE clients reading",
            _s(crowd["w1_http_clients_s"]),
            f"{crowd['w1_http_none_s']['median']:.3f}s (none); <= 1.10x",
            f"{crowd['ratio']:.2f}x",
        )
    )
    mem = crowd["api_memory_mib"]
    for kind in ("rss", "pss"):
        rows.append(
            (
                f"API {kind.upper()}: none / {crowd['clients']} clients / after a W1",
                f"{mem[kind + '_none']:.1f} / {mem[kind + '_connected']:.1f} / "
                f"{mem[kind + '_streamed']:.1f} MiB",
                "",
                f"{mem[kind + '_streamed'] - mem[kind + '_none']:+.1f} MiB",
            )
        )
    follow = RESULTS["follow_latency_ms"]
    rows.append(
        (
            "log follow latency p50 / p99 (line -> SSE)",
            f"{follow['p50']['median']:.0f} / {follow['p99']['median']:.0f} ms",
            "p99 <= 1500 ms",
            "",
        )
    )
    fire = RESULTS["fire_lateness_ms"]
    rows.append(
        (
            f"fire lateness p50/p99/max ({fire['fires']} fires)",
            f"{fire['p50']:.1f} / {fire['p99']:.1f} / {fire['max']:.1f} ms",
            "<= 10 / 50 ms",
            "",
        )
    )
    rows.append(
        ("missed / duplicate fires", f"{fire['missed']} / {fire['duplicates']}", "0 / 0", "")
    )
    hist = RESULTS["history"]
    for size in ("0", "1000", "10000"):
        h = hist[size]
        rows.append((f"1-task run, {size} runs stored", _ms(h["one_task_run_ms"]), "", ""))
        rows.append(
            (
                f"runs?limit=20 p50/p99, {size} stored",
                f"{h['runs_list_p50_ms']['median']:.2f} / {h['runs_list_p99_ms']['median']:.2f} ms",
                "p99 <= 20 ms",
                f"{h['runs_list_rps']['median']:.0f} req/s (1 client)",
            )
        )
        w = h["runs_list_10conns"]
        rows.append(
            (
                f"runs?limit=20, {size} stored, 10 conns",
                f"{w['rps']['median']:.0f} req/s, p50 "
                f"{w['p50_ms']['median']:.2f} / p99 {w['p99_ms']['median']:.2f} ms",
                "",
                "",
            )
        )
    rows.append(
        ("1-task run 10,000 vs 0 stored", "", "<= 1.25x", f"{hist['ratio_10000_vs_0']:.2f}x")
    )
    for path in ("/api/health", "/api/jobs"):
        a = RESULTS[f"api {path}"]
        rows.append(
            (
                f"GET {path} (10 conns)",
                f"{a['rps']['median']:.0f} req/s, p50 {a['p50_ms']['median']:.2f} "
                f"/ p99 {a['p99_ms']['median']:.2f} ms",
                ">= 3000 req/s" if path.endswith("health") else "",
                "",
            )
        )
    seq = RESULTS["api /api/health sequential"]
    rows.append(
        (
            "GET /api/health (1 conn, sequential)",
            f"{seq['rps']['median']:.0f} req/s, p50 {seq['p50_ms']['median']:.2f} "
            f"/ p99 {seq['p99_ms']['median']:.2f} ms",
            "",
            "",
        )
    )
    rows.append(("worker SIGKILL -> trigger accepted", _s(RESULTS["worker_restart_s"]), "", ""))
    mem = RESULTS["memory_mib"]
    rows.append(
        (
            "memory idle: supervisor+scheduler+API RSS",
            f"{mem['idle_rss_petit']:.1f} MiB",
            "<= 80 MiB",
            "",
        )
    )
    rows.append(
        (
            "  + mp resource tracker: RSS / PSS",
            f"{mem['idle_rss']:.1f} / {mem['idle_pss']:.1f} MiB",
            "",
            "",
        )
    )
    rows.append(
        (
            "memory after 5,000 runs (RSS, 3 procs)",
            f"{mem['after_5000_runs_rss_petit']:.1f} MiB",
            "growth <= 10%",
            f"{mem['growth_pct_rss_petit']:+.1f}%",
        )
    )
    rows += catchup_rows(RESULTS["catchup"], RESULTS["schedule_speed"])
    rows += dashboard_rows(RESULTS["dashboard"])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows
    )


def dashboard_rows(dash: dict) -> list[tuple[str, str, str, str]]:
    """The table's rows of bench_dashboard's figures."""
    rows = []
    if "skipped" in dash:
        rows.append(("dashboard (headless Chromium)", f"skipped: {dash['skipped']}", "", ""))
    else:
        over = dash["overview"]
        rows.append(
            (
                f"overview, {dash['jobs']:,} jobs / {dash['runs']:,} runs: first paint",
                _ms(over["paint_ms"]),
                "",
                "",
            )
        )
        rows.append(("  data rendered (data-ready)", _ms(over["ready_ms"]), "", ""))
        rows.append(
            (
                "  longest main-thread task / JS heap",
                f"{over['longest_task_ms']['median']:.0f} ms / {over['heap_mib']:.1f} MiB",
                "",
                "",
            )
        )
        for size, target in DAG_TARGETS.items():
            dag = dash[f"dag{size}"]
            shown = "graph" if dag["view"] == DAG_VIEWS[0] else "list"
            rows.append(
                (
                    f"job page, {size:,}-task DAG ({shown}): rendered",
                    _ms(dag["ready_ms"]),
                    target,
                    "",
                )
            )
            rows.append(
                (
                    "  longest task / heap / scroll+frame (round trip)",
                    f"{dag['longest_task_ms']['median']:.0f} ms / {dag['heap_mib']:.1f} MiB / "
                    f"{dag['scroll_ms']['median']:.1f} ms "
                    f"({dag['round_trip_ms']['median']:.1f} ms)",
                    "",
                    "",
                )
            )
    return rows


def _s(s: dict) -> str:
    return f"{s['median']:.3f}s [{s['min']:.3f}-{s['max']:.3f}]"


def _ms(s: dict) -> str:
    return f"{s['median']:.1f} ms [{s['min']:.1f}-{s['max']:.1f}]"


def main() -> int:
    work = tempfile.mkdtemp(prefix="petit-bench-")
    started = time.time()
    try:
        bench_dags(work)
        bench_trigger_latency(work)
        bench_event_latency(work)
        bench_stream_clients(work)
        bench_follow_latency(work)
        bench_history(work)
        bench_api_and_memory(work)
        bench_worker_restart(work)
        bench_fire_accuracy(work)
        RESULTS["schedule_speed"] = schedule_speed()
        RESULTS["catchup"] = bench_catchup()
        log(f"fire times: {RESULTS['schedule_speed']}; catch-up: {RESULTS['catchup']}")
        bench_dashboard(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS["meta"] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "reps": REPS,
        "load_generator": "wrk" if shutil.which("wrk") else "python threads",
        "seconds": round(time.time() - started, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as handle:
        json.dump(RESULTS, handle, indent=2)
    print(table())
    print(
        f"\n{RESULTS['meta']}; figures are medians of {REPS} repetitions [min-max]; "
        "JSON in bench/results/latest.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
