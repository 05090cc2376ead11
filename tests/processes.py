"""The processes a test starts: the real launcher, deadlines to poll with, and leak scans that find
(or kill) what a test started by the marker it carries.

Every process a test starts carries MARK=<a unique value> in its environment (a task inherits it
from the service or the job), or the value on its command line, so a scan of all processes finds
leftovers even after the parent that knew them died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PETIT = os.path.join(ROOT, "bin", "petit")
MARK = "PETIT_TEST_MARK"


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


def poll(predicate: Callable[[], Any], timeout: float, interval: float) -> Any:
    """Call `predicate` until it returns something truthy or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with the last value seen."""
    last = poll(predicate, timeout, interval)
    if not last:
        pytest.fail(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
    return last


def is_alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a killed child stays a zombie until its parent reaps it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marked_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose MARK is `marker`, or whose command line carries `marker`."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if (
                proc.environ().get(MARK) == marker or any(marker in a for a in proc.cmdline())
            ) and is_alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def marked_alive(marker: str) -> list[int]:
    """Pids of live processes carrying `marker`."""
    return [proc.pid for proc in marked_processes(marker)]


def assert_none_left(marker: str, timeout: float = 3.0) -> None:
    """SIGKILL is asynchronous: give the kernel a short deadline, then fail with the survivors."""
    wait_until(
        lambda: not marked_alive(marker), timeout=timeout, message=f"no process marked {marker}"
    )


def kill_marked(marker: str) -> list[int]:
    """Kill whatever still carries `marker` (never leave a sleeper behind, even when a test
    failed) and return the pids that were found."""
    survivors = marked_alive(marker)
    for pid in survivors:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


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


def describe(proc: psutil.Process) -> str:
    """Pid and command line, for a report."""
    try:
        return f"pid {proc.pid} {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid} (gone)"
