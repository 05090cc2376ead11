"""The commands behind `petit validate`, `list`, `trigger`, `run`, `ctl`, the history
commands `runs`, `show` and `logs`, and `keys` and `audit`. Each imports what it needs when it
runs, so `petit ctl` never loads yaml or tinydb."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime


def _jobs(args: dict, inputs=None) -> dict:
    """JOBS_DIR loaded with petit.toml's [defaults], as `petit run` loads it: every command
    sees the same jobs."""
    from ..jobs.loader import load_jobs
    from ..service.settings import Inputs

    return load_jobs(args["JOBS_DIR"], (inputs or Inputs(args)).config)


def cmd_validate(args: dict) -> int:
    from ..core.text import one_line
    from ..service.settings import Inputs

    inputs = Inputs(args)
    jobs = _jobs(args, inputs)
    for job in jobs.values():  # a file name may hold a newline or escape codes: one line each
        parts = [f"{len(job.tasks)} task(s)", _schedule_text(job), _policy_text(job)]
        print(f"ok  {job.id}: {', '.join(p for p in parts if p)}  ({one_line(job.source)})")
    defaults = inputs.config and inputs.config.defaults
    with_defaults = f", with the [defaults] of {one_line(inputs.config.path)}" if defaults else ""
    print(f"{len(jobs)} job(s) valid in {args['JOBS_DIR']}{with_defaults}")
    return 0


def _schedule_text(job, now: datetime | None = None) -> str:
    from ..core.schedule_set import ScheduleSet

    if not job.scheduled:
        return "manual"
    schedules = ScheduleSet.of(job.schedules)
    upcoming = schedules.next_fire(now or datetime.now(UTC))
    zone = schedules.schedules[0].zone
    return f"{schedules.describe()}, next {upcoming.astimezone(zone).isoformat()}"


def _policy_text(job) -> str:
    """The catch-up and overlap policies, the jitter and the run timeout, when not defaults
    (max_queued also with overlap queue, whose queue it bounds)."""
    from ..core.text import duration_words
    from ..core.timing import DEFAULT_MAX_QUEUED, CatchupPolicy, OverlapPolicy

    parts = []
    if job.catchup is not CatchupPolicy.NONE:
        parts.append(
            f"catchup {job.catchup.value} within {duration_words(job.catchup_window_secs)}"
        )
    if job.overlap is not OverlapPolicy.SKIP:
        parts.append(f"overlap {job.overlap.value}")
    if job.overlap is OverlapPolicy.QUEUE or job.max_queued != DEFAULT_MAX_QUEUED:
        parts.append(f"max_queued {job.max_queued}")
    if job.max_concurrency is not None:
        parts.append(f"max_concurrency {job.max_concurrency}")
    if job.jitter_secs:
        parts.append(f"jitter {duration_words(job.jitter_secs)}")
    if job.timeout_secs:
        parts.append(f"timeout {duration_words(job.timeout_secs)}")
    return ", ".join(parts)


def cmd_list(args: dict) -> int:
    jobs = _jobs(args)
    now = datetime.now(UTC)
    if args["--json"]:
        print(json.dumps([_job_json(job, now) for job in jobs.values()], indent=2))
        return 0
    for job in jobs.values():
        state = "enabled" if job.enabled else "disabled"
        print(f"{job.id}  ({job.name}, {state})")
        print(f"  schedule: {_schedule_text(job, now)}")
        if policies := _policy_text(job):
            print(f"  policies: {policies}")
        for dep in job.depends_on:
            print(f"  after job: {dep.job_id} ({dep.condition.value})")
        for param in job.params:
            print(f"  param: {_param_text(param)}")
        for task in job.tasks:
            after = f"  <- {', '.join(task.depends_on)}" if task.depends_on else ""
            retry = f"  ({words})" if (words := task.retry.describe()) else ""
            print(f"  - {task.id}{after}{retry}")
    return 0


def _param_text(param) -> str:
    """`petit list`'s line for a param: "mode (choice of full, delta; default full) what"."""
    from ..core.params import SECRET_MASK, param_text

    kind = f"choice of {', '.join(param.choices)}" if param.choices else param.type.value
    default = SECRET_MASK if param.secret else param_text(param.default)
    value = "required" if param.required else f"default {default}"
    if param.default is None and not param.required:
        value = "optional"
    return f"{param.name} ({kind}; {value}) {param.description}".rstrip()


def _job_json(job, now: datetime) -> dict:
    from ..core.schedule_set import ScheduleSet
    from ..core.views import job_definition

    next_fire = None
    if job.scheduled:
        schedules = ScheduleSet.of(job.schedules)
        zone = schedules.schedules[0].zone
        next_fire = schedules.next_fire(now).astimezone(zone).isoformat()
    return {**job_definition(job), "next_fire": next_fire}


def cmd_trigger(args: dict) -> int:
    from ..core.events import EventBus, RunCreated, TaskEnded, TaskOutput, TaskRetrying, TaskStarted
    from ..core.model import RunStatus, Trigger
    from ..core.params import secret_names
    from ..core.text import duration_words
    from ..execution.engine import RunEngine
    from ..execution.recorder import RunRecorder
    from ..service.hooks import RunFollowups
    from ..service.notify import Notifier
    from ..service.settings import Inputs
    from .audit import TriggerAudit

    # Bad option values are usage errors, and must be found before a run is recorded: a run
    # created and then abandoned would stay "pending" in the db until the next recovery.
    inputs = Inputs(args)
    keep_runs, _ = inputs.value("keep_runs")
    max_tasks, _ = inputs.value("max_tasks")
    db, _ = inputs.value("db")
    audit = TriggerAudit(db, inputs.config, args["JOB_ID"], args["--param"])
    job, params, store = _trigger_checked(args, inputs, audit, db, keep_runs)
    run = store.create_run(
        job.id,
        [t.id for t in job.tasks],
        Trigger.MANUAL,
        params=params,
        secret_params=secret_names(job.params),
    )
    audit.started(run, store)
    bus = EventBus()
    recorder = RunRecorder(store, bus)
    recorder.track(run)
    print_lock = threading.Lock()

    def say(text: str, stream=None) -> None:
        # Also runs in task threads: a reader that went away (`petit trigger ... | head`) must
        # neither fail the tasks nor turn a failed run into exit 0, so its stream goes to null.
        stream = stream or sys.stdout
        with print_lock:
            try:
                print(text, file=stream, flush=True)
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())

    def show(event) -> None:
        if isinstance(event, TaskOutput):  # one print per batch of lines, not per line
            prefix = f"[{event.task_id}] "
            say(
                prefix + f"\n{prefix}".join(event.lines),
                sys.stderr if event.stream == "stderr" else sys.stdout,
            )
        elif isinstance(event, TaskStarted):
            say(f"== {event.task_id}: start attempt {event.attempt}")
        elif isinstance(event, TaskRetrying):
            say(
                f"== {event.task_id}: end attempt {event.attempt} failed: {event.error}; "
                f"retrying in {duration_words(event.delay_secs)}"
            )
        elif isinstance(event, TaskEnded):
            detail = {"failed": f": {event.error}", "skipped": f" ({event.error})"}
            say(f"== {event.task_id}: end {event.status}{detail.get(event.status, '')}")

    def say_hook(run, outcome: dict) -> None:
        error = f": {outcome['error']}" if outcome["error"] else ""
        say(f"== hook {outcome['hook']}: {outcome['status']} in {outcome['duration_ms']} ms{error}")

    bus.subscribe(show)
    # the same hooks and webhooks as under `petit run`, after the run's end is recorded
    followups = RunFollowups(store, Notifier(store), lambda job_id: job, on_hook=say_hook)
    followups.track(run)
    bus.subscribe(followups.on_event)
    bus.publish(RunCreated(run.created_at, run.id, job.id, run.trigger.value))
    engine = RunEngine(job, run, store, bus, max_tasks=max_tasks)
    failures: list[BaseException] = []

    def execute() -> None:
        try:
            engine.execute()
        except BaseException as exc:  # re-raised below, in the main thread, as one clear line
            failures.append(exc)

    # The run goes on in a worker thread: signal handlers run in this (main) thread, which then
    # holds none of the engine's locks when the handler asks the engine to stop.
    worker = threading.Thread(target=execute, name="petit-trigger")
    stop = threading.Event()  # a signal: stop the run, or the hooks that follow it
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), engine.interrupt()))
    say(f"run {run.id} of job {job.id} started")
    worker.start()
    worker.join()
    recorder.close()
    if failures:
        raise failures[0]
    say(
        f"run {run.id} {run.status.value} in {run.duration_ms} ms"
        + (f": {run.error}" if run.error else "")
    )
    followups.close(hurry=stop)
    for entry in run.notifications:
        outcome = "delivered" if entry["delivered"] else "not delivered"
        say(f"== notify {entry['url']}: {outcome} ({len(entry['attempts'])} attempt(s))")
    return 0 if run.status is RunStatus.COMPLETED else 1


def _trigger_checked(args: dict, inputs, audit, db: str, keep_runs: int) -> tuple:
    """The job, its params and the store, once every check passed. A db petit cannot use is
    refused first, without an audit line (the log lives beside it); each refusal after that
    (bad job files, an unknown job, bad params, a db another petit runs jobs on) is an audit
    line. The instance lock is held until exit: a `petit run` starting now must not recover
    the run."""
    from ..core.params import parse_assignments, resolve_params
    from ..errors import NotFound
    from ..ipc.instance import hold_instance_lock
    from ..storage.store import Store

    store = Store(db, keep_runs=keep_runs)
    store.check()
    with audit.refusals():
        jobs = _jobs(args, inputs)
        job = jobs.get(args["JOB_ID"])
        if job is None:
            known = ", ".join(jobs) or "none"
            raise NotFound(f"unknown job {args['JOB_ID']!r}; known jobs: {known}")
        audit.knows(job)
        params = resolve_params(job.params, parse_assignments(args["--param"]), as_text=True)
        hold_instance_lock(store.db_path)
        audit.check()  # fail closed: no line, no run
    return job, params, store


def cmd_run(args: dict) -> int:
    from ..service.settings import Settings

    settings = Settings.from_command_line(args)
    if args["--print-config"]:
        from ..jobs.loader import check_defaults

        check_defaults(settings.config)  # the supervisor leaves the jobs to the worker
        print("\n".join(settings.describe()))
        return 0
    from ..service.supervisor import serve

    return serve(settings)


def cmd_ctl(args: dict) -> int:
    from ..service.settings import socket_path
    from .ctl import run_ctl

    return run_ctl(args, socket_path(args))


def cmd_runs(args: dict) -> int:
    from .history import print_runs

    return print_runs(args)


def cmd_show(args: dict) -> int:
    from .history import print_run

    return print_run(args)


def cmd_logs(args: dict) -> int:
    if args["--follow"]:
        from ..service.settings import socket_path
        from .live import follow_logs

        return follow_logs(args, socket_path(args))
    from .history import print_logs

    return print_logs(args)


def cmd_keys(args: dict) -> int:
    from .keys import keys_command

    return keys_command(args)


def cmd_audit(args: dict) -> int:
    from .audit import print_audit

    return print_audit(args)


def cmd_watch(args: dict) -> int:
    from ..service.settings import socket_path
    from .live import watch

    return watch(args, socket_path(args))
