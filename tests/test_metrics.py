"""Prometheus metrics: the scheduler worker's collector fed with events (counts, buckets,
lateness, runs in flight, last success), the exposition parsed by prometheus_client's own parser
(and checked by `promtool` when it is installed), `petit ctl metrics`, and end to end through
`bin/petit run` with a token: exact counts of real runs, 401 without the token, a scrape that
still answers while the scheduler does not, and counters that survive a killed API process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import datetime

import psutil
import pytest
from api_client import request, try_request
from jobfiles import job_yaml
from processes import run_petit, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_layering import loaded

from petit.api.exposition import CONTENT_TYPE, render
from petit.core.events import (
    FireDropped,
    RunCreated,
    RunEnded,
    RunStarted,
    TaskEnded,
    TaskRetrying,
    TaskStarted,
)
from petit.core.model import Job, Task
from petit.core.timing import CatchupPolicy, ScheduleSpec
from petit.ipc.commands import metrics_text
from petit.service.metrics import (
    DURATION_BUCKETS,
    LATENESS_BUCKETS,
    MEMORY_BUCKETS,
    MetricsCollector,
)

TOKEN = "s3cret-metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOBS = {
    "ok": Job("ok", "ok", (Task("t", "t"),)),
    "tick": Job("tick", "tick", (), schedules=(ScheduleSpec("@every 1s"),)),
}


def run_events(run_id: str, job_id: str, *, at: int, trigger: str = "manual", scheduled_at=None):
    return [
        RunCreated(at=at, run_id=run_id, job_id=job_id, trigger=trigger, scheduled_at=scheduled_at),
        RunStarted(at=at + 5, run_id=run_id, job_id=job_id),
    ]


def attempt(run_id: str, job_id: str, number: int, status: str | None, at: int = 0):
    """An attempt's end: TaskRetrying when `status` is None, else the task's TaskEnded."""
    ids = {"at": at, "run_id": run_id, "job_id": job_id, "task_id": "t", "attempt": number}
    if status is None:
        return TaskRetrying(**ids, error="exit 1", exit_code=1, delay_secs=0.0)
    return TaskEnded(**ids, status=status)


def fed(*events, last_success_at=None) -> MetricsCollector:
    collector = MetricsCollector(last_success_at)
    for event in events:
        collector.observe(event)
    return collector


def value(series: list[dict], **labels) -> int:
    (found,) = [s["value"] for s in series if all(s[k] == v for k, v in labels.items())]
    return found


def histogram(snapshot: dict, family: str, job_id: str) -> dict:
    (found,) = [s for s in snapshot[family]["series"] if s["job_id"] == job_id]
    return found


# -- the collector, from events -------------------------------------------------------------------


def test_runs_and_attempts_are_counted_by_status_trigger_and_outcome():
    collector = fed(
        *run_events("ok-1", "ok", at=1000),
        TaskStarted(at=1010, run_id="ok-1", job_id="ok", task_id="t", attempt=1),
        attempt("ok-1", "ok", 1, "completed"),
        RunEnded(at=1500, run_id="ok-1", job_id="ok", status="completed", duration_ms=495),
        # a flaky task: failed, retried, then failed for good
        *run_events("ok-2", "ok", at=2000),
        attempt("ok-2", "ok", 1, None),
        attempt("ok-2", "ok", 2, "failed"),
        RunEnded(at=2600, run_id="ok-2", job_id="ok", status="failed", duration_ms=595),
        # cancelled during the retry delay: the waiting task ends failed with the attempt that
        # was already counted as retried; a task that never ran is skipped (attempt 0)
        *run_events("ok-3", "ok", at=3000),
        attempt("ok-3", "ok", 1, None),
        attempt("ok-3", "ok", 1, "failed"),
        attempt("ok-3", "ok", 0, "skipped"),
        RunEnded(at=3100, run_id="ok-3", job_id="ok", status="cancelled", duration_ms=95),
        *run_events("tick-1", "tick", at=4000, trigger="schedule", scheduled_at=4000),
        RunEnded(at=4100, run_id="tick-1", job_id="tick", status="completed", duration_ms=95),
        FireDropped(at=5000, job_id="tick", scheduled_at=5000, reason="max_concurrency"),
        FireDropped(at=6000, job_id="tick", scheduled_at=6000, reason="max_concurrency"),
    )
    snap = collector.snapshot(JOBS)
    runs = snap["runs_total"]
    assert value(runs, job_id="ok", status="completed", trigger="manual") == 1
    assert value(runs, job_id="ok", status="failed", trigger="manual") == 1
    assert value(runs, job_id="ok", status="cancelled", trigger="manual") == 1
    assert value(runs, job_id="tick", status="completed", trigger="schedule") == 1
    attempts = snap["task_attempts_total"]
    assert value(attempts, job_id="ok", status="completed") == 1
    assert value(attempts, job_id="ok", status="retried") == 2
    assert value(attempts, job_id="ok", status="failed") == 1  # ok-3's counted once, as retried
    dropped = snap["fires_dropped_total"]
    assert value(dropped, job_id="tick", reason="max_concurrency") == 2
    assert value(dropped, job_id="tick", reason="paused") == 0


def test_what_tasks_used_is_counted_once_per_task_from_its_totals():
    mib = 2**20
    ids = {"run_id": "ok-1", "job_id": "ok"}
    collector = fed(
        *run_events("ok-1", "ok", at=1000),
        # retried, then completed: the task's totals cover both attempts
        attempt("ok-1", "ok", 1, None),
        TaskEnded(
            at=1100,
            **ids,
            task_id="t",
            attempt=2,
            status="completed",
            cpu_secs=0.75,
            max_rss_bytes=5 * mib,
        ),
        # cancelled in its retry delay: its one attempt was counted, its usage was not yet
        TaskRetrying(at=1200, **ids, task_id="u", attempt=1, error="x", exit_code=1, delay_secs=9),
        TaskEnded(
            at=1300,
            **ids,
            task_id="u",
            attempt=1,
            status="failed",
            cpu_secs=0.25,
            max_rss_bytes=mib,
        ),
        TaskEnded(at=1400, **ids, task_id="v", attempt=0, status="skipped"),  # nothing measured
    )
    snap = collector.snapshot(JOBS)
    assert value(snap["task_cpu_seconds_total"], job_id="ok") == 1.0
    assert value(snap["task_cpu_seconds_total"], job_id="tick") == 0  # there from the start
    assert snap["task_max_rss_bytes"]["buckets"] == list(MEMORY_BUCKETS)
    assert MEMORY_BUCKETS[:3] == (mib, 4 * mib, 16 * mib)
    memory = histogram(snap, "task_max_rss_bytes", "ok")
    assert (memory["count"], memory["sum"]) == (2, 6 * mib)
    assert memory["counts"][:3] == [1, 1, 2]  # bounds inclusive: 1 MiB falls in the first
    assert histogram(snap, "task_max_rss_bytes", "tick")["count"] == 0
    assert value(snap["task_attempts_total"], job_id="ok", status="retried") == 2


def test_every_series_a_job_can_have_starts_at_zero():
    snap = fed().snapshot(JOBS)
    triggers = {(s["job_id"], s["trigger"]) for s in snap["runs_total"]}
    assert triggers == {("ok", "manual"), ("tick", "manual"), ("tick", "schedule")}
    statuses = {s["status"] for s in snap["runs_total"]}
    assert statuses == {"completed", "failed", "interrupted", "cancelled"}
    assert {s["status"] for s in snap["task_attempts_total"]} == {"completed", "failed", "retried"}
    assert {s["job_id"] for s in snap["fires_dropped_total"]} == {"tick"}  # only it fires
    assert all(s["value"] == 0 for f in ("runs_total", "task_attempts_total") for s in snap[f])
    assert [s["job_id"] for s in snap["run_duration_seconds"]["series"]] == ["ok", "tick"]
    assert [s["job_id"] for s in snap["fire_lateness_seconds"]["series"]] == ["tick"]
    assert histogram(snap, "run_duration_seconds", "ok") == {
        "job_id": "ok",
        "counts": [0] * len(DURATION_BUCKETS),
        "count": 0,
        "sum": 0.0,
    }
    assert snap["runs_active"] == {"ok": 0, "tick": 0}
    assert snap["runs_queued"] == {"ok": 0, "tick": 0}
    assert snap["jobs"] == ["ok", "tick"]


def test_durations_fall_in_cumulative_buckets_with_inclusive_bounds():
    durations_ms = [50, 100, 101, 1000, 7_200_000, 99_000_000]  # 99e6 ms: past the last bound
    events = []
    for number, ms in enumerate(durations_ms, 1):
        events += run_events(f"ok-{number}", "ok", at=number * 10)
        events.append(
            RunEnded(at=0, run_id=f"ok-{number}", job_id="ok", status="completed", duration_ms=ms)
        )
    buckets = histogram(fed(*events).snapshot(JOBS), "run_duration_seconds", "ok")
    by_bound = dict(zip(DURATION_BUCKETS, buckets["counts"], strict=True))
    assert by_bound[0.1] == 2  # 0.05 and exactly 0.1: `le` includes its bound
    assert by_bound[0.5] == 3 and by_bound[1] == 4
    assert by_bound[3600] == 4 and by_bound[3 * 3600] == 5 and by_bound[12 * 3600] == 5
    assert buckets["count"] == 6  # the +Inf bucket
    assert buckets["sum"] == pytest.approx(sum(durations_ms) / 1000)


def test_lateness_is_start_minus_scheduled_time_for_scheduled_runs_only():
    collector = fed(
        RunCreated(at=1000, run_id="tick-1", job_id="tick", trigger="schedule", scheduled_at=990),
        RunStarted(at=1030, run_id="tick-1", job_id="tick"),  # 40 ms late
        RunCreated(at=2000, run_id="tick-2", job_id="tick", trigger="schedule", scheduled_at=2000),
        RunStarted(at=1999, run_id="tick-2", job_id="tick"),  # the clock stepped back: 0
        *run_events("ok-1", "ok", at=3000),  # manual: no lateness
    )
    snap = collector.snapshot(JOBS)
    late = histogram(snap, "fire_lateness_seconds", "tick")
    by_bound = dict(zip(LATENESS_BUCKETS, late["counts"], strict=True))
    assert by_bound[0.005] == 1 and by_bound[0.025] == 1 and by_bound[0.05] == 2
    assert late["count"] == 2 and late["sum"] == pytest.approx(0.04)
    assert [s["job_id"] for s in snap["fire_lateness_seconds"]["series"]] == ["tick"]


def test_runs_in_flight_and_the_last_success():
    collector = fed(
        *run_events("ok-1", "ok", at=1000),
        *run_events("ok-2", "ok", at=1100),
        RunEnded(at=1500, run_id="ok-1", job_id="ok", status="completed", duration_ms=495),
        *run_events("gone-1", "gone", at=1200),  # a job a reload removed, still running
        last_success_at={"tick": 500, "ok": 700, "gone": 300},
    )
    snap = collector.snapshot(JOBS)
    assert snap["runs_active"] == {"ok": 1, "tick": 0, "gone": 1}
    # tick's from the store; gone's is kept, but a job no longer defined is never overdue
    assert snap["last_success_at"] == {"ok": 1500, "tick": 500}
    assert collector.snapshot({**JOBS, "gone": JOBS["ok"]})["last_success_at"]["gone"] == 300
    collector.observe(RunEnded(at=1800, run_id="ok-2", job_id="ok", status="failed"))
    snap = collector.snapshot(JOBS)
    assert snap["runs_active"]["ok"] == 0 and snap["last_success_at"]["ok"] == 1500


def test_queued_runs_are_counted_apart_until_they_start_and_never_count_as_late():
    collector = fed(
        # a scheduled fire that found the job busy: queued at 1000, started 9 s later
        RunCreated(1000, "tick-1", "tick", "schedule", scheduled_at=1000, status="queued"),
        RunCreated(1100, "tick-2", "tick", "schedule", scheduled_at=1100, status="queued"),
        RunCreated(1200, "ok-1", "ok", "manual", status="queued"),
    )
    snap = collector.snapshot(JOBS)
    assert snap["runs_queued"] == {"ok": 1, "tick": 2}
    assert snap["runs_active"] == {"ok": 0, "tick": 0}
    collector.observe(RunStarted(10_000, "tick-1", "tick"))
    # cancelled while queued: counted; the model gives it no duration (its wait is not work)
    collector.observe(RunEnded(10_050, "ok-1", "ok", "cancelled", duration_ms=None))
    snap = collector.snapshot(JOBS)
    assert snap["runs_queued"] == {"ok": 0, "tick": 1}
    assert snap["runs_active"] == {"ok": 0, "tick": 1}
    assert histogram(snap, "fire_lateness_seconds", "tick")["count"] == 0
    assert value(snap["runs_total"], job_id="ok", status="cancelled", trigger="manual") == 1
    assert histogram(snap, "run_duration_seconds", "ok")["count"] == 0


def test_lateness_leaves_out_the_jitter_and_catchup_runs():
    collector = fed(
        # a fire at 1000 with a 7 s jitter: due at 8000, started 20 ms after that
        RunCreated(8000, "tick-1", "tick", "schedule", scheduled_at=1000, jitter_ms=7000),
        RunStarted(8020, "tick-1", "tick"),
        # a fire missed while petit was down, run an hour later
        RunCreated(3_600_000, "tick-2", "tick", "catchup", scheduled_at=2000),
        RunStarted(3_600_010, "tick-2", "tick"),
    )
    late = histogram(collector.snapshot(JOBS), "fire_lateness_seconds", "tick")
    assert late["count"] == 1 and late["sum"] == pytest.approx(0.02)


def test_a_span_of_dropped_fires_counts_each_fire_and_an_uncounted_one_at_least_one():
    collector = fed(
        FireDropped(5000, "tick", 5000, "outside_catchup_window", until=65_000, count=60),
        FireDropped(70_000, "tick", 70_000, "catchup_limit", until=9_000_000, count=None),
        FireDropped(80_000, "tick", 80_000, "max_queued"),
    )
    dropped = collector.snapshot(JOBS)["fires_dropped_total"]
    assert value(dropped, job_id="tick", reason="outside_catchup_window") == 60
    assert value(dropped, job_id="tick", reason="catchup_limit") == 1
    assert value(dropped, job_id="tick", reason="max_queued") == 1


def test_catchup_runs_have_their_trigger_series_only_for_jobs_with_catchup():
    jobs = {
        **JOBS,
        "late": Job(
            "late",
            "late",
            (),
            schedules=(ScheduleSpec("@hourly"),),
            catchup=CatchupPolicy.ALL,
            catchup_window_secs=7200,
        ),
    }
    collector = fed(
        RunCreated(1000, "late-1", "late", "catchup", scheduled_at=10),
        RunEnded(1500, "late-1", "late", "completed", duration_ms=400),
    )
    runs = collector.snapshot(jobs)["runs_total"]
    assert {s["job_id"] for s in runs if s["trigger"] == "catchup"} == {"late"}
    assert value(runs, job_id="late", status="completed", trigger="catchup") == 1
    assert value(runs, job_id="late", status="failed", trigger="catchup") == 0


# -- the exposition and ctl's text ----------------------------------------------------------------

STATUS = {
    "supervisor": {"pid": 10},
    "children": [
        {"name": "scheduler", "pid": 11, "restarts": 2},
        {"name": "api", "pid": 12, "restarts": 0},
    ],
}
PROCESSES = {
    name: {
        "resident_memory_bytes": 30e6,
        "cpu_seconds": 1.5,
        "open_fds": 9,
        "start_time_seconds": 1.7e9,
    }
    for name in ("supervisor", "scheduler", "api")
}


def a_snapshot() -> dict:
    jobs = {**JOBS, "odd.job-1": Job("odd.job-1", "odd", (), schedules=(ScheduleSpec("@daily"),))}
    collector = fed(
        *run_events("odd.job-1-1", "odd.job-1", at=1000, trigger="schedule", scheduled_at=990),
        attempt("odd.job-1-1", "odd.job-1", 1, None),
        TaskEnded(
            at=0,
            run_id="odd.job-1-1",
            job_id="odd.job-1",
            task_id="t",
            attempt=2,
            status="completed",
            cpu_secs=1.5,
            max_rss_bytes=3 * 2**20,
        ),
        RunEnded(at=1500, run_id="odd.job-1-1", job_id="odd.job-1", status="completed"),
        *run_events("ok-1", "ok", at=2000),
        RunCreated(at=2100, run_id="ok-2", job_id="ok", trigger="manual", status="queued"),
        FireDropped(at=5000, job_id="tick", scheduled_at=5000, reason="paused"),
    )
    return {**collector.snapshot(jobs), "paused": True, "next_fire_at": {"odd.job-1": 86400000}}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value, read by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def types(text: str) -> dict[str, str]:
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_the_exposition_has_every_family_with_its_type():
    text = render(a_snapshot(), STATUS, PROCESSES).decode()
    assert types(text) == {
        "petit_scheduler_up": "gauge",
        "petit_runs": "counter",
        "petit_run_duration_seconds": "histogram",
        "petit_task_attempts": "counter",
        "petit_task_cpu_seconds": "counter",
        "petit_task_max_rss_bytes": "histogram",
        "petit_runs_active": "gauge",
        "petit_runs_queued": "gauge",
        "petit_fire_lateness_seconds": "histogram",
        "petit_fires_dropped": "counter",
        "petit_job_last_success_timestamp_seconds": "gauge",
        "petit_job_next_fire_timestamp_seconds": "gauge",
        "petit_scheduler_paused": "gauge",
        "petit_child_restarts": "counter",
        "petit_process_resident_memory_bytes": "gauge",
        "petit_process_cpu_seconds": "counter",
        "petit_process_open_fds": "gauge",
        "petit_process_start_time_seconds": "gauge",
    }
    got = samples(text)
    job = frozenset({("job_id", "odd.job-1")})
    assert got["petit_scheduler_up", frozenset()] == 1
    assert got["petit_scheduler_paused", frozenset()] == 1
    assert got["petit_task_attempts_total", job | {("status", "retried")}] == 1
    assert got["petit_task_cpu_seconds_total", job] == 1.5
    assert got["petit_task_max_rss_bytes_bucket", job | {("le", "1.048576e+06")}] == 0
    assert got["petit_task_max_rss_bytes_bucket", job | {("le", "4.194304e+06")}] == 1
    assert got["petit_task_max_rss_bytes_sum", job] == 3 * 2**20
    # started at 1005 for 990: 15 ms late
    assert got["petit_fire_lateness_seconds_bucket", job | {("le", "0.01")}] == 0
    assert got["petit_fire_lateness_seconds_bucket", job | {("le", "0.025")}] == 1
    assert got["petit_fire_lateness_seconds_bucket", job | {("le", "+Inf")}] == 1
    assert got["petit_job_last_success_timestamp_seconds", job] == 1.5
    assert got["petit_job_next_fire_timestamp_seconds", job] == 86400
    assert got["petit_runs_active", frozenset({("job_id", "ok")})] == 1
    assert got["petit_runs_queued", frozenset({("job_id", "ok")})] == 1
    assert got["petit_fires_dropped_total", frozenset({("job_id", "tick"), ("reason", "paused")})]
    assert got["petit_child_restarts_total", frozenset({("child", "scheduler")})] == 2
    assert got["petit_process_open_fds", frozenset({("process", "api")})] == 9
    assert CONTENT_TYPE.startswith("text/plain; version=")


def test_without_the_scheduler_the_scrape_still_has_the_supervisor_and_the_processes():
    text = render(None, STATUS, PROCESSES).decode()
    assert samples(text)["petit_scheduler_up", frozenset()] == 0
    assert set(types(text)) == {
        "petit_scheduler_up",
        "petit_child_restarts",
        "petit_process_resident_memory_bytes",
        "petit_process_cpu_seconds",
        "petit_process_open_fds",
        "petit_process_start_time_seconds",
    }


def test_promtool_accepts_the_exposition(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=render(a_snapshot(), STATUS, PROCESSES),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_ctl_metrics_prints_a_line_per_job():
    snapshot = a_snapshot()
    success = snapshot["last_success_at"]["odd.job-1"]
    assert metrics_text(snapshot).splitlines() == [
        "job         runs  failed  active  queued  dropped  last success",
        f"odd.job-1      1       0       0       0        0  {local_time(success)}",
        "ok             0       0       1       1        0  never",
        "tick           0       0       0       0        1  never",
        "scheduler paused",
    ]


def local_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def test_an_api_that_is_never_scraped_does_not_load_prometheus_client():
    assert loaded("api.app", ["prometheus_client"]) == []


# -- end to end ------------------------------------------------------------------------------------

E2E_JOBS = {
    "ok": job_yaml("ok", "true"),
    "flaky": job_yaml("flaky", "exit 3", extra="    retry: {max_attempts: 1, delay: 10ms}\n"),
    "tick": job_yaml("tick", "true", schedule="@every 1s"),
}


def scrape(svc, headers=AUTH) -> dict[tuple[str, frozenset], float]:
    response = request(svc.port, "GET", "/metrics", headers=headers)
    assert response.status == 200, (response.status, response.body[:300])
    assert response.content_type == CONTENT_TYPE
    return samples(response.body.decode())


def labelled(**labels: str) -> frozenset:
    return frozenset(labels.items())


def ended(svc, run_id: str):
    return wait_until(
        lambda: (run := svc.run(run_id)) is not None and run.status.is_terminal and run,
        timeout=15,
        message=f"run {run_id} to end",
    )


def counters(got: dict) -> dict:
    """The samples that may only grow: counters and every part of a histogram."""
    growing = ("_total", "_bucket", "_count", "_sum")
    return {
        key: value
        for key, value in got.items()
        if key[0].endswith(growing) and not key[0].startswith("petit_process_")
    }


@pytest.mark.timeout(90)
def test_scrape_real_runs_with_a_token_then_survive_a_killed_api(service):
    svc = service(E2E_JOBS, api=True, env={"PETIT_API_TOKEN": TOKEN})
    unauthorized = request(svc.port, "GET", "/metrics")
    assert unauthorized.status == 401 and unauthorized.json()["code"] == "UNAUTHORIZED"
    good = ended(svc, svc.call("trigger", "ok")["run_id"])
    bad = ended(svc, svc.call("trigger", "flaky")["run_id"])
    last_fire = wait_until(lambda: svc.runs("tick"), message="a tick run")[-1].scheduled_at
    running = scrape(svc)
    assert running["petit_scheduler_paused", frozenset()] == 0
    # @every keeps its phase: the next fire is a whole number of seconds after the last one seen
    next_fire = running["petit_job_next_fire_timestamp_seconds", labelled(job_id="tick")]
    ahead_ms = round(next_fire * 1000) - last_fire
    assert ahead_ms > 0 and ahead_ms % 1000 == 0, ahead_ms

    # paused, and once the last tick run ended, the run counts are final
    svc.call("pause")
    wait_until(
        lambda: all(r.status.is_terminal for r in svc.runs("tick")), message="tick runs to end"
    )
    before = wait_until(lambda: settled(scrape(svc)), message="a fire dropped in the pause")
    ticks = svc.runs("tick")
    assert before["petit_scheduler_up", frozenset()] == 1
    assert before["petit_scheduler_paused", frozenset()] == 1
    assert ("petit_job_next_fire_timestamp_seconds", labelled(job_id="tick")) not in before
    runs = {
        (dict(labels)["job_id"], dict(labels)["status"], dict(labels)["trigger"]): value
        for (name, labels), value in before.items()
        if name == "petit_runs_total" and value
    }
    assert runs == {
        ("ok", "completed", "manual"): 1,
        ("flaky", "failed", "manual"): 1,
        ("tick", "completed", "schedule"): len(ticks),
    }
    attempts = {
        (dict(labels)["job_id"], dict(labels)["status"]): value
        for (name, labels), value in before.items()
        if name == "petit_task_attempts_total" and value
    }
    assert attempts == {
        ("ok", "completed"): 1,
        ("flaky", "retried"): 1,
        ("flaky", "failed"): 1,
        ("tick", "completed"): len(ticks),
    }
    ok = labelled(job_id="ok")
    assert before["petit_run_duration_seconds_count", ok] == 1
    assert before["petit_run_duration_seconds_sum", ok] == pytest.approx(good.duration_ms / 1000)
    assert before["petit_job_last_success_timestamp_seconds", ok] == good.ended_at / 1000
    # what the tasks used, as their runs recorded it: ok's one attempt, flaky's two
    for run in (good, bad):
        job = labelled(job_id=run.job_id)
        assert run.cpu_secs is not None and run.max_rss_bytes is not None, run
        assert before["petit_task_cpu_seconds_total", job] == pytest.approx(run.cpu_secs)
        assert before["petit_task_max_rss_bytes_count", job] == 1
        assert before["petit_task_max_rss_bytes_sum", job] == run.max_rss_bytes
    assert ("petit_job_last_success_timestamp_seconds", labelled(job_id="flaky")) not in before
    assert bad.status.value == "failed"
    tick = labelled(job_id="tick")
    assert before["petit_fire_lateness_seconds_count", tick] == len(ticks)
    assert before["petit_fire_lateness_seconds_sum", tick] == pytest.approx(
        sum(r.started_at - r.scheduled_at for r in ticks) / 1000
    )
    assert ("petit_fire_lateness_seconds_count", ok) not in before  # never scheduled
    status = svc.status()
    pids = {"supervisor": status["supervisor"]["pid"]}
    pids.update({c["name"]: c["pid"] for c in status["children"]})
    for name, pid in pids.items():
        process = labelled(process=name)
        assert before["petit_process_resident_memory_bytes", process] > 1e6, name
        assert before["petit_process_open_fds", process] >= 3, name
        assert before["petit_process_start_time_seconds", process] == pytest.approx(
            psutil.Process(pid).create_time(), abs=0.01
        )
    assert before["petit_child_restarts_total", labelled(child="api")] == 0

    # a scheduler that does not answer: the scrape still has the supervisor and the processes
    os.kill(pids["scheduler"], signal.SIGSTOP)
    try:
        stalled = scrape(svc)
    finally:
        os.kill(pids["scheduler"], signal.SIGCONT)
    assert stalled["petit_scheduler_up", frozenset()] == 0
    assert (
        "petit_runs_total",
        labelled(job_id="ok", status="completed", trigger="manual"),
    ) not in stalled
    assert stalled["petit_child_restarts_total", labelled(child="scheduler")] == 0
    assert ("petit_process_open_fds", labelled(process="scheduler")) in stalled

    # the counts live in the worker: a killed API comes back with none of them lost
    os.kill(pids["api"], signal.SIGKILL)
    wait_until(
        lambda: (api := svc.child("api"))["state"] == "running" and api["pid"] != pids["api"],
        timeout=20,
        message="the API back with a new pid",
    )
    after = wait_until(lambda: try_scrape(svc), timeout=10, message="a scrape of the new API")
    assert after["petit_child_restarts_total", labelled(child="api")] == 1
    lost = {
        key: (value, after.get(key))
        for key, value in counters(before).items()
        if after.get(key, -1) < value
    }
    assert not lost, lost
    assert {k: v for k, v in counters(after).items() if k[0] == "petit_runs_total"} == {
        k: v for k, v in counters(before).items() if k[0] == "petit_runs_total"
    }

    human = run_petit("ctl", "metrics", "--socket", svc.socket, timeout=30)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].split() == [
        "job",
        "runs",
        "failed",
        "active",
        "queued",
        "dropped",
        "last",
        "success",
    ]
    assert lines[1].split()[:6] == ["flaky", "1", "1", "0", "0", "0"]
    assert lines[-1] == "scheduler paused"


def settled(got: dict) -> dict | None:
    """The scrape once the collector saw every run end (none active: their RunEnded was counted,
    not only written to the store) and a fire was dropped in the pause."""
    active = sum(value for (name, _), value in got.items() if name == "petit_runs_active")
    paused = labelled(job_id="tick", reason="paused")
    return got if active == 0 and got["petit_fires_dropped_total", paused] else None


def try_scrape(svc) -> dict | None:
    response = try_request(svc.port, "GET", "/metrics", headers=AUTH)
    return samples(response.body.decode()) if response and response.status == 200 else None
