"""Params declared `secret: true`, end to end through the real bin/petit, the API, the control
socket and task processes: every view petit has (the Run JSON over HTTP and the event stream,
`petit show` and `petit show --json`, `petit runs --json`, the job JSON, error messages, the
service's log) shows "***" for their values, while the tasks get the real value, the db keeps
it (mode 0600), and a queued run still has it after a restart."""

from __future__ import annotations

import json
import os
import stat

from conftest import MARK, run_petit, wait_until, write_job
from sse_client import SseStream
from test_api import assert_error, ok

# Values no view may contain: distinctive enough that a search for them cannot match by chance.
TOKEN = "tok-5f1c2e9a-not-for-your-eyes"
PIN = 48213

# The task writes what its variables hold to a file named after the run.
SECRET_JOB = """\
id: s
name: secret params
params:
  token: {{secret: true, description: the deploy token}}
  pin: {{type: int, secret: true, default: {pin}}}
  region: {{default: eu}}
environment:
  {mark}: {marker}
  OUT: "{out}"
tasks:
  - id: t
    type: shell
    script: |
      printf '%s|%s|%s' "$PETIT_PARAM_token" "$PETIT_PARAM_pin" "$PETIT_PARAM_region" \\
        > "$OUT/$PETIT_RUN_ID"
"""
SCHEDULED_JOB = """\
id: sched
name: a scheduled job with a secret default
schedule: "@every 1s"
params:
  pin: {{type: int, secret: true, default: {pin}}}
environment:
  {mark}: {marker}
  OUT: "{out}"
tasks:
  - id: t
    type: shell
    script: printf '%s' "$PETIT_PARAM_pin" > "$OUT/$PETIT_RUN_ID"
"""
QUEUE_JOB = """\
id: q
name: one at a time
max_concurrency: 1
params:
  tag: {{secret: true, default: plain}}
environment:
  {mark}: {marker}
  OUT: "{out}"
tasks:
  - id: t
    type: shell
    script: |
      printf '%s' "$PETIT_PARAM_tag" > "$OUT/$PETIT_RUN_ID"
      if [ "$PETIT_PARAM_tag" = block ]; then sleep 30; fi
"""
MASKED = {"token": "***", "pin": "***", "region": "us"}


def job_text(template: str, marker: str, out) -> str:
    return template.format(mark=MARK, marker=marker, out=out, pin=PIN)


def trigger(svc, job_id: str, query: str = "", **params):
    return svc.post(
        f"/api/jobs/{job_id}/trigger{query}",
        body=json.dumps({"params": params}).encode(),
        headers={"Content-Type": "application/json"},
    )


def chunk_file(db: str, job_id: str) -> str:
    """The history file that holds the job's first runs (see storage/store.py's layout)."""
    return f"{db}.d/runs/{job_id}/00000000.json"


def assert_db_keeps_the_value(db: str, job_id: str) -> None:
    path = chunk_file(db, job_id)
    assert TOKEN in open(path).read()  # the db is where the value is kept, for the run to come
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_secret_param_is_masked_in_every_view_and_reaches_the_task(service, marker, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    svc = service(
        {"s": job_text(SECRET_JOB, marker, out), "sched": job_text(SCHEDULED_JOB, marker, out)},
        api=True,
    )
    events = SseStream(svc.port, "/api/events?job_id=s")
    run_id = ok(trigger(svc, "s", token=TOKEN, region="us"))["run_id"]
    run = svc.wait_run(run_id)
    assert run["status"] == "completed", run
    assert run["params"] == MASKED
    # the task had the real values, the default of a secret param too
    assert (out / run_id).read_text() == f"{TOKEN}|{PIN}|us"
    stream = events.until(lambda e: e.event == "run" and e.json()["ended_at"])
    assert [e.json()["params"] for e in stream if e.event == "run"][-1] == MASKED
    assert not [e.data for e in stream if TOKEN in e.data]
    events.close()

    listed = svc.get("/api/jobs/s/runs")
    assert ok(listed)["runs"][0]["params"] == MASKED and TOKEN not in listed.body.decode()
    declared = {p["name"]: p for p in ok(svc.get("/api/jobs/s"))["params"]}
    assert (declared["pin"]["secret"], declared["pin"]["default"]) == (True, "***")
    assert (declared["token"]["secret"], declared["token"]["default"]) == (True, None)
    assert (declared["region"]["secret"], declared["region"]["default"]) == (False, "eu")

    shown = run_petit("--db", svc.db, "show", run_id, "--json")
    assert json.loads(shown.stdout)["params"] == MASKED and TOKEN not in shown.stdout
    human = run_petit("--db", svc.db, "show", run_id).stdout
    assert "  params     token=*** pin=*** region=us\n" in human, human
    assert TOKEN not in human and str(PIN) not in human
    runs = run_petit("--db", svc.db, "runs", "s", "--json").stdout
    assert json.loads(runs)["runs"][0]["params"] == MASKED and TOKEN not in runs

    # a refused value is not quoted back either, and no run is created
    refused = assert_error(trigger(svc, "s", pin=TOKEN), 400, "INVALID_PARAMS")
    assert refused["problems"] == ["'pin': expected an int, got ***"]
    assert ok(svc.get("/api/jobs/s/runs"))["count"] == 1

    # a scheduled run takes the secret default: masked as well, real for its task
    scheduled = svc.wait_run(
        wait_until(
            lambda: next((r["id"] for r in ok(svc.get("/api/jobs/sched/runs"))["runs"]), None),
            timeout=20,
            message="a scheduled run of sched",
        )
    )
    assert scheduled["trigger"] == "schedule" and scheduled["params"] == {"pin": "***"}
    assert (out / scheduled["id"]).read_text() == str(PIN)

    assert_db_keeps_the_value(svc.db, "s")
    stored = svc.run(run_id)
    assert stored.params == {"token": TOKEN, "pin": PIN, "region": "us"}
    assert stored.secret_params == ("token", "pin")
    assert TOKEN not in svc.log()


def test_petit_trigger_records_the_secret_and_old_records_still_read(tmp_path, marker):
    out = tmp_path / "out"
    out.mkdir()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "s.yaml", job_text(SECRET_JOB, marker, out))
    db = str(tmp_path / "petit.db")
    result = run_petit(
        "--db", db, "trigger", str(jobs), "s", "--param", f"token={TOKEN}", "--param", "region=us"
    )
    assert result.returncode == 0, result.stderr
    assert (out / "s-1").read_text() == f"{TOKEN}|{PIN}|us"
    shown = run_petit("--db", db, "show", "s-1", "--json").stdout
    assert json.loads(shown)["params"] == MASKED and TOKEN not in shown
    human = run_petit("--db", db, "show", "s-1").stdout
    assert "  params     token=*** pin=*** region=us\n" in human and TOKEN not in human
    assert_db_keeps_the_value(db, "s")
    listed = run_petit("list", str(jobs)).stdout
    assert "  param: pin (int; default ***)\n" in listed and str(PIN) not in listed, listed
    assert "  param: region (string; default eu)\n" in listed
    as_json = json.loads(run_petit("list", str(jobs), "--json").stdout)
    assert [p["default"] for p in as_json[0]["params"]] == [None, "***", "eu"]

    # a record written before runs kept their secret names shows its params as recorded
    path = chunk_file(db, "s")
    records = json.load(open(path))
    for record in records["runs"].values():
        del record["secret_params"]
    json.dump(records, open(path, "w"))
    old = json.loads(run_petit("--db", db, "show", "s-1", "--json").stdout)
    assert old["params"] == {"token": TOKEN, "pin": PIN, "region": "us"}
    # one whose secret names are not a list of names is a corrupt record, said as such
    for record in records["runs"].values():
        record["secret_params"] = "token"
    json.dump(records, open(path, "w"))
    corrupt = run_petit("--db", db, "show", "s-1")
    assert corrupt.returncode != 0 and "Traceback" not in corrupt.stderr, corrupt
    assert "secret_params is not a list of names" in corrupt.stderr, corrupt.stderr


def test_validate_refuses_a_secret_that_is_not_true_or_false(tmp_path):
    path = write_job(
        tmp_path,
        "v.yaml",
        'id: v\nname: v\nparams:\n  token: {secret: "yes"}\ntasks:\n  - {id: t, command: "true"}\n',
    )
    result = run_petit("validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert result.stderr.splitlines() == [
        f"{path}: job 'v': params: token: secret: expected true or false, got 'yes'",
        f"1 error(s) in {tmp_path}",
    ]


def test_a_queued_run_keeps_its_secret_across_a_restart(service, marker, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    svc = service({"q": job_text(QUEUE_JOB, marker, out)}, api=True, shutdown_timeout=0)
    blocking = ok(trigger(svc, "q", tag="block"))["run_id"]
    svc.wait_task_pid(blocking)
    queued = ok(trigger(svc, "q", "?queue=true", tag=TOKEN), 202)
    assert svc.stop() == 0
    stored = svc.run(queued["run_id"])
    assert stored.status.value == "queued" and stored.params == {"tag": TOKEN}
    assert stored.secret_params == ("tag",)
    again = service(jobs_dir=svc.jobs_dir, db=svc.db, socket=svc.socket, api=True)
    run = again.wait_run(queued["run_id"], "completed")
    assert run["params"] == {"tag": "***"}
    assert (out / queued["run_id"]).read_text() == TOKEN
    # the socket door (`petit ctl trigger --param`, text read by the declared type) masks too
    by_socket = again.call("trigger", "q", "--param", f"tag={TOKEN}")["run_id"]
    assert again.wait_run(by_socket)["params"] == {"tag": "***"}
    assert (out / by_socket).read_text() == TOKEN
    assert TOKEN not in svc.log() and TOKEN not in again.log()
