"""petit — a small, dependable job orchestrator for one machine.

Usage:
  petit [--db PATH] run JOBS_DIR [--no-api] [--api-port PORT] [--api-host HOST] [--api-token TOKEN]
                    [--max-jobs N] [--max-tasks N] [--keep-runs N] [--socket PATH]
                    [--shutdown-timeout SECS] [--log-level LEVEL]
  petit validate JOBS_DIR
  petit list JOBS_DIR [--json]
  petit [--db PATH] trigger JOBS_DIR JOB_ID [--max-tasks N] [--keep-runs N]
  petit [--db PATH] ctl (status | pause | resume | reload | shutdown) [--socket PATH] [--json]
  petit [--db PATH] ctl trigger JOB_ID [--socket PATH] [--json]
  petit [--db PATH] ctl cancel RUN_ID [--socket PATH] [--json]
  petit (-h | --help)
  petit --version

Options:
  --db PATH                TinyDB file holding runs and state [default: ./petit.db].
  --no-api                 Run without the HTTP API process.
  --api-port PORT          HTTP API port [default: 8565].
  --api-host HOST          HTTP API address; anything but loopback is reachable by others
                           [default: 127.0.0.1].
  --api-token TOKEN        Require "Authorization: Bearer TOKEN" on the API (or set PETIT_API_TOKEN).
  --max-jobs N             Most runs in flight at once, all jobs together [default: 0] (0 = no limit).
  --max-tasks N            Most tasks running at once within one run [default: 4].
  --keep-runs N            Finished runs kept per job; older ones and their logs are removed
                           [default: 200].
  --socket PATH            Control socket [default: <db>.sock].
  --shutdown-timeout SECS  On shutdown, how long running runs may take to finish [default: 30].
  --log-level LEVEL        debug, info, warning or error [default: info].
  --json                   Machine-readable output.

Exit codes: 0 success; 1 failure (invalid jobs, failed run, error reply); 2 bad usage;
3 no petit is listening on the control socket.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import datetime, timezone

from docopt import DocoptExit, docopt

from . import __version__
from .errors import ConfigError, PetitError, UsageError

EXIT_USAGE = 2


def _positive_int(args: dict, key: str, minimum: int = 1) -> int:
    raw = args[key]
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{key} expects a whole number, got {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{key} must be at least {minimum}, got {value}")
    return value


def _number(args: dict, key: str) -> float:
    try:
        value = float(args[key])
    except (TypeError, ValueError):
        raise UsageError(f"{key} expects a number of seconds, got {args[key]!r}") from None
    if not 0 <= value <= 86400:
        raise UsageError(f"{key} must be between 0 and 86400 seconds, got {args[key]}")
    return value


def socket_path(args: dict) -> str:
    if args.get("--socket") and args["--socket"] != "<db>.sock":
        return args["--socket"]
    return os.path.abspath(args["--db"]) + ".sock"


def cmd_validate(args: dict) -> int:
    from .config import load_jobs, one_line
    jobs = load_jobs(args["JOBS_DIR"])
    for job in jobs.values():   # a file name may hold a newline or escape codes: one line each
        print(f"ok  {job.id}: {len(job.tasks)} task(s), {_schedule_text(job)}  ({one_line(job.source)})")
    print(f"{len(jobs)} job(s) valid in {args['JOBS_DIR']}")
    return 0


def _schedule_text(job, now: datetime | None = None) -> str:
    from .schedule import Schedule
    if job.schedule is None:
        return "manual"
    schedule = Schedule.parse(job.schedule, job.timezone)
    upcoming = schedule.next_fire(now or datetime.now(timezone.utc)).astimezone(schedule.zone)
    return f"{schedule.describe()}, next {upcoming.isoformat()}"


def cmd_list(args: dict) -> int:
    from .config import load_jobs
    jobs = load_jobs(args["JOBS_DIR"])
    now = datetime.now(timezone.utc)
    if args["--json"]:
        print(json.dumps([_job_json(job, now) for job in jobs.values()], indent=2))
        return 0
    for job in jobs.values():
        state = "enabled" if job.enabled else "disabled"
        print(f"{job.id}  ({job.name}, {state})")
        print(f"  schedule: {_schedule_text(job, now)}")
        for dep in job.depends_on:
            print(f"  after job: {dep.job_id} ({dep.condition.value})")
        for task in job.tasks:
            after = f"  <- {', '.join(task.depends_on)}" if task.depends_on else ""
            print(f"  - {task.id}{after}")
    return 0


def _job_json(job, now: datetime) -> dict:
    from .schedule import Schedule
    next_fire = None
    if job.schedule is not None:
        schedule = Schedule.parse(job.schedule, job.timezone)
        next_fire = schedule.next_fire(now).astimezone(schedule.zone).isoformat()
    return {"id": job.id, "name": job.name, "enabled": job.enabled, "schedule": job.schedule,
            "timezone": job.timezone, "next_fire": next_fire, "source": job.source,
            "depends_on": [{"job": d.job_id, "condition": d.condition.value} for d in job.depends_on],
            "tasks": [{"id": t.id, "depends_on": list(t.depends_on)} for t in job.tasks]}


def cmd_trigger(args: dict) -> int:
    from .config import load_jobs
    from .engine import RunEngine
    from .ipc import hold_instance_lock
    from .model import RunStatus, Trigger
    from .recorder import RunRecorder
    from .storage import Store

    # Bad option values are usage errors, and must be found before a run is recorded: a run
    # created and then abandoned would stay "pending" in the db until the next recovery.
    keep_runs = _positive_int(args, "--keep-runs")
    max_tasks = _positive_int(args, "--max-tasks")
    jobs = load_jobs(args["JOBS_DIR"])
    job = jobs.get(args["JOB_ID"])
    if job is None:
        known = ", ".join(jobs) or "none"
        print(f"petit: unknown job {args['JOB_ID']!r}; known jobs: {known}", file=sys.stderr)
        return 1
    store = Store(args["--db"], keep_runs=keep_runs)
    store.check()
    hold_instance_lock(store.db_path)   # held until exit: a `petit run` starting now must not recover this run
    run = store.create_run(job.id, [t.id for t in job.tasks], Trigger.MANUAL)
    recorder = RunRecorder(store)
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

    def observe(event: str, task_id: str, detail: str) -> None:
        if event in ("stdout", "stderr"):
            say(f"[{task_id}] {detail}", sys.stdout if event == "stdout" else sys.stderr)
        else:
            say(f"== {task_id}: {event} {detail}")

    engine = RunEngine(job, run, recorder, max_tasks=max_tasks, observer=observe)
    failures: list[BaseException] = []

    def execute() -> None:
        try:
            engine.execute()
        except BaseException as exc:   # re-raised below, in the main thread, as one clear line
            failures.append(exc)

    # The run goes on in a worker thread: signal handlers run in this (main) thread, which then
    # holds none of the engine's locks when the handler asks the engine to stop.
    worker = threading.Thread(target=execute, name="petit-trigger")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: engine.interrupt())
    say(f"run {run.id} of job {job.id} started")
    worker.start()
    worker.join()
    recorder.close()
    if failures:
        raise failures[0]
    say(f"run {run.id} {run.status.value} in {run.duration_ms} ms" + (f": {run.error}" if run.error else ""))
    return 0 if run.status is RunStatus.COMPLETED else 1


def cmd_run(args: dict) -> int:
    from .logconf import LEVELS
    from .supervisor import serve
    if args["--log-level"] not in LEVELS:
        raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}, got {args['--log-level']!r}")
    port = _positive_int(args, "--api-port")
    if port > 65535:
        raise UsageError(f"--api-port must be at most 65535, got {port}")
    return serve({
        "jobs_dir": os.path.abspath(args["JOBS_DIR"]),
        "db": os.path.abspath(args["--db"]),
        "socket": os.path.abspath(socket_path(args)),
        "max_tasks": _positive_int(args, "--max-tasks"),
        "max_jobs": _positive_int(args, "--max-jobs", minimum=0),
        "keep_runs": _positive_int(args, "--keep-runs"),
        "shutdown_timeout": _number(args, "--shutdown-timeout"),
        "log_level": args["--log-level"],
        "api": not args["--no-api"],
        "api_host": args["--api-host"],
        "api_port": port,
        "api_token": args["--api-token"] or os.environ.get("PETIT_API_TOKEN") or None,
    })


def cmd_ctl(args: dict) -> int:
    from .ctl import run_ctl
    return run_ctl(args, socket_path(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = docopt(__doc__, argv=argv, version=f"petit {__version__}")
    except DocoptExit:
        usage = __doc__.split("Options:")[0].split("Usage:")[1].rstrip()
        print(f"petit: invalid command line: {' '.join(argv) or '(empty)'}\nUsage:{usage}", file=sys.stderr)
        return EXIT_USAGE
    handlers = {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "ctl": cmd_ctl,
                "trigger": cmd_trigger}
    command = next(name for name in ("ctl", "run", "validate", "list", "trigger") if args[name])
    try:
        return handlers[command](args)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in {args.get('JOBS_DIR') or 'job files'}", file=sys.stderr)
        return exc.exit_code
    except PetitError as exc:
        print(f"petit: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `petit list | head`: the reader went away, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
