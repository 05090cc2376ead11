"""End-to-end tests of the HTTP API (issue 4, DESIGN section 8) against the real `bin/petit run`
on a free port: every endpoint's status, content type and fields, every error code with its
body, the fault paths (scheduler worker or API process killed), the startup errors and the
security rules. Real processes only; waits poll with deadlines.

Most tests share one service (module fixture); the ones that kill children or need other flags
start their own. Every service proves at teardown that it stopped cleanly and left no process."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from urllib.parse import quote

import psutil
import pytest
from api_client import request, try_request
from harness import Service
from processes import is_alive, marked_processes, run_petit, wait_until

from petit import __version__
from petit.api.app import ROUTES, route_templates
from petit.api.channel import REPLY_DEADLINE_SECS
from petit.api.handlers import MAX_LIMIT
from petit.core.model import Condition, DependencyCondition

RUN_FIELDS = {"id", "job_id", "status", "trigger", "started_at", "ended_at", "duration_ms", "error"}
TASK_FIELDS = {
    "task_id",
    "run_id",
    "status",
    "attempts",
    "exit_code",
    "started_at",
    "ended_at",
    "duration_ms",
    "error",
}
JOB_FIELDS = {
    "id",
    "name",
    "enabled",
    "scheduled",
    "task_count",
    "schedule",
    "timezone",
    "next_run_at",
    "paused",
}
LOG_FIELDS = {"stdout", "stderr", "exit_code", "truncated", "attempt", "attempts", "lines"}
_HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with Service(str(tmp_path_factory.mktemp("api"))).running() as service:
        yield service


@pytest.fixture
def fresh(service):
    """Start a service of the test's own (for kills and other flags) on the example jobs; the
    `service` fixture stops and checks every one."""

    def start(*extra_args: str, env: dict | None = None, api: bool = True) -> Service:
        return service(None, *extra_args, env=env, api=api)

    return start


@pytest.fixture(scope="module")
def openapi(svc) -> dict:
    return ok(svc.get("/api/openapi.json"))


@pytest.fixture(scope="module")
def finished_pipeline(svc) -> dict:
    """Path parameters naming real resources: data_pipeline, a finished run of it, its load task."""
    run_id = svc.trigger("data_pipeline")
    svc.wait_run(run_id)
    return {"job_id": "data_pipeline", "run_id": run_id, "task_id": "load"}


def ok(response, status: int = 200):
    """The JSON body of a success, after checking status and content type."""
    assert response.status == status, (response.status, response.body[:500])
    assert response.content_type.startswith("application/json"), response.headers
    return response.json()


def assert_error(response, status: int, code: str) -> dict:
    """The contract's error shape: status, JSON content type, {"error": message, "code": CODE}."""
    assert response.status == status, (response.status, response.body[:500])
    assert response.content_type.startswith("application/json"), response.headers
    body = response.json()
    assert {"error", "code"} <= set(body), body
    assert body["code"] == code, body
    assert isinstance(body["error"], str) and body["error"], body
    assert "Traceback" not in body["error"], body
    return body


def seq(run_id: str) -> int:
    return int(run_id.rsplit("-", 1)[1])


def assert_dag_order(tasks: list[dict], job: dict) -> None:
    """Run tasks come in the job's order, which puts every task after all its upstream tasks."""
    order = [t["task_id"] for t in tasks]
    assert order == [t["id"] for t in job["tasks"]]
    seen: set[str] = set()
    for task in job["tasks"]:
        assert set(task["depends_on"]) <= seen, (task, order)
        seen.add(task["id"])


def process_of_run(run_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PETIT_RUN_ID") == run_id and is_alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


# -- OpenAPI schema checking (just what the document uses: $ref, type, enum, required, items) ----

_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict, "null": type(None)}


def _resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _type_ok(name: str, value) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_problems(doc: dict, schema: dict, value, where: str = "$") -> list[str]:
    schema = _resolve(doc, schema)
    problems = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_type_ok(t, value) for t in types):
            return [f"{where}: {value!r:.80} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, dict):
        problems += [
            f"{where}: required field {name!r} missing"
            for name in schema.get("required", [])
            if name not in value
        ]
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += schema_problems(doc, sub, value[name], f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += schema_problems(doc, schema["items"], item, f"{where}[{i}]")
    return problems


def assert_documented(doc: dict, template: str, method: str, response) -> None:
    """The response's status is documented for the operation, and its body fits the schema."""
    operation = doc["paths"][template][method]
    documented = operation["responses"].get(str(response.status))
    assert documented is not None, (
        f"{method.upper()} {template}: status {response.status} not documented"
    )
    # the logs route documents two: JSON, and the event stream of ?follow=true
    media_type = next(
        (m for m in documented["content"] if response.content_type.startswith(m)), None
    )
    assert media_type is not None, (template, response.content_type, list(documented["content"]))
    if media_type != "application/json":  # /metrics: its own test parses the text format
        return
    schema = documented["content"][media_type]["schema"]
    problems = schema_problems(doc, schema, response.json())
    assert not problems, f"{method.upper()} {template} {response.status}:\n" + "\n".join(problems)


# -- every endpoint: status, content type, fields -------------------------------------------------


def test_health(svc, openapi):
    response = svc.get("/api/health")
    body = ok(response)
    assert body["status"] == "ok" and body["version"] == __version__
    assert isinstance(body["uptime_secs"], (int, float)) and body["uptime_secs"] >= 0
    assert_documented(openapi, "/api/health", "get", response)


def test_pause_and_resume_show_in_state_and_jobs(svc, openapi):
    assert ok(svc.get("/api/scheduler/state")) == {
        "state": "running",
        "is_running": True,
        "is_paused": False,
    }
    before = ok(svc.get("/api/jobs/ten_seconds"))
    assert before["paused"] is False and isinstance(before["next_run_at"], int)
    try:
        response = svc.post("/api/scheduler/pause")
        assert ok(response) == {"message": "scheduler paused"}
        assert_documented(openapi, "/api/scheduler/pause", "post", response)
        state = svc.get("/api/scheduler/state")
        assert ok(state) == {"state": "paused", "is_running": False, "is_paused": True}
        assert_documented(openapi, "/api/scheduler/state", "get", state)
        jobs = ok(svc.get("/api/jobs"))["jobs"]
        assert all(job["paused"] is True for job in jobs)
        assert ok(svc.get("/api/jobs/ten_seconds"))["next_run_at"] is None  # no fire while paused
        assert svc.status()["scheduler"]["state"] == "paused"
    finally:
        response = svc.post("/api/scheduler/resume")
    assert ok(response) == {"message": "scheduler resumed"}
    assert_documented(openapi, "/api/scheduler/resume", "post", response)
    assert ok(svc.get("/api/scheduler/state")) == {
        "state": "running",
        "is_running": True,
        "is_paused": False,
    }
    after = ok(svc.get("/api/jobs/ten_seconds"))
    assert after["paused"] is False and isinstance(after["next_run_at"], int)
    assert after["next_run_at"] > int(time.time() * 1000) - 1000


def test_jobs_list_is_sorted_and_complete(svc, openapi):
    response = svc.get("/api/jobs")
    body = ok(response)
    ids = [job["id"] for job in body["jobs"]]
    files = sorted(name[:-5] for name in os.listdir(svc.jobs_dir) if name.endswith(".yaml"))
    assert ids == sorted(ids) == files
    assert body["count"] == len(files)
    for job in body["jobs"]:
        assert JOB_FIELDS <= set(job), job
    assert_documented(openapi, "/api/jobs", "get", response)


def test_job_fields(svc, openapi):
    response = svc.get("/api/jobs/ten_seconds")
    job = ok(response)
    assert JOB_FIELDS <= set(job)
    assert job["id"] == "ten_seconds" and job["name"] == "Every ten seconds"
    assert job["enabled"] is True and job["scheduled"] is True
    assert job["schedule"] == "*/10 * * * * *" and job["timezone"] == "UTC"
    assert job["task_count"] == 1 and job["max_concurrency"] == 1
    now = int(time.time() * 1000)
    assert now - 1000 < job["next_run_at"] <= now + 11_000
    assert_documented(openapi, "/api/jobs/{job_id}", "get", response)

    manual = ok(svc.get("/api/jobs/data_pipeline"))
    assert (
        manual["scheduled"] is False
        and manual["schedule"] is None
        and manual["next_run_at"] is None
    )
    assert manual["task_count"] == 5 and [t["id"] for t in manual["tasks"]] == [
        "extract",
        "transform",
        "validate",
        "load",
        "notify",
    ]
    assert ok(svc.get("/api/jobs/paris_morning"))["timezone"] == "Europe/Paris"
    assert ok(svc.get("/api/jobs/downstream"))["depends_on"] == [
        {"job": "upstream", "condition": "last_success"}
    ]


def test_trigger_then_run_is_found_at_once(svc, openapi):
    response = svc.post("/api/jobs/hello_world/trigger")
    body = ok(response)
    assert set(body) >= {"run_id", "job_id", "message"}
    assert body["job_id"] == "hello_world"
    assert re.fullmatch(r"hello_world-[1-9][0-9]*", body["run_id"]), body
    assert body["message"] == "job 'hello_world' triggered"
    assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", response)
    # no polling: the run is recorded before the trigger answers
    run = ok(svc.get(f"/api/runs/{body['run_id']}"))
    assert (
        run["id"] == body["run_id"]
        and run["job_id"] == "hello_world"
        and run["trigger"] == "manual"
    )
    assert run["status"] in ("pending", "running", "completed")
    assert svc.wait_run(body["run_id"])["status"] == "completed"


def test_data_pipeline_trigger_run_tasks_logs(svc, openapi):
    run_id = svc.trigger("data_pipeline")
    run = svc.wait_run(run_id)
    assert RUN_FIELDS <= set(run)
    assert run["status"] == "completed" and run["error"] is None and run["trigger"] == "manual"
    assert run["job_id"] == "data_pipeline" and run["id"] == run_id
    assert isinstance(run["started_at"], int) and run["ended_at"] >= run["started_at"]
    assert isinstance(run["duration_ms"], int) and run["duration_ms"] >= 0
    assert_documented(openapi, "/api/runs/{run_id}", "get", svc.get(f"/api/runs/{run_id}"))

    response = svc.get(f"/api/runs/{run_id}/tasks")
    body = ok(response)
    assert body["count"] == 5 == len(body["tasks"])
    assert_dag_order(body["tasks"], ok(svc.get("/api/jobs/data_pipeline")))
    for task in body["tasks"]:
        assert TASK_FIELDS <= set(task), task
        assert task["run_id"] == run_id and task["status"] == "completed", task
        assert task["attempts"] == 1 and task["exit_code"] == 0 and task["error"] is None, task
        assert task["ended_at"] >= task["started_at"] and task["duration_ms"] >= 0, task
    assert_documented(openapi, "/api/runs/{run_id}/tasks", "get", response)

    response = svc.get(f"/api/runs/{run_id}/tasks/load/logs")
    logs = ok(response)
    assert LOG_FIELDS <= set(logs)
    assert "loaded total 120" in logs["stdout"]
    assert logs["stderr"] == "" and logs["exit_code"] == 0 and logs["truncated"] is False
    assert logs["run_id"] == run_id and logs["task_id"] == "load"
    assert_documented(openapi, "/api/runs/{run_id}/tasks/{task_id}/logs", "get", response)


def test_failing_job_trigger_run_tasks_logs(svc):
    run_id = svc.trigger("failing_job")
    run = svc.wait_run(run_id)
    assert run["status"] == "failed" and run["error"], run
    tasks = ok(svc.get(f"/api/runs/{run_id}/tasks"))["tasks"]
    assert_dag_order(tasks, ok(svc.get("/api/jobs/failing_job")))
    by_id = {t["task_id"]: t for t in tasks}
    assert {k: t["status"] for k, t in by_id.items()} == {
        "prepare": "completed",
        "broken_step": "failed",
        "never_runs": "skipped",
        "cleanup": "completed",
        "alert": "completed",
    }
    assert by_id["broken_step"]["exit_code"] == 3 and by_id["broken_step"]["attempts"] == 1
    assert by_id["never_runs"]["attempts"] == 0 and by_id["never_runs"]["exit_code"] is None
    assert by_id["never_runs"]["started_at"] is None
    logs = ok(svc.get(f"/api/runs/{run_id}/tasks/broken_step/logs"))
    assert (
        "about to fail" in logs["stderr"] and logs["exit_code"] == 3 and logs["truncated"] is False
    )
    alert = ok(svc.get(f"/api/runs/{run_id}/tasks/alert/logs"))
    assert f"ALERT: broken_step failed in run {run_id}" in alert["stdout"]
    skipped = ok(svc.get(f"/api/runs/{run_id}/tasks/never_runs/logs"))  # no output, still an answer
    assert skipped["stdout"] == "" and skipped["exit_code"] is None


def test_logs_of_a_chatty_task_are_truncated_to_the_tail(svc):
    run_id = svc.trigger("chatty")
    assert svc.wait_run(run_id)["status"] == "completed"
    logs = ok(svc.get(f"/api/runs/{run_id}/tasks/talk/logs"))
    assert logs["truncated"] is True and logs["exit_code"] == 0
    assert logs["stdout"].endswith("x\nTHE-END\n") and logs["lines"][-1] == ["stdout", "THE-END"]
    # a line over the 1 MiB limit came in pieces; the oldest segment went, the last two stayed
    assert 1024 * 1024 < len(logs["stdout"]) <= 2 * (1024 * 1024 + 10)


def test_tasks_come_in_dag_order_even_when_declared_backwards(svc):
    run_id = svc.trigger("backwards")
    assert svc.wait_run(run_id)["status"] == "completed"
    tasks = ok(svc.get(f"/api/runs/{run_id}/tasks"))["tasks"]
    assert [t["task_id"] for t in tasks] == ["a", "b", "c"]
    assert_dag_order(tasks, ok(svc.get("/api/jobs/backwards")))
    started = [t["started_at"] for t in tasks]
    assert started == sorted(started)


def test_job_runs_newest_first_with_limits(svc, openapi):
    run_ids = [svc.trigger("hello_world") for _ in range(22)]
    for run_id in run_ids:
        svc.wait_run(run_id)
    response = svc.get("/api/jobs/hello_world/runs")
    body = ok(response)
    assert body["count"] == 20 == len(body["runs"])  # the default limit
    seqs = [seq(run["id"]) for run in body["runs"]]
    assert seqs == sorted(seqs, reverse=True) and body["runs"][0]["id"] == run_ids[-1]
    for run in body["runs"]:
        assert RUN_FIELDS <= set(run) and run["job_id"] == "hello_world"
    assert_documented(openapi, "/api/jobs/{job_id}/runs", "get", response)

    three = ok(svc.get("/api/jobs/hello_world/runs?limit=3"))
    assert three["count"] == 3 and three["runs"] == body["runs"][:3]
    everything = ok(svc.get("/api/jobs/hello_world/runs?limit=100"))
    assert everything["count"] >= 22 and {r["id"] for r in everything["runs"]} >= set(run_ids)
    assert ok(svc.get("/api/jobs/upstream/runs?limit=5"))["count"] >= 0


@pytest.mark.parametrize("limit", ["1" + "0" * 30, "9" * 5000, str(MAX_LIMIT + 1)])
def test_huge_limit_is_capped(svc, limit):
    body = ok(svc.get(f"/api/jobs/hello_world/runs?limit={limit}"))
    assert body["count"] == len(body["runs"]) <= MAX_LIMIT


def test_cancel_running_run_then_409(svc, openapi):
    run_id = svc.trigger("slow_job")
    try:
        svc.wait_task_running(run_id, "wait")
        assert wait_until(lambda: process_of_run(run_id), message="the task's process")
        response = svc.post(f"/api/runs/{run_id}/cancel")
        body = ok(response)
        assert body["run_id"] == run_id and body["status"] == "cancelled", body
        assert_documented(openapi, "/api/runs/{run_id}/cancel", "post", response)
        # the answer comes once the run has stopped: no polling needed
        run = ok(svc.get(f"/api/runs/{run_id}"))
        assert run["status"] == "cancelled" and run["ended_at"] is not None
        tasks = {t["task_id"]: t for t in ok(svc.get(f"/api/runs/{run_id}/tasks"))["tasks"]}
        assert tasks["first"]["status"] == "completed"
        assert tasks["wait"]["status"] == "failed" and tasks["wait"]["error"]
        assert tasks["after"]["status"] == "skipped"
        wait_until(
            lambda: not process_of_run(run_id),
            timeout=5,
            message="the cancelled task's processes to die",
        )
    finally:
        try_request(svc.port, "POST", f"/api/runs/{run_id}/cancel")
    response = svc.post(f"/api/runs/{run_id}/cancel")
    assert "already finished" in assert_error(response, 409, "CONFLICT")["error"]
    assert_documented(openapi, "/api/runs/{run_id}/cancel", "post", response)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/jobs/no_such_job"),
        ("GET", "/api/jobs/no_such_job/runs"),
        ("POST", "/api/jobs/no_such_job/trigger"),
        ("GET", "/api/runs/hello_world-999999"),  # unknown run of a known job
        ("GET", "/api/runs/no_such_job-1"),
        ("GET", "/api/runs/hello_world-999999/tasks"),
        ("GET", "/api/runs/hello_world-999999/tasks/greet/logs"),
        ("POST", "/api/runs/hello_world-999999/cancel"),
        ("GET", "/api/runs/no-sequence-number"),  # malformed run ids
        ("GET", "/api/runs/hello_world"),
        ("GET", "/api/runs/hello_world-0"),
        ("GET", "/api/runs/hello_world-01"),
        ("GET", "/api/runs/..-1"),
        ("GET", "/api/runs/hello_world-" + "9" * 40),
        ("GET", "/api/runs/" + quote("hello world-1")),
        ("GET", "/api/nothing/here"),  # unknown routes
        ("GET", "/index.html"),  # the dashboard's shell is served at / only
        ("GET", "/api"),
        ("GET", "/api/jobs/hello_world/runs/extra"),
        ("POST", "/api/scheduler/explode"),
        ("GET", "/api/openapiXjson"),
    ],
)
def test_not_found(svc, openapi, method, path):
    assert_error(request(svc.port, method, path), 404, "NOT_FOUND")


def test_unknown_task_in_logs_is_404(svc, openapi):
    run_id = svc.trigger("hello_world")
    svc.wait_run(run_id)
    response = svc.get(f"/api/runs/{run_id}/tasks/no_such_task/logs")
    assert "no_such_task" in assert_error(response, 404, "NOT_FOUND")["error"]
    assert_documented(openapi, "/api/runs/{run_id}/tasks/{task_id}/logs", "get", response)


@pytest.mark.parametrize(
    "limit",
    [
        "abc",
        "0",
        "-1",
        "",
        "1.5",
        quote("+5"),
        "0x10",
        "1e3",
        "000",
        quote("²"),
        quote("١"),
        quote("５"),
    ],
)
def test_bad_limit_is_400(svc, openapi, limit):
    response = svc.get(f"/api/jobs/hello_world/runs?limit={limit}")
    assert "limit" in assert_error(response, 400, "BAD_REQUEST")["error"]
    assert_documented(openapi, "/api/jobs/{job_id}/runs", "get", response)


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("DELETE", "/api/jobs", "GET, HEAD"),
        ("GET", "/api/jobs/x/trigger", "POST"),
        ("GET", "/api/jobs/hello_world/trigger", "POST"),
        ("HEAD", "/api/jobs/hello_world/trigger", "POST"),
        ("POST", "/api/jobs", "GET, HEAD"),
        ("PUT", "/api/jobs/hello_world", "GET, HEAD"),
        ("GET", "/api/scheduler/pause", "POST"),
        ("GET", "/api/runs/hello_world-1/cancel", "POST"),
        ("PATCH", "/api/health", "GET, HEAD"),
        ("OPTIONS", "/api/jobs", "GET, HEAD"),
        (
            "PROPFIND",
            "/api/jobs",
            "GET, HEAD",
        ),  # not a method tornado knows: refused before routing
        ("DELETE", "/api/runs/hello_world-1/tasks/greet/logs", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(svc, method, path, allow):
    response = request(svc.port, method, path)
    if method == "HEAD":  # the status and headers of the error, without its body
        assert response.status == 405 and response.body == b"", response
        assert response.content_type.startswith("application/json"), response.headers
    else:
        assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allow, response.headers


def test_every_route_names_its_methods_in_allow(svc, finished_pipeline):
    """RFC 9110: a 405 lists the methods the route implements, as the app's routes declare them."""
    for template, methods in route_templates().items():
        path = template.format(**finished_pipeline)
        allow = ", ".join(m.upper() for m in methods)
        refused = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m.lower() not in methods]
        for method in (*refused, "OPTIONS"):
            response = request(svc.port, method, path)
            assert_error(response, 405, "METHOD_NOT_ALLOWED")
            assert response.headers.get("allow") == allow, (method, path, response.headers)


def test_unknown_method_on_no_route_is_still_405(svc):
    # tornado refuses a method it does not support before routing: today's answer, kept
    response = request(svc.port, "PROPFIND", "/api/nothing/here")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers.get("allow") == "", response.headers  # this resource allows nothing


# what HEAD and GET may answer differently: the date, and the length of bodies that change between
# two requests (the uptime; the children's uptimes; the scheduled ten_seconds job's last run in
# the job list; the processes' memory and CPU in the metrics)
_VOLATILE_LENGTH = {"/api/health", "/api/status", "/api/jobs", "/metrics"}
_STREAMS = {"/api/events"}


def test_head_answers_like_get_without_a_body(svc, finished_pipeline):
    checked = 0
    for template, methods in route_templates().items():
        if "get" not in methods:
            continue
        assert "head" in methods, template
        path = template.format(**finished_pipeline)
        if template in _STREAMS:  # a GET lasts as long as the client stays: compare headers only
            head = request(svc.port, "HEAD", path)
            assert head.status == 200 and head.body == b"", (path, head)
            assert head.content_type.startswith("text/event-stream"), (path, head.headers)
            continue
        head, get = request(svc.port, "HEAD", path), request(svc.port, "GET", path)
        assert head.status == get.status == 200, (path, head.status, get.status)
        assert head.body == b"" and get.body, path
        assert set(head.headers) == set(get.headers), (path, head.headers, get.headers)
        for name in set(get.headers) - {"date", "content-length"}:
            assert head.headers[name] == get.headers[name], (path, name)
        if template not in _VOLATILE_LENGTH:
            assert int(head.headers["content-length"]) == len(get.body), path
        checked += 1
    assert checked == 14, checked


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/jobs/no_such_job", 404),
        ("/api/runs/hello_world-999999/tasks", 404),
        ("/api/nothing/here", 404),
        ("/api/jobs/hello_world/runs?limit=0", 400),
    ],
)
def test_head_of_an_error_has_its_status_and_no_body(svc, path, status):
    head, get = request(svc.port, "HEAD", path), request(svc.port, "GET", path)
    assert head.status == get.status == status and head.body == b"", (head, get)
    assert head.content_type == get.content_type and head.content_type.startswith(
        "application/json"
    )
    assert int(head.headers["content-length"]) == len(get.body)


def test_dependency_not_satisfied_is_409_then_200(svc, openapi):
    response = svc.post("/api/jobs/downstream/trigger")
    body = assert_error(response, 409, "CONFLICT")
    assert "upstream" in body["error"]
    assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", response)
    assert ok(svc.get("/api/jobs/downstream/runs"))["count"] == 0  # nothing was recorded
    assert svc.wait_run(svc.trigger("upstream"))["status"] == "completed"
    run_id = svc.trigger("downstream")
    assert svc.wait_run(run_id)["status"] == "completed"


def test_max_concurrency_is_429(svc, openapi):
    first = svc.trigger("solo")
    second = None
    try:
        response = svc.post("/api/jobs/solo/trigger")
        body = assert_error(response, 429, "TOO_MANY_REQUESTS")
        assert "max_concurrency" in body["error"]
        assert_documented(openapi, "/api/jobs/{job_id}/trigger", "post", response)
        assert [r["id"] for r in ok(svc.get("/api/jobs/solo/runs"))["runs"]] == [first]
        assert ok(svc.post(f"/api/runs/{first}/cancel"))["status"] == "cancelled"
        second = svc.trigger("solo")  # the slot is free again
        assert seq(second) == seq(first) + 1
    finally:
        for run_id in (first, second):
            if run_id:
                try_request(svc.port, "POST", f"/api/runs/{run_id}/cancel")
    assert svc.wait_run(second)["status"] == "cancelled"


def test_unreadable_history_is_a_json_500(fresh, openapi):
    svc = fresh()
    run_id = svc.trigger("hello_world")
    svc.wait_run(run_id)
    history = os.path.join(svc.db + ".d", "runs", "hello_world")
    (chunk,) = [os.path.join(history, n) for n in os.listdir(history) if n.endswith(".json")]
    with open(chunk) as handle:
        good = handle.read()
    with open(chunk, "w") as handle:
        handle.write("{not json")
    try:
        for method, path, template in [
            ("GET", f"/api/runs/{run_id}", "/api/runs/{run_id}"),
            ("GET", "/api/jobs/hello_world/runs", "/api/jobs/{job_id}/runs"),
            (
                "GET",
                f"/api/runs/{run_id}/tasks/greet/logs",
                "/api/runs/{run_id}/tasks/{task_id}/logs",
            ),
            ("POST", "/api/jobs/hello_world/trigger", "/api/jobs/{job_id}/trigger"),
        ]:
            response = request(svc.port, method, path)
            assert_error(response, 500, "STORAGE_ERROR")
            assert_documented(openapi, template, method.lower(), response)
        assert ok(svc.get("/api/health"))["status"] == "ok"
        assert ok(svc.get("/api/jobs"))["count"] > 0  # other files still read fine
    finally:
        with open(chunk, "w") as handle:
            handle.write(good)
    assert ok(svc.get(f"/api/runs/{run_id}"))["status"] == "completed"


# -- fault paths: children killed -----------------------------------------------------------------


@pytest.mark.slow
def test_scheduler_killed_is_503_while_reads_go_on_then_200(fresh):
    svc = fresh()
    finished = svc.trigger("hello_world")
    svc.wait_run(finished)
    before = svc.child("scheduler")
    os.kill(before["pid"], signal.SIGKILL)

    body = assert_error(svc.post("/api/jobs/hello_world/trigger"), 503, "SERVICE_UNAVAILABLE")
    assert "scheduler" in body["error"]
    # while it is down: reads are served, state says so, and answers that need no scheduler hold
    assert ok(svc.get("/api/scheduler/state"))["state"] == "stopped"
    assert ok(svc.get("/api/jobs"))["count"] > 0
    assert ok(svc.get(f"/api/runs/{finished}"))["status"] == "completed"
    assert_error(svc.post("/api/jobs/no_such_job/trigger"), 404, "NOT_FOUND")
    assert_error(svc.post(f"/api/runs/{finished}/cancel"), 409, "CONFLICT")
    assert_error(svc.post("/api/scheduler/pause"), 503, "SERVICE_UNAVAILABLE")

    def triggered():
        response = svc.post("/api/jobs/hello_world/trigger")
        if response.status == 503:
            return None
        return ok(response)["run_id"]

    run_id = wait_until(triggered, timeout=20, interval=0.1, message="a trigger after the restart")
    assert svc.wait_run(run_id)["status"] == "completed"
    after = svc.child("scheduler")
    assert after["pid"] != before["pid"] and after["restarts"] == 1 and after["state"] == "running"
    assert ok(svc.get("/api/scheduler/state"))["state"] == "running"


@pytest.mark.slow
def test_scheduler_not_answering_is_503_within_the_deadline(fresh):
    svc = fresh()
    pid = svc.child("scheduler")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        body = assert_error(svc.post("/api/jobs/hello_world/trigger"), 503, "SERVICE_UNAVAILABLE")
        waited = time.monotonic() - began
        assert "did not answer" in body["error"], body
        assert waited < REPLY_DEADLINE_SECS + 5, waited  # a deadline, not a hang
        assert ok(svc.get("/api/jobs"))["count"] > 0  # reads do not wait for it
    finally:
        os.kill(pid, signal.SIGCONT)
    assert svc.wait_run(svc.trigger("upstream"))["status"] == "completed"


@pytest.mark.slow
def test_trigger_answered_503_is_not_executed_later(fresh):
    svc = fresh()
    pid = svc.child("scheduler")["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        assert_error(svc.post("/api/jobs/hello_world/trigger"), 503, "SERVICE_UNAVAILABLE")
    finally:
        os.kill(pid, signal.SIGCONT)
    # the scheduler reads its commands in order: had it run the expired trigger, that run would
    # hold number 1 and this one number 2
    run_id = svc.trigger("hello_world")
    svc.wait_run(run_id)
    assert [r["id"] for r in ok(svc.get("/api/jobs/hello_world/runs"))["runs"]] == ["hello_world-1"]


@pytest.mark.slow
def test_api_killed_is_restarted(fresh):
    svc = fresh()
    before = svc.child("api")
    os.kill(before["pid"], signal.SIGKILL)

    def restarted():
        child = svc.child("api")
        return child["state"] == "running" and child["pid"] != before["pid"] and child

    after = wait_until(
        restarted, timeout=20, interval=0.1, message="the API process to be restarted"
    )
    assert after["restarts"] == 1
    assert not psutil.pid_exists(before["pid"]) or not is_alive(psutil.Process(before["pid"]))
    health = wait_until(
        lambda: (r := try_request(svc.port, "GET", "/api/health")) and r.status == 200 and r,
        timeout=10,
        message="/api/health after the restart",
    )
    assert ok(health)["status"] == "ok"
    # the new process's command channel to the scheduler works too
    assert svc.wait_run(svc.trigger("hello_world"))["status"] == "completed"


@pytest.mark.slow
def test_sigterm_shutdown_prints_no_traceback(fresh):
    for _ in range(3):  # the race does not show every time
        svc = fresh()
        svc.stop()  # the fixture's own stop() then finds nothing left to do
        assert "Traceback" not in svc.log(), svc.log()[-2000:]


# -- startup and flags ----------------------------------------------------------------------------


def test_no_api_leaves_the_port_closed(fresh):
    svc = fresh(api=False)
    status = svc.status()
    assert [c["name"] for c in status["children"]] == ["scheduler"]
    assert status["scheduler"]["state"] == "running"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", svc.port), timeout=2).close()


def test_port_in_use_is_a_clear_startup_error(service):
    svc = service(api=True, start=False)  # the fixture checks again that nothing is left
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", svc.port))
        busy.listen()
        done = run_petit(*svc.argv[2:], timeout=30, env=svc.env)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert str(svc.port) in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "in use" in done.stderr, done.stderr
    assert not os.path.exists(svc.socket)
    assert not marked_processes(svc.marker)


# -- security -------------------------------------------------------------------------------------


def test_no_cors_header_even_on_a_preflight(svc):
    # every response goes through api_client.request, which fails on Access-Control-Allow-Origin
    response = request(
        svc.port,
        "OPTIONS",
        "/api/jobs/hello_world/trigger",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status >= 400
    assert not any(name.startswith("access-control-") for name in response.headers)


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
        "https://127.0.0.1:{port}",
        "http://127.0.0.1:1",
    ],
)
def test_foreign_origin_cannot_change_state(svc, origin):
    origin = origin.format(port=svc.port)
    runs_before = ok(svc.get("/api/jobs/hello_world/runs?limit=1"))["runs"]
    for path in ("/api/scheduler/pause", "/api/jobs/hello_world/trigger"):
        body = assert_error(svc.post(path, headers={"Origin": origin}), 403, "FORBIDDEN")
        assert "origin" in body["error"].lower()
    assert ok(svc.get("/api/scheduler/state"))["state"] == "running"
    assert ok(svc.get("/api/jobs/hello_world/runs?limit=1"))["runs"] == runs_before
    # reads carry no risk: a GET with a foreign Origin is answered (without CORS, the page
    # can't read it)
    assert svc.get("/api/health", headers={"Origin": origin}).status == 200


def test_own_origin_may_change_state(svc):
    response = svc.post("/api/scheduler/resume", headers={"Origin": f"http://127.0.0.1:{svc.port}"})
    assert ok(response) == {"message": "scheduler resumed"}


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.evil.example",
        "localhost.evil.example:{port}",
        "10.0.0.1:{port}",
    ],
)
def test_foreign_host_header_is_403(svc, host):
    host = host.format(port=svc.port)
    for path in ("/api/health", "/api/jobs", "/api/nothing"):
        body = assert_error(svc.get(path, headers={"Host": host}), 403, "FORBIDDEN")
        assert "Host" in body["error"]


@pytest.mark.parametrize(
    "host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "127.0.0.2", "LOCALHOST"]
)
def test_loopback_host_headers_are_served(svc, host):
    assert ok(svc.get("/api/jobs", headers={"Host": host.format(port=svc.port)}))["count"] > 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_api_token(fresh, how):
    svc = (
        fresh("--api-token", "s3cret")
        if how == "flag"
        else fresh(env={"PETIT_API_TOKEN": "s3cret"})
    )
    assert ok(svc.get("/api/health"))["status"] == "ok"  # health stays public
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cre"},
        {"Authorization": "Bearer s3cret2"},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "s3cret"},
    ):
        response = svc.get("/api/jobs", headers=headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), response.headers
    assert_error(svc.post("/api/jobs/hello_world/trigger"), 401, "UNAUTHORIZED")
    assert_error(svc.get("/api/nothing"), 401, "UNAUTHORIZED")  # no route probing either
    good = {"Authorization": "Bearer s3cret"}
    assert ok(svc.get("/api/jobs", headers=good))["count"] > 0
    assert ok(svc.get("/api/openapi.json", headers=good))["openapi"].startswith("3.")
    run_id = ok(svc.post("/api/jobs/hello_world/trigger", headers=good))["run_id"]
    assert ok(svc.get(f"/api/runs/{run_id}", headers=good))["job_id"] == "hello_world"
    assert (
        ok(svc.get("/api/jobs/hello_world/runs", headers=good))["count"] == 1
    )  # only the good one ran
    wait_until(
        lambda: ok(svc.get(f"/api/runs/{run_id}", headers=good))["status"] == "completed",
        message="the run to complete",
    )


def test_non_loopback_bind_warns_and_names_the_security_section(fresh):
    # a token, so nothing is reachable unauthenticated from the network during the test
    svc = fresh("--api-host", "0.0.0.0", "--api-token", "t0ken")
    warning = [
        line for line in svc.log().splitlines() if "0.0.0.0" in line and "docs/security.md" in line
    ]
    assert warning and "Security" in warning[0], svc.log()[-2000:]
    good = {"Authorization": "Bearer t0ken"}
    assert ok(svc.get("/api/jobs", headers=good))["count"] > 0
    assert_error(svc.get("/api/jobs"), 401, "UNAUTHORIZED")


def test_api_host_localhost(fresh):
    svc = fresh("--api-host", "localhost")
    assert ok(request(svc.port, "GET", "/api/health", host="127.0.0.1"))["status"] == "ok"
    own = {"Host": f"localhost:{svc.port}", "Origin": f"http://localhost:{svc.port}"}
    assert ok(svc.post("/api/scheduler/resume", headers=own)) == {"message": "scheduler resumed"}
    assert "README" not in svc.log()  # loopback: no exposure warning


# -- bounded inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/" + "a" * 5000,
        "/" + "x" * 5000,
        "/api/runs/" + "r" * 5000 + "-1/tasks",
        "/api/jobs/" + "j" * 200,
    ],
)
def test_long_paths_are_404(svc, path):
    assert_error(svc.get(path), 404, "NOT_FOUND")


def test_big_body_is_refused_and_service_lives_on(svc):
    response = try_request(svc.port, "POST", "/api/scheduler/resume", body=b"x" * (1024 * 1024))
    if response is not None:  # the server may also just close the connection mid-upload
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    small = svc.post(
        "/api/scheduler/resume",
        body=b'{"ignored": true}',
        headers={"Content-Type": "application/json"},
    )
    assert ok(small) == {"message": "scheduler resumed"}  # small bodies are ignored
    assert ok(svc.get("/api/health"))["status"] == "ok"


def test_many_connections_and_bad_requests_leave_it_serving(svc):
    with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.recv(1000)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as raw:
        raw.sendall(
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"h" * 20000 + b"\r\n\r\n"
        )
        try:
            raw.recv(1000)
        except ConnectionResetError:
            pass
    assert ok(svc.get("/api/health"))["status"] == "ok"


# -- OpenAPI --------------------------------------------------------------------------------------


def test_openapi_lists_exactly_the_routes(svc, openapi):
    response = svc.get("/api/openapi.json")
    assert response.status == 200 and response.content_type.startswith("application/json")
    assert openapi["openapi"].startswith("3.") and openapi["info"]["version"] == __version__
    routes = route_templates()
    assert set(openapi["paths"]) == set(routes), {
        "missing from the document": sorted(set(routes) - set(openapi["paths"])),
        "documented without a route": sorted(set(openapi["paths"]) - set(routes)),
    }
    for path, methods in routes.items():
        documented = set(openapi["paths"][path]) & {*_HTTP_METHODS}
        assert documented == set(methods), (path, documented, methods)
        names = re.findall(r"{(\w+)}", path)
        for method in methods:
            params = {
                p["name"] for p in openapi["paths"][path][method]["parameters"] if p["in"] == "path"
            }
            assert params == set(names), (path, method, params)
            responses = openapi["paths"][path][method]["responses"]
            assert "200" in responses
            assert "Allow" in responses["405"]["headers"], (path, method)
            for status, documented_response in responses.items():
                if method == "head":  # headers only: no body to describe
                    assert "content" not in documented_response, (path, status)
                elif not status.startswith("2"):  # a trigger's 202 is a success too
                    schema = documented_response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
            if method == "head":
                assert set(responses) == set(openapi["paths"][path]["get"]["responses"]), path


def test_openapi_security_names_the_role_of_each_route(openapi):
    assert openapi["security"] == [{"bearer": []}]
    assert openapi["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert openapi["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    public, by_role = set(), {}
    # route_templates() lists the routes in ROUTES order
    for (_, handler), (template, methods) in zip(ROUTES, route_templates().items(), strict=True):
        for method in methods:
            operation = openapi["paths"][template][method]
            if handler.role is None:
                assert operation["security"] == [], (template, method)
                public.add(template)
            else:  # OpenAPI 3.1: the roles an http scheme's operation needs
                assert operation["security"] == [{"bearer": [handler.role.value]}], template
                by_role.setdefault(handler.role.value, set()).add((method, template))
    assert public == {"/api/health"}
    assert {t for m, t in by_role["operate"]} == {
        "/api/jobs/{job_id}/trigger",
        "/api/runs/{run_id}/cancel",
    }
    assert by_role["admin"] == {
        ("post", "/api/scheduler/pause"),
        ("post", "/api/scheduler/resume"),
        ("post", "/api/scheduler/reload"),
        ("get", "/api/audit"),
        ("head", "/api/audit"),
    }
    assert all(method in ("get", "head") for method, _ in by_role["read"])


def test_openapi_path_ids_are_bounded_like_the_routes(openapi):
    """maxLength of each path parameter is the bound of its route's pattern, so a client can
    refuse an id the server would answer 404 to."""
    bounds: dict[str, int] = {}
    for pattern, _ in ROUTES:
        # a task_id may also name a hook's log, `@on_failure`
        for name, chars, longest in re.findall(
            r"\(\?P<(\w+)>(?:@\?)?\[([^]]+)\]\{1,(\d+)\}\)", pattern
        ):
            assert chars == "A-Za-z0-9_.-", pattern
            assert bounds.setdefault(name, int(longest)) == int(longest), name
    assert bounds == {"job_id": 128, "run_id": 160, "task_id": 128}
    seen = set()
    for template, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for param in operation["parameters"]:
                if param["in"] == "path":
                    schema = param["schema"]
                    assert schema["maxLength"] == bounds[param["name"]], (template, method, param)
                    hook = "@?" if param["name"] == "task_id" else ""
                    assert schema["minLength"] == 1
                    assert schema["pattern"] == f"^{hook}[A-Za-z0-9_.-]+$"
                    seen.add(param["name"])
    assert seen == set(bounds)


def test_openapi_job_lists_have_item_schemas(openapi):
    schemas = openapi["components"]["schemas"]
    job = schemas["Job"]["properties"]
    task = _resolve(openapi, job["tasks"]["items"])
    assert task["required"] == sorted(
        ["id", "depends_on", "name", "type", "condition", "timeout_secs", "retry"]
    )
    assert task["properties"]["id"] == {"type": "string"}
    assert task["properties"]["depends_on"] == {"type": "array", "items": {"type": "string"}}
    assert task["properties"]["condition"]["enum"] == [c.value for c in Condition] + [None]
    dependency = _resolve(openapi, job["depends_on"]["items"])
    assert dependency["required"] == ["condition", "job"]
    assert dependency["properties"]["job"] == {"type": "string"}
    assert dependency["properties"]["condition"]["enum"] == [c.value for c in DependencyCondition]
    # the schemas bite: a wrong item is reported (real responses pass in the test above)
    assert schema_problems(openapi, job["tasks"], [{"id": "a", "depends_on": [1]}])
    task_fields = {"name": None, "type": None, "condition": None, "timeout_secs": None}
    good = {"id": "a", "depends_on": [], **task_fields, "retry": None}
    assert not schema_problems(openapi, job["tasks"], [good])
    assert schema_problems(openapi, job["tasks"], [{**good, "retry": {"max_attempts": 1}}])
    assert schema_problems(openapi, job["tasks"], [{**good, "condition": "sometimes"}])
    assert schema_problems(openapi, job["depends_on"], [{"job": "a", "condition": "sometimes"}])
    assert schema_problems(openapi, job["depends_on"], [{"condition": "last_success"}])


def test_openapi_get_schemas_match_real_responses(svc, openapi, finished_pipeline):
    checked = 0
    for path, operations in openapi["paths"].items():
        if "get" not in operations:
            continue
        if list(operations["get"]["responses"]["200"]["content"]) == ["text/event-stream"]:
            head = request(svc.port, "HEAD", path.format(**finished_pipeline))  # GET never ends
            assert head.status == 200 and head.content_type.startswith("text/event-stream")
            checked += 1
            continue
        response = svc.get(path.format(**finished_pipeline))
        assert response.status == 200, (path, response.body[:300])
        assert_documented(openapi, path, "get", response)
        checked += 1
    assert checked == sum(1 for methods in route_templates().values() if "get" in methods)
    # and the error body of an error actually produced
    assert_documented(openapi, "/api/jobs/{job_id}", "get", svc.get("/api/jobs/no_such_job"))


def test_openapi_document_is_consistent(openapi):
    schemas = openapi["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(openapi):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for name, schema in schemas.items():
        assert set(schema.get("required", [])) <= set(schema.get("properties", {})), name
    assert RUN_FIELDS <= set(schemas["Run"]["required"])
    assert TASK_FIELDS <= set(schemas["TaskState"]["required"])
    assert JOB_FIELDS <= set(schemas["Job"]["required"])
    assert LOG_FIELDS <= set(schemas["TaskLogs"]["required"])
