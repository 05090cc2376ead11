"""End-to-end tests of issue 12's policies through the real `bin/petit run`: catch-up after a clean
stop (none, latest, all, a window), overlap (skip, queue with max_queued, replace, allow), manual
triggers at the limit over the control socket, queued runs across restarts, a whole run's
timeout, jitter, lists of schedules, and what `petit validate` and `petit list` say about them.

Fire times are checked exactly: within a test's window, every fire time of a job is a run or a
recorded drop (`<db>.d/drops/<job>.jsonl`), never both and never twice."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable

import psutil
import yaml
from harness import Service
from jobfiles import job_yaml, write_job
from processes import MARK, group_members, is_alive, run_petit, wait_until

from petit.core.model import Run, now_ms
from petit.errors import PetitError
from petit.ipc.control import call_socket

SECOND = 1000
QUICK = "true"


# -- reading fires back ---------------------------------------------------------------------------


def drops(svc: Service, job_id: str) -> list[dict]:
    """The job's drop records, oldest first."""
    return list(reversed(svc.store().drops.read(job_id, 10_000)))


def drop_times(
    record: dict, step_ms: int, is_fire: Callable[[int], bool] = lambda t: True
) -> list[int]:
    """The fire times a drop record hands out: one, or each of its span, the instants every
    `step_ms` that are fires (checked against its count)."""
    if record["until"] is None:
        return [record["scheduled_at"]]
    times = [t for t in range(record["scheduled_at"], record["until"], step_ms) if is_fire(t)]
    assert len(times) == record["count"], record
    return times


def fire_ledger(svc: Service, job_id: str, step_ms: int) -> dict[int, str]:
    """Each fire time of an every-`step_ms` job handed out so far -> what it became (the run's
    trigger, or "drop:<reason>"). Fails on a fire time handed out twice, and on a hole between
    the first and the last."""
    handed: list[tuple[int, str]] = [
        (run.scheduled_at, run.trigger.value)
        for run in svc.runs(job_id)
        if run.scheduled_at is not None
    ]
    for record in drops(svc, job_id):
        handed += [(t, f"drop:{record['reason']}") for t in drop_times(record, step_ms)]
    twice = [t for t, n in Counter(t for t, _ in handed).items() if n > 1]
    assert not twice, f"{job_id}: fire times handed out twice: {twice} in {sorted(handed)}"
    ledger = dict(sorted(handed))
    times = list(ledger)
    expected = list(range(times[0], times[-1] + 1, step_ms))
    assert times == expected, (
        f"{job_id}: fire times missing: {sorted(set(expected) - set(times))} in {ledger}"
    )
    return ledger


def outcomes(ledger: dict[int, str]) -> set[str]:
    """What a job's fires became, leaving out what the test's own pause makes of them, and the
    older fires of a stall (a loaded box handing out a batch for over a second): they come due
    with a newer one and are dropped as superseded, as catch-up none and latest do."""
    return set(ledger.values()) - {"drop:paused", "drop:superseded"}


def scheduled(svc: Service, job_id: str) -> list[Run]:
    return [run for run in svc.runs(job_id) if run.scheduled_at is not None]


def processes_of(svc: Service, run_ids: set[str]) -> list[psutil.Process]:
    """Live processes of this service's runs `run_ids` (run ids repeat across dbs)."""
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            if (
                env.get(MARK) == svc.marker
                and env.get("PETIT_RUN_ID") in run_ids
                and is_alive(proc)
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def wait_clock(at_ms: int, message: str) -> None:
    """Let wall-clock time pass until `at_ms` (fire times are what the test waits for)."""
    wait_until(
        lambda: now_ms() >= at_ms,
        timeout=(at_ms - now_ms()) / 1000 + 5,
        interval=0.05,
        message=message,
    )


# -- catch-up -------------------------------------------------------------------------------------

EVERY_SECOND = "* * * * * *"
CATCHUP_JOBS = {
    "none": job_yaml("none", QUICK, schedule=EVERY_SECOND),
    "latest": job_yaml("latest", QUICK, schedule=EVERY_SECOND, extra="catchup: latest\n"),
    "all": job_yaml(
        "all", QUICK, schedule=EVERY_SECOND, extra="catchup: all\ncatchup_window: 1h\n"
    ),
    "window": job_yaml(
        "window", QUICK, schedule=EVERY_SECOND, extra="catchup: all\ncatchup_window: 1s\n"
    ),
    # catch-up fires meet the job's limit like any other: queued in order, or dropped (skip)
    "queued": job_yaml(
        "queued",
        "sleep 0.3",
        schedule=EVERY_SECOND,
        max_concurrency=1,
        extra="catchup: all\ncatchup_window: 1h\noverlap: queue\n",
    ),
}
GATE = "while [ ! -e {gate} ]; do sleep 0.05; done"  # a run that lasts until the test says
DOWNTIME_MS = 2000


def test_catchup_none_latest_all_and_window_after_a_clean_stop(service, tmp_path):
    gate = tmp_path / "gate"
    gate.touch()
    skipped = job_yaml(
        "skipped",
        GATE.format(gate=gate),
        schedule=EVERY_SECOND,
        max_concurrency=1,
        extra="catchup: all\ncatchup_window: 1h\n",
    )
    jobs = {**CATCHUP_JOBS, "skipped": skipped}
    first = service(jobs)
    wait_until(
        lambda: all(scheduled(first, job_id) for job_id in jobs),
        timeout=10,
        interval=0.1,
        message="a scheduled run of each job",
    )
    assert first.stop() == 0
    stopped_ms = now_ms()
    # the last fire time each job handed out before the stop
    before = {job_id: max(fire_ledger(first, job_id, SECOND)) for job_id in jobs}
    gate.unlink()  # the first catch-up run of skipped holds its only slot
    wait_clock(stopped_ms + DOWNTIME_MS, "the downtime to pass")
    launched_ms = now_ms()
    again = service(jobs_dir=first.jobs_dir, db=first.db, socket=first.socket)
    ready_ms = now_ms()
    wait_until(
        lambda: (
            all(
                any(r.scheduled_at > ready_ms and r.ended_at for r in scheduled(again, job_id))
                for job_id in CATCHUP_JOBS
            )
            and any(d["scheduled_at"] > ready_ms for d in drops(again, "skipped"))
        ),
        timeout=10,
        interval=0.1,
        message="a scheduled run of each job after the restart, a dropped fire of skipped",
    )
    gate.touch()
    wait_until(
        lambda: all(r.ended_at for r in again.runs("skipped")),
        timeout=5,
        message="skipped's catch-up run to end",
    )
    assert again.stop() == 0  # no fire lands while the ledgers are read

    # all: every missed fire is a catch-up run, oldest first; from the first fire after the
    # restarted timetable began (`resumed`), scheduled runs again
    ledger = fire_ledger(again, "all", SECOND)
    after = {t: what for t, what in ledger.items() if t > before["all"]}
    resumed = min(t for t, what in after.items() if what == "schedule")
    assert launched_ms < resumed <= ready_ms + SECOND, (launched_ms, resumed, ready_ms)
    missed = list(range(before["all"] + SECOND, resumed, SECOND))
    # the downtime at least: `resumed` comes after the relaunch, itself DOWNTIME_MS after the stop
    assert len(missed) >= DOWNTIME_MS // SECOND, missed
    assert [t for t, what in after.items() if what == "catchup"] == missed
    assert all(what == "schedule" for t, what in after.items() if t >= resumed)
    catchups = [r for r in again.runs("all") if r.trigger.value == "catchup"]
    assert [r.scheduled_at for r in sorted(catchups, key=lambda r: r.seq)] == missed
    assert [r.status.value for r in catchups] == ["completed"] * len(missed)

    # latest: the older missed fires are one superseded span, the newest runs as catch-up
    ledger = fire_ledger(again, "latest", SECOND)
    [superseded] = [d for d in drops(again, "latest") if d["scheduled_at"] > before["latest"]][:1]
    assert (superseded["reason"], superseded["scheduled_at"]) == (
        "superseded",
        before["latest"] + SECOND,
    )
    newest = superseded["until"]  # the one fire of the batch that ran
    if newest < resumed:
        assert (newest, ledger[newest]) == (resumed - SECOND, "catchup")
    else:
        # a fire came due between the timetable's start and its first look: that newer fire,
        # on time, ran instead of the newest missed one
        assert ledger[newest] == "schedule", superseded
    assert [what for t, what in ledger.items() if t > before["latest"]].count("catchup") <= 1

    # a window of 1s: the missed fires before it are one span dropped as outside the window
    ledger = fire_ledger(again, "window", SECOND)
    [outside] = [d for d in drops(again, "window") if d["reason"] == "outside_catchup_window"]
    assert (outside["scheduled_at"], outside["until"]) == (
        before["window"] + SECOND,
        resumed - SECOND,
    )
    assert ledger[resumed - SECOND] == "catchup" and ledger[resumed] == "schedule"

    # at max_concurrency 1, the missed fires wait their turn in order (queue), or all but the
    # first are dropped and recorded (skip)
    ledger = fire_ledger(again, "queued", SECOND)
    runs = [r for r in again.runs("queued") if r.scheduled_at > before["queued"]]
    catchups = [r for r in runs if r.trigger.value == "catchup"]
    assert [r.scheduled_at for r in catchups] == missed
    assert all(r.status.value == "completed" for r in catchups)
    started = [r for r in runs if r.started_at is not None]
    assert [r.scheduled_at for r in started] == sorted(r.scheduled_at for r in started)
    assert not overlapping(started)
    ledger = fire_ledger(again, "skipped", SECOND)
    assert [ledger[t] for t in missed] == ["catchup"] + ["drop:max_concurrency"] * (len(missed) - 1)

    # none: the downtime is neither run nor recorded; fires start again from the start
    later = [d for d in drops(again, "none") if d["scheduled_at"] > before["none"]]
    handed = sorted(
        [r.scheduled_at for r in scheduled(again, "none") if r.scheduled_at > before["none"]]
        + [t for d in later for t in drop_times(d, SECOND)]
    )
    assert handed[0] == resumed, (handed, resumed)
    assert {d["reason"] for d in later} <= {"superseded"}, later
    assert all(r.trigger.value == "schedule" for r in again.runs("none"))


# -- overlap, jitter, lists of schedules ----------------------------------------------------------

SLOW = "sleep 1.5"  # longer than the job's interval
LONG = "sleep 60 &\nwait"  # a process group of two: the shell and its sleep
REPLACED = "cancelled: replaced by a newer fire (overlap: replace)"
SCHEDULE_LIST = '["*/2 * * * * *", "*/3 * * * * *"]'
OVERLAP_JOBS = {
    "skip": job_yaml("skip", SLOW, schedule=EVERY_SECOND, max_concurrency=1),
    "queue": job_yaml(
        "queue",
        SLOW,
        schedule=EVERY_SECOND,
        max_concurrency=1,
        extra="overlap: queue\nmax_queued: 1\n",
    ),
    "allow": job_yaml(
        "allow", "sleep 2.5", schedule=EVERY_SECOND, max_concurrency=1, extra="overlap: allow\n"
    ),
    "jitter": job_yaml("jitter", QUICK, schedule="*/3 * * * * *", extra='jitter: "2s"\n'),
    "list": job_yaml("list", QUICK).replace("tasks:", f"schedule: {SCHEDULE_LIST}\ntasks:"),
}


def ended(runs: list[Run]) -> list[Run]:
    return [run for run in runs if run.ended_at is not None]


def overlapping(runs: list[Run]) -> list[tuple[str, str]]:
    """Pairs of consecutive runs (by seq) where the later started before the earlier ended."""
    runs = sorted(runs, key=lambda r: r.seq)
    return [
        (a.id, b.id)
        for a, b in zip(runs, runs[1:])
        if b.started_at is not None and (a.ended_at is None or b.started_at < a.ended_at)
    ]


def test_overlap_policies_jitter_and_lists_of_schedules(service, tmp_path):
    groups_file = tmp_path / "groups"  # replace's runs and their process group ($$ of the shell)
    jobs = {
        **OVERLAP_JOBS,
        "replace": job_yaml(
            "replace",
            f'echo "$PETIT_RUN_ID $$" >> {groups_file}\n{LONG}',
            schedule=EVERY_SECOND,
            extra="overlap: replace\n",
        ),
    }
    svc = service(jobs, shutdown_timeout=1)
    seen_queued: set[str] = set()

    def enough() -> bool:
        status = call_socket(svc.socket, "status")["scheduler"]
        seen_queued.update(r["run_id"] for r in status["queued_runs"] if r["job_id"] == "queue")
        list_fires = [r.scheduled_at // SECOND % 60 for r in scheduled(svc, "list")]
        return (
            any(d["reason"] == "max_queued" for d in drops(svc, "queue"))
            and len(ended(svc.runs("queue"))) >= 3
            and any(d["reason"] == "max_concurrency" for d in drops(svc, "skip"))
            and len([r for r in ended(svc.runs("replace")) if r.started_at]) >= 2
            and overlapping(ended(svc.runs("allow")))
            and len(scheduled(svc, "jitter")) >= 2
            and any(s % 6 == 0 for s in list_fires)  # both schedules at one instant
        )

    wait_until(enough, timeout=25, interval=0.2, message="every policy at work")
    call_socket(svc.socket, "pause")

    # skip: a fire that finds the job busy is dropped and recorded; never two runs at once
    ledger = fire_ledger(svc, "skip", SECOND)
    assert outcomes(ledger) == {"schedule", "drop:max_concurrency"}, ledger
    assert not overlapping(svc.runs("skip"))
    busy = next(d for d in drops(svc, "skip") if d["reason"] == "max_concurrency")
    assert busy["error"] == "job 'skip' already has 1 run(s) in flight (max_concurrency 1)"

    # queue: fires wait as queued runs and start in order, each as the one before ends; beyond
    # max_queued the fire is dropped and recorded
    ledger = fire_ledger(svc, "queue", SECOND)
    assert outcomes(ledger) == {"schedule", "drop:max_queued"}, ledger
    runs = ended(svc.runs("queue"))
    assert not overlapping(runs)
    assert seen_queued, "ctl status never showed a queued run"
    waited = [(a, b) for a, b in zip(runs, runs[1:]) if b.created_at < a.ended_at]
    assert waited, runs
    for a, b in waited:
        assert 0 <= b.started_at - a.ended_at < 800, (a, b)
    assert all(r.status.value == "completed" for r in runs)

    # replace: the running run ends cancelled (its process group gone), the new one runs
    runs = svc.runs("replace")
    assert outcomes(fire_ledger(svc, "replace", SECOND)) == {"schedule"}
    assert not overlapping(runs)
    started = [run for run in ended(runs) if run.started_at is not None]
    assert len(started) >= 2
    for run in ended(runs):  # one replaced while still queued never started
        assert (run.status.value, run.error) == ("cancelled", REPLACED), run
    assert all(run.task("t").status.value == "failed" for run in started)
    groups = dict(line.split() for line in groups_file.read_text().splitlines())
    assert {r.id for r in started} <= set(groups), groups
    for run_id, pgid in groups.items():
        if svc.run(run_id).ended_at is not None:
            assert not group_members(int(pgid)), f"{run_id} left its processes"
    assert not processes_of(svc, {r.id for r in ended(runs)})

    # allow: a max_concurrency 1 job whose scheduled fires ignore the limit
    assert overlapping(ended(svc.runs("allow")))
    assert outcomes(fire_ledger(svc, "allow", SECOND)) == {"schedule"}

    # jitter: nominal fire times, each run created after its own recorded delay
    runs = scheduled(svc, "jitter")
    assert all(r.scheduled_at % 3000 == 0 for r in runs), [r.scheduled_at for r in runs]
    for run in runs:
        assert run.jitter_ms is not None and 0 <= run.jitter_ms <= 2000, run
        assert 0 <= run.created_at - run.scheduled_at - run.jitter_ms < 800, run
    assert len({r.jitter_ms for r in runs}) == len(runs), "the jitter is drawn per fire"

    # a list of schedules: the union of their times, once per instant
    def on_list(t: int) -> bool:
        second = t // SECOND % 60
        return second % 2 == 0 or second % 3 == 0

    handed = [r.scheduled_at for r in scheduled(svc, "list")]
    handed += [t for d in drops(svc, "list") for t in drop_times(d, SECOND, on_list)]
    assert len(set(handed)) == len(handed), sorted(handed)
    handed.sort()
    assert handed == [t for t in range(handed[0], handed[-1] + 1, SECOND) if on_list(t)]


# -- manual triggers at the limit, queued runs across restarts ------------------------------------


def gated_job(gates) -> str:
    """A max_concurrency 1 job whose run waits until the file named after it appears."""
    return job_yaml(
        "gated",
        f"while [ ! -e {gates}/$PETIT_RUN_ID ]; do sleep 0.05; done",
        max_concurrency=1,
    )


def release(gates, run_id: str) -> None:
    (gates / run_id).touch()


def trigger(svc: Service, job_id: str, queue: bool = False) -> dict:
    """The control socket's trigger (with `queue`, as a client may send it): its result."""
    return call_socket(svc.socket, "trigger", {"job_id": job_id, "queue": queue})


def worker(svc: Service) -> dict:
    """The scheduler child as the supervisor reports it (pid, state, restarts)."""
    children = call_socket(svc.socket, "status")["children"]
    return next(child for child in children if child["name"] == "scheduler")


def lineup(svc: Service) -> tuple[list[str], list[str]]:
    """(running run ids, queued run ids, oldest first) as `ctl status` reports them."""
    try:
        scheduler = call_socket(svc.socket, "status")["scheduler"] or {}
    except PetitError:  # the worker is being restarted
        scheduler = {}
    return (
        [r["run_id"] for r in scheduler.get("running_runs", [])],
        [r["run_id"] for r in scheduler.get("queued_runs", [])],
    )


def test_manual_queue_and_queued_runs_across_restarts(service, tmp_path):
    gates = tmp_path / "gates"
    gates.mkdir()
    svc = service({"gated": gated_job(gates)}, shutdown_timeout=0.5)
    assert trigger(svc, "gated")["status"] in ("pending", "running")
    svc.wait_task_pid("gated-1")

    # at the limit: refused (429) without queue; queued, in order, with it
    refused = svc.ctl("trigger", "gated")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["code"] == "TOO_MANY_REQUESTS"
    assert "max_concurrency 1" in refused.stderr
    queued = [trigger(svc, "gated", queue=True) for _ in range(4)]
    assert [(q["run_id"], q["status"]) for q in queued] == [
        (f"gated-{n}", "queued") for n in (2, 3, 4, 5)
    ]
    assert queued[0]["message"] == "job 'gated' triggered (queued: the job is at its limit)"
    # a queued run cancelled answers at once and never starts
    assert call_socket(svc.socket, "cancel", {"run_id": "gated-3"})["status"] == "cancelled"
    assert lineup(svc) == (["gated-1"], ["gated-2", "gated-4", "gated-5"])
    human = run_petit("ctl", "status", "--socket", svc.socket).stdout
    assert "queued  gated-2 (manual)" in human and "queued  gated-5 (manual)" in human

    # a clean stop: the running run is interrupted, the queued ones stay queued
    assert svc.stop() == 0
    assert [r.status.value for r in svc.runs("gated")] == [
        "interrupted",
        "queued",
        "cancelled",
        "queued",
        "queued",
    ]
    again = service(jobs_dir=svc.jobs_dir, db=svc.db, socket=svc.socket, shutdown_timeout=0.5)
    wait_until(
        lambda: lineup(again) == (["gated-2"], ["gated-4", "gated-5"]),
        timeout=5,
        message="the oldest queued run to start after the restart",
    )

    # the worker SIGKILLed: its running run is interrupted, its process group killed; the queue
    # survives and the next one starts
    pgid = again.wait_task_pid("gated-2")
    os.kill(worker(again)["pid"], signal.SIGKILL)
    wait_until(
        lambda: lineup(again) == (["gated-4"], ["gated-5"]),
        timeout=15,
        message="the next queued run to start after the worker's restart",
    )
    restarted = worker(again)
    assert restarted["restarts"] == 1 and restarted["state"] == "running", restarted
    again.remember(restarted["pid"])
    assert again.run("gated-2").status.value == "interrupted"
    wait_until(lambda: not group_members(pgid), timeout=5, message="gated-2's processes gone")
    release(gates, "gated-4")
    again.wait_run("gated-4", "completed")
    again.wait_task_pid("gated-5")
    release(gates, "gated-5")
    again.wait_run("gated-5", "completed")
    runs = again.runs("gated")
    assert [r.status.value for r in runs] == [
        "interrupted",
        "interrupted",
        "cancelled",
        "completed",
        "completed",
    ]
    assert runs[2].started_at is None and runs[4].started_at >= runs[3].ended_at
    assert not overlapping([r for r in runs if r.started_at is not None])


# -- a whole run's timeout ------------------------------------------------------------------------

TIMED = """id: timed
name: A run with a timeout
timeout: "1s"
tasks:
  - id: slow
    type: shell
    script: |
      sleep 30 &
      wait
  - id: after
    depends_on: [slow]
    command: echo
    args: ["never"]
"""


def test_run_timeout_fails_the_run_and_kills_its_tasks(service):
    svc = service({"timed": TIMED})
    run_id = trigger(svc, "timed")["run_id"]
    pgid = svc.wait_task_pid(run_id, "slow")
    wait_until(lambda: len(group_members(pgid)) >= 2, timeout=5, message="shell and sleep up")
    run = svc.wait_run(run_id, "failed", "completed", "cancelled", timeout=5)
    assert (run.status.value, run.error) == ("failed", "run timed out after 1.0s")
    assert 1000 <= run.ended_at - run.started_at < 3000, run.duration_ms
    assert run.task("slow").status.value == "failed"
    assert run.task("after").status.value == "skipped"
    assert not group_members(pgid), "the timed-out task's processes outlived the run"
    assert not processes_of(svc, {run_id})


# -- what validate and list say -------------------------------------------------------------------

EVERY_MINUTE = "* * * * *"
INVALID = [  # (job id and file name, keys besides id/name/tasks, the one error it must yield)
    (
        "all_without_window",
        {"schedule": EVERY_MINUTE, "catchup": "all"},
        "catchup_window: required with catchup all (how far back to run missed fires), like '2h'",
    ),
    (
        "bad_catchup",
        {"schedule": EVERY_MINUTE, "catchup": "sometimes"},
        "catchup: 'sometimes' is not valid: expected one of none, latest, all",
    ),
    (
        "bad_overlap",
        {"schedule": EVERY_MINUTE, "overlap": "wait"},
        "overlap: 'wait' is not valid: expected one of skip, queue, replace, allow",
    ),
    (
        "catchup_unscheduled",
        {"catchup": "latest"},
        "catchup: latest only applies to a job with a schedule",
    ),
    ("jitter_unscheduled", {"jitter": "5s"}, "jitter: only applies to a job with a schedule"),
    (
        "window_without_catchup",
        {"schedule": EVERY_MINUTE, "catchup_window": "1h"},
        "catchup_window: only applies with catchup latest or all",
    ),
    (
        "max_queued_zero",
        {"schedule": EVERY_MINUTE, "overlap": "queue", "max_queued": 0},
        "max_queued: expected an integer >= 1 (at most 10000), got 0",
    ),
    (
        "every_in_a_list",
        {"schedule": ["@every 5s", EVERY_MINUTE]},
        "schedule[0]: '@every' cannot be combined with other schedules: give it alone, or write "
        "the interval as a cron expression",
    ),
    (
        "empty_list",
        {"schedule": []},
        "schedule: the list is empty: expected a cron string, a map {cron: '...', timezone: "
        "'Area/City'} or a list of them",
    ),
]
TASKS = [{"id": "t", "command": "echo"}]


def write_jobs(directory, jobs: dict[str, dict]) -> dict[str, str]:
    """One file per job, named after it; job id -> its path."""
    directory.mkdir()
    paths = {}
    for job_id, keys in jobs.items():
        data = {"id": job_id, "name": job_id, **keys, "tasks": TASKS}
        paths[job_id] = write_job(directory, f"{job_id}.yaml", yaml.safe_dump(data))
    return paths


def test_validate_names_file_job_and_field_and_list_shows_the_policies(tmp_path):
    bad = tmp_path / "bad"
    paths = write_jobs(bad, {job_id: keys for job_id, keys, _ in INVALID})
    result = run_petit("validate", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert lines[-1] == f"{len(INVALID)} error(s) in {bad}"
    assert sorted(lines[:-1]) == sorted(
        f"{paths[job_id]}: job '{job_id}': {error}" for job_id, _, error in INVALID
    )

    good = tmp_path / "good"
    paths = write_jobs(
        good,
        {
            "policies": {
                "schedule": [EVERY_MINUTE, {"cron": "30 7 * * *", "timezone": "Europe/Paris"}],
                "catchup": "all",
                "catchup_window": "2h",
                "overlap": "queue",
                "max_concurrency": 2,
                "max_queued": 3,
                "jitter": "30s",
                "timeout": "1h",
            },
            "plain": {"schedule": EVERY_MINUTE},
        },
    )
    policies = (
        "catchup all within 2h, overlap queue, max_queued 3, max_concurrency 2, jitter 30s, "
        "timeout 1h"
    )
    validated = run_petit("validate", str(good))
    assert validated.returncode == 0, validated.stderr
    [line] = [line for line in validated.stdout.splitlines() if " policies:" in line]
    assert line.startswith("ok  policies: 1 task(s), ") and f", {policies}  (" in line, line
    [plain] = [line for line in validated.stdout.splitlines() if " plain:" in line]
    assert "catchup" not in plain and "overlap" not in plain, plain
    listed = run_petit("list", str(good))
    assert listed.returncode == 0, listed.stderr
    assert f"  policies: {policies}\n" in listed.stdout
    assert listed.stdout.count("policies:") == 1, listed.stdout  # defaults are not shown
