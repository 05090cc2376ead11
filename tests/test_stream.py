"""The live stream end to end, through a real `bin/petit run`: /api/events read by a real SSE
client loop, resumes across a restart of the API process and of the scheduler, filters, bad
input, a client that never reads, and `watch` over the control socket with no API at all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import psutil
import pytest
from api_client import request
from processes import PETIT, run_petit, wait_until
from sse_client import SseStream

from petit.ipc.control import Watch

DRIP = """id: drip
name: drip job
tasks:
  - id: talk
    type: shell
    script: |
      for i in $(seq 1 30); do echo "line $i"; sleep 0.05; done
  - id: flaky
    depends_on: [talk]
    type: shell
    retry:
      max_attempts: 1
      delay: 0s
    script: |
      if [ "$PETIT_ATTEMPT" = 1 ]; then echo "first attempt fails" >&2; exit 1; fi
      echo recovered
"""
QUIET = """id: quiet
name: quiet job
tasks:
  - id: t
    type: shell
    script: echo quiet
"""


def run_ended(run_id: str):
    return lambda e: e.event == "run" and e.json()["id"] == run_id and e.json()["ended_at"]


def seq(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


def wait_api_restarted(svc, restarts: int) -> None:
    def back() -> bool:
        api = svc.child("api")
        return api["state"] == "running" and api["restarts"] == restarts

    wait_until(back, timeout=20, message="the API process to be restarted")


def test_a_client_that_reconnects_after_the_api_process_died_misses_nothing(service):
    svc = service({"drip": DRIP, "quiet": QUIET}, api=True)
    first = SseStream(svc.port, "/api/events")
    assert first.status == 200 and first.headers["content-type"].startswith("text/event-stream")
    run_id = svc.trigger("drip")
    seen = first.until(lambda e: e.event == "log" and e.json()["run_id"] == run_id)
    os.kill(svc.child("api")["pid"], signal.SIGKILL)  # mid-run, mid-stream
    with pytest.raises((EOFError, ConnectionError)):
        while True:
            event = first.next(timeout=15)
            if event.event is not None:
                seen.append(event)
    wait_api_restarted(svc, 1)
    again = SseStream(svc.port, "/api/events", headers={"Last-Event-ID": first.last_id})
    seen += again.until(run_ended(run_id), timeout=30)
    assert "reset" not in [e.event for e in seen]

    epoch = seen[0].id.rpartition("-")[0]
    replay = SseStream(svc.port, f"/api/events?last_event_id={epoch}-0")
    whole = replay.until(lambda e: e.id == seen[-1].id)
    # the union of what the client saw is the stream itself: every event, once, in order
    assert [e.id for e in seen] == [e.id for e in whole]
    assert [seq(e.id) for e in whole] == list(range(1, len(whole) + 1))
    ours = [e.json() for e in whole if e.event in ("run", "task", "log")]
    assert [d["status"] for d in ours if "task_count" in d] == ["pending", "running", "completed"]
    talk = [
        line for d in ours if d.get("task_id") == "talk" and "lines" in d for line in d["lines"]
    ]
    assert talk == [f"line {n}" for n in range(1, 31)]
    flaky = [
        (d["status"], d["attempts"])
        for d in ours
        if d.get("task_id") == "flaky" and "lines" not in d
    ]
    assert flaky == [("running", 1), ("pending", 1), ("running", 2), ("completed", 2)]
    assert {"child": "api", "exit_code": -9, "restarts": 1} in [
        e.json() for e in whole if e.event == "child"
    ]
    for stream in (again, replay):
        stream.close()


def test_filters_resets_and_bad_input(service):
    svc = service({"drip": DRIP, "quiet": QUIET}, api=True)
    for path, status in [
        ("/api/events?job_id=nope", 404),
        ("/api/events?run_id=quiet-99", 404),
        ("/api/events?run_id=../../etc", 404),
        ("/api/events?event=run&event=logs", 400),
    ]:
        answer = request(svc.port, "GET", path)
        assert answer.status == status, path
    assert "'logs'" in answer.json()["error"]
    quiet_only = SseStream(svc.port, "/api/events?job_id=quiet")
    everything = SseStream(svc.port, "/api/events")
    runs_only = SseStream(svc.port, "/api/events?event=run&event=scheduler")
    drip_run = svc.trigger("drip")
    quiet_run = svc.trigger("quiet")
    everything.until(run_ended(drip_run), timeout=30)
    got = quiet_only.until(run_ended(quiet_run))
    named = runs_only.until(run_ended(quiet_run))
    assert {e.event for e in named} == {"run"}  # no task or log event came before the end
    assert [e.json()["status"] for e in named if e.json()["id"] == quiet_run] == [
        "pending",
        "running",
        "completed",
    ]
    assert {e.json().get("job_id") for e in got if e.event != "log"} == {"quiet"}
    assert {e.json()["run_id"] for e in got if e.event == "log"} == {quiet_run}
    by_run = SseStream(svc.port, f"/api/events?run_id={quiet_run}&last_event_id={got[0].id}")
    assert by_run.until(run_ended(quiet_run))[-1].json()["status"] == "completed"

    malformed = SseStream(svc.port, "/api/events", headers={"Last-Event-ID": "not-an-id"})
    assert malformed.status == 200 and malformed.next().event == "reset"

    svc.call("pause")
    assert everything.until(lambda e: e.event == "scheduler")[-1].json() == {"state": "paused"}
    old = everything.last_id
    os.kill(svc.worker_pid(), signal.SIGKILL)  # a new epoch: what the worker had not sent is lost
    assert everything.until(lambda e: e.event in ("reset", "child"))[-1].event == "reset"
    stale = SseStream(svc.port, "/api/events", headers={"Last-Event-ID": old})
    assert stale.next().event == "reset"
    # an idle stream still hears from the server: a comment every 5 s (HEARTBEAT_SECS)
    beat = quiet_only.next(timeout=8)
    while beat.event is not None:
        beat = quiet_only.next(timeout=8)
    assert runs_only.until(lambda e: e.event != "run")[-1].event == "scheduler"
    for stream in (quiet_only, everything, by_run, malformed, stale, runs_only):
        stream.close()


CHATTY = """id: chatty
name: chatty job
tasks:
  - id: t
    type: shell
    script: |
      python3 -c 'import sys, time
      line = "x\u00e9" * 2000
      for i in range(6000):
          sys.stdout.write(line + "\\n")
          if i % 50 == 0: time.sleep(0.01)'
"""


def test_a_client_that_never_reads_is_dropped_and_others_are_not_slowed(service):
    svc = service({"chatty": CHATTY, "quiet": QUIET}, api=True)
    api = psutil.Process(svc.child("api")["pid"])
    before_fds = api.num_fds()
    for _ in range(1000):  # connect, take the first bytes, hang up
        with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as sock:
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    wait_until(lambda: api.num_fds() <= before_fds, timeout=10, message="descriptors released")

    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", svc.port))
    stuck.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    reader = SseStream(svc.port, "/api/events")
    watched: list[dict] = []  # a `petit watch` client that reads, at the same time

    def watch() -> None:
        for event in Watch(svc.socket, {"job_id": "chatty"}):
            watched.append(event)
            if event["event"] == "run" and event["data"]["ended_at"]:
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rss_before = api.memory_info().rss
    run_id = svc.trigger("chatty")
    got = reader.until(run_ended(run_id), timeout=60)

    def lines(events) -> int:  # every line, either streamed or counted as not streamed
        return sum(len(d["lines"]) + d.get("dropped", 0) for d in events)

    assert lines(e.json() for e in got if e.event == "log") == 6000
    assert "x\u00e9" * 2000 in next(e.json()["lines"] for e in got if e.event == "log")
    assert api.memory_info().rss - rss_before < 64 * 1024 * 1024
    watcher.join(timeout=30)
    assert lines(e["data"] for e in watched if e["event"] == "log") == 6000  # not dropped

    # a reader that comes back resumes through megabytes of replay, not dropped for the burst
    after = 0
    for index in range(len(got) - 1, 0, -1):
        after += len(got[index].data)
        if after > 3_000_000:  # most of the 4 MiB buffer
            break
    resumed = SseStream(svc.port, "/api/events", headers={"Last-Event-ID": got[index - 1].id})
    assert [e.id for e in resumed.until(run_ended(run_id))] == [e.id for e in got[index:]]
    stuck.settimeout(20)
    received = 0
    while chunk := stuck.recv(1 << 20):  # what the kernel held, then the server's hang-up
        received += len(chunk)
    streamed = sum(len(e.data) for e in got)
    assert received < streamed / 2, (received, streamed)
    assert "event stream client 127.0.0.1 dropped" in svc.log()
    for stream in (reader, resumed):
        stream.close()
    stuck.close()


def test_watch_streams_events_over_the_control_socket_without_an_api(service):
    svc = service({"drip": DRIP, "quiet": QUIET})  # --no-api
    events = iter(Watch(svc.socket, {"job_id": "quiet"}, tick_secs=0.2))
    assert next(events) is None  # nothing yet: a tick
    where = ("--db", svc.db, "--socket", svc.socket)
    typo = run_petit(*where, "watch", "nope")
    assert (typo.returncode, typo.stderr) == (1, "petit: job 'nope' not found\n")
    cli = subprocess.Popen(
        [sys.executable, PETIT, *where, "watch", "quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    svc.remember(cli.pid)
    assert cli.stderr.readline() == f"petit: watching {svc.socket} (Ctrl-C to stop)\n"
    run_id = svc.trigger("quiet")
    svc.trigger("drip")
    got = []
    for event in events:
        if event is not None:
            got.append(event)
            if event["event"] == "run" and event["data"]["status"] == "completed":
                break
    assert {e["data"].get("job_id") or e["data"]["run_id"].split("-")[0] for e in got} == {"quiet"}
    assert [e["data"]["status"] for e in got if e["event"] == "run"] == [
        "pending",
        "running",
        "completed",
    ]
    assert ["quiet"] == [line for e in got if e["event"] == "log" for line in e["data"]["lines"]]
    assert all(e["data"]["run_id"] == run_id for e in got if e["event"] != "run")
    printed = [cli.stdout.readline().split("  ", 1)[1].rstrip("\n") for _ in range(6)]
    assert printed[:4] == [
        f"run {run_id} pending (manual)",
        f"run {run_id} running",
        f"task {run_id} t running (attempt 1)",
        f"log {run_id} t quiet",
    ]
    assert printed[4].startswith(f"task {run_id} t completed, exit code 0, "), printed
    assert printed[5].startswith(f"run {run_id} completed in "), printed
    cli.send_signal(signal.SIGINT)
    assert cli.wait(timeout=10) == 0
    svc.stop()
    with pytest.raises(StopIteration):  # the service stopped: the stream ends
        while True:
            next(events)


GATED = """id: gated
name: gated job
tasks:
  - id: talk
    type: shell
    script: |
      echo before
      while [ ! -e "$GATE" ]; do sleep 0.05; done
      echo after >&2
  - id: flaky
    depends_on: [talk]
    type: shell
    retry:
      max_attempts: 1
      delay: 0s
    script: |
      echo "attempt $PETIT_ATTEMPT"
      [ "$PETIT_ATTEMPT" = 2 ]
"""


def test_logs_follow_prints_a_run_as_it_happens_until_it_ends_without_an_api(service, tmp_path):
    gate = tmp_path / "gate"
    svc = service({"gated": GATED}, env={"GATE": str(gate)})  # --no-api
    where = ("--db", svc.db, "--socket", svc.socket)
    run_id = svc.trigger("gated")
    follow = subprocess.Popen(
        [sys.executable, PETIT, *where, "logs", run_id, "-f"], stdout=subprocess.PIPE, text=True
    )
    svc.remember(follow.pid)
    assert follow.stdout.readline() == "[talk] before\n"  # printed while the task still runs
    assert svc.run(run_id).task("talk").status.value == "running"
    gate.touch()
    rest = follow.stdout.read()
    assert follow.wait(timeout=30) == 0
    assert rest.splitlines() == [
        "[talk] ! after",
        "[flaky] attempt 1",
        "[flaky] --- attempt 2 ---",
        "[flaky] attempt 2",
    ]
    assert svc.run(run_id).status.value == "completed"
    finished = run_petit(*where, "logs", run_id, "flaky", "--attempt", "1", "-f")
    assert (finished.returncode, finished.stdout) == (0, "attempt 1\n")  # over: at once

    gate.unlink()
    second = svc.trigger("gated")
    follow = subprocess.Popen(
        [sys.executable, PETIT, *where, "logs", second, "talk", "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    svc.remember(follow.pid)
    assert follow.stdout.readline() == "before\n"
    svc.stop(signal.SIGKILL)  # the supervisor dies, the run never ends: the follower says so
    assert follow.wait(timeout=30) == 1
    assert "the service stopped before the run ended" in follow.stderr.read()
