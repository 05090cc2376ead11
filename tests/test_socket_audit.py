"""The control socket and `petit ctl` as doors of the audit log (issue 16), through the real
`bin/petit run`, the real `petit ctl` and raw socket clients: one line for each state-changing
request, refusals included, with who asked (the peer's uid and pid), what, and what came of it;
secret params masked; fail closed when the log cannot be written; and a reload that reads the API
keys again (a bad one refuses the whole reload)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from harness import Service
from jobfiles import job_yaml, write_job
from processes import PETIT, group_members, run_petit, wait_until

from petit.ipc.audit import FIELDS

LONG = "sleep 60 &\nwait"
QUICK = "echo hello"
WHO = f"socket uid {os.getuid()}"
DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


def audit_lines(svc: Service) -> list[dict]:
    """The audit log as written, oldest first (none before the first line)."""
    path = svc.db + ".audit.jsonl"
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def ctl_pid(svc: Service, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`petit ctl ARGS --json`, and the pid of its process (bin/petit execs in place)."""
    argv = [sys.executable, PETIT, "ctl", *args, "--socket", svc.socket, "--json"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate(timeout=40)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), proc.pid


def raw(svc: Service, *lines: bytes) -> list[dict]:
    """Send request lines from this process on one connection; one reply per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(svc.socket)
        reader = sock.makefile("rb")
        replies = []
        for line in lines:
            sock.sendall(line + b"\n")
            replies.append(json.loads(reader.readline()))
        return replies


def request(cmd: str, **args) -> bytes:
    return json.dumps({"id": "1", "cmd": cmd, "args": args}).encode()


def assert_line(line: dict, **expected) -> None:
    assert list(line) == list(FIELDS), line
    assert line["remote"] is None and line["http_status"] is None, line
    assert isinstance(line["at"], int) and line["time"].endswith("Z"), line
    wanted = {"door": "ctl", "who": WHO, "outcome": "ok", "run_id": None, **expected}
    assert {key: line[key] for key in wanted} == wanted, line


def keys_toml(*entries: tuple[str, str, str]) -> str:
    return "".join(
        f'[[api_keys]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{digest}"\n\n'
        for name, role, digest in entries
    )


def test_each_ctl_verb_writes_its_line_before_it_answers(service):
    svc = service({"hello": job_yaml("hello", QUICK), "long": job_yaml("long", LONG)})
    supervisor_pid = svc.pid

    done, pid = ctl_pid(svc, "trigger", "hello")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    [line] = audit_lines(svc)
    trigger_args = {"job_id": "hello", "queue": False, "params": None, "param_words": None}
    assert_line(line, op="trigger", args=trigger_args, run_id=run_id, pid=pid)
    assert pid > 0 and pid != supervisor_pid

    for verb in ("pause", "resume"):
        done, pid = ctl_pid(svc, verb)
        assert done.returncode == 0, done.stderr
        assert_line(audit_lines(svc)[-1], op=verb, args={}, pid=pid)
    done, pid = ctl_pid(svc, "reload")
    assert json.loads(done.stdout)["api_keys"] is None  # no petit.toml: the API asks for no key
    assert_line(audit_lines(svc)[-1], op="reload", args={}, pid=pid)

    long_run = svc.call("trigger", "long")["run_id"]
    pgid = svc.wait_task_pid(long_run)
    done, pid = ctl_pid(svc, "cancel", long_run)
    assert json.loads(done.stdout)["status"] == "cancelled"
    assert_line(audit_lines(svc)[-1], op="cancel", args={"run_id": long_run}, pid=pid)
    wait_until(lambda: not group_members(pgid), timeout=5, message="the cancelled task gone")

    done, pid = ctl_pid(svc, "shutdown")
    assert done.returncode == 0 and json.loads(done.stdout) == {"message": "shutting down"}
    assert_line(audit_lines(svc)[-1], op="shutdown", args={"timeout": None}, pid=pid)
    assert svc.proc.wait(timeout=20) == 0
    ops = [line["op"] for line in audit_lines(svc)]
    assert ops == ["trigger", "pause", "resume", "reload", "trigger", "cancel", "shutdown"]


def test_a_raw_client_is_the_socket_door_and_questions_write_nothing(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    assert svc.ctl("status").returncode == 0 and svc.ctl("metrics").returncode == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a watch, then hang up
        sock.settimeout(30)
        sock.connect(svc.socket)
        sock.sendall(request("watch") + b"\n")
        assert json.loads(sock.makefile("rb").readline())["ok"] is True
    # not an operation: not JSON, no verb, an unknown verb
    replies = raw(svc, b"{nope", b"[]", request("frobnicate"), request("status"))
    assert [reply["ok"] for reply in replies] == [False, False, False, True]
    assert audit_lines(svc) == []

    [paused] = raw(svc, request("pause"))
    assert paused["ok"] is True
    [line] = audit_lines(svc)
    assert_line(line, door="socket", op="pause", args={}, pid=os.getpid())
    # a client that says it is ctl is told apart by that word only: the uid and pid stay its own
    raw(svc, json.dumps({"cmd": "resume", "client": "ctl"}).encode())
    assert_line(audit_lines(svc)[-1], door="ctl", op="resume", args={}, pid=os.getpid())


def test_refusals_are_recorded_with_their_code(service):
    svc = service({"hello": job_yaml("hello", QUICK), "long": job_yaml("long", LONG, None, 1)})
    unknown = svc.ctl("trigger", "nope")
    assert unknown.returncode == 1
    assert_line(
        audit_lines(svc)[-1],
        op="trigger",
        args={"job_id": "nope", "queue": False, "params": None, "param_words": None},
        outcome="NOT_FOUND",
    )
    assert svc.ctl("cancel", "hello-99").returncode == 1
    assert_line(audit_lines(svc)[-1], op="cancel", args={"run_id": "hello-99"}, outcome="NOT_FOUND")
    bad_param = svc.ctl("trigger", "hello", "--param", "nope=1")
    assert json.loads(bad_param.stdout)["code"] == "INVALID_PARAMS"
    assert_line(audit_lines(svc)[-1], op="trigger", outcome="INVALID_PARAMS")

    long_run = svc.call("trigger", "long")["run_id"]
    svc.wait_task_pid(long_run)
    assert json.loads(svc.ctl("trigger", "long").stdout)["code"] == "TOO_MANY_REQUESTS"
    assert_line(audit_lines(svc)[-1], op="trigger", outcome="TOO_MANY_REQUESTS")

    # refused before its arguments were read: what is known of the target is kept
    bad = raw(
        svc,
        request("trigger", job_id=5),
        request("trigger", job_id="hello", queue="yes", params={"token": "abc"}),
        request("shutdown", timeout="soon"),
        json.dumps({"cmd": "pause", "client": ["ctl"]}).encode(),
    )
    assert [reply["code"] for reply in bad] == ["BAD_REQUEST"] * 4
    lines = audit_lines(svc)[-4:]
    assert [(line["door"], line["op"], line["args"], line["outcome"]) for line in lines] == [
        ("socket", "trigger", {}, "BAD_REQUEST"),
        ("socket", "trigger", {"job_id": "hello"}, "BAD_REQUEST"),
        ("socket", "shutdown", {}, "BAD_REQUEST"),
        ("socket", "pause", {}, "BAD_REQUEST"),
    ]
    assert svc.status()["supervisor"]["shutting_down"] is False
    assert svc.call("cancel", long_run)["status"] == "cancelled"


SECRET_JOB = """\
id: deploy
name: deploy
params:
  token: {{secret: true}}
  target: {{default: staging}}
tasks:
  - id: t
    type: shell
    script: printf '%s' "$PETIT_PARAM_token" > "{out}/$PETIT_RUN_ID"
"""


def test_secret_params_are_masked_and_still_reach_the_task(service, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    svc = service({"deploy": SECRET_JOB.format(out=out)})
    run_id = svc.call("trigger", "deploy", "--param", "token=abc", "--param", "target=prod")[
        "run_id"
    ]
    wait_until(lambda: (out / run_id).exists(), timeout=10, message="the task's file")
    assert svc.wait_run(run_id).status.value == "completed"
    assert (out / run_id).read_text() == "abc"
    assert_line(
        audit_lines(svc)[-1],
        op="trigger",
        args={
            "job_id": "deploy",
            "queue": False,
            "params": None,
            "param_words": ["token=***", "target=prod"],
        },
        run_id=run_id,
    )
    [reply] = raw(svc, request("trigger", job_id="deploy", params={"token": "abc", "target": "x"}))
    assert reply["ok"] is True
    assert audit_lines(svc)[-1]["args"]["params"] == {"token": "***", "target": "x"}

    # a reload's secret names count from then on: `target` is secret now
    write_job(
        svc.jobs_dir,
        "deploy.yaml",
        SECRET_JOB.format(out=out).replace("default: st", "secret: true, default: st"),
    )
    assert svc.call("reload")["secret_params"] == {"deploy": ["token", "target"]}
    raw(svc, request("trigger", job_id="deploy", param_words=["token=abc", "target=hidden"]))
    assert audit_lines(svc)[-1]["args"]["param_words"] == ["token=***", "target=***"]
    with open(svc.db + ".audit.jsonl") as handle:
        text = handle.read()
    assert "abc" not in text and "hidden" not in text


def test_an_audit_log_that_cannot_be_written_refuses_every_change(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    os.mkdir(svc.db + ".audit.jsonl")  # root may write any file: a directory stops anyone
    refused = svc.ctl("trigger", "hello")
    assert refused.returncode == 1, refused.stdout
    assert json.loads(refused.stdout)["code"] == "AUDIT_UNAVAILABLE"
    assert "audit log" in refused.stderr and "cannot be written" in refused.stderr
    human = run_petit("ctl", "pause", "--socket", svc.socket)
    assert human.returncode == 1 and "refuses state-changing operations" in human.stderr
    assert "Traceback" not in refused.stderr + human.stderr
    status = svc.status()  # questions are still answered
    assert status["scheduler"]["paused"] is False and not svc.runs("hello")
    assert json.loads(svc.ctl("shutdown").stdout)["code"] == "AUDIT_UNAVAILABLE"
    assert svc.status()["supervisor"]["shutting_down"] is False

    os.rmdir(svc.db + ".audit.jsonl")  # writable again: changes are carried out again
    run_id = svc.call("trigger", "hello")["run_id"]
    assert [line["run_id"] for line in audit_lines(svc)] == [run_id]


def test_reload_reads_the_api_keys_again_and_a_bad_one_refuses_it(service, tmp_path):
    config = tmp_path / "petit.toml"
    config.write_text("max_tasks = 4\n\n" + keys_toml(("grafana", "read", DIGEST_A)))
    svc = service({"hello": job_yaml("hello", QUICK)}, "--config", str(config))
    assert svc.call("reload")["api_keys"] == 1

    config.write_text(
        "max_tasks = 4\n\n"
        + keys_toml(("grafana", "read", DIGEST_A), ("deployer", "operate", DIGEST_B))
    )
    write_job(svc.jobs_dir, "fresh.yaml", job_yaml("fresh", QUICK))
    reloaded = svc.call("reload")
    assert reloaded["api_keys"] == 2 and reloaded["added"] == ["fresh"]

    bad = keys_toml(("grafana", "read", DIGEST_A), ("deployer", "boss", DIGEST_B))
    config.write_text("max_tasks = 4\n\n" + bad)
    write_job(svc.jobs_dir, "later.yaml", job_yaml("later", QUICK))
    refused = svc.ctl("reload")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["code"] == "BAD_REQUEST"
    role_line = 3 + bad.splitlines().index('role = "boss"')
    assert f"{config} line {role_line}: api_keys[1].role: expected one of read, operate, admin" in (
        refused.stderr
    ), refused.stderr
    assert "reload refused" in refused.stderr
    assert svc.status()["scheduler"]["jobs"] == 2  # the job files were not read again
    assert json.loads(svc.ctl("trigger", "later").stdout)["code"] == "NOT_FOUND"
    assert [line["outcome"] for line in audit_lines(svc) if line["op"] == "reload"] == [
        "ok",
        "ok",
        "BAD_REQUEST",
    ]

    config.write_text("max_tasks = 4\n\n[[api_keys]]\n" + bad.split("[[api_keys]]\n")[1])
    assert svc.call("reload") == {
        "jobs": 3,
        "added": ["later"],
        "removed": [],
        "secret_params": {},
        "api_keys": 1,
    }


@pytest.mark.parametrize("declared", ["api_keys = []\n", ""])
def test_keys_declared_empty_count_zero_and_none_declared_count_null(service, tmp_path, declared):
    config = tmp_path / "petit.toml"
    config.write_text(declared)
    svc = service({"hello": job_yaml("hello", QUICK)}, "--config", str(config))
    assert svc.call("reload")["api_keys"] == (0 if declared else None)
