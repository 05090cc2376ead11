"""The policies of issue 12 as the HTTP API, the event stream, /metrics and `petit runs` show
them, against one real `bin/petit run`: a manual trigger with ?queue=true at the job's limit
(202, status queued, then 429 once the queue is full), the queued run in the job, the runs
filter, the stream and the metrics, its prompt cancel; the drop record of a busy every-second
job through GET /api/jobs/{id}/drops, paged; and the OpenAPI document of all of it."""

from __future__ import annotations

import json
import os
import time

import pytest
from harness import Service
from processes import run_petit, wait_until
from sse_client import SseStream
from test_api import assert_documented, assert_error, ok, schema_problems
from test_metrics import labelled, scrape

from petit.core.model import RunStatus
from petit.core.timing import CatchupPolicy, DropReason, OverlapPolicy
from petit.ipc.stream import EVENT_NAMES

GATES = "gates"
ALL = "all"  # the gate of every run: opened before the service stops, so none holds it up


def jobs(gates: str) -> dict[str, str]:
    """`hold` and `ticker` runs wait for GATES/<run id> (or GATES/all): they hold their job's
    one slot."""
    wait = (
        f'while [ ! -e "{gates}/$PETIT_RUN_ID" ] && [ ! -e "{gates}/{ALL}" ]; do sleep 0.05; done'
    )
    return {
        "hold": f"""id: hold
name: Hold
max_concurrency: 1
max_queued: 1
timeout: 1h
tasks:
  - {{id: t, type: shell, script: '{wait}'}}
""",
        # busy from its first fire on: every later fire is dropped (max_concurrency)
        "ticker": f"""id: ticker
name: Ticker
schedule: "@every 1s"
max_concurrency: 1
catchup: all
catchup_window: 1h
tasks:
  - {{id: t, type: shell, script: '{wait}'}}
""",
        "spread": """id: spread
name: Spread
schedule:
  - {cron: "30 7 * * 1-5", timezone: Europe/Paris}
  - "0 0 1 1 *"
overlap: replace
jitter: 30s
tasks:
  - {id: t, command: "true"}
""",
    }


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("policies"))
    os.makedirs(os.path.join(root, GATES))
    with Service(root, jobs=jobs(os.path.join(root, GATES))).running() as service:
        yield service
        open_gate(service, ALL)


@pytest.fixture(scope="module")
def openapi(svc) -> dict:
    return ok(svc.get("/api/openapi.json"))


def open_gate(svc: Service, run_id: str) -> None:
    with open(os.path.join(svc.root, GATES, run_id), "w"):
        pass


def test_queue_true_at_the_limit_queues_until_the_queue_is_full_and_cancels_at_once(svc, openapi):
    stream = SseStream(svc.port, "/api/events?job_id=hold&event=run")
    assert stream.status == 200
    try:
        started = svc.post("/api/jobs/hold/trigger?queue=true")  # a free slot: it starts
        first = ok(started)
        assert first["status"] != "queued" and first["message"] == "job 'hold' triggered"
        assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", started)
        svc.wait_task_running(first["run_id"], "t")
        refused = svc.post("/api/jobs/hold/trigger")  # no ?queue: a 429 as before
        assert "max_concurrency 1" in assert_error(refused, 429, "TOO_MANY_REQUESTS")["error"]

        response = svc.post("/api/jobs/hold/trigger?queue=1")
        queued = ok(response, 202)
        assert queued["status"] == "queued" and "queued" in queued["message"]
        assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", response)
        full = svc.post("/api/jobs/hold/trigger?queue=true")
        assert "max_queued 1" in assert_error(full, 429, "TOO_MANY_REQUESTS")["error"]
        assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", full)
        for bad in ("yes", "TRUE", ""):
            body = assert_error(svc.post(f"/api/jobs/hold/trigger?queue={bad}"), 400, "BAD_REQUEST")
            assert body["error"].startswith("queue must be true, false, 1 or 0"), body

        # the queued run: in the job, its own page, the runs filter, the stream, the metrics
        run_id = queued["run_id"]
        job = ok(svc.get("/api/jobs/hold"))
        assert (job["queued_runs"], job["max_queued"], job["timeout_secs"]) == (1, 1, 3600)
        run = ok(svc.get(f"/api/runs/{run_id}"))
        assert (run["status"], run["started_at"], run["trigger"]) == ("queued", None, "manual")
        filtered = svc.get("/api/jobs/hold/runs?status=queued")
        assert [r["id"] for r in ok(filtered)["runs"]] == [run_id]
        assert_documented(openapi, "/api/jobs/{job_id}/runs", "get", filtered)
        running = ok(svc.get("/api/jobs/hold/runs?status=running&limit=1"))
        assert [r["id"] for r in running["runs"]] == [first["run_id"]]
        assert running["next_before"] is None  # no older running run
        bad = assert_error(svc.get("/api/jobs/hold/runs?status=done"), 400, "BAD_REQUEST")
        assert bad["error"].startswith("status must be one of queued, pending, running"), bad
        cli = run_petit("runs", "hold", "--db", svc.db, "--status", "queued", "--json")
        assert cli.returncode == 0, cli.stderr
        assert [r["id"] for r in json.loads(cli.stdout)["runs"]] == [run_id]
        events = stream.until(lambda e: e.event == "run" and e.json()["id"] == run_id)
        live = events[-1].json()
        assert live["status"] == "queued", live
        x_events = openapi["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
        run_schema = x_events["text/event-stream"]["x-events"]["run"]
        assert not schema_problems(openapi, run_schema, live)
        metrics = scrape(svc, headers={})
        assert metrics["petit_runs_queued", labelled(job_id="hold")] == 1
        assert metrics["petit_runs_active", labelled(job_id="hold")] == 1

        begun = time.monotonic()
        cancelled = ok(svc.post(f"/api/runs/{run_id}/cancel"))
        assert time.monotonic() - begun < 2, "a queued run's cancel waits for nothing"
        assert cancelled["status"] == "cancelled", cancelled
        assert svc.wait_run(run_id)["started_at"] is None
        assert ok(svc.get("/api/jobs/hold"))["queued_runs"] == 0
        gone = scrape(svc, headers={})
        assert gone["petit_runs_queued", labelled(job_id="hold")] == 0
    finally:
        stream.close()
        open_gate(svc, first["run_id"])
    assert svc.wait_run(first["run_id"])["status"] == "completed"


def test_drops_of_a_busy_job_are_listed_newest_first_a_page_at_a_time(svc, openapi):
    def drops() -> list[dict]:
        found = ok(svc.get("/api/jobs/ticker/drops?limit=1000"))["drops"]
        return found if len(found) >= 3 else []

    stream = SseStream(svc.port, "/api/events?job_id=ticker&event=fire_dropped")
    assert stream.status == 200
    try:
        event = stream.until(lambda e: e.event == "fire_dropped")[-1].json()
    finally:
        stream.close()
    x_events = openapi["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    schema = x_events["text/event-stream"]["x-events"]["fire_dropped"]
    assert not schema_problems(openapi, schema, event), event
    assert (event["job_id"], event["reason"], event["count"]) == ("ticker", "max_concurrency", 1)

    every = wait_until(drops, timeout=10, message="three drops of ticker")
    times = [d["scheduled_at"] for d in every]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    newest = every[0]
    assert set(newest) == {"scheduled_at", "reason", "at", "until", "count", "error"}
    assert newest["reason"] == "max_concurrency" and "max_concurrency 1" in newest["error"]
    assert newest["at"] >= newest["scheduled_at"] and newest["count"] == 1

    response = svc.get("/api/jobs/ticker/drops?limit=2")
    page = ok(response)
    assert_documented(openapi, "/api/jobs/{job_id}/drops", "get", response)
    assert page["count"] == 2 and page["next_before"] == page["drops"][1]["scheduled_at"]
    older = ok(svc.get(f"/api/jobs/ticker/drops?limit=2&before={page['next_before']}"))
    assert [d["scheduled_at"] for d in older["drops"]] == [
        t for t in times if t < page["next_before"]
    ][:2]
    last = ok(svc.get(f"/api/jobs/ticker/drops?before={times[-1]}&limit=1000"))
    assert last == {"drops": [], "count": 0, "next_before": None}
    assert ok(svc.get("/api/jobs/hold/drops")) == {"drops": [], "count": 0, "next_before": None}

    missing = svc.get("/api/jobs/nope/drops")
    assert_error(missing, 404, "NOT_FOUND")
    assert_documented(openapi, "/api/jobs/{job_id}/drops", "get", missing)
    for query in ("limit=0", "limit=abc", "before=abc", "before=-5"):
        bad = svc.get(f"/api/jobs/ticker/drops?{query}")
        assert_error(bad, 400, "BAD_REQUEST")
        assert_documented(openapi, "/api/jobs/{job_id}/drops", "get", bad)

    metrics = scrape(svc, headers={})
    dropped = metrics[
        "petit_fires_dropped_total", labelled(job_id="ticker", reason="max_concurrency")
    ]
    assert dropped >= sum(d["count"] for d in every)
    catchup = labelled(job_id="ticker", status="completed", trigger="catchup")
    assert metrics["petit_runs_total", catchup] == 0  # the series of a job with catch-up
    assert (
        "petit_runs_total",
        labelled(job_id="spread", status="completed", trigger="catchup"),
    ) not in metrics


def test_job_json_shows_every_policy_and_each_schedule_in_words(svc, openapi):
    response = svc.get("/api/jobs/spread")
    assert_documented(openapi, "/api/jobs/{job_id}", "get", response)
    job = ok(response)
    assert job["schedules"] == [
        {
            "cron": "30 7 * * 1-5",
            "timezone": "Europe/Paris",
            "words": "at 07:30 on Monday to Friday (Europe/Paris)",
        },
        {"cron": "0 0 1 1 *", "timezone": "UTC", "words": "every year on 1 January at 00:00"},
    ]
    policies = ("catchup", "catchup_window_secs", "overlap", "max_queued", "jitter_secs")
    assert {k: job[k] for k in policies} == {
        "catchup": "none",
        "catchup_window_secs": None,
        "overlap": "replace",
        "max_queued": 10,
        "jitter_secs": 30,
    }
    ticker = ok(svc.get("/api/jobs/ticker"))
    assert (ticker["catchup"], ticker["catchup_window_secs"]) == ("all", 3600)


def test_openapi_documents_the_policies(openapi):
    schemas = openapi["components"]["schemas"]
    job = schemas["Job"]["properties"]
    assert job["catchup"]["enum"] == [p.value for p in CatchupPolicy]
    assert job["overlap"]["enum"] == [p.value for p in OverlapPolicy]
    new_fields = {"schedules", "catchup", "catchup_window_secs", "overlap", "max_queued"}
    assert new_fields | {"jitter_secs", "timeout_secs", "queued_runs"} <= set(
        schemas["Job"]["required"]
    )
    assert "queued" in schemas["Run"]["properties"]["status"]["enum"]
    assert "catchup" in schemas["Run"]["properties"]["trigger"]["enum"]
    assert "jitter_ms" in schemas["Run"]["required"]
    assert schemas["Triggered"]["properties"]["status"]["enum"] == [s.value for s in RunStatus]
    assert schemas["Drop"]["properties"]["reason"]["enum"] == [r.value for r in DropReason]
    assert set(schemas["Drop"]["required"]) == {
        "scheduled_at",
        "reason",
        "at",
        "until",
        "count",
        "error",
    }
    trigger = openapi["paths"]["/api/jobs/{job_id}/trigger"]["post"]
    assert {"200", "202", "429"} <= set(trigger["responses"])
    (queue,) = [p for p in trigger["parameters"] if p["name"] == "queue"]
    assert queue["in"] == "query" and queue["schema"]["type"] == "boolean"
    runs = openapi["paths"]["/api/jobs/{job_id}/runs"]["get"]
    (status,) = [p for p in runs["parameters"] if p["name"] == "status"]
    assert status["schema"]["enum"] == [s.value for s in RunStatus]
    stream = openapi["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert set(stream["text/event-stream"]["x-events"]) == {*EVENT_NAMES, "reset"}
    fire_dropped = schemas["FireDropped"]
    assert {"job_id", "until", "count", "error"} <= set(fire_dropped["required"])
    # the schemas bite: a wrong trigger or reason is reported
    assert schema_problems(openapi, {"$ref": "#/components/schemas/Run"}, {"trigger": "cron"})
    bad_drop = {"job_id": "a", "scheduled_at": 1, "reason": "busy"}
    assert schema_problems(openapi, fire_dropped, {**bad_drop, "until": None, "count": 1})
