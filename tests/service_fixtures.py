"""A real `petit run` under test: start it, talk to it, read its db, and prove at teardown that
nothing it started is still alive.

Every process of a service carries a unique marker in its environment (tasks inherit it), so a
scan of all processes finds leftovers even after the supervisor that would have known them died."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import conftest
import psutil
import pytest
from conftest import PETIT, is_alive, run_petit, wait_until

from petit.core.model import Run
from petit.storage.store import Store

MARKER_ENV = "PETIT_TEST_MARKER"
READY_SECS = 15.0
LEFTOVER_SECS = 5.0
STOP_GRACE_SECS = 10.0  # on top of --shutdown-timeout before teardown resorts to SIGKILL


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of a process group (a task's group has the task's pid as its id)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and is_alive(proc):
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def marked_processes(marker: str) -> list[psutil.Process]:
    return conftest.marked_processes(marker, MARKER_ENV)


def job_yaml(
    job_id: str,
    script: str,
    schedule: str | None = None,
    max_concurrency: int | None = None,
    depends_on: str | None = None,
    extra: str = "",
) -> str:
    """One job with one shell task `t`."""
    lines = [f"id: {job_id}", f"name: {job_id} job"]
    if schedule is not None:
        lines.append(f'schedule: "{schedule}"')
    if max_concurrency is not None:
        lines.append(f"max_concurrency: {max_concurrency}")
    if depends_on is not None:
        lines.append(f"depends_on: [{depends_on}]")
    lines += ["tasks:", "  - id: t", "    type: shell", "    script: |"]
    lines += [f"      {line}" for line in script.strip().splitlines()]
    return "\n".join(lines) + "\n" + extra


class Service:
    """One `bin/petit run` subprocess and what the test learned about its processes."""

    def __init__(
        self,
        proc: subprocess.Popen,
        jobs_dir: str,
        db: str,
        socket: str,
        log_path: str,
        marker: str,
        shutdown_timeout: float,
    ) -> None:
        self.proc = proc
        self.jobs_dir = jobs_dir
        self.db = db
        self.socket = socket
        self.log_path = log_path
        self.marker = marker
        self.shutdown_timeout = shutdown_timeout
        self.seen: dict[int, psutil.Process] = {}
        self.remember(proc.pid)

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- processes ----------------------------------------------------------------------------

    def remember(self, pid: int | None = None) -> None:
        """Record the supervisor's descendants (and `pid`) so teardown can check each one died."""
        pids = [pid] if pid else []
        try:
            pids += [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            pass
        for one in pids:
            if one not in self.seen:
                try:
                    self.seen[one] = psutil.Process(one)
                except psutil.Error:
                    pass

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
        result = self.ctl(*args)
        assert result.returncode == 0, (
            f"ctl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        )
        return json.loads(result.stdout)

    def status(self) -> dict:
        status = self.call("status")
        self.remember()
        for child in status["children"]:
            if child["pid"]:
                self.remember(child["pid"])
        return status

    def child(self, name: str) -> dict:
        return next(c for c in self.status()["children"] if c["name"] == name)

    def is_ready(self) -> bool:
        result = self.ctl("status")
        if result.returncode != 0:
            return False
        status = json.loads(result.stdout)
        scheduler = next(c for c in status["children"] if c["name"] == "scheduler")
        if scheduler["state"] != "running" or status["scheduler"] is None:
            return False
        self.remember(scheduler["pid"])
        return True

    def wait_ready(self, timeout: float = READY_SECS) -> None:
        wait_until(
            lambda: self.proc.poll() is not None or self.is_ready(),
            timeout=timeout,
            interval=0.05,
            message="petit to answer ctl status with a running scheduler",
        )
        assert self.proc.poll() is None, f"petit exited with {self.proc.returncode}:\n{self.log()}"

    def trigger(self, job_id: str) -> str:
        return self.call("trigger", job_id)["run_id"]

    # -- stored state -------------------------------------------------------------------------

    def store(self) -> Store:
        return Store(self.db)

    def run(self, run_id: str) -> Run | None:
        return self.store().get_run(run_id)

    def runs(self, job_id: str) -> list[Run]:
        """Oldest first."""
        return list(reversed(self.store().list_runs(job_id, 10_000)))

    def wait_run(self, run_id: str, *statuses: str, timeout: float = 15) -> Run:
        def reached() -> Run | None:
            run = self.run(run_id)
            return run if run is not None and run.status.value in statuses else None

        return wait_until(
            reached,
            timeout=timeout,
            interval=0.05,
            message=f"run {run_id} to become {' or '.join(statuses)}",
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

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Signal the supervisor and wait for its exit; SIGKILL if it overstays. Its exit code."""
        if self.proc.poll() is None:
            self.remember()
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(
                timeout=self.shutdown_timeout + STOP_GRACE_SECS if timeout is None else timeout
            )
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class ServiceFactory:
    """The `service` fixture: `service(jobs)` starts petit on a fresh db; pass `db=`/`socket=`/
    `jobs_dir=` of an earlier service to start again on the same files."""

    def __init__(self, tmp_path, sockets_dir: str) -> None:
        self.tmp_path = tmp_path
        self.sockets_dir = sockets_dir
        self.started: list[Service] = []
        self.marker = f"petit-test-{tmp_path.name}-{uuid.uuid4().hex[:8]}"

    def jobs_dir(self, jobs: dict[str, str], name: str = "jobs") -> str:
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        for job_id, text in jobs.items():
            (directory / f"{job_id}.yaml").write_text(text)
        return str(directory)

    def __call__(
        self,
        jobs: dict[str, str] | None = None,
        *extra: str,
        jobs_dir: str | None = None,
        db: str | None = None,
        socket: str | None = None,
        shutdown_timeout: float = 3,
        wait_ready: bool = True,
        api: bool = False,
    ) -> Service:
        number = len(self.started) + 1
        jobs_dir = jobs_dir or self.jobs_dir(jobs or {})
        db = db or str(self.tmp_path / "petit.db")
        socket = socket or os.path.join(self.sockets_dir, "p.sock")
        log_path = str(self.tmp_path / f"petit-{number}.log")
        env = {**os.environ, MARKER_ENV: self.marker, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable,
            PETIT,
            "run",
            jobs_dir,
            "--db",
            db,
            "--socket",
            socket,
            *(() if api else ("--no-api",)),
            "--shutdown-timeout",
            f"{shutdown_timeout:g}",
            *extra,
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        service = Service(proc, jobs_dir, db, socket, log_path, self.marker, shutdown_timeout)
        self.started.append(service)
        if wait_ready:
            service.wait_ready()
        return service

    def teardown(self) -> list[str]:
        """Stop what is still running, then the problems found: processes left alive, unclean
        exits. Leftovers are killed so the next test starts clean."""
        problems = []
        for service in reversed(self.started):
            if service.proc.poll() is None:
                code = service.stop()
                if code != 0:
                    problems.append(
                        f"petit (pid {service.pid}) exited {code} on SIGTERM at teardown"
                    )
        deadline = time.monotonic() + LEFTOVER_SECS
        left = self._leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self._leftovers()
        for proc in left:
            problems.append(f"left alive: pid {proc.pid} {_describe(proc)}")
            try:
                proc.kill()
            except psutil.Error:
                pass
        return problems

    def _leftovers(self) -> list[psutil.Process]:
        alive = {}
        for service in self.started:
            alive.update({p.pid: p for p in service.leftovers()})
        return list(alive.values())

    def logs(self) -> list[tuple[str, str]]:
        sections = []
        for number, service in enumerate(self.started, 1):
            try:
                sections.append((f"petit log {number} (pid {service.pid})", service.log()))
            except OSError:
                continue
        return sections


def _describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "(gone)"


class _LogsOnFailure:
    """Attaches the petit logs of a test to its failure report (shown by pytest on failure only)."""

    name = "petit-service-logs"

    def __init__(self) -> None:
        self.factories: dict[str, ServiceFactory] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        factory = self.factories.get(item.nodeid)
        if factory is not None and report.failed:
            for title, text in factory.logs():
                report.sections.append((title, text or "(empty)"))


def _logs_plugin(config) -> _LogsOnFailure:
    plugin = config.pluginmanager.get_plugin(_LogsOnFailure.name)
    if plugin is None:
        plugin = _LogsOnFailure()
        config.pluginmanager.register(plugin, _LogsOnFailure.name)
    return plugin


@pytest.fixture
def sockets_dir() -> Iterator[str]:
    """A short directory for control sockets: pytest's tmp_path can exceed the ~107-byte limit."""
    directory = tempfile.mkdtemp(dir="/tmp", prefix="pt")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def service(request, tmp_path, sockets_dir) -> Iterator[Callable[..., Service]]:
    factory = ServiceFactory(tmp_path, sockets_dir)
    plugin = _logs_plugin(request.config)
    plugin.factories[request.node.nodeid] = factory
    yield factory
    problems = factory.teardown()
    plugin.factories.pop(request.node.nodeid, None)
    if problems:
        logs = "\n".join(f"--- {title}\n{text}" for title, text in factory.logs())
        pytest.fail("service teardown:\n  " + "\n  ".join(problems) + "\n" + logs, pytrace=False)
