"""Hooks (on_success, on_failure, on_finish) end to end, through the real `bin/petit run` and
`bin/petit trigger`: which run ends fire which hook, the environment a hook sees, its record on
the run and its log, a hook killed at its timeout or by a shutdown (its group gone), and the bad
job files the new keys refuse."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
from jobfiles import EXAMPLES, write_job
from processes import run_petit, wait_until

HOOKS = ("on_success", "on_failure", "on_finish")


def _hooked_job(job_id: str, out: str, script: str, hook_script: str | None = None) -> str:
    """A one-task job whose three hooks each write their environment to <out>/<job>.<hook>."""
    lines = [
        f"id: {job_id}",
        f"name: {job_id}",
        "environment:",
        '  FROM_JOB: "job"',
        "  SHARED: job",
    ]
    for hook in HOOKS:
        body = hook_script or f"env > '{out}/{job_id}.{hook}'; echo said by {hook}"
        lines += [
            f"{hook}:",
            "  type: shell",
            f'  script: "{body}"',
            "  environment:",
            "    SHARED: hook",
        ]
    lines += ["tasks:", "  - id: t", "    type: shell", f'    script: "{script}"']
    return "\n".join(lines) + "\n"


def _env_file(path: str) -> dict[str, str]:
    with open(path) as handle:
        return dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)


def _hooks_of(svc, run_id: str, count: int) -> list[dict]:
    """The run's hooks once `count` of them have ended."""
    return wait_until(
        lambda: (
            (run := svc.run(run_id)) is not None
            and len([h for h in run.hooks if h["status"] != "running"]) >= count
            and run.hooks
        ),
        timeout=20,
        interval=0.05,
        message=f"{count} hook(s) recorded ended on {run_id}",
    )


def test_each_hook_fires_on_the_statuses_it_is_for(service, tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    svc = service(
        {
            "good": _hooked_job("good", out, "exit 0"),
            "bad": _hooked_job("bad", out, "echo failing; exit 3"),
            "long": _hooked_job("long", out, "sleep 60"),
        }
    )
    good, bad, long = (svc.call("trigger", job)["run_id"] for job in ("good", "bad", "long"))
    svc.wait_task_pid(long)
    svc.call("cancel", long)
    fired = {
        good: _hooks_of(svc, good, 2),
        bad: _hooks_of(svc, bad, 2),
        long: _hooks_of(svc, long, 1),
    }
    assert [h["hook"] for h in fired[good]] == ["on_success", "on_finish"]
    assert [h["hook"] for h in fired[bad]] == ["on_failure", "on_finish"]
    assert [h["hook"] for h in fired[long]] == ["on_finish"]
    for hooks in fired.values():
        assert all(h["status"] == "completed" and h["exit_code"] == 0 for h in hooks), hooks
        assert all(h["duration_ms"] == h["ended_at"] - h["started_at"] >= 0 for h in hooks)
    # the runs kept their own status
    statuses = {run_id: svc.run(run_id).status.value for run_id in fired}
    assert statuses == {good: "completed", bad: "failed", long: "cancelled"}
    assert sorted(os.listdir(out)) == [
        "bad.on_failure",
        "bad.on_finish",
        "good.on_finish",
        "good.on_success",
        "long.on_finish",
    ]
    env = _env_file(f"{out}/bad.on_failure")
    assert env["PETIT_RUN_ID"] == bad and env["PETIT_JOB_ID"] == "bad"
    assert env["PETIT_RUN_STATUS"] == "failed" and env["PETIT_HOOK"] == "on_failure"
    assert env["PETIT_RUN_ERROR"] == "failed tasks: t" and env["PETIT_FAILED_TASKS"] == "t"
    assert env["FROM_JOB"] == "job" and env["SHARED"] == "hook"  # the hook's env wins
    env = _env_file(f"{out}/good.on_success")
    assert env["PETIT_RUN_STATUS"] == "completed" and env["PETIT_FAILED_TASKS"] == ""
    assert env["PETIT_RUN_ERROR"] == "" and env["PETIT_HOOK"] == "on_success"
    assert _env_file(f"{out}/long.on_finish")["PETIT_RUN_STATUS"] == "cancelled"
    # the hook's output is in the run's logs, under a name no task can have
    logs = run_petit("--db", svc.db, "logs", bad, "@on_failure")
    assert logs.returncode == 0 and logs.stdout == "said by on_failure\n", logs
    whole = run_petit("--db", svc.db, "logs", bad).stdout.splitlines()
    assert whole == [
        "[t] failing",
        "[@on_failure] said by on_failure",
        "[@on_finish] said by on_finish",
    ]
    shown = run_petit("--db", svc.db, "show", bad).stdout
    assert "HOOK" in shown and "on_failure  completed" in shown, shown


def test_an_interrupted_run_fires_no_hook(service, tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    svc = service({"long": _hooked_job("long", out, "sleep 60")}, shutdown_timeout=0.5)
    run_id = svc.call("trigger", "long")["run_id"]
    svc.wait_task_pid(run_id)
    assert svc.stop() == 0
    run = svc.run(run_id)
    assert run.status.value == "interrupted" and run.hooks == []
    assert os.listdir(out) == []


def test_a_failing_hook_is_recorded_failed_and_the_run_keeps_its_status(service, tmp_path):
    svc = service(
        {"ok": _hooked_job("ok", str(tmp_path), "true", "echo broken >&2; exit 5")}, api=True
    )
    run_id = svc.call("trigger", "ok")["run_id"]
    hooks = _hooks_of(svc, run_id, 2)
    assert [(h["hook"], h["status"], h["exit_code"]) for h in hooks] == [
        ("on_success", "failed", 5),
        ("on_finish", "failed", 5),
    ]
    assert hooks[0]["error"] == "exited with code 5"
    run = svc.run(run_id)
    assert run.status.value == "completed" and run.error is None
    # the API's Run carries them too, and a hook's log is served like a task's
    served = svc.get(f"/api/runs/{run_id}").json()
    assert served["hooks"] == hooks and served["status"] == "completed"
    log = svc.get(f"/api/runs/{run_id}/tasks/@on_success/logs")
    assert log.status == 200 and log.json()["stderr"] == "broken\n", log.body
    assert log.json()["status"] == "failed" and log.json()["attempts"] == 1
    assert svc.get(f"/api/runs/{run_id}/tasks/@on_failure/logs").status == 404  # did not run


def _sleeping_hook_job(pidfile: str, timeout: str) -> str:
    """A hook that starts a child in its group (its pid in <pidfile>.child), then sleeps."""
    return f"""id: sleepy
name: sleepy
on_finish:
  type: shell
  script: "sleep 60 & echo $! > '{pidfile}.child'; echo $$ > '{pidfile}'; exec sleep 60"
  timeout: {timeout}
tasks:
  - id: t
    command: "true"
"""


def _hook_pids(pidfile: str) -> tuple[int, int]:
    """The hook's pid and its child's, once both are written."""

    def read(path: str) -> int | None:
        try:
            with open(path) as handle:
                return int(handle.read().strip() or 0) or None
        except FileNotFoundError:
            return None

    wait_until(lambda: read(pidfile), timeout=10, message=f"the hook to write {pidfile}")
    return read(pidfile), read(pidfile + ".child")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _daemon_script(pidfile: str) -> str:
    """Start a daemon on purpose: in a session of its own, so that no group kill reaches it (its
    environment still names the run and the db). The script waits until it leads its session
    (field 6 of /proc/PID/stat): the group is killed as soon as the script exits."""
    return (
        "setsid sleep 60 </dev/null >/dev/null 2>&1 & pid=$!; "
        "until [ $(cut -d' ' -f6 /proc/$pid/stat) = $pid ]; do sleep 0.01; done; "
        f"echo $pid > '{pidfile}'"
    )


def _alive(pid: int) -> bool:
    return not _gone(pid)


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_hanging_hook_is_killed_at_its_timeout(service, tmp_path):
    pidfile = str(tmp_path / "hook.pid")
    svc = service(
        {
            "sleepy": _sleeping_hook_job(pidfile, "3s"),
            "quick": "id: quick\nname: quick\ntasks:\n  - id: t\n    command: 'true'\n",
        }
    )
    run_id = svc.call("trigger", "sleepy")["run_id"]
    pids = _hook_pids(pidfile)
    svc.remember(*pids)
    # while the hook hangs, another run starts and ends: the scheduler does not wait for hooks
    quick = svc.call("trigger", "quick")["run_id"]
    assert svc.wait_run(quick, timeout=10).status.value == "completed"
    # recorded running meanwhile, with its process handle (kept out of the API)
    (running,) = svc.run(run_id).hooks
    assert running["status"] == "running" and running["handle"]["pid"] == pids[0], running
    assert not _gone(pids[0])
    (hook,) = _hooks_of(svc, run_id, 1)
    assert hook["status"] == "failed" and hook["error"] == "timed out after 3s", hook
    assert 2900 <= hook["duration_ms"] < 10000
    for pid in pids:  # the hook and the child in its group
        wait_until(lambda pid=pid: _gone(pid), timeout=5, message=f"hook process {pid} gone")
    assert svc.run(run_id).status.value == "completed"


def test_a_stop_kills_the_hook_in_flight_and_records_it(service, tmp_path):
    pidfile = str(tmp_path / "hook.pid")
    svc = service({"sleepy": _sleeping_hook_job(pidfile, "60s")}, shutdown_timeout=1)
    run_id = svc.call("trigger", "sleepy")["run_id"]
    pids = _hook_pids(pidfile)
    svc.remember(*pids)
    started = time.monotonic()
    assert svc.stop(signal.SIGTERM) == 0
    # the shutdown timeout (1 s) and the kill's grace, not the hook's 60 s
    assert time.monotonic() - started < 12
    assert all(_gone(pid) for pid in pids)
    (hook,) = svc.run(run_id).hooks
    assert hook["status"] == "failed" and hook["error"] == "interrupted by shutdown", hook
    assert svc.run(run_id).status.value == "completed"


def test_a_hook_stopped_at_shutdown_leaves_the_daemons_of_its_run_alone(service, tmp_path):
    pidfile, daemon_file = str(tmp_path / "hook.pid"), str(tmp_path / "daemon.pid")
    job = f"""id: keeper
name: keeper
on_finish:
  type: shell
  script: "echo $$ > '{pidfile}'; exec sleep 60"
tasks:
  - id: t
    type: shell
    script: "{_daemon_script(daemon_file)}"
"""
    svc = service({"keeper": job}, shutdown_timeout=1)
    run_id = svc.call("trigger", "keeper")["run_id"]
    hook_pid, _ = _hook_pids(pidfile)
    (daemon,) = _hook_pids(daemon_file)[:1]
    svc.remember(hook_pid)
    try:
        assert svc.stop(signal.SIGTERM) == 0
        assert _gone(hook_pid)
        (hook,) = svc.run(run_id).hooks
        assert hook["error"] == "interrupted by shutdown", hook
        # the task's daemon was left on purpose by a run that ended normally: only the hook's
        # own processes are swept
        assert _alive(daemon)
    finally:
        _kill(daemon)


def test_at_most_four_hooks_run_at_once_and_a_waiting_one_has_not_started(service, tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    out.mkdir()
    script = f"touch '{out}'/$PETIT_JOB_ID; while [ ! -e '{release}' ]; do sleep 0.05; done"
    jobs = {
        f"j{n}": f'id: j{n}\nname: j{n}\non_success:\n  type: shell\n  script: "{script}"\n'
        "tasks:\n  - id: t\n    command: 'true'\n"
        for n in range(5)
    }
    svc = service(jobs)
    runs = [svc.call("trigger", job)["run_id"] for job in jobs]
    for run_id in runs:
        assert svc.wait_run(run_id, timeout=10).status.value == "completed"

    def running() -> list[str]:
        return [r for r in runs if [h["status"] for h in svc.run(r).hooks] == ["running"]]

    started = wait_until(
        lambda: len(running()) == 4 and running(), timeout=10, message="4 hooks running"
    )
    (waiting,) = set(runs) - set(started)
    assert svc.run(waiting).hooks == [] and len(os.listdir(out)) == 4  # its hook has not started
    release.touch()
    hooks = {run_id: _hooks_of(svc, run_id, 1)[0] for run_id in runs}
    assert all(h["status"] == "completed" for h in hooks.values()), hooks
    # it started once a slot was free: after one of the four ended
    assert hooks[waiting]["started_at"] >= min(hooks[r]["ended_at"] for r in started)


def test_petit_trigger_runs_the_hooks_and_exits_with_the_run_code(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "bad.yaml", _hooked_job("bad", str(tmp_path), "exit 3"))
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", str(jobs), "bad")
    assert result.returncode == 1, result
    lines = [line for line in result.stdout.splitlines() if line.startswith("== hook")]
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("== hook on_failure: completed in ")
    assert lines[1].startswith("== hook on_finish: completed in ")
    assert _env_file(str(tmp_path / "bad.on_failure"))["PETIT_RUN_STATUS"] == "failed"
    shown = run_petit("--db", db, "show", "bad-1", "--json")
    assert [h["hook"] for h in json.loads(shown.stdout)["hooks"]] == ["on_failure", "on_finish"]


BAD_JOBS = {
    "hook-key": (
        "on_failure:\n  command: 'true'\n  retry: {max_attempts: 1}\n",
        "job 'x': on_failure: unknown key 'retry' in a hook",
    ),
    "hook-command": (
        "on_failure:\n  args: [x]\n",
        "job 'x': on_failure: command: required key is missing",
    ),
    "hook-map": ("on_success: 'echo hi'\n", "job 'x': on_success: expected a map like a task's"),
    "hook-type": (
        "on_finish:\n  type: perl\n  script: x\n",
        "job 'x': on_finish: type: 'perl' is not valid",
    ),
    "hook-timeout": (
        "on_finish:\n  command: 'true'\n  timeout: soon\n",
        "job 'x': on_finish: timeout:",
    ),
    "webhook-key": (
        "notify:\n  - url: 'http://127.0.0.1/x'\n    method: PUT\n",
        "job 'x': notify[0]: unknown key 'method' in a webhook",
    ),
    "webhook-url": (
        "notify:\n  - url: 'ftp://example.com/x'\n",
        "job 'x': notify[0]: url: 'ftp://example.com/x': expected an http:// or https:// URL",
    ),
    "webhook-on": (
        "notify:\n  - url: 'http://127.0.0.1/x'\n    on: [failure, sometimes]\n",
        "job 'x': notify[0]: on: 'sometimes' is not valid: expected one of success, failure",
    ),
    "webhook-env": (
        "notify:\n  - url: 'http://127.0.0.1/x'\n    headers: {X-Token: '${PETIT_TEST_UNSET}'}\n",
        "job 'x': notify[0]: headers: X-Token: environment variable PETIT_TEST_UNSET is not set",
    ),
    "webhook-retries": (
        "notify:\n  - url: 'http://127.0.0.1/x'\n    retries: -1\n",
        "job 'x': notify[0]: retries: expected an integer from 0 to 10",
    ),
    "webhook-format": (
        "notify:\n  - url: 'http://127.0.0.1/x'\n    format: xml\n",
        "job 'x': notify[0]: format: 'xml' is not valid",
    ),
    "notify-list": ("notify: 'http://127.0.0.1/x'\n", "job 'x': notify: expected a list"),
    # urllib would take "user:pw@host" for a host name; the password is not echoed
    "webhook-userinfo": (
        "notify:\n  - url: 'http://user:pw@127.0.0.1/x'\n",
        "job 'x': notify[0]: url: credentials (user:password@) are not allowed in a url: "
        "send them in headers with a ${NAME}",
    ),
    "webhook-url-env": (
        "notify:\n  - url: 'https://hooks.slack.com/services/${PETIT_TEST_UNSET}'\n",
        "job 'x': notify[0]: url: environment variable PETIT_TEST_UNSET is not set",
    ),
}


def test_each_bad_hook_or_webhook_key_is_one_clear_line(tmp_path):
    for case, (keys, expected) in BAD_JOBS.items():
        folder = tmp_path / case
        folder.mkdir()
        path = write_job(
            folder, "x.yaml", f"id: x\nname: x\n{keys}tasks:\n  - id: t\n    command: 'true'\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "PETIT_TEST_UNSET"}
        result = run_petit("validate", str(folder), env=env)
        assert result.returncode == 1, (case, result)
        lines = result.stderr.splitlines()
        assert lines[-1] == f"1 error(s) in {folder}", (case, lines)
        assert lines[0].startswith(f"{path}: {expected}"), (case, lines)
        assert "Traceback" not in result.stderr and ":pw@" not in result.stderr


def test_the_example_hook_appends_to_its_file(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    db = str(tmp_path / "petit.db")
    result = run_petit("--db", db, "trigger", EXAMPLES, "hooks_demo", env=env)
    assert result.returncode == 1, result
    assert "== hook on_failure: completed" in result.stdout
    assert "== hook on_finish: completed" in result.stdout
    with open(tmp_path / "petit-hooks-demo.log") as handle:
        (line,) = handle.read().splitlines()
    assert line.endswith("run hooks_demo-1 of hooks_demo failed: failed tasks fetch"), line
    logs = run_petit("--db", db, "logs", "hooks_demo-1", "@on_finish", env=env)
    assert logs.stdout == "run hooks_demo-1 ended failed\n", logs


def test_a_hook_left_running_by_a_dead_worker_is_killed_by_the_next_one(service, tmp_path):
    pidfile, daemon_file = str(tmp_path / "hook.pid"), str(tmp_path / "daemon.pid")
    leaver = f"""id: leaver
name: leaver
on_success:
  type: shell
  script: "{_daemon_script(daemon_file)}"
tasks:
  - id: t
    command: "true"
"""
    svc = service({"sleepy": _sleeping_hook_job(pidfile, "60s"), "leaver": leaver}, api=True)
    # a hook that ended normally, earlier, left a daemon on purpose
    left = svc.call("trigger", "leaver")["run_id"]
    assert _hooks_of(svc, left, 1)[0]["status"] == "completed"
    (daemon,) = _hook_pids(daemon_file)[:1]
    try:
        _the_next_worker_kills_the_hook_left_running(svc, pidfile)
        assert _alive(daemon)  # recovery killed only the hook recorded running
    finally:
        _kill(daemon)


def _the_next_worker_kills_the_hook_left_running(svc, pidfile: str) -> None:
    run_id = svc.call("trigger", "sleepy")["run_id"]
    pids = _hook_pids(pidfile)
    (running,) = svc.get(f"/api/runs/{run_id}").json()["hooks"]
    assert running["status"] == "running" and "handle" not in running, running
    svc.remember(*pids)
    dead = svc.worker_pid()
    os.kill(dead, signal.SIGKILL)  # nothing enforces the hook's timeout any more
    wait_until(
        lambda: (
            (worker := svc.status(check=False)) is not None
            and any(
                c["name"] == "scheduler" and c["pid"] not in (None, dead)
                for c in worker["children"]
            )
            and svc.status()["scheduler"] is not None
        ),
        timeout=20,
        message="the supervisor to start a new worker",
    )
    for pid in pids:  # its recovery swept them
        wait_until(lambda pid=pid: _gone(pid), timeout=10, message=f"orphan hook {pid} gone")
    # one or two: killing the hook's group may take its child before the sweep reaches it
    assert "hook process(es) a dead worker left running" in svc.log()
    (hook,) = svc.run(run_id).hooks
    assert hook["status"] == "failed" and hook["error"] == "interrupted: petit stopped", hook
    assert "handle" not in hook and hook["ended_at"] >= hook["started_at"]


def test_a_hook_without_a_timeout_gets_sixty_seconds(tmp_path):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    write_job(jobs, "h.yaml", _hooked_job("h", str(tmp_path), "true"))
    write_job(
        jobs,
        "own.yaml",
        _hooked_job("own", str(tmp_path), "true").replace(
            "\n  type: shell\n", "\n  type: shell\n  timeout: 1m30s\n"
        ),
    )
    listed = run_petit("list", str(jobs), "--json")
    assert listed.returncode == 0, listed.stderr
    timeouts = {
        job["id"]: [h["timeout_secs"] for h in job["hooks"]] for job in json.loads(listed.stdout)
    }
    assert timeouts == {"h": [60, 60, 60], "own": [90, 90, 90]}
