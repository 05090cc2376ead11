"""The scheduler worker process: the loop that reads the clock and the command queue, hands
fires and commands to the Scheduler, and exits cleanly when told to or when orphaned. The only
process that writes the store while `petit run` is up."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ..core.events import EventBus
from ..core.model import RunStatus, Trigger
from ..core.params import parse_assignments
from ..errors import (
    BadRequest,
    ConfigError,
    NotFound,
    PetitError,
    StorageError,
    Unavailable,
    internal_error,
)
from ..ipc.commands import COMMANDS, error_reply, ok_reply
from ..jobs.loader import load_jobs
from ..logconf import configure_logging
from ..storage.store import Store
from .forwarder import EventForwarder
from .hooks import RunFollowups
from .notify import Notifier
from .recovery import recover
from .scheduler import Scheduler
from .settings import Settings

log = logging.getLogger("petit.scheduler")
PARENT_CHECK_SECS = 0.2
# Longest single wait for the next fire: poll() cannot wait past ~24.8 days (a `0 0 1 1 *` job
# crashed the worker with OverflowError), and waking now and then also notices wall-clock jumps.
MAX_WAIT_SECS = 60.0


def worker_main(settings: Settings, commands, replies) -> None:
    """Entry point of the spawned scheduler process."""
    configure_logging("scheduler", settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides about shutdown
    parent = os.getppid()
    store = Store(settings.db, keep_runs=settings.keep_runs)
    bus = EventBus()
    forwarder = EventForwarder(replies.put)
    try:
        # the supervisor leaves validation to this process, so that it never loads yaml,
        # the job timetable or tinydb itself: the long-lived parent stays small
        store.check()
        jobs = load_jobs(settings.jobs_dir, settings.config)
        # a run's hooks are those of its job as loaded when it ends (`scheduler` is bound by
        # then: no run ends before the loop starts)
        followups = RunFollowups(
            store,
            Notifier(store, settings.public_url),
            job_of=lambda job_id: scheduler.jobs.get(job_id),
        )
        scheduler = Scheduler(
            jobs,
            store,
            settings.max_tasks,
            settings.max_jobs,
            replies.put,
            bus=bus,
            track_run=lambda run: (forwarder.track(run), followups.track(run)),
        )
        bus.subscribe(followups.on_event)  # after the recorder: the end is on disk first
        recovered = recover(store)
        scheduler.restore_queued()
    except (ConfigError, StorageError) as exc:
        replies.put({"event": "fatal", "error": exc.to_wire()})
        _flush(replies)
        raise SystemExit(2) from None
    stop = threading.Event()
    hurry = threading.Event()  # SIGTERM, supervisor gone or a second SIGINT: no more waiting
    signal.signal(signal.SIGTERM, lambda *_: (hurry.set(), stop.set(), commands.put(None)))
    threading.Thread(
        target=_watch_parent, args=(parent, stop, hurry, commands, replies), daemon=True
    ).start()
    log.info(
        "scheduler ready: %d job(s), %s, recovered %d run(s)",
        len(scheduler.jobs),
        "paused" if scheduler.paused else "running",
        recovered,
    )
    replies.put(
        {
            "event": "ready",
            "pid": os.getpid(),
            "jobs": len(scheduler.jobs),
            "secret_params": scheduler.secret_params(),
        }
    )
    # the live stream (the API and `petit watch` read it), subscribed after the recorder, so a
    # run's end is on disk before it is announced
    bus.subscribe(forwarder.publish)
    forwarder.start()
    _serve(scheduler, followups, settings, commands, replies, stop, hurry)
    forwarder.close()  # the runs' last events go out before "stopped"
    replies.put({"event": "stopped", "pid": os.getpid()})
    log.info("scheduler stopped")
    _flush(replies)


def _flush(replies) -> None:
    """Send what is queued before exiting. A worker that exits while the queue's feeder thread
    is mid-send leaves the queue's cross-process write lock taken, and the supervisor's next put
    on that queue (its reader's stop sentinel) then blocks forever: `petit run` hung at exit."""
    replies.close()
    replies.join_thread()  # returns at once once cancelled (supervisor gone, nobody reads)


def _watch_parent(
    parent: int, stop: threading.Event, hurry: threading.Event, commands, replies
) -> None:
    while not hurry.is_set():
        if os.getppid() != parent:
            log.error("supervisor %d is gone: stopping runs and exiting", parent)
            replies.cancel_join_thread()  # nobody reads any more: never wait on the pipe at exit
            hurry.set()
            stop.set()
            commands.put(None)
            return
        stop.wait(PARENT_CHECK_SECS)


def _serve(
    scheduler: Scheduler,
    followups: RunFollowups,
    settings: Settings,
    commands,
    replies,
    stop: threading.Event,
    hurry: threading.Event,
) -> None:
    grace = 0.0
    while not stop.is_set():
        scheduler.fire(datetime.now(UTC))
        # the clock again: firing took time (a run's creation is a durable write), and a wait
        # measured from before it would make the next fire late by as much
        timeout = scheduler.next_wakeup(datetime.now(UTC))
        timeout = MAX_WAIT_SECS if timeout is None else min(timeout, MAX_WAIT_SECS)
        try:
            message = commands.get(timeout=timeout)
        except queue.Empty:
            message = None
        if message is not None:
            reply = _expired(message) or _handle(scheduler, settings, message)
            if reply is not None:
                replies.put(reply)
            if message.get("cmd") == "shutdown":
                grace = float(message["args"].get("timeout") or 0)
                break
    deadline = time.monotonic() + grace  # for the runs, then for the hooks of those that end
    scheduler.stop_runs(grace, hurry)
    followups.close(deadline, hurry)


def _expired(message: dict) -> dict | None:
    """The supervisor stopped waiting for this command and answered 503: doing it now would be a
    surprise (a trigger retried by the caller would run twice)."""
    deadline = message.get("deadline")
    if deadline is None or time.monotonic() <= deadline:
        return None
    log.warning(
        "command %s dropped: its caller stopped waiting %.1fs ago",
        message.get("cmd"),
        time.monotonic() - deadline,
    )
    return error_reply(
        message.get("id"), Unavailable("the command expired before the scheduler read it")
    )


# What the worker does for each verb: (scheduler, settings, args, now) -> the reply's result.
# Every verb of the table is here, since the supervisor also forwards the two it answers itself
# (its status probe, and the shutdown that carries the runs' grace time).


def _status(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    return scheduler.status()


def _metrics(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    return scheduler.metrics_snapshot()


def _pause(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    scheduler.set_paused(True, now)
    return {"message": "scheduler paused", "paused": True}


def _resume(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    scheduler.set_paused(False, now)
    return {"message": "scheduler resumed", "paused": False}


def _reload(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    return scheduler.reload(settings.jobs_dir, now, settings.config)


def _shutdown(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    return {"message": "scheduler stopping"}  # _serve stops the runs once this is answered


def _trigger(scheduler: Scheduler, settings: Settings, args: dict, now: datetime) -> dict:
    words = args.get("param_words")
    if words is not None and args.get("params") is not None:
        raise BadRequest("command 'trigger': give params or param_words, not both")
    run = scheduler.start_run(
        args["job_id"],
        Trigger.MANUAL,
        queue=args.get("queue", False),
        params=args.get("params") if words is None else parse_assignments(words),
        params_as_text=words is not None,
    )
    queued = " (queued: the job is at its limit)" if run.status is RunStatus.QUEUED else ""
    return {
        "run_id": run.id,
        "job_id": run.job_id,
        "status": run.status.value,
        "message": f"job '{run.job_id}' triggered{queued}",
    }


ACTIONS: dict[str, Callable[[Scheduler, Settings, dict, datetime], dict]] = {
    "status": _status,
    "metrics": _metrics,
    "pause": _pause,
    "resume": _resume,
    "reload": _reload,
    "shutdown": _shutdown,
    "trigger": _trigger,
}


def _handle(scheduler: Scheduler, settings: Settings, message: dict) -> dict | None:
    request_id, cmd, args = message.get("id"), message.get("cmd"), message.get("args") or {}
    try:
        if cmd not in COMMANDS:
            raise NotFound(f"unknown command {cmd!r}")
        if cmd == "cancel":  # a running run's cancel answers once it ended: None now
            return scheduler.cancel(args["run_id"], request_id)
        return ok_reply(request_id, ACTIONS[cmd](scheduler, settings, args, datetime.now(UTC)))
    except PetitError as exc:
        return error_reply(request_id, exc)
    except Exception as exc:  # a bug answers as an internal error instead of killing the worker
        log.exception("command %s failed", cmd)
        return error_reply(request_id, internal_error(exc))
