"""The local runner: each attempt a process in its own session, its output passed on as the
lines of each read (the engine writes the log), the timeout enforced on the whole process group,
and sweeps for what escaped the group. A non-zero exit is data (a failed attempt), never an
exception."""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping

import psutil

from ...core.model import now_ms
from .base import DEFAULT_LOG_LIMIT, AttemptResult, AttemptSpec, LineCallback
from .lines import LineSplitter
from .output_file import OUTPUT_VARIABLE, NotStarted, OutputFile, WithOutput
from .usage import TreeUsage

RUNNER_NAME = "local"
KILL_GRACE_SECS = 2.0
# After the leader exits, a straggler that escaped the group (setsid) may still hold the pipes.
DRAIN_AFTER_EXIT_SECS = 1.0
# The variables that tie a process to the attempt that started it, whatever its session: run ids
# repeat across dbs, so the db path is part of the identity.
SWEEP_KEYS = ("PETIT_RUN_ID", "PETIT_TASK_ID", "PETIT_DB")
# A killed escapee may have forked while the pass was walking /proc: look again, a few times.
SWEEP_MAX_PASSES = 3


def sweep_match(
    env: Mapping[str, str], keys: tuple[str, ...] = SWEEP_KEYS
) -> dict[str, str] | None:
    """What a sweep looks for in other processes' environments; None when `env` lacks one of
    the keys (without PETIT_DB, another petit's `job-1` would look the same)."""
    if not all(env.get(key) for key in keys):
        return None
    return {key: env[key] for key in keys}


def sweep_escaped(match: Mapping[str, str]) -> int:
    """Kill every process whose environment carries all of `match`: what escaped its task's
    process group (setsid, double fork). Only for stops (timeout, cancel, shutdown), never after
    a normal end: a task may start a daemon on purpose. A process that cleared its environment
    (`env -i`) cannot be found this way; that is the documented limit. Returns how many died."""
    if not match:
        return 0
    killed: set[int] = set()
    for _ in range(SWEEP_MAX_PASSES):
        try:
            found = _sweep_once(match, killed)
        except (psutil.Error, OSError):  # /proc unreadable: nothing more can be done here
            break
        if not found:
            break
    return len(killed)


def _sweep_once(match: Mapping[str, str], killed: set[int]) -> int:
    """One pass; adds the pids it killed to `killed` (a dying process still shows its
    environment for a moment, and must not count twice). Returns how many were new."""
    before = len(killed)
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me or proc.pid in killed:
            continue
        try:
            env = proc.environ()
            if any(env.get(key) != value for key, value in match.items()):
                continue
            # A setsid daemon leads its own group: its children that cleared their environment
            # usually stay in that group, so they go too.
            if os.getpgid(proc.pid) == proc.pid:
                kill_group(proc.pid)
            proc.kill()
            killed.add(proc.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, a zombie, or not ours to read
    return len(killed) - before


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False when no member is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# the service's, not the tasks': the API token, and where it is kept
SERVICE_SECRETS = ("PETIT_API_TOKEN", "PETIT_API_TOKEN_FILE")


class LocalRunner:
    """Runs attempts as local process groups (the TaskRunner of `petit run` and `trigger`)."""

    name = RUNNER_NAME

    def start(self, spec: AttemptSpec) -> WithOutput | NotStarted:
        env = dict(os.environ)
        for secret in SERVICE_SECRETS:
            env.pop(secret, None)
        env.update(spec.env)
        try:
            output = OutputFile()
        except OSError as exc:
            return NotStarted(exc)
        env[OUTPUT_VARIABLE] = output.path
        try:
            process = TaskProcess(
                list(spec.argv), env, spec.cwd, spec.timeout_secs, spec.log_limit, spec.on_lines
            )
        except BaseException:  # no handle, so no collect() to remove it
            output.remove()
            raise
        return WithOutput(process, output)

    def sweep_run(self, run_id: str, db_path: str) -> int:
        """Kill what escaped the process groups of any attempt of this run (a daemon a finished
        task left behind included): one pass over the processes, for stops only."""
        keys = ("PETIT_RUN_ID", "PETIT_DB")
        return sweep_escaped(sweep_match({"PETIT_RUN_ID": run_id, "PETIT_DB": db_path}, keys))

    def recover(self, handle: dict) -> int:
        """Kill the recorded process group if its leader still runs; pid and create time must
        both match, so a reused pid is never killed."""
        pid, created = handle.get("pid"), handle.get("created")
        if not pid or not created:
            return 0
        try:
            if abs(psutil.Process(pid).create_time() - created) >= 0.01:
                return 0
        except psutil.Error:
            return 0
        return int(kill_group(pid))


class TaskProcess:
    """A started attempt (the local runner's AttemptHandle). `collect()` blocks until it is
    over; `cancel()` may be called from any thread and makes `collect()` end promptly with the
    group killed."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        timeout_secs: float | None,
        log_limit: int = DEFAULT_LOG_LIMIT,
        on_lines: LineCallback | None = None,
    ) -> None:
        self.started_at = now_ms()
        self._timeout_secs = timeout_secs
        self._killed_on_cancel = False  # a cancel stopped a process that was still running
        # Guards the wake-up pipe: once collect() closed it, its descriptor numbers may belong to
        # another file, and a late cancel() must not write a byte into that file.
        self._cancel_lock = threading.Lock()
        self._cancel_r, self._cancel_w = os.pipe()
        self._cancel_open = True
        self._stdout = LineSplitter(
            log_limit, functools.partial(on_lines, "stdout") if on_lines else None
        )
        self._stderr = LineSplitter(
            log_limit, functools.partial(on_lines, "stderr") if on_lines else None
        )
        self.error: str | None = None
        self.proc: subprocess.Popen | None = None
        self._rusage = None  # the leader's, once it is reaped
        try:
            if cwd is not None and not os.path.isdir(cwd):
                raise NotADirectoryError(
                    f"working_dir {cwd!r} does not exist or is not a directory"
                )
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            self.error = f"command not found: {argv[0]!r}"
            if exc.filename not in (None, argv[0]):
                self.error = f"not found: {exc.filename!r}"
        except PermissionError:
            self.error = f"permission denied: cannot execute {argv[0]!r}"
        except NotADirectoryError as exc:
            self.error = str(exc)
        except OSError as exc:
            self.error = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        except (
            ValueError,
            TypeError,
        ) as exc:  # e.g. an argument Popen refuses: still a failed attempt
            self.error = f"cannot start {argv[0]!r}: {exc}"
        self.pid = self.proc.pid if self.proc else None
        self.pid_created = _create_time(self.pid) if self.pid else None
        self._usage = TreeUsage(self.pid, time.monotonic()) if self.pid else None
        self._sweep = sweep_match(env)

    def to_dict(self) -> dict | None:
        # pid + create time identify the group leader; the create time guards a reused pid
        if self.pid is None:
            return None
        return {"runner": RUNNER_NAME, "pid": self.pid, "created": self.pid_created}

    def cancel(self) -> None:
        with self._cancel_lock:
            if not self._cancel_open:
                return
            try:
                os.write(self._cancel_w, b"x")
            except OSError:
                pass

    def collect(self) -> AttemptResult:
        try:
            if self.proc is None:
                return self._result(None, timed_out=False)
            timed_out = self._pump()
            if timed_out:
                # The group is dead; a process that escaped it must not outlive the timeout.
                # (Cancels are swept once per run by the engine, not once per task.)
                sweep_escaped(self._sweep)
            return self._result(self.proc.returncode, timed_out)
        finally:
            with self._cancel_lock:
                self._cancel_open = False
                os.close(self._cancel_r)
                os.close(self._cancel_w)

    def _pump(self) -> bool:
        """Read both pipes until EOF while watching exit, timeout and cancel. True on timeout."""
        proc = self.proc
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ, self._stdout)
        selector.register(proc.stderr, selectors.EVENT_READ, self._stderr)
        selector.register(self._cancel_r, selectors.EVENT_READ, "cancel")
        pidfd = _pidfd(proc.pid)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        start = time.monotonic()
        deadline = start + self._timeout_secs if self._timeout_secs else None
        kill_at = drain_until = None
        timed_out = False
        open_pipes = 2
        usage = self._usage
        try:
            while open_pipes or proc.returncode is None:
                now = time.monotonic()
                if proc.returncode is None and now >= usage.next_sample_at:
                    usage.sample(now)
                if deadline is not None and now >= deadline and kill_at is None:
                    timed_out = True
                    kill_at = self._terminate(now)
                if kill_at is not None and now >= kill_at:
                    kill_group(proc.pid, signal.SIGKILL)
                    kill_at = float("inf")
                if drain_until is not None and now >= drain_until:
                    break
                wake = [
                    t
                    for t in (
                        deadline if kill_at is None else None,
                        kill_at if kill_at != float("inf") else None,
                        drain_until,
                        usage.next_sample_at if proc.returncode is None else None,
                    )
                    if t is not None
                ]
                timeout = max(0.0, min(wake) - now) if wake else None
                if pidfd is None:  # no pidfd: fall back to polling the exit every 50 ms
                    timeout = 0.05 if timeout is None else min(timeout, 0.05)
                for key, _ in selector.select(timeout):
                    if key.data == "cancel":
                        selector.unregister(self._cancel_r)
                        if kill_at is None and proc.returncode is None:
                            self._killed_on_cancel = True
                            kill_at = self._terminate(time.monotonic())
                    elif key.data == "exit":
                        selector.unregister(pidfd)
                    else:
                        chunk = os.read(key.fd, 65536)
                        if chunk:
                            key.data.feed(chunk)
                        else:
                            selector.unregister(key.fileobj)
                            open_pipes -= 1
                if proc.returncode is None and self._reap(block=False):
                    # The leader is gone: whatever is left of its group must not outlive the task.
                    kill_group(proc.pid, signal.SIGKILL)
                    drain_until = time.monotonic() + DRAIN_AFTER_EXIT_SECS
        finally:
            selector.close()
            if pidfd is not None:
                os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()
            if proc.returncode is None:
                kill_group(proc.pid, signal.SIGKILL)
                self._reap(block=True)
        return timed_out

    def _reap(self, block: bool) -> bool:
        """Reap the leader with wait4 rather than Popen's waitpid, for its rusage: its own CPU
        and that of every descendant it waited for, and their largest RSS. False while it runs."""
        pid, status, rusage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._rusage = rusage
        return True

    def _terminate(self, now: float) -> float:
        kill_group(self.proc.pid, signal.SIGTERM)
        return now + KILL_GRACE_SECS

    def _result(self, exit_code: int | None, timed_out: bool) -> AttemptResult:
        self._stdout.close()
        self._stderr.close()
        error = self.error
        if error is None:
            if self._killed_on_cancel:
                error = "cancelled"
            elif timed_out:
                error = f"timed out after {self._timeout_secs:g}s"
            elif exit_code and exit_code < 0:
                error = f"killed by signal {_signal_name(-exit_code)}"
            elif exit_code:
                error = f"exited with code {exit_code}"
        cpu_secs, max_rss_bytes = (None, None)  # nothing ran, nothing used
        if self._rusage is not None:
            cpu_secs, max_rss_bytes = self._usage.totals(self._rusage)
        return AttemptResult(
            exit_code=exit_code,
            error=error,
            timed_out=timed_out,
            cancelled=self._killed_on_cancel,
            started_at=self.started_at,
            ended_at=now_ms(),
            cpu_secs=cpu_secs,
            max_rss_bytes=max_rss_bytes,
        )


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else str(number)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
