"""The audit log of the HTTP door (issue 16), against the real `bin/petit run` with API keys:
the one line each POST to a state-changing route writes, success (a secret param masked, the
run recorded) and every kind of refusal alike, with who, from where, the outcome and the status
sent; nothing for reads; GET /api/audit (admin only: since, limit, more, the warning for a torn
line); and fail closed: with `<db>.audit.jsonl` unwritable, a trigger or a pause is refused and
nothing is done, and once it is writable again they work. A change carried out whose line then
cannot be written is answered so (in-process: no real disk fails between the check and the
write on demand)."""

from __future__ import annotations

import json
import os
import time

import pytest
from api_client import request
from harness import Service
from processes import wait_until
from test_api_keys import (
    BOSS,
    JOBS,
    SECRETS,
    InProcessApi,
    as_boss,
    bearer,
    keyed_service,
    wait_status,
)

from petit.errors import AuditUnavailable
from petit.ipc.audit import FIELDS, AuditLog, audit_path

READER, OPERATOR = bearer(SECRETS["reader"]), bearer(SECRETS["operator"])
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with keyed_service(str(tmp_path_factory.mktemp("audit"))).running() as service:
        yield service


@pytest.fixture
def fresh(service, tmp_path):
    """A keyed service of the test's own, for the tests that break its audit log."""
    started = keyed_service(str(tmp_path / "own"))
    service.started.append(started)  # the `service` fixture stops and checks it
    return started.start()


def lines(svc: Service) -> list[dict]:
    """The audit file's entries, oldest first."""
    try:
        with open(audit_path(svc.db)) as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []


def one_new_line(svc: Service, before: int) -> dict:
    new = lines(svc)[before:]
    assert len(new) == 1, new
    return new[0]


def post(svc: Service, path: str, headers: dict | None = None, body: bytes | None = None):
    return request(svc.port, "POST", path, headers=headers, body=body)


def test_a_trigger_writes_one_line_with_its_secret_param_masked(svc):
    before = len(lines(svc))
    started_ms = int(time.time() * 1000)
    body = json.dumps({"params": {"token": "hunter2-xyz", "version": "2.1"}}).encode()
    response = post(svc, "/api/jobs/secretive/trigger", {**OPERATOR, **JSON}, body)
    assert response.status == 200, response.body
    run_id = response.json()["run_id"]
    entry = one_new_line(svc, before)
    assert list(entry) == list(FIELDS)  # the contract's order
    assert started_ms <= entry["at"] <= int(time.time() * 1000)
    assert entry["time"].endswith("Z") and entry["time"][:4] == time.strftime("%Y", time.gmtime())
    assert {k: v for k, v in entry.items() if k not in ("time", "at")} == {
        "door": "http",
        "who": "operator",
        "remote": "127.0.0.1",
        "pid": None,
        "op": "trigger",
        "args": {
            "job_id": "secretive",
            "queue": False,
            "params": {"token": "***", "version": "2.1"},
        },
        "outcome": "ok",
        "http_status": 200,
        "run_id": run_id,
    }
    with open(audit_path(svc.db)) as handle:
        assert "hunter2-xyz" not in handle.read()
    wait_status(svc, run_id, "completed")


def test_pause_resume_reload_and_cancel_write_their_lines(svc):
    before = len(lines(svc))
    for path in ("/api/scheduler/pause", "/api/scheduler/resume", "/api/scheduler/reload"):
        assert post(svc, path, BOSS).status == 200, path
    slow = as_boss(svc, "POST", "/api/jobs/slow/trigger")["run_id"]
    wait_status(svc, slow, "running")
    assert post(svc, f"/api/runs/{slow}/cancel", OPERATOR).status == 200
    new = lines(svc)[before:]
    assert [(e["op"], e["who"], e["args"], e["outcome"], e["http_status"]) for e in new] == [
        ("pause", "boss", {}, "ok", 200),
        ("resume", "boss", {}, "ok", 200),
        ("reload", "boss", {}, "ok", 200),
        ("trigger", "boss", {"job_id": "slow", "queue": False, "params": {}}, "ok", 200),
        ("cancel", "operator", {"run_id": slow}, "ok", 200),
    ]
    assert new[3]["run_id"] == slow and new[4]["run_id"] is None


def refusals(finished: str) -> list[tuple]:
    """(what, path, headers, body, status, code, who, args) of each refusal kind."""
    quick = {"job_id": "quick"}
    return [
        ("no key", "/api/jobs/quick/trigger", {}, None, 401, "UNAUTHORIZED", None, quick),
        (
            "a wrong key",
            "/api/scheduler/pause",
            bearer("petit_" + "w" * 43),
            None,
            401,
            "UNAUTHORIZED",
            None,
            {},
        ),
        ("role", "/api/jobs/quick/trigger", READER, None, 403, "FORBIDDEN", "reader", quick),
        ("role", "/api/scheduler/reload", OPERATOR, None, 403, "FORBIDDEN", "operator", {}),
        (
            "foreign Origin (before the key is read)",
            "/api/scheduler/pause",
            {**BOSS, "Origin": "http://evil.example"},
            None,
            403,
            "FORBIDDEN",
            None,
            {},
        ),
        (
            "params the job does not declare",
            "/api/jobs/secretive/trigger",
            {**OPERATOR, **JSON},
            json.dumps({"params": {"token": "s3cr3t-value", "colour": "red"}}).encode(),
            400,
            "INVALID_PARAMS",
            "operator",
            {
                "job_id": "secretive",
                "queue": False,
                "params": {"token": "***", "colour": "red"},
            },
        ),
        (
            "a bad flag",
            "/api/jobs/quick/trigger?queue=yes",
            OPERATOR,
            None,
            400,
            "BAD_REQUEST",
            "operator",
            quick,
        ),
        (
            "a form body",
            "/api/jobs/quick/trigger",
            {**OPERATOR, "Content-Type": "application/x-www-form-urlencoded"},
            b"a=1",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "operator",
            quick,
        ),
        (
            "a body too large",
            "/api/jobs/quick/trigger",
            {**OPERATOR, "Content-Length": str(1 << 20)},
            None,
            413,
            "PAYLOAD_TOO_LARGE",
            None,  # refused before the key is read
            quick,
        ),
        (
            "unknown job",
            "/api/jobs/nope/trigger",
            OPERATOR,
            None,
            404,
            "NOT_FOUND",
            "operator",
            {"job_id": "nope"},
        ),
        (
            "unknown run",
            "/api/runs/quick-999999/cancel",
            OPERATOR,
            None,
            404,
            "NOT_FOUND",
            "operator",
            {"run_id": "quick-999999"},
        ),
        (
            "a finished run",
            f"/api/runs/{finished}/cancel",
            OPERATOR,
            None,
            409,
            "CONFLICT",
            "operator",
            {"run_id": finished},
        ),
    ]


def test_each_refusal_writes_one_line_with_the_outcome_it_answered(svc):
    finished = as_boss(svc, "POST", "/api/jobs/quick/trigger")["run_id"]
    wait_status(svc, finished, "completed")
    runs_before = as_boss(svc, "GET", "/api/jobs/quick/runs")["count"]
    for what, path, headers, body, status, code, who, args in refusals(finished):
        before = len(lines(svc))
        if "Content-Length" in headers:  # declared, never sent: refused before it is read
            response = request(svc.port, "POST", path, headers=headers)
        else:
            response = post(svc, path, headers, body)
        assert response.status == status, (what, response.status, response.body[:300])
        assert response.json()["code"] == code, what
        entry = one_new_line(svc, before)
        assert (entry["who"], entry["args"], entry["outcome"], entry["http_status"]) == (
            who,
            args,
            code,
            status,
        ), what
        assert (entry["door"], entry["remote"], entry["pid"], entry["run_id"]) == (
            "http",
            "127.0.0.1",
            None,
            None,
        ), what
    assert as_boss(svc, "GET", "/api/jobs/quick/runs")["count"] == runs_before
    assert "s3cr3t-value" not in open(audit_path(svc.db)).read()


def test_reads_and_other_methods_write_nothing(svc):
    before = len(lines(svc))
    for method, path, headers in (
        ("GET", "/api/jobs", READER),
        ("GET", "/api/whoami", READER),
        ("GET", "/api/audit", BOSS),
        ("GET", "/api/jobs/quick/trigger", OPERATOR),  # 405
        ("OPTIONS", "/api/scheduler/pause", BOSS),  # 405
        ("HEAD", "/api/scheduler/state", READER),
    ):
        request(svc.port, method, path, headers=headers)
    assert len(lines(svc)) == before


# -- GET /api/audit -------------------------------------------------------------------------------


def audit(svc: Service, query: str = "", headers: dict = BOSS):
    return request(svc.port, "GET", f"/api/audit{query}", headers=headers)


def test_the_audit_route_pages_the_newest_entries_oldest_first(svc):
    for _ in range(3):
        assert post(svc, "/api/scheduler/resume", BOSS).status == 200
    on_disk = lines(svc)
    page = audit(svc, "?limit=1000").json()
    assert page == {"entries": on_disk, "count": len(on_disk), "more": False, "warnings": []}
    last_two = audit(svc, "?limit=2").json()
    assert last_two["entries"] == on_disk[-2:] and last_two["more"] is True
    assert audit(svc).json()["entries"] == on_disk[-100:]  # the default limit
    since = on_disk[-2]["at"]
    recent = audit(svc, f"?since={since}").json()["entries"]
    assert recent == [e for e in on_disk if e["at"] >= since] and len(recent) >= 2
    assert audit(svc, f"?since={on_disk[-1]['at'] + 60_000}").json()["entries"] == []


def test_the_audit_route_is_for_admin_keys_and_checks_its_arguments(svc):
    for headers in (OPERATOR, READER):
        response = audit(svc, headers=headers)
        assert response.status == 403 and response.json()["needed_role"] == "admin"
    assert audit(svc, headers={}).status == 401
    for query, name in (
        ("?since=abc", "since"),
        ("?since=-1", "since"),
        ("?since=1.5", "since"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
    ):
        response = audit(svc, query)
        assert response.status == 400, query
        assert response.json()["code"] == "BAD_REQUEST" and response.json()["error"].startswith(
            f"{name} must be"
        ), (query, response.json())
    assert audit(svc, "?limit=1000&since=0").status == 200


def test_a_torn_last_line_is_skipped_with_a_warning(fresh):
    path = audit_path(fresh.db)
    assert post(fresh, "/api/scheduler/pause", BOSS).status == 200
    with open(path, "ab") as handle:
        handle.write(b'{"time": "2026-12-0')  # a writer killed mid-line
    page = audit(fresh).json()
    assert [e["op"] for e in page["entries"]] == ["pause"]
    assert page["warnings"] == [f"{path} line 2: skipped a torn last line (cut short by a crash)"]
    # the next line ends it first, so it is not glued to the torn one
    assert post(fresh, "/api/scheduler/resume", BOSS).status == 200
    page = audit(fresh).json()
    assert [e["op"] for e in page["entries"]] == ["pause", "resume"]
    assert page["warnings"] == [f"{path} line 2: skipped a line that is not JSON"]


# -- fail closed ----------------------------------------------------------------------------------


def test_an_unwritable_audit_log_refuses_every_change_and_nothing_is_done(fresh):
    path = audit_path(fresh.db)
    if os.path.exists(path):
        os.unlink(path)
    os.mkdir(path)  # root may write anything: a directory is what cannot be appended to
    for route, headers in (
        ("/api/jobs/quick/trigger", OPERATOR),
        ("/api/scheduler/pause", BOSS),
        ("/api/scheduler/reload", BOSS),
    ):
        response = post(fresh, route, headers)
        assert response.status == 503, (route, response.body)
        body = response.json()
        assert body["code"] == "AUDIT_UNAVAILABLE", body
        assert body["error"].startswith(f"the audit log {path} cannot be written ("), body
    assert fresh.runs("quick") == []
    assert as_boss(fresh, "GET", "/api/scheduler/state")["state"] == "running"
    # reads go on; the audit route says what it cannot read
    assert as_boss(fresh, "GET", "/api/jobs")["count"] == len(JOBS)
    assert audit(fresh).json()["warnings"][0].startswith(f"{path}: cannot read")
    wait_until(lambda: "unrecorded" in fresh.log(), message="the unrecorded refusals logged")
    os.rmdir(path)
    response = post(fresh, "/api/jobs/quick/trigger", OPERATOR)
    assert response.status == 200, response.body
    assert response.json()["run_id"] == "quick-1"  # nothing ran in between
    assert [(e["op"], e["outcome"], e["run_id"]) for e in lines(fresh)] == [
        ("trigger", "ok", "quick-1")
    ]


class LineLost(AuditLog):
    """An audit log that takes the pre-flight check, then fails to write the line: what a disk
    that fills between the two does."""

    def append(self, entry: dict) -> None:
        raise AuditUnavailable(f"the audit log {self.path} cannot be written (No space left)")


def test_a_change_whose_line_is_lost_is_answered_with_what_was_done(tmp_path):
    db = str(tmp_path / "petit.db")
    with Service(str(tmp_path / "svc"), jobs=JOBS, api=False, db=db).running():
        pass  # its worker stored the jobs: known to the API
    answers = {
        "trigger": {"run_id": "quick-41", "job_id": "quick", "status": "running", "message": ""},
        "pause": {"message": "scheduler paused"},
    }
    api = InProcessApi(db, None, audit=LineLost(audit_path(db)), answer=lambda cmd, _: answers[cmd])
    try:
        lost = "but its audit line could not be written: the audit log"
        trigger = request(api.port, "POST", "/api/jobs/quick/trigger")
        assert trigger.status == 503 and trigger.json()["code"] == "AUDIT_UNAVAILABLE"
        assert trigger.json()["error"].startswith(
            f"trigger of job 'quick' was carried out (run quick-41), {lost}"
        ), trigger.json()
        pause = request(api.port, "POST", "/api/scheduler/pause")
        assert pause.json()["error"].startswith(f"pause was carried out, {lost}"), pause.json()
        assert [cmd for cmd, _ in api.asked] == ["trigger", "pause"]  # both were sent: done
    finally:
        api.close()
