"""A running `petit run` for the benchmark: start it on a free port, talk HTTP over one
keep-alive connection, read its process tree, stop it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PETIT = os.path.join(ROOT, "bin", "petit")
TERMINAL = {"completed", "failed", "interrupted", "cancelled"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.002)
    raise RuntimeError(f"timed out waiting for {what}")


class PetitService:
    def __init__(self, jobs_dir: str, db: str, *extra: str) -> None:
        self.port = free_port()
        self.sock = os.path.join(tempfile.mkdtemp(dir="/tmp", prefix="pb"), "s")
        self.log = open(db + ".log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                PETIT,
                "run",
                jobs_dir,
                "--db",
                db,
                "--socket",
                self.sock,
                "--api-port",
                str(self.port),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        wait_for(self._healthy, 20, "the API to answer")
        wait_for(lambda: self.get("/api/scheduler/state")[1].get("is_running"), 20, "the scheduler")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            with open(self.log.name) as handle:
                raise RuntimeError(
                    f"petit run exited with {self.proc.returncode}:\n{handle.read()[-3000:]}"
                )
        try:
            return self.get("/api/health")[0] == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return False

    def request(self, method: str, path: str) -> tuple[int, dict]:
        try:
            self.conn.request(method, path)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # the server closes keep-alive connections idle for 60 s: open a new one, once
            self.conn.close()
            self.conn.request(method, path)
            response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def trigger(self, job_id: str) -> str:
        status, body = self.request("POST", f"/api/jobs/{job_id}/trigger")
        if status != 200:
            raise RuntimeError(f"trigger {job_id}: {status} {body}")
        return body["run_id"]

    def wait_run(self, run_id: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (lambda run: run if run["status"] in TERMINAL else None)(
                self.get(f"/api/runs/{run_id}")[1]
            ),
            timeout,
            f"run {run_id}",
        )

    def tree(self, with_tracker: bool = True) -> list[psutil.Process]:
        """Supervisor, scheduler, API and (unless excluded) multiprocessing's resource tracker:
        every process petit itself keeps alive (task processes come and go, and are left out)."""
        root = psutil.Process(self.proc.pid)
        children = [p for p in root.children() if "multiprocessing" in " ".join(p.cmdline())]
        return [
            root,
            *(
                p
                for p in children
                if with_tracker or "resource_tracker" not in " ".join(p.cmdline())
            ),
        ]

    def rss_mib(self, with_tracker: bool = True) -> float:
        return sum(p.memory_info().rss for p in self.tree(with_tracker)) / 2**20

    def pss_mib(self) -> float:
        return sum(p.memory_full_info().pss for p in self.tree()) / 2**20

    def stop(self) -> None:
        self.conn.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
