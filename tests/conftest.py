"""Shared test helpers: deadline polling, the real bin/petit, and leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PETIT = os.path.join(ROOT, "bin", "petit")
EXAMPLES = os.path.join(ROOT, "examples", "jobs")


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
        time.sleep(interval)


def run_petit(
    *args: str, timeout: float = 60, cwd: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real launcher as a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, PETIT, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def write_job(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


# -- leak checks: every task process a test starts carries MARK=<unique marker> in its env ---------

MARK = "PETIT_TEST_MARK"


def is_alive(proc) -> bool:
    """Running and not a zombie (a killed child stays a zombie until its parent reaps it)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marked_processes(marker: str, env_name: str = MARK) -> list:
    """Live processes whose environment variable `env_name` is `marker`, or whose command line
    carries `marker` (found even after the process that set the variable died)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if (
                proc.environ().get(env_name) == marker or any(marker in a for a in proc.cmdline())
            ) and is_alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def marked_alive(marker: str) -> list[int]:
    """Pids of live processes carrying `marker` in MARK."""
    return [proc.pid for proc in marked_processes(marker)]


def assert_none_left(marker: str, timeout: float = 3.0) -> None:
    """SIGKILL is asynchronous: give the kernel a short deadline, then fail with the survivors."""
    wait_until(
        lambda: not marked_alive(marker), timeout=timeout, message=f"no process marked {marker}"
    )


def kill_marked(marker: str) -> list[int]:
    """Kill whatever still carries `marker` (never leave a sleeper behind, even when a test
    failed) and return the pids that were found."""
    import signal

    survivors = marked_alive(marker)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


@pytest.fixture
def marker(request):
    import uuid

    value = f"{request.node.name[:40]}-{uuid.uuid4().hex}"
    yield value
    survivors = kill_marked(value)
    assert not survivors, f"processes left alive: {survivors}"
