"""GET /metrics. The scheduler worker keeps the counts (they outlive a restart of this process:
see service/metrics.py) and answers the `metrics` verb; the supervisor's `status` gives the
children's pids and restarts; psutil reads each process's memory, CPU, fds and start time;
exposition.py writes the Prometheus text format."""

from __future__ import annotations

import asyncio
import os

import psutil

from ..errors import PetitError
from .base import BaseHandler


def read_processes(pids: dict[str, int]) -> dict[str, dict]:
    """Process name -> its resident bytes, CPU seconds (user + system), open fds and start time
    (epoch seconds). A process that is gone, or not ours to read, is left out."""
    found = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                cpu = proc.cpu_times()
                found[name] = {
                    "resident_memory_bytes": proc.memory_info().rss,
                    "cpu_seconds": round(cpu.user + cpu.system, 2),
                    "open_fds": proc.num_fds(),
                    "start_time_seconds": proc.create_time(),
                }
        except psutil.Error:
            continue
    return found


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        from .exposition import CONTENT_TYPE, render  # prometheus_client: at the first scrape

        snapshot, status = await asyncio.gather(self._ask("metrics"), self._ask("status"))
        pids = {}
        if status is not None:
            pids["supervisor"] = status["supervisor"]["pid"]
            pids.update({c["name"]: c["pid"] for c in status["children"] if c["pid"]})
        pids.setdefault("api", os.getpid())
        body = render(snapshot, status, read_processes(pids))
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)

    async def _ask(self, cmd: str) -> dict | None:
        """A scrape answers with what it can get: a scheduler that is down or slow shows as
        petit_scheduler_up 0, not as a failed scrape that also loses the other series."""
        try:
            return await self.commands.call(cmd)
        except PetitError:
            return None
