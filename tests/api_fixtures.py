"""A real `bin/petit run` with its HTTP API, for tests/test_api.py: start it on a free port, talk
to it over plain http.client, kill its children, and prove at teardown that nothing it started
is still alive.

Every process of one service carries a unique marker in its environment (the supervisor gets it,
its spawned children and their task processes inherit it), and the test jobs also put it on their
command lines, so a scan of all processes finds leftovers even after the supervisor died."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import conftest
import psutil
import pytest
from conftest import EXAMPLES, PETIT, is_alive, run_petit, wait_until  # noqa: F401 (is_alive: re-exported to the tests)

MARKER_ENV = "PETIT_API_TEST_MARKER"
READY_SECS = 20.0
STOP_GRACE_SECS = 10.0  # on top of --shutdown-timeout, before teardown resorts to SIGKILL
LEFTOVER_SECS = 5.0
HTTP_TIMEOUT_SECS = 15.0
SHUTDOWN_TIMEOUT = "5"
TERMINAL = {"completed", "failed", "interrupted", "cancelled"}


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def marked_processes(marker: str) -> list[psutil.Process]:
    return conftest.marked_processes(marker, MARKER_ENV)


# -- test jobs ------------------------------------------------------------------------------------


def extra_jobs(marker: str) -> dict[str, str]:
    """File name -> YAML of the jobs added to a copy of examples/jobs. Long tasks carry the marker
    in their command line, so the leak scan also sees them by name."""
    return {
        # one run at a time, and it stays running: the second trigger is a 429
        "solo.yaml": f"""id: solo
name: Solo
max_concurrency: 1
tasks:
  - id: hold
    type: shell
    script: "sleep 30 # {marker}"
""",
        # a long single task to cancel
        "slow_job.yaml": f"""id: slow_job
name: Slow job
tasks:
  - id: first
    type: shell
    script: echo starting
  - id: wait
    depends_on: [first]
    type: shell
    script: "sleep 30 # {marker}"
  - id: after
    depends_on: [wait]
    command: echo
    args: ["never reached when cancelled"]
""",
        # declared against the flow: runs must still list the tasks in DAG order
        "backwards.yaml": """id: backwards
name: Backwards
tasks:
  - id: c
    depends_on: [b]
    command: echo
    args: ["c"]
  - id: b
    depends_on: [a]
    command: echo
    args: ["b"]
  - id: a
    command: echo
    args: ["a"]
""",
        # more output than the 1 MiB a task keeps: its log says truncated and keeps the tail
        "chatty.yaml": """id: chatty
name: Chatty
tasks:
  - id: talk
    type: shell
    script: |
      head -c 1500000 /dev/zero | tr '\\0' x
      echo
      echo THE-END
""",
        "upstream.yaml": """id: upstream
name: Upstream
tasks:
  - id: produce
    command: echo
    args: ["produced"]
""",
        # runnable only once upstream's last run completed
        "downstream.yaml": """id: downstream
name: Downstream
depends_on:
  - job: upstream
    condition: last_success
tasks:
  - id: consume
    command: echo
    args: ["consumed"]
""",
    }


def make_jobs_dir(root: str, marker: str) -> str:
    """examples/jobs plus the test jobs. data_pipeline writes under a fixed /tmp folder; the copy
    writes under `root` instead, so concurrent test sessions never share its files."""
    jobs = os.path.join(root, "jobs")
    shutil.copytree(EXAMPLES, jobs)
    pipeline = os.path.join(jobs, "data_pipeline.yaml")
    with open(pipeline) as handle:
        text = handle.read()
    assert "PIPELINE_DIR: /tmp/petit-data-pipeline" in text
    with open(pipeline, "w") as handle:
        handle.write(text.replace("/tmp/petit-data-pipeline", os.path.join(root, "pipeline")))
    for name, text in extra_jobs(marker).items():
        with open(os.path.join(jobs, name), "w") as handle:
            handle.write(text)
    return jobs


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    _json: object = field(default=None, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self):
        if self._json is None:
            assert self.content_type.startswith("application/json"), (
                f"{self.status}: content type {self.content_type!r}, body {self.body[:300]!r}"
            )
            self._json = json.loads(self.body)
        return self._json


def request(
    port: int,
    method: str,
    path: str,
    headers: dict | None = None,
    body: bytes | None = None,
    host: str = "127.0.0.1",
    timeout: float = HTTP_TIMEOUT_SECS,
) -> Response:
    """One request on a fresh connection. A `Host` in `headers` replaces the default one. Every
    answer is checked for what no response may ever carry: a permissive CORS header."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        raw = conn.getresponse()
        response = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()
    assert "access-control-allow-origin" not in response.headers, (method, path, response.headers)
    return response


def try_request(port: int, method: str, path: str, **kwargs) -> Response | None:
    """The response, or None when nothing listens (yet) or the connection broke."""
    try:
        return request(port, method, path, **kwargs)
    except (OSError, http.client.HTTPException):
        return None


# -- the service ----------------------------------------------------------------------------------


class Service:
    """One `petit run` with the API on a free port, its db in `root` and its control socket under
    a short /tmp folder (AF_UNIX paths are limited to 107 bytes, pytest's tmp_path is long)."""

    def __init__(
        self, root: str, extra_args: tuple[str, ...] = (), env: dict | None = None, api: bool = True
    ) -> None:
        self.root = root
        self.marker = f"petit-api-test-{uuid.uuid4().hex[:12]}"
        self.jobs_dir = make_jobs_dir(root, self.marker)
        self.db = os.path.join(root, "petit.db")
        self.sock_dir = tempfile.mkdtemp(dir="/tmp", prefix="pa")
        self.socket = os.path.join(self.sock_dir, "s")
        self.port = free_port()
        self.api = api
        self.extra_args = extra_args
        self.env = {**os.environ, MARKER_ENV: self.marker, "TMPDIR": root}
        self.env.pop("PETIT_API_TOKEN", None)  # a token from the developer's shell must not leak in
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.stderr_path = os.path.join(root, "petit.stderr")
        self.exit_code: int | None = None

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            PETIT,
            "run",
            self.jobs_dir,
            "--db",
            self.db,
            "--socket",
            self.socket,
            "--api-port",
            str(self.port),
            "--shutdown-timeout",
            SHUTDOWN_TIMEOUT,
            *(() if self.api else ("--no-api",)),
            *self.extra_args,
        ]

    def start(self) -> Service:
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env,
                start_new_session=True,
            )
        wait_until(self._ready, timeout=READY_SECS, interval=0.1, message="petit run to be ready")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            pytest.fail(
                f"petit run exited with {self.proc.returncode} during startup:\n{self.stderr()}"
            )
        if self.api:
            health = try_request(self.port, "GET", "/api/health", timeout=2)
            if health is None or health.status != 200:
                return False
        status = self.status(check=False)
        if status is None:
            return False
        wanted = {"scheduler", "api"} if self.api else {"scheduler"}
        running = {c["name"] for c in status["children"] if c["state"] == "running" and c["pid"]}
        return running == wanted and status

    def status(self, check: bool = True) -> dict | None:
        """`petit ctl status --json`, the real CLI."""
        done = run_petit("ctl", "status", "--json", "--socket", self.socket, timeout=20)
        if done.returncode != 0:
            if check:
                pytest.fail(f"petit ctl status failed ({done.returncode}): {done.stderr}")
            return None
        return json.loads(done.stdout)

    def child(self, name: str) -> dict:
        return next(c for c in self.status()["children"] if c["name"] == name)

    def stderr(self) -> str:
        with open(self.stderr_path, errors="replace") as handle:
            return handle.read()

    # -- HTTP shortcuts -------------------------------------------------------------------------

    def get(self, path: str, **kwargs) -> Response:
        return request(self.port, "GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return request(self.port, "POST", path, **kwargs)

    def trigger(self, job_id: str) -> str:
        response = self.post(f"/api/jobs/{job_id}/trigger")
        assert response.status == 200, (response.status, response.body)
        return response.json()["run_id"]

    def wait_run(self, run_id: str, statuses: set[str] = TERMINAL, timeout: float = 20.0) -> dict:
        def reached():
            run = self.get(f"/api/runs/{run_id}").json()
            return run if run["status"] in statuses else None

        return wait_until(
            reached, timeout=timeout, interval=0.05, message=f"run {run_id} in {statuses}"
        )

    def wait_task_running(self, run_id: str, task_id: str, timeout: float = 10.0) -> dict:
        def running():
            tasks = self.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
            task = next(t for t in tasks if t["task_id"] == task_id)
            return task if task["status"] == "running" else None

        return wait_until(
            running, timeout=timeout, interval=0.05, message=f"{run_id}/{task_id} running"
        )

    # -- teardown -------------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole session after a deadline; then nothing may be left."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(float(SHUTDOWN_TIMEOUT) + STOP_GRACE_SECS)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                self.exit_code = None
        elif self.proc is not None:
            self.exit_code = self.proc.returncode
        leftovers = []
        deadline = time.monotonic() + LEFTOVER_SECS
        while True:
            leftovers = marked_processes(self.marker)
            if not leftovers or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        described = []
        for proc in leftovers:
            try:
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
                proc.kill()
            except psutil.Error:
                pass
        socket_left = os.path.exists(self.socket)
        shutil.rmtree(self.sock_dir, ignore_errors=True)
        problems = [f"process left behind: {d}" for d in described]
        if self.proc is not None and self.exit_code != 0:
            problems.append(f"petit run did not stop cleanly on SIGTERM (exit {self.exit_code})")
        if socket_left:
            problems.append(f"control socket {self.socket} left behind")
        assert not problems, "\n".join(problems) + "\n--- stderr tail:\n" + self.stderr()[-3000:]
