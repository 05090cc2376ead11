"""End-to-end tests of `petit run` (issue 3): the real supervisor, scheduler worker, task
processes and control socket, driven through `petit ctl --json` and read back from the db.
Every test's `service` fixture checks at teardown that no process it started is left alive."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time

import psutil
import pytest
from harness import Service
from jobfiles import job_yaml
from processes import group_members, is_alive, run_petit, wait_until

from petit.core.model import now_ms
from petit.storage.store import Store

# A long task whose process group has two members (the shell and its sleep), so "the whole group
# is gone" means more than "the direct child died".
LONG = "sleep 60 &\nwait"
QUICK = "echo hello from $PETIT_RUN_ID"


def hold(predicate, secs: float, message: str, interval: float = 0.05) -> None:
    """Poll `predicate` for `secs` and fail as soon as it is false: a property that must stay
    true."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        value = predicate()
        assert value, f"{message} (last value: {value!r})"
        time.sleep(interval)


def error_of(result) -> dict:
    """The JSON error body `ctl --json` prints on stdout when the command fails."""
    assert result.returncode != 0, f"expected a failure, got: {result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def start_long(svc: Service, job_id: str = "long") -> tuple[str, int]:
    """Trigger a long job and wait until its task group (shell + sleep) is up; (run id, pgid)."""
    run_id = svc.trigger(job_id)
    pgid = svc.wait_task_pid(run_id)
    wait_until(
        lambda: len(group_members(pgid)) >= 2,
        timeout=5,
        message="shell and sleep in the task group",
    )
    svc.remember()
    return run_id, pgid


def group_gone(pgid: int, timeout: float = 5) -> None:
    wait_until(
        lambda: not group_members(pgid), timeout=timeout, message=f"process group {pgid} to be gone"
    )


# -- schedules ------------------------------------------------------------------------------------


def _assert_regular(runs, step_ms: int, slack_ms: int = 0) -> None:
    stamps = [run.scheduled_at for run in runs]
    assert all(run.trigger.value == "schedule" for run in runs)
    assert len(set(stamps)) == len(stamps), f"duplicate fires: {stamps}"
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(abs(gap - step_ms) <= slack_ms for gap in gaps), f"gaps between fires: {gaps}"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_schedules_fire_regularly_pause_and_resume(service, tmp_path):
    ticks = tmp_path / "ticks.txt"
    stamp = f'echo "$PETIT_JOB_ID $PETIT_SCHEDULED_AT $(date +%s%3N)" >> {ticks}'
    started_ms = now_ms()
    svc = service(
        {
            "sec": job_yaml("sec", stamp, schedule="*/1 * * * * *"),
            "two": job_yaml("two", stamp, schedule="@every 2s"),
        }
    )

    wait_until(
        lambda: len(svc.runs("sec")) >= 11 and len(svc.runs("two")) >= 5,
        timeout=20,
        interval=0.1,
        message="11 fires of the every-second job and 5 of the @every 2s job",
    )
    sec, two = svc.runs("sec"), svc.runs("two")
    elapsed_secs = (now_ms() - started_ms) / 1000
    _assert_regular(sec, 1000)
    _assert_regular(two, 2000, slack_ms=1)  # @every keeps a sub-millisecond phase
    # contiguous stamps already rule out missed fires; these bound extra ones (loose below:
    # startup time counts in elapsed_secs)
    assert elapsed_secs - 5 <= len(sec) <= elapsed_secs + 1, (len(sec), elapsed_secs)
    assert elapsed_secs / 2 - 3 <= len(two) <= elapsed_secs / 2 + 1, (len(two), elapsed_secs)

    svc.call("pause")
    paused_ms = now_ms()
    assert svc.status()["scheduler"]["state"] == "paused"
    before = {run.id for job in ("sec", "two") for run in svc.runs(job)}
    hold(
        lambda: {run.id for job in ("sec", "two") for run in svc.runs(job)} == before,
        2.5,
        "a scheduled run was created while paused",
    )
    assert not [
        run.id for job in ("sec", "two") for run in svc.runs(job) if run.created_at > paused_ms
    ]
    assert "fire of job sec at" in svc.log() and "fire of job two at" in svc.log()
    assert "dropped: scheduler is paused" in svc.log()

    resume_sent_ms = now_ms()
    svc.call("resume")
    assert svc.status()["scheduler"]["state"] == "running"
    wait_until(
        lambda: len(svc.runs("sec")) >= len(sec) + 3 and len(svc.runs("two")) >= len(two) + 1,
        timeout=8,
        interval=0.1,
        message="fires after resume",
    )
    after_sec = svc.runs("sec")[len(sec) :]
    after_two = svc.runs("two")[len(two) :]
    _assert_regular(after_sec, 1000)
    # fires that fell inside the pause are not replayed
    assert all(run.scheduled_at > resume_sent_ms for run in after_sec + after_two)

    # every task saw its own fire instant in PETIT_SCHEDULED_AT (paused again: no fire may land
    # between the snapshot of the runs and the reading of the file)
    svc.call("pause")
    all_runs = svc.runs("sec") + svc.runs("two")
    wait_until(
        lambda: all(svc.run(run.id).status.is_terminal for run in all_runs),
        timeout=5,
        message="the observed runs to finish",
    )
    assert all(svc.run(run.id).status.value == "completed" for run in all_runs)
    seen = [line.split() for line in ticks.read_text().splitlines()]
    for job_id in ("sec", "two"):
        assert sorted(int(s) for j, s, _ in seen if j == job_id) == sorted(
            run.scheduled_at for run in all_runs if run.job_id == job_id
        )
    lateness = sorted(int(actual) - int(scheduled) for _, scheduled, actual in seen)
    assert lateness[0] >= 0, "a task started before its scheduled instant"
    assert lateness[-1] < 1000, "sanity bound only; the performance issue measures lateness"


# -- trigger, cancel, reload, status over the socket ----------------------------------------------


def test_trigger_records_a_run_that_completes(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    result = svc.call("trigger", "hello")
    assert result["job_id"] == "hello" and result["run_id"] == "hello-1"
    run = svc.wait_run("hello-1", "completed", "failed")
    assert run.status.value == "completed" and run.trigger.value == "manual"
    assert run.task("t").status.value == "completed" and run.task("t").exit_code == 0
    assert "hello from hello-1" in svc.store().logs.read("hello-1", "t")["stdout"]

    human = run_petit("ctl", "trigger", "hello", "--socket", svc.socket)
    assert human.returncode == 0 and human.stdout.strip() == "triggered job hello: run hello-2"
    svc.wait_run("hello-2", "completed")
    assert "run hello-1 of job hello started (manual)" in svc.log()
    assert "run hello-1 of job hello ended completed" in svc.log()


def test_trigger_of_unknown_job_is_not_found(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    result = svc.ctl("trigger", "nosuchjob")
    assert result.returncode == 1
    assert "nosuchjob" in result.stderr
    assert error_of(result)["code"] == "NOT_FOUND"
    human = run_petit("ctl", "trigger", "nosuchjob", "--socket", svc.socket)
    assert human.returncode == 1 and human.stderr.strip() == "petit: job 'nosuchjob' not found"
    assert svc.runs("nosuchjob") == []


def test_cancel_running_run_kills_its_process_group(service):
    svc = service({"long": job_yaml("long", LONG)})
    run_id, pgid = start_long(svc)
    result = svc.call("cancel", run_id)
    assert result["run_id"] == run_id and result["status"] == "cancelled"
    run = svc.run(run_id)  # the reply comes once the end is recorded
    assert run.status.value == "cancelled"
    assert run.task("t").status.value == "failed" and run.task("t").error == "cancelled"
    group_gone(pgid)
    assert svc.status()["scheduler"]["running_runs"] == []


def test_cancel_of_finished_or_unknown_run_is_refused(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    run_id = svc.trigger("hello")
    svc.wait_run(run_id, "completed")
    finished = svc.ctl("cancel", run_id)
    assert finished.returncode == 1 and "already finished (completed)" in finished.stderr
    assert error_of(finished)["code"] == "CONFLICT"
    unknown = svc.ctl("cancel", "hello-99")
    assert error_of(unknown)["code"] == "NOT_FOUND" and "hello-99" in unknown.stderr
    assert svc.run(run_id).status.value == "completed"


def test_reload_adds_a_job_keeping_running_runs_and_pause(service):
    svc = service({"long": job_yaml("long", LONG)})
    run_id, pgid = start_long(svc)
    svc.call("pause")
    with open(os.path.join(svc.jobs_dir, "fresh.yaml"), "w") as handle:
        handle.write(job_yaml("fresh", QUICK))
    result = svc.call("reload")
    assert result == {
        "jobs": 2,
        "added": ["fresh"],
        "removed": [],
        "secret_params": {},
        "api_keys": None,
    }
    status = svc.status()["scheduler"]
    assert status["state"] == "paused" and status["jobs"] == 2
    assert [r["run_id"] for r in status["running_runs"]] == [run_id]
    fresh = svc.trigger("fresh")  # manual triggers work while paused
    assert svc.wait_run(fresh, "completed", "failed").status.value == "completed"
    assert svc.run(run_id).status.value == "running" and group_members(pgid)
    # the running run is still under control: it can be cancelled after the reload
    assert svc.call("cancel", run_id)["status"] == "cancelled"
    group_gone(pgid)
    human = run_petit("ctl", "reload", "--socket", svc.socket)
    assert (
        human.returncode == 0
        and human.stdout.strip() == "reloaded 2 job(s); added: none; removed: none"
    )


def test_reload_with_invalid_files_keeps_the_old_jobs(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    with open(os.path.join(svc.jobs_dir, "typo.yaml"), "w") as handle:
        handle.write(job_yaml("typo", QUICK).replace("name:", "nmae:"))
    with open(os.path.join(svc.jobs_dir, "empty.yaml"), "w") as handle:
        handle.write("id: empty\nname: no tasks\n")
    result = svc.ctl("reload")
    assert result.returncode == 1
    body = error_of(result)
    assert body["code"] == "INVALID_CONFIG"
    assert any("typo.yaml" in e and "nmae" in e for e in body["errors"]), body["errors"]
    assert any("empty.yaml" in e and "tasks" in e for e in body["errors"]), body["errors"]
    for line in body["errors"]:
        assert line in result.stderr
    assert svc.status()["scheduler"]["jobs"] == 1
    assert svc.wait_run(svc.trigger("hello"), "completed", "failed").status.value == "completed"
    assert error_of(svc.ctl("trigger", "typo"))["code"] == "NOT_FOUND"


def test_status_reports_processes_and_running_runs(service):
    svc = service(
        {"long": job_yaml("long", LONG), "sec": job_yaml("sec", "true", schedule="0 0 1 1 *")}
    )
    run_id, _ = start_long(svc)
    status = svc.status()
    assert status["supervisor"]["pid"] == svc.pid
    assert status["supervisor"]["db"] == svc.db and status["supervisor"]["socket"] == svc.socket
    assert status["supervisor"]["shutting_down"] is False
    [child] = status["children"]
    assert child["name"] == "scheduler" and child["state"] == "running" and child["restarts"] == 0
    assert child["pid"] in [c.pid for c in psutil.Process(svc.pid).children()]
    assert child["uptime_secs"] > 0
    scheduler = status["scheduler"]
    assert (
        scheduler["state"] == "running"
        and scheduler["pid"] == child["pid"]
        and scheduler["jobs"] == 2
    )
    assert scheduler["running_runs"] == [
        {
            "run_id": run_id,
            "job_id": "long",
            "status": "running",
            "trigger": "manual",
            "started_at": svc.run(run_id).started_at,
        }
    ]
    assert list(scheduler["next_fires"]) == ["sec"]

    human = run_petit("ctl", "status", "--socket", svc.socket)
    assert human.returncode == 0, human.stderr
    text = human.stdout
    assert f"petit supervisor pid {svc.pid}" in text and f"db {svc.db}" in text
    assert f"scheduler  running   pid {child['pid']}" in text and "0 restart(s)" in text
    assert "scheduler: running, 2 job(s), 1 run(s) in flight" in text
    assert f"running {run_id} (manual)" in text and "next sec in" in text
    svc.call("cancel", run_id)


def test_far_future_schedule_keeps_the_worker_up(service):
    # a wait of more than ~24.8 days overflowed poll() and crashed the worker in a restart loop
    svc = service({"yearly": job_yaml("yearly", "true", schedule="0 0 1 1 *")})
    pid = svc.worker_pid()
    hold(lambda: svc.child("scheduler")["pid"] == pid, 1.0, "the worker was restarted")
    assert "exited unexpectedly" not in svc.log()
    assert svc.status()["scheduler"]["next_fires"]["yearly"] > now_ms() + 86_400_000


def test_ctl_shutdown_stops_the_service(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    assert svc.call("shutdown") == {"message": "shutting down"}
    assert svc.proc.wait(timeout=20) == 0
    assert not os.path.exists(svc.socket)
    assert "shutting down (petit ctl shutdown)" in svc.log()


# -- the client side ------------------------------------------------------------------------------


def test_ctl_without_a_listening_petit(tmp_path, sockets_dir):
    missing = run_petit("ctl", "status", "--socket", os.path.join(sockets_dir, "none.sock"))
    assert missing.returncode == 3
    assert "no petit is listening on" in missing.stderr and "Traceback" not in missing.stderr
    stale = os.path.join(sockets_dir, "stale.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(stale)
    refused = run_petit("ctl", "trigger", "x", "--socket", stale, "--json")
    assert refused.returncode == 3 and "no petit is listening" in refused.stderr
    assert json.loads(refused.stdout)["code"] == "NOT_LISTENING"


def test_socket_path_over_the_limit_is_a_clear_error(service, tmp_path):
    too_long = "/tmp/" + "s" * 110 + ".sock"
    result = run_petit("ctl", "status", "--socket", too_long)
    assert result.returncode != 0 and result.returncode != 3
    assert "107-byte limit" in result.stderr and "Traceback" not in result.stderr
    svc = service({"hello": job_yaml("hello", QUICK)}, socket=too_long, wait_ready=False)
    assert svc.proc.wait(timeout=20) == 1
    assert "107-byte limit" in svc.log() and "Traceback" not in svc.log()
    assert not os.path.exists(too_long)


# -- control socket robustness --------------------------------------------------------------------


def exchange(path: str, data: bytes, timeout: float = 5) -> list[dict]:
    """Send raw bytes on a fresh connection, read reply lines until the server closes or is
    quiet."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return [json.loads(line) for line in raw.splitlines()]


def test_control_socket_survives_bad_clients(service):
    svc = service({"hello": job_yaml("hello", QUICK)})
    mode = os.stat(svc.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    malformed, status = exchange(svc.socket, b'{"cmd": "status"\n{"id": "2", "cmd": "status"}\n')
    assert malformed["ok"] is False and malformed["code"] == "BAD_REQUEST"
    assert status["ok"] is True and status["id"] == "2"  # the connection still serves

    [unknown] = exchange(svc.socket, b'{"id": "u", "cmd": "frobnicate"}\n')
    assert (
        unknown["code"] == "BAD_REQUEST" and "status" in unknown["error"] and unknown["id"] == "u"
    )

    [oversized] = exchange(svc.socket, b'{"cmd": "status", "pad": "' + b"x" * (65 * 1024) + b'"}\n')
    assert oversized["ok"] is False and "longer than 65536 bytes" in oversized["error"]

    with socket.socket(socket.AF_UNIX) as silent, socket.socket(socket.AF_UNIX) as half:
        silent.connect(svc.socket)  # connects and sends nothing
        half.connect(svc.socket)
        half.sendall(b'{"cmd": "sta')  # half a line, then nothing
        started = time.monotonic()
        assert svc.status()["supervisor"]["pid"] == svc.pid
        assert time.monotonic() - started < 5
    assert svc.proc.poll() is None
    assert svc.wait_run(svc.trigger("hello"), "completed").status.value == "completed"
    assert "Traceback" not in svc.log()


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b'{"id": "1", "cmd": ["status"]}', id="unhashable-cmd"),
        pytest.param(b'{"id": "1", "cmd": "trigger", "args": ["hello"]}', id="args-not-object"),
        pytest.param(
            b'{"id": "1", "cmd": "trigger", "args": {"job_id": 7}}', id="job-id-not-string"
        ),
        pytest.param(b'{"id": NaN, "cmd": "nope"}', id="id-nan"),
        pytest.param(b'"status"', id="not-an-object"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[" * 50_000, id="deeply-nested"),
    ],
)
def test_malformed_requests_get_an_error_reply(service, line):
    svc = service({})
    replies = exchange(svc.socket, line + b"\n")
    assert (
        len(replies) == 1 and replies[0]["ok"] is False and replies[0]["code"] == "BAD_REQUEST"
    ), replies
    assert replies[0]["id"] in ("1", None)
    assert svc.proc.poll() is None and svc.status()["supervisor"]["pid"] == svc.pid
    assert "Traceback" not in svc.log()


# -- startup refusals -----------------------------------------------------------------------------


def test_invalid_jobs_dir_is_refused_with_every_error(service):
    svc = service(
        {
            "typo": job_yaml("typo", QUICK).replace("tasks:", "taks:"),
            "bad": job_yaml("bad", QUICK, schedule="@every soon"),
        },
        wait_ready=False,
    )
    assert svc.proc.wait(timeout=20) == 1
    log = svc.log()
    assert "typo.yaml" in log and "taks" in log
    assert "bad.yaml" in log and "invalid duration 'soon'" in log
    assert "3 error(s)" in log
    assert "Traceback" not in log
    assert not os.path.exists(svc.socket)


def test_second_petit_on_the_same_db_is_refused(service, sockets_dir):
    first = service({"hello": job_yaml("hello", QUICK)})
    same_socket = service(
        jobs_dir=first.jobs_dir, db=first.db, socket=first.socket, wait_ready=False
    )
    assert same_socket.proc.wait(timeout=20) == 1
    assert "another petit is already" in same_socket.log()
    other_socket = service(
        jobs_dir=first.jobs_dir,
        db=first.db,
        wait_ready=False,
        socket=os.path.join(sockets_dir, "other.sock"),
    )
    assert other_socket.proc.wait(timeout=20) == 1
    assert f"another petit is already running jobs on {first.db}" in other_socket.log()
    for refused in (same_socket, other_socket):
        assert "Traceback" not in refused.log()
    assert not os.path.exists(os.path.join(sockets_dir, "other.sock"))
    assert stat.S_ISSOCK(os.stat(first.socket).st_mode)
    assert first.wait_run(first.trigger("hello"), "completed").status.value == "completed"


def test_one_shot_trigger_is_refused_while_petit_run_serves_the_db(service):
    """Otherwise the service's recovery (at a worker restart) would take the one-shot run for an
    interrupted one and kill its tasks."""
    svc = service({"hello": job_yaml("hello", QUICK)})
    done = run_petit("trigger", svc.jobs_dir, "hello", "--db", svc.db, timeout=30)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "already running jobs" in done.stderr and "petit ctl trigger" in done.stderr
    assert Store(svc.db).list_runs("hello", 10) == []  # nothing recorded by the refused trigger
    assert svc.wait_run(svc.trigger("hello"), "completed").status.value == "completed"


def test_a_file_that_is_not_a_socket_is_never_deleted(service, sockets_dir):
    path = os.path.join(sockets_dir, "p.sock")
    with open(path, "w") as handle:
        handle.write("precious")
    svc = service({"hello": job_yaml("hello", QUICK)}, wait_ready=False)
    wait_until(
        lambda: svc.proc.poll() is not None or not os.path.exists(path),
        timeout=20,
        message="petit to exit or to delete the file",
    )
    with open(path) as handle:
        assert handle.read() == "precious"
    assert svc.proc.wait(timeout=20) == 1


def test_stale_socket_file_is_removed(service, sockets_dir):
    path = os.path.join(sockets_dir, "p.sock")  # the fixture's default socket path
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)  # bound, closed: nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    svc = service({"hello": job_yaml("hello", QUICK)})
    assert svc.socket == path and f"removing stale control socket {path}" in svc.log()
    assert svc.wait_run(svc.trigger("hello"), "completed").status.value == "completed"


# -- concurrency and dependencies -----------------------------------------------------------------


def test_max_concurrency_refuses_a_second_run(service):
    svc = service(
        {"solo": job_yaml("solo", LONG, max_concurrency=1), "hello": job_yaml("hello", QUICK)}
    )
    run_id, pgid = start_long(svc, "solo")
    refused = svc.ctl("trigger", "solo")
    assert (
        error_of(refused)["code"] == "TOO_MANY_REQUESTS" and "max_concurrency 1" in refused.stderr
    )
    assert svc.wait_run(svc.trigger("hello"), "completed").status.value == "completed"
    svc.call("cancel", run_id)
    group_gone(pgid)
    again = svc.trigger("solo")  # the slot is free again
    svc.call("cancel", again)
    assert [r.status.value for r in svc.runs("solo")] == ["cancelled", "cancelled"]


def test_max_jobs_limits_runs_across_jobs_before_dependencies(service):
    svc = service(
        {
            "a": job_yaml("a", LONG),
            "b": job_yaml("b", LONG),
            "up": job_yaml("up", QUICK),
            "down": job_yaml("down", QUICK, depends_on="up"),
        },
        "--max-jobs",
        "1",
    )
    run_id, pgid = start_long(svc, "a")
    refused = svc.ctl("trigger", "b")
    assert error_of(refused)["code"] == "TOO_MANY_REQUESTS" and "--max-jobs" in refused.stderr
    # concurrency is checked before the (unmet) dependency
    assert error_of(svc.ctl("trigger", "down"))["code"] == "TOO_MANY_REQUESTS"
    svc.call("cancel", run_id)
    group_gone(pgid)
    assert error_of(svc.ctl("trigger", "down"))["code"] == "CONFLICT"
    other = svc.trigger("b")
    svc.call("cancel", other)
    assert svc.runs("down") == []


def test_cross_job_dependency_waits_for_upstream_success(service, tmp_path):
    gate = tmp_path / "gate"
    svc = service(
        {
            "up": job_yaml("up", f"while [ ! -e {gate} ]; do sleep 0.02; done"),
            "down": job_yaml("down", QUICK, depends_on="up"),
        }
    )
    never_ran = svc.ctl("trigger", "down")
    assert error_of(never_ran)["code"] == "CONFLICT"
    assert "depends on 'up' (last_success)" in never_ran.stderr
    up = svc.trigger("up")
    svc.wait_task_pid(up)
    running = svc.ctl("trigger", "down")
    assert error_of(running)["code"] == "CONFLICT" and "'up'" in running.stderr
    gate.touch()
    svc.wait_run(up, "completed")
    down = svc.trigger("down")
    assert svc.wait_run(down, "completed", "failed").status.value == "completed"


# -- faults ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_worker_sigkill_mid_run_is_restarted_and_recovers(service):
    svc = service({"long": job_yaml("long", LONG), "hello": job_yaml("hello", QUICK)})
    run_id, pgid = start_long(svc)
    old_pid = svc.worker_pid()
    os.kill(old_pid, signal.SIGKILL)

    def trigger_accepted() -> str | None:
        result = svc.ctl("trigger", "hello")
        return json.loads(result.stdout)["run_id"] if result.returncode == 0 else None

    new_run = wait_until(
        trigger_accepted, timeout=20, interval=0.01, message="a trigger to be accepted"
    )

    run = svc.run(run_id)  # recovery ran before the new worker said ready
    assert run.status.value == "interrupted" and run.error == "run was interrupted"
    assert run.task("t").status.value == "failed" and run.task("t").error == "run was interrupted"
    group_gone(pgid)
    child = svc.child("scheduler")
    assert child["restarts"] == 1 and child["pid"] != old_pid and child["state"] == "running"
    assert svc.wait_run(new_run, "completed").status.value == "completed"
    log = svc.log()
    assert "scheduler exited unexpectedly (code -9)" in log
    assert f"recovered run {run_id}: interrupted" in log


def test_supervisor_sigkill_takes_the_tree_down(service):
    svc = service({"long": job_yaml("long", LONG)})
    run_id, pgid = start_long(svc)
    svc.remember()
    assert len(svc.seen) >= 4  # supervisor, worker, the task's shell and sleep (+ tracker)
    svc.proc.kill()
    svc.proc.wait()
    wait_until(
        lambda: not svc.leftovers(),
        timeout=5,
        interval=0.1,
        message="the worker and every task process to be gone",
    )
    assert not group_members(pgid)
    assert svc.wait_run(run_id, "interrupted", timeout=5).task("t").error == "run was interrupted"
    assert "supervisor" in svc.log() and "is gone" in svc.log()


def test_whole_tree_sigkill_then_restart_recovers(service):
    svc = service({"long": job_yaml("long", LONG)})
    run_id, pgid = start_long(svc)
    members = group_members(pgid)
    worker = psutil.Process(svc.worker_pid())
    for pid in (svc.pid, worker.pid):
        os.kill(pid, signal.SIGKILL)
    svc.proc.wait()
    wait_until(lambda: not is_alive(worker), timeout=5, message="the worker to die")
    assert all(is_alive(p) for p in members), "the task group should outlive a SIGKILLed tree"
    assert svc.run(run_id).status.value == "running"
    assert os.path.exists(svc.socket)  # left behind by the dead supervisor

    again = service(jobs_dir=svc.jobs_dir, db=svc.db, socket=svc.socket)
    run = again.run(run_id)
    assert run.status.value == "interrupted" and run.task("t").error == "run was interrupted"
    group_gone(pgid)
    log = again.log()
    assert f"removing stale control socket {svc.socket}" in log
    assert f"recovered run {run_id}: interrupted, killed" in log
    assert [r.id for r in again.runs("long")] == [run_id]
    next_run = again.trigger("long")
    assert next_run == "long-2"
    again.call("cancel", next_run)


@pytest.mark.timeout(60)
def test_sigterm_lets_a_short_run_finish(service):
    svc = service({"short": job_yaml("short", "sleep 1.5\necho done")}, shutdown_timeout=20)
    run_id = svc.trigger("short")
    svc.wait_task_pid(run_id)
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=25) == 0
    assert time.monotonic() - started < 10
    run = svc.run(run_id)
    assert run.status.value == "completed" and run.task("t").exit_code == 0
    assert not os.path.exists(svc.socket)
    assert "shutting down (SIGTERM)" in svc.log() and "petit stopped" in svc.log()


@pytest.mark.timeout(60)
def test_sigterm_interrupts_a_run_longer_than_the_timeout(service):
    svc = service({"long": job_yaml("long", LONG)}, shutdown_timeout=1)
    run_id, pgid = start_long(svc)
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=20) == 0
    took = time.monotonic() - started
    assert 0.9 <= took < 6, took
    run = svc.run(run_id)
    assert run.status.value == "interrupted"
    assert run.task("t").status.value == "failed" and run.task("t").error == "run was interrupted"
    assert not group_members(pgid)
    assert not os.path.exists(svc.socket)


@pytest.mark.timeout(60)
def test_second_sigint_skips_the_shutdown_wait(service):
    svc = service({"long": job_yaml("long", LONG)}, shutdown_timeout=30)
    run_id, pgid = start_long(svc)
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGINT)
    wait_until(
        lambda: "shutting down (SIGINT)" in svc.log(), timeout=5, message="the shutdown to begin"
    )
    svc.proc.send_signal(signal.SIGINT)
    assert svc.proc.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    assert svc.run(run_id).status.value == "interrupted"
    assert not group_members(pgid)
    assert "second interrupt" in svc.log()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_pause_survives_worker_kill_and_service_restart(service):
    svc = service({"sec": job_yaml("sec", "true", schedule="*/1 * * * * *")})
    svc.call("pause")
    paused_ms = now_ms()

    def fires_since_pause() -> list[str]:
        return [
            r.id
            for r in svc.runs("sec")
            if r.trigger.value == "schedule" and r.created_at > paused_ms
        ]

    old_pid = svc.worker_pid()
    os.kill(old_pid, signal.SIGKILL)
    wait_until(
        lambda: svc.child("scheduler")["restarts"] == 1 and svc.is_ready(),
        timeout=15,
        message="the worker to be restarted",
    )
    assert svc.status()["scheduler"]["state"] == "paused"
    hold(
        lambda: not fires_since_pause(), 1.2, "a scheduled run after a worker restart while paused"
    )
    manual = svc.trigger("sec")  # pause stops scheduled fires only
    assert svc.wait_run(manual, "completed").status.value == "completed"

    assert svc.stop() == 0
    again = service(jobs_dir=svc.jobs_dir, db=svc.db, socket=svc.socket)
    assert again.status()["scheduler"]["state"] == "paused"
    hold(
        lambda: not fires_since_pause(), 1.2, "a scheduled run after a service restart while paused"
    )
    again.call("resume")
    wait_until(fires_since_pause, timeout=5, message="scheduled fires after resume")
    assert again.status()["scheduler"]["state"] == "running"
