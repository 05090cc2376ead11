"""Webhooks (job key `notify`) end to end: a real `bin/petit run` POSTs to real HTTP servers in
this process (http.server in a thread) that answer, fail, stall or are not there at all, and
every delivery attempt is recorded on the run and shown by the API and `petit show`."""

from __future__ import annotations

import glob
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from api_client import free_port
from jobfiles import write_job
from processes import run_petit, wait_until

PUBLIC = "https://petit.example.com"
SECRET = "s3cret-value"


class Receiver:
    """An HTTP server on a free loopback port: it records every POST (path, headers, JSON body)
    and answers from `answers` (path -> status codes, one per request, the last repeated); a
    path in `stall` holds its answer until `release` is set."""

    def __init__(self, answers: dict[str, list[int]], stall: tuple[str, ...] = ()) -> None:
        self.answers = answers
        self.stall = stall
        self.release = threading.Event()
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body))
                    codes = receiver.answers.get(self.path, [200])
                    code = codes.pop(0) if len(codes) > 1 else codes[0]
                if self.path in receiver.stall:
                    receiver.release.wait(10)
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (its timeout) before this answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _, _ in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(answers: dict[str, list[int]] | None = None, stall: tuple[str, ...] = ()):
        made.append(Receiver(answers or {}, stall))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _job(job_id: str, script: str, webhooks: list[dict]) -> str:
    """A one-task job; each webhook written as JSON, which YAML reads as a flow map."""
    notify = "".join(f"  - {json.dumps(hook)}\n" for hook in webhooks)
    task = f'  - id: t\n    type: shell\n    script: "{script}"\n'
    return f"id: {job_id}\nname: {job_id}\nnotify:\n{notify}tasks:\n{task}"


def _notifications(svc, run_id: str, done) -> list[dict]:
    return wait_until(
        lambda: (
            (run := svc.run(run_id)) is not None and done(run.notifications) and run.notifications
        ),
        timeout=25,
        interval=0.05,
        message=f"the notifications of {run_id}",
    )


def test_webhooks_are_sent_retried_and_recorded(service, receiver):
    up = receiver({"/flaky": [500, 200], "/gone": [404]})
    down = f"http://127.0.0.1:{free_port()}/nobody"
    webhooks = [
        {
            "url": f"{up.url}/json?key={SECRET}",
            "on": ["failure"],
            "headers": {"X-Token": "Bearer ${HOOK_TOKEN}"},
        },
        {"url": f"{up.url}/slack", "format": "slack", "on": ["finish"]},
        {"url": f"{up.url}/flaky", "on": ["failure"]},
        {"url": f"{up.url}/gone", "on": ["failure"]},
        {"url": down, "on": ["failure"], "retries": 1},
        {"url": f"{up.url}/never", "on": ["success"]},
    ]
    svc = service(
        {"web": _job("web", "exit 3", webhooks)},
        "--public-url",
        PUBLIC,
        api=True,
        env={"HOOK_TOKEN": SECRET},
    )
    run_id = svc.trigger("web")
    entries = _notifications(
        svc, run_id, lambda entries: len(entries) == 5 and all(_settled(e) for e in entries)
    )
    by_url = {entry["url"]: entry for entry in entries}
    # the url as recorded: no query (it held the secret)
    assert sorted(by_url) == sorted(
        [f"{up.url}/json", f"{up.url}/slack", f"{up.url}/flaky", f"{up.url}/gone", down]
    )
    assert f"{up.url}/never" not in by_url  # a success-only webhook is not told of a failure
    sent = {path.split("?")[0]: (headers, body) for path, headers, body in up.requests}
    headers, body = sent["/json"]
    assert headers["X-Token"] == f"Bearer {SECRET}"  # ${HOOK_TOKEN} from petit's environment
    assert headers["Content-Type"] == "application/json"
    run = svc.get(f"/api/runs/{run_id}").json()
    assert body == {
        "event": "failure",
        "job_id": "web",
        "run_id": run_id,
        "status": "failed",
        "error": "failed tasks: t",
        "trigger": "manual",
        "started_at": run["started_at"],
        "ended_at": run["ended_at"],
        "duration_ms": run["duration_ms"],
        "failed_tasks": ["t"],
        "url": f"{PUBLIC}/runs/{run_id}",
        "version": svc.get("/api/health").json()["version"],
    }
    text = sent["/slack"][1]["text"]
    assert text.startswith(f"petit: run {run_id} of job web failed") and f"{PUBLIC}/runs/" in text
    assert by_url[f"{up.url}/json"]["delivered"] and by_url[f"{up.url}/json"]["event"] == "failure"
    assert by_url[f"{up.url}/slack"]["event"] == "finish"
    flaky = by_url[f"{up.url}/flaky"]
    assert flaky["delivered"] and [a["status_code"] for a in flaky["attempts"]] == [500, 200]
    assert flaky["attempts"][0]["error"] == "answered HTTP 500"
    assert flaky["attempts"][1]["at"] - flaky["attempts"][0]["at"] >= 900  # the 1 s backoff
    gone = by_url[f"{up.url}/gone"]  # a 404 is final: not retried
    assert not gone["delivered"] and [a["status_code"] for a in gone["attempts"]] == [404]
    nobody = by_url[down]
    assert not nobody["delivered"] and len(nobody["attempts"]) == 2  # 1 + its 1 retry
    assert all(
        a["status_code"] is None and "Connection refused" in a["error"] for a in nobody["attempts"]
    )
    assert run["notifications"] == entries and run["status"] == "failed"
    # what the job shows of its webhooks: no query, no header values
    job = svc.get("/api/jobs/web").json()
    assert job["notify"][0] == {
        "url": f"{up.url}/json",
        "on": ["failure"],
        "format": "json",
        "headers": ["X-Token"],
        "timeout_secs": 10.0,
        "retries": 3,
    }
    assert SECRET not in json.dumps(job) and SECRET not in json.dumps(run)
    assert SECRET not in svc.log()
    shown = run_petit("--db", svc.db, "show", run_id).stdout
    assert f"{up.url}/flaky failure delivered 2 HTTP 200" in " ".join(shown.split()), shown


def _settled(entry: dict) -> bool:
    """Delivered, or failed in a way the record will not change any more (the tests' retries
    are known)."""
    attempts = entry["attempts"]
    if entry["delivered"] or entry["abandoned"]:
        return True
    return bool(attempts) and (attempts[-1]["status_code"] == 404 or len(attempts) == 2)


def test_a_slow_receiver_times_out_and_blocks_no_other_run(service, receiver):
    slow = receiver(stall=("/slow",))
    svc = service(
        {
            "slowweb": _job(
                "slowweb",
                "true",
                [{"url": f"{slow.url}/slow", "on": ["success"], "timeout": "4s", "retries": 0}],
            ),
            "quick": _job("quick", "true", []),
        }
    )
    run_id = svc.call("trigger", "slowweb")["run_id"]
    wait_until(lambda: slow.paths() == ["/slow"], timeout=10, message="the slow POST to arrive")
    # while that delivery waits for its answer, another job's run starts and ends
    quick = svc.call("trigger", "quick")["run_id"]
    assert svc.wait_run(quick, timeout=10).status.value == "completed"
    assert svc.run(run_id).notifications[0]["attempts"] == []  # still pending meanwhile
    (entry,) = _notifications(svc, run_id, lambda entries: entries and entries[0]["attempts"])
    assert not entry["delivered"] and len(entry["attempts"]) == 1
    assert entry["attempts"][0]["error"] == "timed out after 4s"
    assert 3900 <= entry["attempts"][0]["duration_ms"] < 9000
    assert svc.run(run_id).status.value == "completed"


def test_a_shutdown_gives_pending_deliveries_a_last_chance_then_abandons_them(service, receiver):
    slow = receiver(stall=("/slow",))
    svc = service(
        {
            "slowweb": _job(
                "slowweb",
                "true",
                [{"url": f"{slow.url}/slow", "on": ["success"], "timeout": "30s"}],
            )
        },
        shutdown_timeout=0.5,
    )
    run_id = svc.call("trigger", "slowweb")["run_id"]
    wait_until(lambda: slow.paths() == ["/slow"], timeout=10, message="the slow POST to arrive")
    assert svc.stop() == 0  # not the webhook's 30 s timeout: the last chance is bounded
    (entry,) = svc.run(run_id).notifications
    assert entry["abandoned"] and not entry["delivered"], entry


def _stored(db: str) -> str:
    """Everything the db's files hold (the run's history records included)."""
    text = ""
    for path in [db, *glob.glob(f"{db}.d/**/*", recursive=True)]:
        if path.endswith(".json") or path == db:
            with open(path, errors="replace") as handle:
                text += handle.read()
    return text


def test_a_header_variable_that_cannot_be_sent_is_a_final_error_naming_no_value(service, receiver):
    up = receiver()
    webhooks = [
        {"url": f"{up.url}/crlf", "on": ["success"], "headers": {"X-Token": "B ${HOOK_TOKEN}"}},
        {"url": f"{up.url}/wide", "on": ["success"], "headers": {"X-Key": "${HOOK_KEY}"}},
    ]
    env = {"HOOK_TOKEN": f"{SECRET}\r\nX-Injected: 1", "HOOK_KEY": f"{SECRET}\u20ac"}
    svc = service({"web": _job("web", "true", webhooks)}, api=True, env=env)
    run_id = svc.trigger("web")
    entries = _notifications(
        svc, run_id, lambda entries: len(entries) == 2 and all(e["attempts"] for e in entries)
    )
    errors = {entry["url"]: entry["attempts"][0]["error"] for entry in entries}
    assert errors == {
        f"{up.url}/crlf": "header X-Token: environment variable HOOK_TOKEN holds control "
        "characters (CR, LF, NUL ...)",
        f"{up.url}/wide": "header X-Key: environment variable HOOK_KEY holds characters beyond "
        "latin-1",
    }
    # final: not retried, not abandoned at the stop, and nothing was sent
    assert all(len(e["attempts"]) == 1 and not e["delivered"] for e in entries), entries
    served = json.dumps(svc.get(f"/api/runs/{run_id}").json())
    assert svc.stop() == 0
    assert [e["abandoned"] for e in svc.run(run_id).notifications] == [False, False]
    assert up.requests == []
    for text in (svc.log(), served, _stored(svc.db)):
        assert SECRET not in text and "Traceback" not in text


def test_a_url_variable_is_sent_expanded_and_shown_unexpanded(service, receiver):
    up = receiver()
    template = f"{up.url}/services/${{SLACK_WEBHOOK_PATH}}"
    webhook = {"url": template, "format": "slack", "on": ["finish"]}
    svc = service(
        {"web": _job("web", "true", [webhook])},
        api=True,
        env={"SLACK_WEBHOOK_PATH": f"T000/B000/{SECRET}"},
    )
    run_id = svc.trigger("web")
    (entry,) = _notifications(svc, run_id, lambda entries: entries and entries[0]["delivered"])
    assert up.paths() == [f"/services/T000/B000/{SECRET}"]
    assert entry["url"] == template
    job = svc.get("/api/jobs/web").json()
    assert job["notify"][0]["url"] == template
    served = json.dumps(svc.get(f"/api/runs/{run_id}").json())
    shown = run_petit("--db", svc.db, "show", run_id).stdout
    assert template in shown
    for text in (svc.log(), served, json.dumps(job), shown, _stored(svc.db)):
        assert SECRET not in text


class Trickler:
    """A receiver that answers one byte at a time, `interval` apart: each read is quick, the
    whole answer is not."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/trickle"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            for byte in self.ANSWER:
                if self.closed.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up: what this test wants

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def test_a_webhook_timeout_bounds_the_whole_attempt_not_each_read(service):
    trickler = Trickler(interval=0.5)  # 58 bytes: 29 s, each read well within the timeout
    try:
        webhook = {"url": trickler.url, "on": ["success"], "timeout": "2s", "retries": 0}
        svc = service({"web": _job("web", "true", [webhook])})
        run_id = svc.call("trigger", "web")["run_id"]
        (entry,) = _notifications(svc, run_id, lambda entries: entries and entries[0]["attempts"])
    finally:
        trickler.close()
    (attempt,) = entry["attempts"]
    assert attempt["error"] == "timed out after 2s" and not entry["delivered"], entry
    assert 1900 <= attempt["duration_ms"] < 5000, attempt


def test_petit_trigger_sends_its_webhooks_and_exits_with_the_run_code(tmp_path, receiver):
    up = receiver()
    down = f"http://127.0.0.1:{free_port()}/nobody"
    webhooks = [
        {"url": f"{up.url}/done", "on": ["finish"]},
        {"url": down, "on": ["failure"], "retries": 1, "timeout": "1s"},
    ]
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "web.yaml", _job("web", "exit 3", webhooks))
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", str(jobs), "web")
    assert result.returncode == 1, (result.stdout, result.stderr)  # the run's code, not the hook's
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("== notify")]
    assert lines == [
        f"== notify {up.url}/done: delivered (1 attempt(s))",
        f"== notify {down}: not delivered (2 attempt(s))",
    ], result.stdout
    ((path, _, body),) = up.requests
    assert path == "/done"
    assert (body["job_id"], body["run_id"], body["status"]) == ("web", "web-1", "failed")
    assert body["event"] == "finish" and body["failed_tasks"] == ["t"]
    shown = json.loads(run_petit("--db", db, "show", "web-1", "--json").stdout)
    attempts = {entry["url"]: entry["attempts"] for entry in shown["notifications"]}
    assert all("Connection refused" in attempt["error"] for attempt in attempts[down])
    assert attempts[down][1]["at"] - attempts[down][0]["at"] >= 900  # the 1 s backoff


def test_each_delivery_attempt_is_logged_naming_job_run_and_url(service, receiver):
    up = receiver({"/flaky": [500, 200]})
    webhook = {
        "url": f"{up.url}/flaky",
        "on": ["success"],
        "headers": {"X-Token": "Bearer ${HOOK_TOKEN}"},
    }
    svc = service({"web": _job("web", "true", [webhook])}, env={"HOOK_TOKEN": SECRET})
    run_id = svc.call("trigger", "web")["run_id"]
    (entry,) = _notifications(svc, run_id, lambda entries: entries and entries[0]["delivered"])
    assert [attempt["status_code"] for attempt in entry["attempts"]] == [500, 200]

    def attempt_lines() -> list[str] | None:
        found = [line for line in svc.log().splitlines() if f"{up.url}/flaky" in line]
        return found if len(found) == 2 else None

    lines = wait_until(attempt_lines, timeout=5, message="a log line per delivery attempt")
    first, second = lines
    for number, line in enumerate(lines, 1):
        assert f"run {run_id} of job web: " in line and f"(attempt {number})" in line, line
    assert "HTTP 500" in first and "retrying in 1s" in first
    assert "HTTP 200" in second
    assert SECRET not in svc.log() and "X-Token" not in svc.log()
