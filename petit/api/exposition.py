"""The Prometheus text format of one scrape of GET /metrics, written by prometheus_client (its
exposition format, escaping and histogram conventions) from the plain answers petit's processes
gave: the scheduler's `metrics` snapshot, the supervisor's `status`, the processes' readings.
Imported by the handler at the first scrape, so an API that is never scraped never loads it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = CONTENT_TYPE_LATEST  # the version of the text format generate_latest() writes


class PetitCollector:
    """A prometheus_client collector over one scrape's answers: the scheduler's `metrics`
    snapshot (None when it did not answer), the supervisor's `status` (None likewise) and the
    processes' readings."""

    def __init__(self, snapshot: dict | None, status: dict | None, processes: dict[str, dict]):
        self.snapshot = snapshot
        self.status = status
        self.processes = processes

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "petit_scheduler_up",
            "1 when the scheduler worker answered this scrape; 0 when it did not (and its series "
            "are missing from the scrape).",
            value=0 if self.snapshot is None else 1,
        )
        if self.snapshot is not None:
            yield from self._scheduler(self.snapshot)
        if self.status is not None:
            restarts = CounterMetricFamily(
                "petit_child_restarts_total",
                "Restarts of a child process by the supervisor since petit started.",
                labels=["child"],
            )
            for child in self.status["children"]:
                restarts.add_metric([child["name"]], child["restarts"])
            yield restarts
        yield from self._processes()

    def _scheduler(self, snap: dict) -> Iterator[Metric]:
        yield _counter(
            "petit_runs_total",
            "Runs ended since the scheduler worker started, by final status and trigger.",
            snap["runs_total"],
            ("job_id", "status", "trigger"),
        )
        yield _histogram(
            "petit_run_duration_seconds",
            "Duration of the runs ended since the scheduler worker started.",
            snap["run_duration_seconds"],
        )
        yield _counter(
            "petit_task_attempts_total",
            "Task attempts ended, by outcome: completed, failed, or retried (failed, and "
            "another attempt follows).",
            snap["task_attempts_total"],
            ("job_id", "status"),
        )
        yield _counter(
            "petit_task_cpu_seconds_total",
            "CPU time (user + system) of the process trees of the tasks ended since the "
            "scheduler worker started, all their attempts.",
            snap["task_cpu_seconds_total"],
            ("job_id",),
        )
        yield _histogram(
            "petit_task_max_rss_bytes",
            "Peak resident memory of each task ended since the scheduler worker started (the "
            "largest of its attempts'), in bytes.",
            snap["task_max_rss_bytes"],
        )
        yield _gauge(
            "petit_runs_active",
            "Runs in flight: pending or running, not ended (queued runs are not counted).",
            snap["runs_active"],
        )
        yield _gauge(
            "petit_runs_queued",
            "Queued runs: recorded, waiting for a free slot, not started.",
            snap["runs_queued"],
        )
        yield _histogram(
            "petit_fire_lateness_seconds",
            "Delay from a scheduled fire time (plus its jitter) to the start of its run, for "
            "scheduled runs that did not wait in the queue.",
            snap["fire_lateness_seconds"],
        )
        yield _counter(
            "petit_fires_dropped_total",
            "Scheduled fires that did not become a run, by reason (at least: a span of fires too "
            "many to count counts 1).",
            snap["fires_dropped_total"],
            ("job_id", "reason"),
        )
        yield _gauge(
            "petit_job_last_success_timestamp_seconds",
            "End of the job's last completed run, in Unix seconds.",
            {job_id: at / 1000 for job_id, at in snap["last_success_at"].items()},
        )
        yield _gauge(
            "petit_job_next_fire_timestamp_seconds",
            "The job's next scheduled fire, in Unix seconds (absent while paused or disabled).",
            {job_id: at / 1000 for job_id, at in snap["next_fire_at"].items()},
        )
        yield GaugeMetricFamily(
            "petit_scheduler_paused",
            "1 while scheduled fires are paused.",
            value=1 if snap["paused"] else 0,
        )

    def _processes(self) -> Iterator[Metric]:
        families = {
            "resident_memory_bytes": GaugeMetricFamily(
                "petit_process_resident_memory_bytes",
                "Resident memory of a petit process.",
                labels=["process"],
            ),
            "cpu_seconds": CounterMetricFamily(
                "petit_process_cpu_seconds_total",
                "User and system CPU time of a petit process since it started.",
                labels=["process"],
            ),
            "open_fds": GaugeMetricFamily(
                "petit_process_open_fds",
                "Open file descriptors of a petit process.",
                labels=["process"],
            ),
            "start_time_seconds": GaugeMetricFamily(
                "petit_process_start_time_seconds",
                "Start of a petit process, in Unix seconds.",
                labels=["process"],
            ),
        }
        for name, reading in self.processes.items():
            for key, family in families.items():
                family.add_metric([name], reading[key])
        yield from families.values()


def _counter(name: str, doc: str, series: list[dict], labels: tuple[str, ...]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for one in series:
        family.add_metric([one[label] for label in labels], one["value"])
    return family


def _gauge(name: str, doc: str, by_job: dict[str, float]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=["job_id"])
    for job_id, value in by_job.items():
        family.add_metric([job_id], value)
    return family


def _histogram(name: str, doc: str, histograms: dict) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=["job_id"])
    bounds = [floatToGoString(bound) for bound in histograms["buckets"]]
    for one in histograms["series"]:
        buckets = [*zip(bounds, one["counts"], strict=True), ("+Inf", one["count"])]
        family.add_metric([one["job_id"]], buckets, one["sum"])
    return family


def render(snapshot: dict | None, status: dict | None, processes: dict[str, dict]) -> bytes:
    """The text format of one scrape (see PetitCollector for the arguments)."""
    return generate_latest(PetitCollector(snapshot, status, processes))
