"""Params and task outputs end to end, through the real bin/petit, the real API, the control
socket and task processes: every door takes params (HTTP body, `petit trigger --param`,
`petit ctl trigger --param`), refuses bad ones with every problem and no run, and hands them to
tasks only as variables; outputs go downstream, bad ones fail the task, no file stays behind."""

from __future__ import annotations

import json
import os

import pytest
from conftest import MARK, run_petit, wait_until, write_job
from test_api import assert_error, ok

from petit.core.text import short_repr

# The task writes each param's variable, byte for byte, to a file of its own in the run's folder.
PARAMS_JOB = """\
id: p
name: params job
params:
  name: {{type: string, default: world, description: who to greet}}
  count: {{type: int, default: 1}}
  ratio: {{type: float, default: 0.5}}
  dry_run: {{type: bool, default: false}}
  mode: {{type: choice, choices: [fast, slow], default: fast}}
environment:
  {mark}: {marker}
  OUT: "{out}"
tasks:
  - id: t
    type: shell
    working_dir: work
    script: |
      mkdir -p "$OUT/$PETIT_RUN_ID"
      for name in name count ratio dry_run mode; do
        eval "printf '%s' \\"\\$PETIT_PARAM_$name\\"" > "$OUT/$PETIT_RUN_ID/$name"
      done
"""
NEEDS_JOB = """\
id: needs
name: a required param
params:
  who: {{required: true}}
environment:
  {mark}: {marker}
tasks:
  - id: t
    command: "true"
"""
INJECTION = "$(touch INJECTED); touch INJECTED2 ; reboot"


@pytest.fixture
def files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return out


def jobs_for(marker: str, out, extra: dict[str, str] | None = None) -> dict[str, str]:
    fields = {"mark": MARK, "marker": marker, "out": out}
    jobs = {"p": PARAMS_JOB.format(**fields), "needs": NEEDS_JOB.format(**fields)}
    return {**jobs, **(extra or {})}


def seen_params(out, run_id: str) -> dict[str, str]:
    folder = out / run_id
    return {name: (folder / name).read_text() for name in sorted(os.listdir(folder))}


def prepared(svc) -> None:
    os.makedirs(os.path.join(svc.jobs_dir, "work"), exist_ok=True)


def post_trigger(
    svc, job_id: str, body: bytes | None, content_type: str = "application/json", query: str = ""
):
    headers = {"Content-Type": content_type} if body is not None else {}
    return svc.post(f"/api/jobs/{job_id}/trigger{query}", body=body, headers=headers)


def params_body(**params) -> bytes:
    return json.dumps({"params": params}).encode()


def test_params_over_http_reach_the_task_as_variables_only(service, marker, files):
    svc = service(jobs_for(marker, files), api=True)
    prepared(svc)
    work = os.path.join(svc.jobs_dir, "work")
    response = post_trigger(
        svc, "p", params_body(name=INJECTION, count=5, ratio=2, dry_run=True, mode="slow")
    )
    run_id = ok(response)["run_id"]
    run = svc.wait_run(run_id)
    assert run["status"] == "completed", run
    assert run["params"] == {
        "name": INJECTION,
        "count": 5,
        "ratio": 2.0,
        "dry_run": True,
        "mode": "slow",
    }
    assert seen_params(files, run_id) == {
        "count": "5",
        "dry_run": "true",
        "mode": "slow",
        "name": INJECTION,
        "ratio": "2.0",
    }
    for folder in (work, svc.jobs_dir, svc.root, os.getcwd()):
        assert not {"INJECTED", "INJECTED2"} & set(os.listdir(folder)), folder
    # no body: every default; ?queue=true keeps working with params
    defaults = svc.wait_run(ok(post_trigger(svc, "p", None))["run_id"])
    assert defaults["params"] == {
        "name": "world",
        "count": 1,
        "ratio": 0.5,
        "dry_run": False,
        "mode": "fast",
    }
    queued = ok(post_trigger(svc, "p", params_body(count=7), query="?queue=true"))
    assert svc.wait_run(queued["run_id"])["params"]["count"] == 7
    job = ok(svc.get("/api/jobs/p"))
    assert job["params"][0] == {
        "name": "name",
        "type": "string",
        "default": "world",
        "choices": [],
        "required": False,
        "description": "who to greet",
        "secret": False,
    }


def test_bad_params_over_http_name_every_problem_and_create_no_run(service, marker, files):
    svc = service(jobs_for(marker, files), api=True)
    body = params_body(count="5", mode="medium", colour="red")
    error = assert_error(post_trigger(svc, "p", body), 400, "INVALID_PARAMS")
    assert error["problems"] == [
        "unknown param 'colour': declared params are name, count, ratio, dry_run, mode",
        "'count': expected an int, got '5'",
        "'mode': 'medium' is not one of the choices fast, slow",
    ]
    missing = assert_error(post_trigger(svc, "needs", b'{"params": {}}'), 400, "INVALID_PARAMS")
    assert missing["problems"] == ["'who': required param is missing"]
    refusals = [
        (b"count=5", "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE", "application/json"),
        (b'{"params": ', "application/json", 400, "BAD_REQUEST", "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "BAD_REQUEST", "must be a JSON object"),
        (b'{"parms": {}}', "application/json", 400, "BAD_REQUEST", "unknown key 'parms'"),
        (b"[" * 50_000, "application/json", 400, "BAD_REQUEST", "not valid JSON"),
        (
            b'{"params": {"name": "' + b"x" * 70_000 + b'"}}',
            "application/json",
            413,
            "PAYLOAD_TOO_LARGE",
            "65536 bytes",
        ),
    ]
    for body, content_type, status, code, fragment in refusals:
        answer = assert_error(post_trigger(svc, "p", body, content_type), status, code)
        assert fragment in answer["error"], (body[:40], answer)
    long_name = "n" * 129
    shapes = [
        ({"params": [1]}, ["'params' must be a JSON object of name -> value, got [1]"]),
        ({"params": None}, ["'params' must be a JSON object of name -> value, got None"]),
        (
            {"params": {"count": [5], "name": None, long_name: "x", "mode": {"a": 1}}},
            [
                "'count': expected a string, number or bool, got [5]",
                "'name': expected a string, number or bool, got None",
                f"param name {short_repr(long_name, 60)} is longer than 128 characters",
                "'mode': expected a string, number or bool, got {'a': 1}",
            ],
        ),
        (
            {"params": {f"p{n}": n for n in range(101)}},
            ["101 params given: at most 100 are accepted"],
        ),
    ]
    for body, problems in shapes:
        answer = assert_error(
            post_trigger(svc, "p", json.dumps(body).encode()), 400, "INVALID_PARAMS"
        )
        assert answer["problems"] == problems
    assert ok(svc.get("/api/jobs/p/runs"))["count"] == 0
    assert ok(svc.get("/api/jobs/needs/runs"))["count"] == 0
    # every other route still drops its body unread, whatever its type
    paused = svc.post("/api/scheduler/pause", body=b"x", headers={"Content-Type": "text/plain"})
    assert ok(paused)["message"] == "scheduler paused"


def test_ctl_trigger_takes_params_as_text(service, marker, files):
    svc = service(jobs_for(marker, files))
    prepared(svc)
    result = svc.call(
        "trigger",
        "p",
        "--param",
        "count=5",
        "--param",
        "dry_run=yes",
        "--param",
        f"name={INJECTION}",
        "--param",
        "ratio=1e-3",
    )
    run = svc.wait_run(result["run_id"])
    assert run.status.value == "completed", run
    assert run.params == {
        "name": INJECTION,
        "count": 5,
        "ratio": 0.001,
        "dry_run": True,
        "mode": "fast",
    }
    assert seen_params(files, run.id)["name"] == INJECTION
    bad = svc.ctl("trigger", "p", "--param", "count=abc", "--param", "nope=1", "--param", "x")
    assert bad.returncode == 1, bad
    error = json.loads(bad.stdout)
    assert error["code"] == "INVALID_PARAMS"
    assert error["problems"] == ["--param 'x': expected NAME=VALUE"]
    bad = svc.ctl("trigger", "p", "--param", "count=abc", "--param", "nope=1")
    assert json.loads(bad.stdout)["problems"] == [
        "unknown param 'nope': declared params are name, count, ratio, dry_run, mode",
        "'count': expected an int, got 'abc'",
    ]
    human = run_petit("ctl", "trigger", "needs", "--socket", svc.socket)
    assert human.returncode == 1 and "'who': required param is missing" in human.stderr
    assert len(svc.runs("p")) == 1 and svc.runs("needs") == []


def test_petit_trigger_takes_params_as_text(tmp_path, marker, files):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "work").mkdir()
    for job_id, text in jobs_for(marker, files).items():
        write_job(jobs, f"{job_id}.yaml", text)
    db = str(tmp_path / "petit.db")
    result = run_petit(
        "--db",
        db,
        "trigger",
        str(jobs),
        "p",
        "--param",
        "mode=slow",
        "--param",
        f"name={INJECTION}",
        "--param",
        "dry_run=0",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(run_petit("--db", db, "show", "p-1", "--json").stdout)
    assert shown["params"] == {
        "name": INJECTION,
        "count": 1,
        "ratio": 0.5,
        "dry_run": False,
        "mode": "slow",
    }
    assert seen_params(files, "p-1") == {
        "count": "1",
        "dry_run": "false",
        "mode": "slow",
        "name": INJECTION,
        "ratio": "0.5",
    }
    assert not {"INJECTED", "INJECTED2"} & set(os.listdir(jobs / "work"))
    human = run_petit("--db", db, "show", "p-1").stdout
    assert "params     name=" in human and "mode=slow" in human
    bad = run_petit(
        "--db", db, "trigger", str(jobs), "p", "--param", "count=1.5", "--param", "dry_run=maybe"
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "petit: 'count': expected an int, got '1.5'; 'dry_run': expected a bool, got "
        "'maybe' (true/false, yes/no, 1/0)"
    )
    runs = json.loads(run_petit("--db", db, "runs", "p", "--json").stdout)
    assert [run["id"] for run in runs["runs"]] == ["p-1"]
    listed = run_petit("list", str(jobs)).stdout
    assert "  param: mode (choice of fast, slow; default fast)" in listed
    assert "  param: who (string; required)" in listed


def test_scheduled_runs_use_the_defaults(service, marker, files):
    scheduled = PARAMS_JOB.replace("id: p\n", 'id: p\nschedule: "@every 1s"\n')
    svc = service(
        jobs_for(marker, files, {"p": scheduled.format(mark=MARK, marker=marker, out=files)})
    )
    prepared(svc)
    run = wait_until(
        lambda: next((r for r in svc.runs("p") if r.status.value == "completed"), None),
        timeout=20,
        message="a completed scheduled run",
    )
    assert run.trigger.value == "schedule"
    assert run.params == {
        "name": "world",
        "count": 1,
        "ratio": 0.5,
        "dry_run": False,
        "mode": "fast",
    }
    assert seen_params(files, run.id)["dry_run"] == "false"


# -- task outputs ---------------------------------------------------------------------------------

OUTPUTS_JOB = """\
id: out
name: outputs
environment:
  {mark}: {marker}
  OUT: "{out}"
tasks:
  - id: a
    type: shell
    script: |
      echo "version=1.2" >> "$PETIT_OUTPUT"
      printf 'notes<<EOF\\nfirst\\nsecond\\nEOF\\n' >> "$PETIT_OUTPUT"
      echo "$PETIT_OUTPUT" > "$OUT/path"
  - id: b
    depends_on: [a]
    type: shell
    script: printf '%s' "$PETIT_OUT_a_version" > "$OUT/b"
  - id: c
    depends_on: [b]
    type: shell
    script: printf '%s|%s' "$PETIT_OUT_a_version" "$PETIT_OUT_a_notes" > "$OUT/c"
"""
MALFORMED_JOB = """\
id: malformed
name: malformed outputs
environment:
  {mark}: {marker}
tasks:
  - id: a
    type: shell
    script: printf 'ok=1\\nok=2\\nthis is not a pair\\n' > "$PETIT_OUTPUT"
  - id: after
    depends_on: [a]
    command: "true"
"""
TOO_BIG_JOB = """\
id: big
name: too big outputs
environment:
  {mark}: {marker}
tasks:
  - id: a
    type: shell
    script: head -c 66560 /dev/zero | tr '\\0' x | sed 's/^/k=/' > "$PETIT_OUTPUT"
"""


def test_outputs_go_downstream_and_bad_ones_fail_the_task(service, marker, files):
    fields = {"mark": MARK, "marker": marker, "out": files}
    svc = service(
        {
            "out": OUTPUTS_JOB.format(**fields),
            "malformed": MALFORMED_JOB.format(**fields),
            "big": TOO_BIG_JOB.format(**fields),
        },
        api=True,
    )
    run_id = svc.trigger("out")
    assert svc.wait_run(run_id)["status"] == "completed"
    tasks = {t["task_id"]: t for t in ok(svc.get(f"/api/runs/{run_id}/tasks"))["tasks"]}
    assert tasks["a"]["outputs"] == {"version": "1.2", "notes": "first\nsecond"}
    assert tasks["b"]["outputs"] == {} and tasks["c"]["outputs"] == {}
    assert (files / "b").read_text() == "1.2"
    assert (files / "c").read_text() == "1.2|first\nsecond"
    output_path = (files / "path").read_text().strip()
    assert output_path.startswith(svc.root + "/")  # TMPDIR of the service
    shown = run_petit("--db", svc.db, "show", run_id).stdout
    assert "outputs of a: version=1.2 notes=first\\nsecond" in shown

    failed = svc.wait_run(svc.trigger("malformed"))
    assert failed["status"] == "failed"
    tasks = {t["task_id"]: t for t in ok(svc.get(f"/api/runs/{failed['id']}/tasks"))["tasks"]}
    assert tasks["a"]["status"] == "failed" and tasks["a"]["exit_code"] == 0
    assert tasks["a"]["error"] == (
        "PETIT_OUTPUT line 3: expected key=value or key<<DELIMITER, got 'this is not a pair'"
    )
    assert tasks["a"]["outputs"] is None and tasks["after"]["status"] == "skipped"

    big = svc.wait_run(svc.trigger("big"))
    tasks = {t["task_id"]: t for t in ok(svc.get(f"/api/runs/{big['id']}/tasks"))["tasks"]}
    assert big["status"] == "failed"
    assert tasks["a"]["error"] == "PETIT_OUTPUT: more than the limit of 65536 bytes"
    # the worker keeps its (private) folder while it lives, with no attempt's file left in it
    leftovers = [
        os.path.join(folder, name)
        for folder, _, files in os.walk(svc.root)
        if os.path.basename(folder).startswith("petit-output-")
        for name in files
    ]
    assert leftovers == [] and not os.path.exists(output_path)


def test_tasks_that_name_the_same_outputs_are_refused(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(
        jobs,
        "j.yaml",
        "id: j\nname: j\ntasks:\n  - {id: a-b, command: 'true'}\n  - {id: a.b, command: 'true'}\n",
    )
    result = run_petit("validate", str(jobs))
    assert result.returncode == 1
    assert "task 'a.b': its id and task 'a-b' both name outputs PETIT_OUT_a_b_<KEY>" in (
        result.stderr
    )


AMBIGUOUS_JOB = """\
id: amb
name: two pairs, one name
environment:
  {mark}: {marker}
tasks:
  - id: a
    type: shell
    script: 'echo b_c=1 > "$PETIT_OUTPUT"'
  - id: a_b
    type: shell
    script: 'echo c=2 > "$PETIT_OUTPUT"'
  - id: down
    depends_on: [a, a_b]
    type: shell
    script: 'touch "{out}/down"'
"""


def test_an_ambiguous_output_variable_fails_the_downstream_task_before_it_starts(
    tmp_path, marker, files
):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "amb.yaml", AMBIGUOUS_JOB.format(mark=MARK, marker=marker, out=files))
    db = str(tmp_path / "petit.db")
    assert run_petit("--db", db, "trigger", str(jobs), "amb").returncode == 1
    down = json.loads(run_petit("--db", db, "show", "amb-1", "--json").stdout)["tasks"][2]
    assert down["task_id"] == "down" and down["status"] == "failed" and down["attempts"] == 1
    assert down["error"] == (
        "PETIT_OUT_a_b_c would be both task 'a' key 'b_c' and task 'a_b' key 'c': rename a key "
        "(or a task)"
    )
    assert sorted(os.listdir(files)) == []  # it never ran


QUEUE_JOB = """\
id: q
name: one at a time
max_concurrency: 1
params:
  tag: {{default: plain}}
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


def test_a_queued_run_keeps_its_params_across_a_restart(service, marker, files):
    job = QUEUE_JOB.format(mark=MARK, marker=marker, out=files)
    svc = service({"q": job}, api=True, shutdown_timeout=0)
    blocking = ok(post_trigger(svc, "q", params_body(tag="block")))["run_id"]
    svc.wait_task_pid(blocking)
    queued = ok(post_trigger(svc, "q", params_body(tag="later"), query="?queue=true"), 202)
    assert svc.stop() == 0
    assert svc.run(queued["run_id"]).status.value == "queued"
    again = service(jobs_dir=svc.jobs_dir, db=svc.db, socket=svc.socket)
    run = again.wait_run(queued["run_id"], "completed")
    assert run.params == {"tag": "later"}
    assert (files / queued["run_id"]).read_text() == "later"


BAD_PARAMS_JOB = """\
id: bad
name: bad params
schedule: "@every 1h"
params:
  a: {type: date}
  b: {type: int, default: "x"}
  c: {type: choice}
  d: {required: true, default: "x"}
  e: {required: true}
tasks:
  - id: t
    command: "true"
"""


def test_validate_names_file_job_and_field_of_each_bad_param(tmp_path):
    path = write_job(tmp_path, "bad.yaml", BAD_PARAMS_JOB)
    result = run_petit("validate", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    where = f"{path}: job 'bad': params:"
    assert result.stderr.splitlines() == [
        f"{where} a: type: 'date' is not valid: expected one of string, int, float, bool, choice",
        f"{where} b: default: expected an int, got 'x'",
        f"{where} c: choices: type choice needs a non-empty list of strings, got None",
        f"{where} d: required: a required param cannot have a default (give one or the other)",
        f"{where} e: required: the job has a schedule, and its scheduled runs (which use the "
        "defaults) could never start: give a default instead",
        f"5 error(s) in {tmp_path}",
    ]


BAD_KEYS_JOB = """\
id: keys
name: bad output keys
environment:
  {mark}: {marker}
tasks:
  - id: a
    type: shell
    script: printf 'ok=1\\n1abc=x\\n' > "$PETIT_OUTPUT"
  - id: b
    type: shell
    script: printf 'a-b=y\\n' > "$PETIT_OUTPUT"
"""


def test_petit_trigger_fails_a_task_whose_output_key_is_bad_naming_the_line(tmp_path, marker):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "keys.yaml", BAD_KEYS_JOB.format(mark=MARK, marker=marker))
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", str(jobs), "keys")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    rule = "is not a valid key: expected letters, digits and _, not starting with a digit"
    errors = {
        "a": f"PETIT_OUTPUT line 2: '1abc' {rule}",
        "b": f"PETIT_OUTPUT line 1: 'a-b' {rule}",
    }
    for task_id, error in errors.items():
        assert f"== {task_id}: end failed: {error}" in result.stdout, result.stdout
    shown = json.loads(run_petit("--db", db, "show", "keys-1", "--json").stdout)
    assert shown["status"] == "failed"
    tasks = {task["task_id"]: task for task in shown["tasks"]}
    for task_id, error in errors.items():
        task = tasks[task_id]
        assert (task["status"], task["exit_code"], task["error"]) == ("failed", 0, error)
        assert task["outputs"] is None  # not even the good line of a
