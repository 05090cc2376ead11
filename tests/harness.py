"""The one harness for a running `bin/petit run`, registered by tests/conftest.py as a pytest
plugin and imported by bench/ (by path) to start the services it measures.

`Service` starts petit with or without the HTTP API, on its own jobs (or a copy of
examples/jobs), db and control socket; talks to it the way its users do (`petit ctl --json`, HTTP,
the db file); stops it; and at teardown proves that nothing it started is still alive. The
fixtures (`service`, `sockets_dir`, `marker`) stop and check what a test started, and a failing
test's report carries the logs of its services."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

import psutil
import pytest
from api_client import Response, free_port, request, try_request
from jobfiles import copy_examples, write_job
from processes import (
    MARK,
    PETIT,
    describe,
    is_alive,
    kill_marked,
    marked_processes,
    poll,
    run_petit,
    wait_until,
)

from petit.core.model import Run
from petit.storage.store import Store

READY_SECS = 20.0
STOP_GRACE_SECS = 10.0  # on top of --shutdown-timeout, before stop() resorts to SIGKILL
LEFTOVER_SECS = 5.0
TERMINAL = {"completed", "failed", "interrupted", "cancelled"}


# -- the service ----------------------------------------------------------------------------------


class Service:
    """One `bin/petit run` subprocess and what the test learned about its processes.

    Its files live in `root` unless given: jobs (`jobs` as {job id: YAML}, else a copy of
    examples/jobs plus the API tests' jobs), db, log (stdout and stderr); its control socket sits
    in a short /tmp folder (AF_UNIX paths are limited to 107 bytes; pytest's tmp_path is long).
    It is driven the way its users drive it: with the API, `trigger` and `wait_run` go over HTTP
    and a run is the JSON the API serves; without, through `petit ctl` and the db (a `Run`)."""

    def __init__(
        self,
        root: str,
        *,
        jobs: dict[str, str] | None = None,
        jobs_dir: str | None = None,
        extra_args: tuple[str, ...] = (),
        api: bool = True,
        db: str | None = None,
        socket: str | None = None,
        env: dict | None = None,
        shutdown_timeout: float = 3,
    ) -> None:
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.marker = f"petit-test-{uuid.uuid4().hex[:12]}"
        if jobs_dir is None and jobs is None:
            jobs_dir = copy_examples(self.root, self.marker)
        elif jobs_dir is None:
            jobs_dir = os.path.join(self.root, "jobs")
            os.makedirs(jobs_dir)
            for job_id, text in jobs.items():
                write_job(jobs_dir, f"{job_id}.yaml", text)
        self.jobs_dir = jobs_dir
        self.db = db or os.path.join(self.root, "petit.db")
        self._socket_dir = None if socket else tempfile.mkdtemp(dir="/tmp", prefix="pt")
        self.socket = socket or os.path.join(self._socket_dir, "s")
        self.api = api
        self.port = free_port()
        self.extra_args = tuple(extra_args)
        self.shutdown_timeout = shutdown_timeout
        self.log_path = os.path.join(self.root, "petit.log")
        self.env = {**os.environ, MARK: self.marker, "PYTHONUNBUFFERED": "1", "TMPDIR": self.root}
        self.env.pop("PETIT_API_TOKEN", None)  # a token from the developer's shell must not leak in
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.problems: list[str] = []  # found while stopping, reported by teardown()

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
            *(("--api-port", str(self.port)) if self.api else ("--no-api",)),
            "--shutdown-timeout",
            f"{self.shutdown_timeout:g}",
            *self.extra_args,
        ]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, wait_ready: bool = True) -> Service:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.remember(self.proc.pid)
        if wait_ready:
            self.wait_ready()
        return self

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    # -- processes ----------------------------------------------------------------------------

    def remember(self, *pids: int) -> None:
        """Record the supervisor's descendants (and `pids`) so teardown can check each one died."""
        pids = list(pids)
        with contextlib.suppress(psutil.Error):
            pids += [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        for pid in pids:
            if pid not in self.seen:
                with contextlib.suppress(psutil.Error):
                    self.seen[pid] = psutil.Process(pid)

    def leftovers(self) -> list[psutil.Process]:
        alive = {p.pid: p for p in self.seen.values() if is_alive(p)}
        alive.update({p.pid: p for p in marked_processes(self.marker)})
        return list(alive.values())

    def worker_pid(self) -> int:
        return self.child("scheduler")["pid"]

    # -- control ------------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 40) -> subprocess.CompletedProcess:
        """`petit ctl ARGS --socket SOCK --json`, as a script would run it."""
        return run_petit("ctl", *args, "--socket", self.socket, "--json", timeout=timeout)

    def call(self, *args: str) -> dict:
        """A ctl command that must succeed; its parsed JSON result."""
        return self._result(self.ctl(*args), args)

    def status(self, check: bool = True) -> dict | None:
        """`petit ctl status`; None when it fails and `check` is off."""
        result = self.ctl("status")
        if result.returncode != 0 and not check:
            return None
        status = self._result(result, ("status",))
        self.remember(*(child["pid"] for child in status["children"] if child["pid"]))
        return status

    @staticmethod
    def _result(result: subprocess.CompletedProcess, args: tuple[str, ...]) -> dict:
        assert result.returncode == 0, (
            f"ctl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        )
        return json.loads(result.stdout)

    def child(self, name: str) -> dict:
        return next(c for c in self.status()["children"] if c["name"] == name)

    def is_ready(self) -> bool:
        """The control socket answers `status` with every child running and the scheduler
        reporting, and with the API, /api/health answers 200."""
        if self.api:
            health = try_request(self.port, "GET", "/api/health", timeout=2)
            if health is None or health.status != 200:
                return False
        status = self.status(check=False)
        if status is None or status["scheduler"] is None:
            return False
        running = {c["name"] for c in status["children"] if c["state"] == "running" and c["pid"]}
        return running == ({"scheduler", "api"} if self.api else {"scheduler"})

    def wait_ready(self, timeout: float = READY_SECS) -> None:
        wait_until(
            lambda: self.proc.poll() is not None or self.is_ready(),
            timeout=timeout,
            interval=0.05,
            message="petit to answer ctl status with its children running",
        )
        assert self.proc.poll() is None, f"petit exited with {self.proc.returncode}:\n{self.log()}"

    def trigger(self, job_id: str) -> str:
        if not self.api:
            return self.call("trigger", job_id)["run_id"]
        response = self.post(f"/api/jobs/{job_id}/trigger")
        assert response.status == 200, (response.status, response.body)
        return response.json()["run_id"]

    def wait_run(
        self, run_id: str, *statuses: str, timeout: float = 20.0, interval: float = 0.05
    ) -> Run | dict:
        """The run once its status is one of `statuses` (default: any terminal one): as
        GET /api/runs/{id} serves it with the API, as stored without."""
        wanted = set(statuses) or TERMINAL

        def reached() -> Run | dict | None:
            if self.api:
                run = self.get(f"/api/runs/{run_id}").json()
                return run if run["status"] in wanted else None
            run = self.run(run_id)
            return run if run is not None and run.status.value in wanted else None

        return wait_until(
            reached, timeout=timeout, interval=interval, message=f"run {run_id} in {wanted}"
        )

    def wait_task_pid(self, run_id: str, task_id: str = "t", timeout: float = 10) -> int:
        """The recorded pid of a running task (also its process group id)."""

        def pid() -> int | None:
            run = self.run(run_id)
            handle = run.task(task_id).handle if run is not None else None
            return handle and handle["pid"]

        found = wait_until(
            pid, timeout=timeout, interval=0.05, message=f"task {run_id}/{task_id} to start"
        )
        self.remember(found)
        return found

    def wait_task_running(self, run_id: str, task_id: str, timeout: float = 10.0) -> dict:
        def running() -> dict | None:
            tasks = self.get(f"/api/runs/{run_id}/tasks").json()["tasks"]
            task = next(t for t in tasks if t["task_id"] == task_id)
            return task if task["status"] == "running" else None

        return wait_until(
            running, timeout=timeout, interval=0.05, message=f"{run_id}/{task_id} running"
        )

    def get(self, path: str, **kwargs) -> Response:
        return request(self.port, "GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return request(self.port, "POST", path, **kwargs)

    # -- stored state -------------------------------------------------------------------------

    def store(self) -> Store:
        return Store(self.db)

    def run(self, run_id: str) -> Run | None:
        return self.store().get_run(run_id)

    def runs(self, job_id: str) -> list[Run]:
        """Oldest first."""
        return list(reversed(self.store().list_runs(job_id, 10_000)))

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Signal the supervisor and wait for its exit; SIGKILL its session if it overstays.
        Its exit code (None when it had to be killed or never started). A SIGTERM it does not
        answer with exit 0 is a problem teardown reports."""
        if self.proc is None:
            return None
        signalled = self.proc.poll() is None
        if signalled:
            self.remember()
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(
                timeout=self.shutdown_timeout + STOP_GRACE_SECS if timeout is None else timeout
            )
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            code = None
        if signalled and sig == signal.SIGTERM and code != 0:
            self.problems.append(f"petit (pid {self.pid}) exited {code} on SIGTERM")
        return code

    def teardown(self) -> list[str]:
        """Stop it if it still runs, then the problems found: an unclean exit, processes left
        alive (killed, so the next test starts clean), a control socket left by a clean exit."""
        self.stop()
        problems = self.problems
        poll(lambda: not self.leftovers(), LEFTOVER_SECS, 0.1)
        for proc in self.leftovers():
            problems.append(f"left alive: {describe(proc)}")
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.proc is not None and self.proc.returncode == 0 and os.path.exists(self.socket):
            problems.append(f"control socket {self.socket} left behind by a clean exit")
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        return problems

    @contextlib.contextmanager
    def running(self) -> Iterator[Service]:
        """Started and ready inside the block; stopped and checked after it."""
        try:
            yield self.start()
        finally:
            problems = self.teardown()
        if problems:
            pytest.fail(
                "service teardown:\n  "
                + "\n  ".join(problems)
                + "\n--- log tail:\n"
                + self.log()[-3000:],
                pytrace=False,
            )


class ServiceFactory:
    """The `service` fixture: `service(jobs)` starts petit (without the API unless `api=True`;
    on a copy of examples/jobs when `jobs` is None) on a fresh db; pass `db=`/`socket=`/
    `jobs_dir=` of an earlier service to start again on the same files."""

    def __init__(self, tmp_path, sockets_dir: str) -> None:
        self.tmp_path = tmp_path
        self.sockets_dir = sockets_dir
        self.started: list[Service] = []

    def __call__(
        self,
        jobs: dict[str, str] | None = None,
        *extra: str,
        jobs_dir: str | None = None,
        db: str | None = None,
        socket: str | None = None,
        api: bool = False,
        env: dict | None = None,
        shutdown_timeout: float = 3,
        wait_ready: bool = True,
        start: bool = True,
    ) -> Service:
        number = len(self.started) + 1
        service = Service(
            str(self.tmp_path / f"svc{number}"),
            jobs=jobs,
            jobs_dir=jobs_dir,
            extra_args=extra,
            api=api,
            db=db,
            socket=socket
            or os.path.join(self.sockets_dir, "p.sock" if number == 1 else f"p{number}.sock"),
            env=env,
            shutdown_timeout=shutdown_timeout,
        )
        self.started.append(service)
        return service.start(wait_ready) if start else service

    def teardown(self) -> list[str]:
        """Every service's problems, the last started first (a restart may share the first's
        socket and db)."""
        return [problem for service in reversed(self.started) for problem in service.teardown()]


# -- fixtures and the failure report --------------------------------------------------------------


@pytest.fixture
def marker(request) -> Iterator[str]:
    """A unique MARK value for the processes a test starts itself; none may outlive the test."""
    value = f"{request.node.name[:40]}-{uuid.uuid4().hex}"
    yield value
    survivors = kill_marked(value)
    assert not survivors, f"processes left alive: {survivors}"


@pytest.fixture
def sockets_dir() -> Iterator[str]:
    """A short directory for control sockets: pytest's tmp_path can exceed the ~107-byte limit."""
    directory = tempfile.mkdtemp(dir="/tmp", prefix="pt")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def service(tmp_path, sockets_dir) -> Iterator[ServiceFactory]:
    factory = ServiceFactory(tmp_path, sockets_dir)
    yield factory
    problems = factory.teardown()
    if problems:
        pytest.fail("service teardown:\n  " + "\n  ".join(problems), pytrace=False)


def services_of(item) -> list[Service]:
    """The started services a test used, directly or through a `service` factory."""
    found: dict[int, Service] = {}
    for value in (getattr(item, "funcargs", None) or {}).values():
        started = value.started if isinstance(value, ServiceFactory) else [value]
        for one in started:
            if isinstance(one, Service) and one.proc is not None:
                found[id(one)] = one
    return list(found.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report (shown by pytest on failure only) carries its services' logs."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for service in services_of(item):
            with contextlib.suppress(OSError):
                report.sections.append((f"petit log (pid {service.pid})", service.log()))
