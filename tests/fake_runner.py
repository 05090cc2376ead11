"""An in-memory TaskRunner for engine tests: each attempt's outcome is scripted per task id and
attempt number, and nothing is spawned, so a test of retries or cancellation runs in
milliseconds. It records what the engine asked of it (specs, sweeps) for the assertions."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from petit.core.model import now_ms
from petit.execution.runners.base import AttemptResult, AttemptSpec


@dataclass(frozen=True)
class Outcome:
    """One scripted attempt: an exit code, or a start failure (`error` without an exit code), a
    timeout, a hang until cancelled, or a bug (`raises` in start or collect)."""

    exit_code: int | None = 0
    error: str | None = None
    timed_out: bool = False
    hang: bool = False
    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    raises: str | None = None  # "start" or "collect": the runner raises there


OK = Outcome()
FAIL = Outcome(exit_code=1)
TIMEOUT = Outcome(exit_code=None, timed_out=True)
HANG = Outcome(hang=True)


class FakeAttempt:
    def __init__(self, runner: FakeRunner, spec: AttemptSpec, outcome: Outcome) -> None:
        self.spec = spec
        self._runner = runner
        self._outcome = outcome
        self._cancelled = threading.Event()
        self.started_at = now_ms()

    def to_dict(self) -> dict:
        return {
            "runner": FakeRunner.name,
            "task_id": self.spec.task_id,
            "attempt": self.spec.attempt,
        }

    def cancel(self) -> None:
        self._cancelled.set()

    def collect(self) -> AttemptResult:
        outcome, spec = self._outcome, self.spec
        if outcome.raises == "collect":
            raise RuntimeError(f"fake runner broke collecting {spec.task_id}")
        for stream, lines in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            if lines and spec.on_lines is not None:
                spec.on_lines(stream, list(lines))  # one batch per stream, as one read would be
        if outcome.hang:
            self._runner.hanging.release()  # tell the test this attempt is in flight
            if not self._cancelled.wait(30):
                raise AssertionError(f"{spec.task_id} hung and was never cancelled")
        cancelled = outcome.hang  # a hang ends only by a cancel
        exit_code = -15 if cancelled else outcome.exit_code
        error = outcome.error
        if error is None:
            if cancelled:
                error = "cancelled"
            elif outcome.timed_out:
                error = f"timed out after {spec.timeout_secs or 0:g}s"
            elif exit_code:
                error = f"exited with code {exit_code}"
        self._runner.ended.append((spec.task_id, spec.attempt))
        return AttemptResult(
            exit_code=exit_code,
            error=error,
            timed_out=outcome.timed_out,
            cancelled=cancelled,
            started_at=self.started_at,
            ended_at=now_ms(),
        )


class FakeRunner:
    """`script` maps a task id to its outcomes by attempt (the last one repeats); a task not in
    it succeeds."""

    name = "fake"

    def __init__(self, script: dict[str, list[Outcome]] | None = None) -> None:
        self.script = script or {}
        self.specs: list[AttemptSpec] = []
        self.start_times: list[tuple[str, int, float]] = []  # (task, attempt, monotonic)
        self.ended: list[tuple[str, int]] = []
        self.sweeps: list[tuple[str, str]] = []
        self.recovered: list[dict] = []
        self.hanging = threading.Semaphore(0)  # released once per hanging attempt in flight
        self._lock = threading.Lock()

    def start(self, spec: AttemptSpec) -> FakeAttempt:
        outcomes = self.script.get(spec.task_id, [OK])
        outcome = outcomes[min(spec.attempt, len(outcomes)) - 1]
        with self._lock:
            self.specs.append(spec)
            self.start_times.append((spec.task_id, spec.attempt, time.monotonic()))
        if outcome.raises == "start":
            raise RuntimeError(f"fake runner broke starting {spec.task_id}")
        return FakeAttempt(self, spec, outcome)

    def sweep_run(self, run_id: str, db_path: str) -> int:
        self.sweeps.append((run_id, db_path))
        return 0

    def recover(self, handle: dict) -> int:
        self.recovered.append(handle)
        return 1

    def attempts(self, task_id: str) -> list[int]:
        return [spec.attempt for spec in self.specs if spec.task_id == task_id]

    def wait_hanging(self, count: int = 1, timeout: float = 5) -> None:
        for _ in range(count):
            if not self.hanging.acquire(timeout=timeout):
                raise AssertionError("no hanging attempt started in time")
