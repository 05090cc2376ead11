"""The Store on a real TinyDB file in tmp_path: run ids, sharded history, retention, job docs,
corrupt files, and crash safety against real writer processes killed at random moments."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import ROOT, wait_until

from petit.core.model import Run, RunStatus, TaskStatus, Trigger
from petit.errors import StorageError
from petit.storage.store import RUNS_PER_CHUNK, Store, split_run_id


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "petit.db")


def finish(store: Store, run, status: RunStatus = RunStatus.COMPLETED):
    run.status = status
    run.started_at = run.started_at or run.created_at
    run.ended_at = run.started_at + 5
    run.duration_ms = 5
    for task in run.tasks:
        task.status = TaskStatus.COMPLETED if status is RunStatus.COMPLETED else TaskStatus.FAILED
    store.save_runs([run])
    return run


def chunk_files(store: Store, job_id: str) -> list[str]:
    folder = os.path.join(store.data_dir, "runs", job_id)
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def test_a_followup_recorded_while_a_run_is_saved_is_not_overwritten(db, monkeypatch):
    # A hook's outcome is set on the live run, then written by record_followups from the hook's
    # thread; meanwhile the recorder retries the run's end write. The hook thread writes at the
    # first moment the store lets it: right after the snapshot unless save_runs holds the lock.
    store = Store(db)
    run = finish(store, store.create_run("alpha", ["a"], Trigger.MANUAL))
    snapshot, writers = Run.to_dict, []

    def racing_to_dict(live: Run) -> dict:
        doc = snapshot(live)
        if not writers:
            live.hooks = [{"hook": "on_finish", "status": "completed", "exit_code": 0}]
            writer = threading.Thread(
                target=store.record_followups, args=(live,), kwargs={"hooks": live.hooks}
            )
            writer.start()
            writers.append(writer)
            if store.lock._depth == 0:  # nothing keeps it from writing now
                writer.join(timeout=10)
        return doc

    monkeypatch.setattr(Run, "to_dict", racing_to_dict)
    store.save_runs([run])
    writers[0].join(timeout=10)
    assert not writers[0].is_alive()
    monkeypatch.undo()
    assert store.get_run(run.id).hooks == [
        {"hook": "on_finish", "status": "completed", "exit_code": 0}
    ]


# -- run ids and reading back -------------------------------------------------------------------


def test_create_run_allocates_increasing_ids_per_job(db):
    store = Store(db)
    first = store.create_run("alpha", ["a", "b"], Trigger.MANUAL)
    second = store.create_run("alpha", ["a", "b"], Trigger.SCHEDULE, scheduled_at=1234)
    other = store.create_run("beta", ["x"], Trigger.MANUAL)
    assert [first.id, second.id, other.id] == ["alpha-1", "alpha-2", "beta-1"]
    assert (first.seq, second.seq) == (1, 2)
    reread = Store(db).get_run("alpha-2")  # durable on return: a fresh Store reads it from disk
    assert (reread.status, reread.trigger, reread.scheduled_at) == (
        RunStatus.PENDING,
        Trigger.SCHEDULE,
        1234,
    )
    assert [(t.task_id, t.status, t.attempts) for t in reread.tasks] == [
        ("a", TaskStatus.PENDING, 0),
        ("b", TaskStatus.PENDING, 0),
    ]
    assert reread.created_at > 0
    assert Store(db).create_run("alpha", ["a"], Trigger.MANUAL).id == "alpha-3"


def test_two_stores_on_one_file_see_each_others_writes(db):
    one, two = Store(db), Store(db)
    run = one.create_run("job", ["t"], Trigger.MANUAL)
    assert two.get_run(run.id) is not None
    assert two.create_run("job", ["t"], Trigger.MANUAL).id == "job-2"  # no stale counter
    finish(two, two.get_run("job-2"))
    assert one.get_run("job-2").status is RunStatus.COMPLETED
    assert one.create_run("job", ["t"], Trigger.MANUAL).id == "job-3"


def test_history_across_several_chunks(db):
    store = Store(db, fsync=False)
    total = 2 * RUNS_PER_CHUNK + 50
    for _ in range(total):
        store.create_run("many", ["t"], Trigger.MANUAL)
    assert chunk_files(store, "many") == ["00000000.json", "00000001.json", "00000002.json"]
    fresh = Store(db)
    for seq in (1, RUNS_PER_CHUNK - 1, RUNS_PER_CHUNK, RUNS_PER_CHUNK + 1, total):
        assert fresh.get_run(f"many-{seq}").seq == seq
    assert fresh.get_run(f"many-{total + 1}") is None
    newest = fresh.list_runs("many", 120)
    assert [r.seq for r in newest] == list(range(total, total - 120, -1))  # crosses a chunk edge
    assert [r.seq for r in fresh.list_runs("many", 10_000)] == list(range(total, 0, -1))
    assert [r.seq for r in fresh.list_runs("many", 1)] == [total]
    assert fresh.list_runs("many", 0) == []
    assert fresh.list_runs("nobody", 5) == []
    assert len(fresh.active_runs()) == total


def test_pages_of_older_runs_read_no_file_of_newer_ones(db):
    store = Store(db, fsync=False)
    total = 2 * RUNS_PER_CHUNK + 50
    for _ in range(total):
        store.create_run("many", ["t"], Trigger.MANUAL)
    page = store.list_runs("many", 30, before_seq=RUNS_PER_CHUNK + 10)
    assert [r.seq for r in page] == list(range(RUNS_PER_CHUNK + 9, RUNS_PER_CHUNK - 21, -1))
    assert [r.seq for r in store.list_runs("many", 5, before_seq=3)] == [2, 1]
    assert store.list_runs("many", 5, before_seq=1) == []
    assert len(store.list_runs("many", 1000, before_seq=total + 500)) == total
    # the newest file torn: a page below it never opens it, the first page names it
    newest = os.path.join(store.data_dir, "runs", "many", "00000002.json")
    with open(newest, "w") as handle:
        handle.write("{torn")
    assert len(Store(db).list_runs("many", 500, before_seq=2 * RUNS_PER_CHUNK)) == 2 * 100 - 1
    with pytest.raises(StorageError, match=newest):
        Store(db).list_runs("many", 5)


def _stored_task(store: Store, run) -> tuple[str, dict, dict]:
    """The history file of a run, its parsed content and the run's first task in it."""
    path = store._chunk_path(run.job_id, run.seq)
    with open(path) as handle:
        data = json.load(handle)
    (doc,) = [d for table in data.values() for d in table.values() if d.get("id") == run.id]
    return path, data, doc["tasks"][0]


def test_attempt_history_round_trips_and_old_records_read_without_it(db):
    store = Store(db)
    run = store.create_run("job", ["t"], Trigger.MANUAL)
    run.start(run.created_at)
    task = run.tasks[0]
    task.start_attempt(run.created_at)
    task.wait_for_retry(
        SimpleNamespace(exit_code=1, error="exit 1", timed_out=False, ended_at=9), 9, 0
    )
    task.start_attempt(run.created_at + 50)
    store.save_runs([run])
    assert Store(db).get_run(run.id).tasks[0].attempt_history == task.attempt_history
    path, data, stored = _stored_task(store, run)
    del stored["attempt_history"]  # as an older petit wrote it
    with open(path, "w") as handle:
        json.dump(data, handle)
    (entry,) = Store(db).get_run(run.id).tasks[0].attempt_history
    assert (entry["attempt"], entry["started_at"], entry["ended_at"]) == (2, task.started_at, None)
    stored["attempt_history"] = "garbage"
    with open(path, "w") as handle:
        json.dump(data, handle)
    with pytest.raises(StorageError, match="attempt_history"):
        Store(db).get_run(run.id)


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "nope",
        "job-",
        "-1",
        "job-abc",
        "job-1x",
        "../etc-1",
        "..-1",
        "job/x-1",
        "job-01",
        "job-0",
        "job-1234567890123",
        "a" * 129 + "-1",
        "job-999",
    ],
)
def test_malformed_or_unknown_run_ids_return_none(db, run_id):
    store = Store(db)
    store.create_run("job", ["t"], Trigger.MANUAL)
    assert store.get_run(run_id) is None


def test_split_run_id_takes_the_last_dash():
    assert split_run_id("my-job-12") == ("my-job", 12)
    assert split_run_id("job-012") is None
    assert split_run_id(None) is None


# -- retention ----------------------------------------------------------------------------------


def write_log(store: Store, run_id: str, line: str) -> None:
    writer = store.logs.writer(run_id, "t", 1, 1024)
    writer.append_lines("stdout", [line])
    writer.close()


def test_retention_removes_old_runs_and_their_logs_but_never_an_active_run(db):
    store = Store(db, keep_runs=3)
    long_running = store.create_run("job", ["t"], Trigger.MANUAL)  # job-1 stays active throughout
    write_log(store, long_running.id, "still going")
    for _ in range(6):  # job-2 .. job-7
        run = store.create_run("job", ["t"], Trigger.MANUAL)
        write_log(store, run.id, run.id)
        finish(store, run)
    assert [r.id for r in store.list_runs("job", 100)] == ["job-7", "job-6", "job-5", "job-1"]
    for gone in ("job-2", "job-3", "job-4"):
        assert store.get_run(gone) is None
        assert store.logs.read(gone, "t") is None
        assert not os.path.exists(os.path.join(store.logs.root, gone))
    assert store.logs.read("job-5", "t")["stdout"] == "job-5\n"
    assert store.logs.read("job-1", "t")["stdout"] == "still going\n"
    assert [r.id for r in store.active_runs()] == ["job-1"]


def test_retention_across_chunks_deletes_whole_old_files(db):
    total = 2 * RUNS_PER_CHUNK + 50
    writer = Store(db, fsync=False)
    runs = [writer.create_run("many", ["t"], Trigger.MANUAL) for _ in range(total)]
    for run in runs:
        run.status = RunStatus.COMPLETED
    Store(db, keep_runs=50, fsync=False).save_runs(runs)
    store = Store(db)
    assert chunk_files(store, "many") == ["00000002.json"]
    assert [r.seq for r in store.list_runs("many", 1000)] == list(range(total, total - 50, -1))
    assert store.active_runs() == []


# -- job docs and scheduler state ---------------------------------------------------------------


def test_paused_flag_round_trip(db):
    assert Store(db).is_paused() is False
    Store(db).set_paused(True)
    assert Store(db).is_paused() is True
    Store(db).set_paused(False)
    assert Store(db).is_paused() is False


def test_sync_jobs_keeps_run_counters_and_history(db):
    store = Store(db)
    store.create_run("a", ["t"], Trigger.MANUAL)
    finish(store, store.create_run("a", ["t"], Trigger.MANUAL))
    store.sync_jobs({"a": {"name": "A", "task_count": 1}, "b": {"name": "B", "task_count": 2}})
    summaries = Store(db).job_summaries()
    assert summaries["a"]["name"] == "A" and summaries["a"]["defined"] is True
    assert summaries["a"]["next_seq"] == 3 and summaries["a"]["active"] == ["a-1"]
    assert summaries["a"]["last_run_id"] == "a-2" and summaries["a"]["last_status"] == "completed"
    assert summaries["b"]["next_seq"] == 1 and summaries["b"]["task_count"] == 2
    # a definition can never reset what the store counts itself
    store.sync_jobs({"a": {"name": "A2", "next_seq": 1, "active": []}})
    summaries = store.job_summaries()
    a = summaries["a"]
    assert (a["name"], a["next_seq"], a["active"]) == ("A2", 3, ["a-1"])
    assert summaries["b"]["defined"] is False  # left the folder: kept, marked undefined
    assert store.create_run("a", ["t"], Trigger.MANUAL).id == "a-3"
    assert store.get_run("a-2").status is RunStatus.COMPLETED


def test_a_failed_write_leaves_no_phantom_state_in_memory(db):
    store = Store(db)
    store.sync_jobs({"a": {"name": "A"}})
    with pytest.raises(TypeError):  # not JSON: the write fails after TinyDB changed its data
        store.sync_jobs({"a": {"name": {"a", "set"}}})
    assert store.job_summaries()["a"]["name"] == "A"
    assert Store(db).job_summaries()["a"]["name"] == "A"


def test_active_runs_and_forget_active(db):
    store = Store(db)
    done = finish(store, store.create_run("job", ["t"], Trigger.MANUAL))
    pending = store.create_run("job", ["t"], Trigger.MANUAL)
    running = store.create_run("other", ["t"], Trigger.MANUAL)
    running.status = RunStatus.RUNNING
    store.save_runs([running])
    active = {r.id: r.status for r in Store(db).active_runs()}
    assert active == {pending.id: RunStatus.PENDING, running.id: RunStatus.RUNNING}
    assert done.id not in active
    store.forget_active(pending)
    assert [r.id for r in store.active_runs()] == [running.id]


# -- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"jobs": {"1": {"id": "x", "next',
        b"\x00\x01garbage",
        b'["a list"]',
        b'{"jobs": [1, 2]}',
        b'{"jobs": {"1": 7}}',
    ],
    ids=["torn-json", "binary", "not-a-map", "table-not-a-map", "doc-not-a-map"],
)
def test_corrupt_db_gives_storage_error_naming_the_file_and_is_not_overwritten(db, content):
    with open(db, "wb") as handle:
        handle.write(content)
    store = Store(db)
    for attempt in (
        store.check,
        store.is_paused,
        store.job_summaries,
        lambda: store.create_run("job", ["t"], Trigger.MANUAL),
        lambda: store.set_paused(True),
        lambda: store.sync_jobs({"job": {"name": "j"}}),
    ):
        with pytest.raises(StorageError) as caught:
            attempt()
        assert db in caught.value.message
    with open(db, "rb") as handle:
        assert handle.read() == content


def test_corrupt_history_file_names_that_file_and_is_kept(db):
    store = Store(db)
    run = store.create_run("job", ["t"], Trigger.MANUAL)
    chunk = os.path.join(store.data_dir, "runs", "job", "00000000.json")
    with open(chunk, "w") as handle:
        handle.write("{torn")
    for attempt in (
        lambda: Store(db).get_run(run.id),
        lambda: Store(db).save_runs([run]),
        lambda: Store(db).list_runs("job", 5),
    ):
        with pytest.raises(StorageError, match=chunk):
            attempt()
    with open(chunk) as handle:
        assert handle.read() == "{torn"


def test_check_removes_stale_temp_files_but_not_other_programs(db, tmp_path):
    store = Store(db)
    store.create_run("job", ["t"], Trigger.MANUAL)
    job_dir = os.path.join(store.data_dir, "runs", "job")
    first_write_dir = os.path.join(store.data_dir, "runs", "killed_on_first_write")
    os.makedirs(first_write_dir)
    stale = [
        os.path.join(str(tmp_path), ".tmp-petit.db-k1l2ed"),
        os.path.join(job_dir, ".tmp-00000000.json-abc123"),
        os.path.join(first_write_dir, ".tmp-00000000.json-zzz"),
    ]
    foreign = os.path.join(str(tmp_path), ".tmp-someone-elses-file")
    for path in [*stale, foreign]:
        with open(path, "w") as handle:
            handle.write("{half")
    store.check()
    assert [p for p in stale if os.path.exists(p)] == []
    assert os.path.exists(foreign)  # the db may live in a shared folder such as /tmp
    assert store.get_run("job-1") is not None


def test_check_names_a_missing_directory(tmp_path):
    path = str(tmp_path / "missing" / "petit.db")
    with pytest.raises(StorageError, match="does not exist"):
        Store(path).check()


# -- crash safety with real processes -----------------------------------------------------------

WRITER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from petit.core.model import Run, RunStatus, TaskStatus, Trigger
from petit.storage.store import Store


def say(line):   # one write(2) per line: print() may split it, and a kill would tear it
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


store = Store(sys.argv[2], keep_runs=1_000_000)
say("ready")
while True:
    run = store.create_run("crash", ["a", "b"], Trigger.MANUAL)
    say(f"created {run.id}")
    run.status = RunStatus.COMPLETED
    for task in run.tasks:
        task.status = TaskStatus.COMPLETED
    store.save_runs([run])
    say(f"saved {run.id}")
"""

READER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from petit.storage.store import Store

db, duration = sys.argv[2], float(sys.argv[3])
history = os.path.join(db + ".d", "runs", "crash")
store = Store(db)
reads = failures = 0
deadline = time.monotonic() + duration
while time.monotonic() < deadline:
    try:
        runs = store.list_runs("crash", 3)                    # through the Store, shared lock
        if not runs or store.get_run(runs[0].id) is None:
            raise ValueError("no runs visible")
        with open(db, "rb") as handle:                        # and raw, with no lock at all
            if not json.loads(handle.read())["jobs"]:
                raise ValueError("empty jobs table")
        newest = max(n for n in os.listdir(history) if not n.startswith("."))
        with open(os.path.join(history, newest), "rb") as handle:
            if not json.loads(handle.read())["runs"]:
                raise ValueError("empty history file")
        reads += 1
    except Exception as exc:
        failures += 1
        print("failure:", repr(exc), file=sys.stderr, flush=True)
print(reads, failures, flush=True)
"""


def start_writer(db: str) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, ROOT, db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "ready\n"
    return writer


def test_writer_killed_at_random_moments_leaves_a_loadable_file_with_every_acknowledged_run(db):
    rng = random.Random(20240611)
    created: list[str] = []
    saved: list[str] = []
    for _ in range(15):
        writer = start_writer(db)
        try:
            time.sleep(
                rng.uniform(0, 0.15)
            )  # fault injection: the kill moment, not a wait for state
        finally:
            writer.send_signal(signal.SIGKILL)
            out, _ = writer.communicate(timeout=10)
        for line in out.splitlines():
            word, run_id = line.split()
            (created if word == "created" else saved).append(run_id)
        store = Store(db)
        missing = [run_id for run_id in created if store.get_run(run_id) is None]
        assert missing == []
        assert all(store.get_run(run_id).status is RunStatus.COMPLETED for run_id in saved)
        store.list_runs("crash", 10)
        store.active_runs()
    assert len(created) > 15, "the writer barely ran: the test proved nothing"
    assert len(set(created)) == len(created)  # ids were never handed out twice
    store = Store(db)
    store.check()
    leftovers = [
        name
        for folder, _, names in os.walk(os.path.dirname(db))
        for name in names
        if name.startswith(".tmp-")
    ]
    assert leftovers == []
    assert writer.poll() is not None


def test_reader_beside_a_writer_never_sees_a_torn_or_empty_file(db):
    writer = start_writer(db)
    lines: list[str] = []
    drain = threading.Thread(
        target=lambda: lines.extend(writer.stdout), daemon=True
    )  # never block it
    drain.start()
    try:
        wait_until(
            lambda: any(line.startswith("saved ") for line in lines),
            timeout=10,
            message="a saved run",
        )
        before = len(lines)
        reader = subprocess.run(
            [sys.executable, "-c", READER, ROOT, db, "2"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        during = len(lines) - before
    finally:
        writer.kill()
        writer.communicate(timeout=10)
        drain.join(timeout=10)
    assert reader.returncode == 0, reader.stderr
    reads, failures = map(int, reader.stdout.split())
    assert failures == 0, reader.stderr
    assert reads >= 50
    assert during >= 50, "the writer was not writing while the reader read"
    assert writer.poll() is not None


def test_a_run_killed_before_its_history_write_keeps_its_trigger(db):
    """A kill between the claim in the main file and the history write leaves only the claim:
    recovery must see a scheduled fire as scheduled, with its fire time, not as a manual run."""
    store = Store(db)
    run = store.create_run("tick", ["t"], Trigger.SCHEDULE, scheduled_at=1_700_000_000_000)
    os.unlink(store._chunk_path("tick", run.seq))  # as if the kill came before this write
    (found,) = Store(db).active_runs()
    assert (found.id, found.status, found.trigger) == (run.id, RunStatus.PENDING, Trigger.SCHEDULE)
    assert found.scheduled_at == 1_700_000_000_000


def test_a_record_from_before_runner_handles_reads_back_and_is_recovered(db, marker):
    """Records written before TaskRun.handle carry `pid` / `pid_created`: they must still read,
    and recovery must still kill the process group they name."""
    import json

    import psutil
    from conftest import MARK, assert_none_left

    from petit.service.recovery import recover

    sleeper = subprocess.Popen(
        ["sleep", "30"], start_new_session=True, env={**os.environ, MARK: marker}
    )
    try:
        store = Store(db)
        run = store.create_run("old", ["t"], Trigger.MANUAL)
        run.status, run.started_at = RunStatus.RUNNING, run.created_at
        run.tasks[0].status, run.tasks[0].attempts = TaskStatus.RUNNING, 1
        store.save_runs([run])
        path = store._chunk_path("old", run.seq)
        with open(path) as handle:
            data = json.load(handle)
        (doc,) = [d for table in data.values() for d in table.values() if d.get("id") == run.id]
        task = doc["tasks"][0]
        del task["handle"]
        task["pid"], task["pid_created"] = sleeper.pid, psutil.Process(sleeper.pid).create_time()
        with open(path, "w") as handle:
            json.dump(data, handle)

        (found,) = Store(db).active_runs()
        assert found.task("t").handle == {
            "runner": "local",
            "pid": sleeper.pid,
            "created": task["pid_created"],
        }
        assert recover(Store(db)) == 1
        sleeper.wait(timeout=5)  # killed by recovery: its group got SIGKILL
        assert sleeper.returncode == -signal.SIGKILL
        assert_none_left(marker)
        stored = Store(db).get_run(run.id)
        assert stored.status is RunStatus.INTERRUPTED
        state = stored.task("t")
        assert (state.status, state.error, state.handle) == (
            TaskStatus.FAILED,
            "run was interrupted",
            None,
        )
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_record_followups_changes_only_the_lists_it_is_given(db):
    store = Store(db, keep_runs=1)
    run = finish(store, store.create_run("job", ["t"], Trigger.MANUAL), RunStatus.FAILED)
    before = Store(db).get_run(run.id).to_dict()
    hooks = [{"hook": "on_failure", "status": "completed", "exit_code": 0}]
    store.record_followups(run, hooks=hooks)
    store.record_followups(run, notifications=[{"url": "http://h/x", "delivered": True}])
    after = Store(db).get_run(run.id).to_dict()
    assert after["hooks"] == hooks and after["notifications"][0]["delivered"] is True
    assert {k: v for k, v in after.items() if k not in ("hooks", "notifications")} == {
        k: v for k, v in before.items() if k not in ("hooks", "notifications")
    }
    finish(store, store.create_run("job", ["t"], Trigger.MANUAL))  # retention removes job-1
    store.record_followups(run, hooks=hooks)  # a removed run stays removed
    assert store.get_run(run.id) is None
