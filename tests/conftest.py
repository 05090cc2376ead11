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


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
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


def run_petit(*args: str, timeout: float = 60, cwd: str | None = None,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real launcher as a subprocess and capture its output."""
    return subprocess.run([sys.executable, PETIT, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def write_job(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        handle.write(text)
    return path
