"""The server side of the dashboard (issue 11) against the real `bin/petit run`: the pages and
their files, the browser security headers on every kind of response, static paths that try to
leave the folder, the API fields the pages read (recent runs, pages of older runs, attempts,
task settings, schedules in words, /api/status) and `--public-url` behind a proxy.

One service, with a token and a public URL, serves every check but the startup error."""

from __future__ import annotations

import os
import signal

import pytest
from api_client import request
from harness import Service
from jobfiles import job_yaml
from processes import run_petit, wait_until

from petit import __version__
from petit.api.dashboard import STATIC_ROOT

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://petit.example.com"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# what a browser must be told each kind of file is (it refuses a module script of another type)
EXPECTED_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
JOBS = {
    "quick": job_yaml("quick", "echo hi"),
    "flaky": """id: flaky
name: Flaky
tasks:
  - id: t
    type: shell
    script: "echo try; exit 3"
    retry: {max_attempts: 1}
""",
    "shaped": """id: shaped
name: Shaped
schedule:
  cron: "30 7 * * 1-5"
  timezone: Europe/Paris
tasks:
  - id: first
    name: First step
    type: shell
    script: "true"
    timeout: 1m
  - id: cleanup
    depends_on: [first]
    condition: on_failure
    command: "true"
    retry: {max_attempts: 2, delay: 1s, condition: transient_only}
""",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dashboard"))
    extra = ("--api-token", TOKEN, "--public-url", PUBLIC)
    with Service(root, jobs=JOBS, extra_args=extra).running() as service:
        yield service


def api(svc: Service, method: str, path: str, headers: dict | None = None):
    return request(svc.port, method, path, headers={**AUTH, **(headers or {})})


def data(svc: Service, path: str) -> dict:
    response = api(svc, "GET", path)
    assert response.status == 200, (path, response.status, response.body[:300])
    return response.json()


def assert_secure(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status, response.headers)


@pytest.fixture(scope="module")
def quick_runs(svc) -> list[str]:
    """Five finished runs of `quick`, oldest first."""
    run_ids = [api(svc, "POST", "/api/jobs/quick/trigger").json()["run_id"] for _ in range(5)]
    for run_id in run_ids:
        wait_until(
            lambda run_id=run_id: data(svc, f"/api/runs/{run_id}")["status"] == "completed",
            timeout=20,
            message=f"{run_id} to complete",
        )
    return run_ids


# -- pages, files and headers ---------------------------------------------------------------------


def shell() -> bytes:
    with open(os.path.join(STATIC_ROOT, "index.html"), "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("path", ["/", "/jobs/quick", "/jobs/no_such_job", "/runs/quick-1"])
def test_every_page_is_the_shell_without_a_token(svc, path):
    response = request(svc.port, "GET", path)  # no token: the shell holds no data
    assert response.status == 200, (response.status, response.body[:200])
    assert response.content_type == "text/html; charset=UTF-8"
    assert response.body == shell()
    assert response.headers["cache-control"] == "no-cache"
    assert_secure(response)
    etag = response.headers["etag"]
    again = request(svc.port, "GET", path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b"", again
    assert_secure(again)
    head = request(svc.port, "HEAD", path)
    assert head.status == 200 and head.body == b"" and head.headers["etag"] == etag


def test_every_static_file_is_served_with_its_type(svc):
    served = 0
    for folder, _, names in os.walk(STATIC_ROOT):
        for name in names:
            full = os.path.join(folder, name)
            path = os.path.relpath(full, STATIC_ROOT).replace(os.sep, "/")
            response = request(svc.port, "GET", f"/static/{path}")
            extension = os.path.splitext(name)[1]
            assert response.status == 200, (path, response.status, response.body[:200])
            assert response.content_type.split(";")[0] == EXPECTED_TYPES[extension], path
            with open(full, "rb") as handle:
                assert response.body == handle.read(), path
            assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]
            assert_secure(response)
            served += 1
    assert served >= 1  # index.html at least


def test_api_replies_and_errors_carry_the_headers_too(svc):
    for method, path, headers, status in [
        ("GET", "/api/jobs", AUTH, 200),
        ("GET", "/api/jobs", {}, 401),
        ("GET", "/api/nothing/here", AUTH, 404),
        ("GET", "/static/nothing.js", {}, 404),
        ("GET", "/jobs/a/b", AUTH, 404),
        ("GET", "/jobs/a/b", {}, 401),  # no route probing without the token
        ("POST", "/", {}, 405),
        ("GET", "/", {"Host": "evil.example.com"}, 403),  # pages keep the Host check
    ]:
        response = request(svc.port, method, path, headers=headers)
        assert response.status == status, (method, path, response.status, response.body[:200])
        assert_secure(response)
        assert response.content_type.startswith("application/json"), (path, response.headers)
        if status != 200:
            assert set(response.json()) == {"error", "code"}, response.body


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../setup.py",
        "/static/../dashboard.py",
        "/static/%2e%2e/%2e%2e/setup.py",
        "/static/%2E%2E/dashboard.py",
        "/static/..%2f..%2fsetup.py",
        "/static/js/..%2f..%2f..%2f..%2fsetup.py",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/..%5c..%5csetup.py",
        "/static/index.html%00.js",
        "/static/.gitignore",
        "/static/",
        "/static/js",
        "/static/js/",
    ],
)
def test_static_paths_outside_the_folder_are_404(svc, path):
    response = request(svc.port, "GET", path)
    assert response.status == 404, (path, response.status, response.body[:200])
    assert response.json()["code"] == "NOT_FOUND"
    assert b"setup(" not in response.body and b"root:" not in response.body
    assert_secure(response)


# -- what the pages read ------------------------------------------------------------------------


def test_jobs_with_recent_runs_newest_first(svc, quick_runs):
    jobs = {job["id"]: job for job in data(svc, "/api/jobs?recent=3")["jobs"]}
    recent = jobs["quick"]["recent_runs"]
    assert [run["id"] for run in recent] == quick_runs[::-1][:3]
    assert set(recent[0]) == {
        "id",
        "status",
        "trigger",
        "created_at",
        "started_at",
        "ended_at",
        "duration_ms",
    }
    assert recent[0]["status"] == "completed" and recent[0]["trigger"] == "manual"
    assert jobs["shaped"]["recent_runs"] == []
    assert "recent_runs" not in data(svc, "/api/jobs")["jobs"][0]
    assert "recent_runs" not in data(svc, "/api/jobs?recent=0")["jobs"][0]
    capped = {job["id"]: job for job in data(svc, "/api/jobs?recent=" + "9" * 50)["jobs"]}
    assert len(capped["quick"]["recent_runs"]) == 5
    for bad in ("abc", "-1", "1.5", "", "%C2%B2"):  # the last: '²', which int() refuses
        response = api(svc, "GET", f"/api/jobs?recent={bad}")
        assert response.status == 400 and response.json()["code"] == "BAD_REQUEST", bad
        assert "recent must be a whole number >= 0" in response.json()["error"]


def test_runs_page_by_page_with_before(svc, quick_runs):
    newest_first = quick_runs[::-1]
    seen, before, pages = [], None, 0
    while True:
        page = data(svc, "/api/jobs/quick/runs?limit=2" + (f"&before={before}" if before else ""))
        seen += [run["id"] for run in page["runs"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
        assert before == page["runs"][-1]["id"]
    assert seen == newest_first and pages == 3
    exact = data(svc, "/api/jobs/quick/runs?limit=5")
    assert exact["count"] == 5 and exact["next_before"] is None  # no older page: none announced
    for bad in ("shaped-1", "quick", "quick-0", "nonsense"):
        response = api(svc, "GET", f"/api/jobs/quick/runs?before={bad}")
        assert response.status == 400, (bad, response.body)
        assert "before must be a run id of job 'quick'" in response.json()["error"]


def test_every_attempt_of_a_retried_task(svc):
    run_id = api(svc, "POST", "/api/jobs/flaky/trigger").json()["run_id"]
    wait_until(
        lambda: data(svc, f"/api/runs/{run_id}")["status"] == "failed",
        timeout=20,
        message=f"{run_id} to fail",
    )
    (task,) = data(svc, f"/api/runs/{run_id}/tasks")["tasks"]
    first, second = task["attempt_history"]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert first["exit_code"] == second["exit_code"] == 3 == task["exit_code"]
    assert first["started_at"] <= first["ended_at"] <= second["started_at"] <= second["ended_at"]
    assert second["ended_at"] == task["ended_at"]
    assert first["duration_ms"] == first["ended_at"] - first["started_at"]
    assert first["timed_out"] is False and first["error"]


def test_job_settings_and_schedule_in_words(svc):
    job = data(svc, "/api/jobs/shaped")
    assert job["schedule_words"] == "at 07:30 on Monday to Friday (Europe/Paris)"
    assert job["tasks"] == [
        {
            "id": "first",
            "depends_on": [],
            "name": "First step",
            "type": "shell",
            "condition": "all_success",
            "timeout_secs": 60.0,
            "retry": None,
        },
        {
            "id": "cleanup",
            "depends_on": ["first"],
            "name": "cleanup",
            "type": "command",
            "condition": "on_failure",
            "timeout_secs": None,
            "retry": {
                "max_attempts": 2,
                "delay_secs": 1.0,
                "condition": "transient_only",
                "backoff": 1.0,
                "max_delay_secs": None,
                "jitter": False,
                "on_exit_codes": None,
                "retry_on_timeout": True,
                "words": "retry 2 times, after 1.0s, on a timeout only",
            },
        },
    ]
    assert data(svc, "/api/jobs/quick")["schedule_words"] is None


def test_status_names_the_version_the_scheduler_and_the_children(svc):
    assert request(svc.port, "GET", "/api/status").status == 401
    status = data(svc, "/api/status")
    assert set(status) == {"version", "scheduler", "children"}
    assert status["version"] == __version__ and status["scheduler"] == {"state": "running"}
    children = {child["name"]: child for child in status["children"]}
    assert set(children) == {"scheduler", "api"}
    for child in children.values():
        assert set(child) == {"name", "state", "pid", "uptime_secs", "restarts"}
        assert child["state"] == "running" and child["restarts"] == 0
        assert isinstance(child["pid"], int) and child["uptime_secs"] >= 0


# -- behind a reverse proxy: --public-url ---------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["petit.example.com", "petit.example.com:443", "PETIT.example.com"]
)
def test_the_public_host_is_served(svc, host):
    assert request(svc.port, "GET", "/", headers={"Host": host}).status == 200
    assert api(svc, "GET", "/api/jobs", headers={"Host": host}).status == 200


@pytest.mark.parametrize(
    "host", ["evil.example.com", "petit.example.com.evil.com", "petit.example.com:8443"]
)
def test_other_hosts_are_still_refused(svc, host):
    response = api(svc, "GET", "/api/jobs", headers={"Host": host})
    assert response.status == 403 and response.json()["code"] == "FORBIDDEN", response.body
    assert "--public-url" in response.json()["error"]


def test_a_post_from_the_public_origin_is_accepted_and_others_refused(svc):
    proxied = {"Host": "petit.example.com", "Origin": PUBLIC}
    try:
        assert api(svc, "POST", "/api/scheduler/pause", headers=proxied).status == 200
        assert data(svc, "/api/scheduler/state")["state"] == "paused"
    finally:
        assert api(svc, "POST", "/api/scheduler/resume", headers=proxied).status == 200
    for origin in (
        "https://evil.example.com",
        "https://petit.example.com.evil.com",
        "https://petit.example.com:8443",
        "null",
    ):
        response = api(svc, "POST", "/api/scheduler/pause", headers={**proxied, "Origin": origin})
        assert response.status == 403, (origin, response.body)
    assert data(svc, "/api/scheduler/state")["state"] == "running"


def test_status_says_stopped_while_the_scheduler_does_not_answer(svc):
    """Last in the module: the worker is frozen for the status's probe (3 s)."""
    pid = next(c["pid"] for c in data(svc, "/api/status")["children"] if c["name"] == "scheduler")
    os.kill(pid, signal.SIGSTOP)
    try:
        status = data(svc, "/api/status")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert status["scheduler"] == {"state": "stopped"}
    assert {child["name"] for child in status["children"]} == {"scheduler", "api"}
    wait_until(
        lambda: data(svc, "/api/status")["scheduler"]["state"] == "running",
        timeout=10,
        message="the scheduler to answer again",
    )


def test_a_bad_public_url_stops_petit_run_with_a_clear_error(tmp_path):
    result = run_petit(
        "--db",
        str(tmp_path / "petit.db"),
        "run",
        str(tmp_path),
        "--public-url",
        "https://petit.example.com/petit",
        timeout=30,
    )
    assert result.returncode == 2, result
    assert result.stderr.strip() == (
        "petit: --public-url must be an origin like https://petit.example.com (http or https, "
        "a host and an optional port; no path, query or user), got "
        "'https://petit.example.com/petit': an origin has no path, query or fragment"
    )
