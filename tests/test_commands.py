"""The one command table: every verb has a handler side, a deadline, a renderer and an
implementation where it is handled; the waits derive from the deadlines by one rule; requests
are validated against the schema; and the queue client waits with the verb's deadline."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from petit.errors import BadRequest, NotFound, Unavailable
from petit.ipc.commands import (
    COMMANDS,
    FROM_API,
    FROM_CTL,
    FROM_SUPERVISOR,
    SCHEDULER,
    SUPERVISOR,
    Caller,
    error_reply,
    ok_reply,
    status_text,
    validate_request,
)
from petit.ipc.queues import QueueClient

SAMPLE_RESULTS = {
    "pause": {"message": "scheduler paused", "paused": True},
    "resume": {"message": "scheduler resumed", "paused": False},
    "shutdown": {"message": "shutting down"},
    "trigger": {"run_id": "hello-2", "job_id": "hello", "message": "job 'hello' triggered"},
    "cancel": {"run_id": "hello-1", "status": "cancelled"},
    "reload": {"jobs": 2, "added": ["b"], "removed": []},
    # the rest of a snapshot, and its text, are in test_metrics.py
    "metrics": {"jobs": [], "runs_total": [], "fires_dropped_total": [], "paused": False},
    "watch": {"message": "watching", "epoch": "mx1x1", "last_seq": 4},
}
STATUS = {
    "supervisor": {
        "pid": 10,
        "uptime_secs": 61.4,
        "db": "/d/petit.db",
        "jobs_dir": "/d/jobs",
        "socket": "/d/petit.db.sock",
        "shutting_down": False,
    },
    "children": [
        {"name": "scheduler", "pid": 11, "state": "running", "uptime_secs": 60.2, "restarts": 0},
        {"name": "api", "pid": None, "state": "backoff", "uptime_secs": None, "restarts": 2},
    ],
    "scheduler": {
        "state": "running",
        "jobs": 2,
        "running_runs": [{"run_id": "hello-3", "trigger": "manual"}],
        "queued_runs": [{"run_id": "hello-4", "trigger": "schedule"}],
        # paris_morning: 2026-12-02 08:30 in Paris, 07:30 UTC
        "next_fires": {"sec": 1_000_000 + 2500, "paris_morning": 1_796_196_600_000},
        "next_fire_timezones": {"sec": "UTC", "paris_morning": "Europe/Paris"},
    },
}


def test_every_verb_declares_its_side_deadline_and_renderer():
    assert list(COMMANDS) == [
        "status",
        "pause",
        "resume",
        "reload",
        "shutdown",
        "trigger",
        "cancel",
        "metrics",
        "watch",
    ]
    for verb, command in COMMANDS.items():
        assert command.verb == verb
        assert command.handled_by in (SUPERVISOR, SCHEDULER), verb
        assert command.deadline_secs > 0, verb
        result = STATUS if verb == "status" else SAMPLE_RESULTS[verb]
        assert isinstance(command.render(result), str) and command.render(result), verb


def test_each_side_implements_exactly_its_verbs():
    from petit.service.settings import Settings
    from petit.service.supervisor import Supervisor
    from petit.service.worker import ACTIONS

    own = Supervisor(Settings(jobs_dir="/j", db="/d", socket="/s")).own_commands
    assert set(own) == {v for v, c in COMMANDS.items() if c.handled_by == SUPERVISOR}
    # the worker answers every verb but the streams: the supervisor forwards status and shutdown
    # too; a cancel of a running run answers later, so the worker handles it apart from the
    # table of actions
    assert set(ACTIONS) | {"cancel"} == {v for v, c in COMMANDS.items() if not c.streams}


@pytest.mark.parametrize(
    "verb, supervisor, api, ctl",
    [
        ("status", 3.0, 6.0, 10.0),
        ("pause", 5.0, 6.0, 10.0),
        ("resume", 5.0, 6.0, 10.0),
        ("reload", 5.0, 6.0, 10.0),
        ("shutdown", 5.0, 6.0, 10.0),
        ("trigger", 5.0, 6.0, 10.0),
        ("cancel", 20.0, 21.0, 30.0),
        ("metrics", 3.0, 6.0, 10.0),
    ],
)
def test_each_caller_waits_by_one_rule_from_the_verbs_deadline(verb, supervisor, api, ctl):
    command = COMMANDS[verb]
    assert command.wait_secs(FROM_SUPERVISOR) == supervisor
    assert command.wait_secs(FROM_API) == api
    assert command.wait_secs(FROM_CTL) == ctl
    assert supervisor <= api <= ctl  # an outer caller never gives up before the inner one


@pytest.mark.parametrize(
    "verb, text",
    [
        ("pause", "scheduler paused"),
        ("resume", "scheduler resumed"),
        ("shutdown", "shutting down"),
        ("trigger", "triggered job hello: run hello-2"),
        ("cancel", "run hello-1 cancelled"),
        ("reload", "reloaded 2 job(s); added: b; removed: none"),
    ],
)
def test_ctl_prints_todays_lines(verb, text):
    assert COMMANDS[verb].render(SAMPLE_RESULTS[verb]) == text


def test_status_text_lists_children_runs_and_next_fires_in_words():
    assert status_text(STATUS, now_ms=1_000_000).splitlines()[:-1] == [
        "petit supervisor pid 10, up 1m 1s, db /d/petit.db",
        "jobs from /d/jobs",
        "  scheduler  running   pid 11  up 1m, 0 restart(s)",
        "  api        backoff   pid -  down, 2 restart(s)",
        "scheduler: running, 2 job(s), 1 run(s) in flight, 1 queued",
        "  running hello-3 (manual)",
        "  queued  hello-4 (schedule)",
        "  next sec in 2.5s (1970-01-01 00:16 UTC)",
    ]
    paris = 1_796_196_600_000
    now = paris - (14 * 3600 + 35 * 60 + 20) * 1000
    assert status_text(STATUS, now_ms=now).splitlines()[-1] == (
        "  next paris_morning in 14h 35m (2026-12-02 08:30 Europe/Paris)"
    )
    silent = {**STATUS, "scheduler": None}
    assert status_text(silent).splitlines()[-1] == "scheduler: not answering"


# -- validation --------------------------------------------------------------------------------


def test_arguments_are_checked_and_only_declared_ones_kept():
    message = validate_request({"id": "1", "cmd": "cancel", "args": {"run_id": "a-1", "x": 2}})
    assert message == {"id": "1", "cmd": "cancel", "args": {"run_id": "a-1"}}
    assert validate_request({"cmd": "status"})["args"] == {}
    assert validate_request({"cmd": "shutdown"})["args"] == {"timeout": None}
    assert validate_request({"cmd": "shutdown", "args": {"timeout": 2}})["args"] == {"timeout": 2.0}


@pytest.mark.parametrize(
    "message, error",
    [
        ("status", 'expected a JSON object like {"id": "1", "cmd": "status", "args": {}}'),
        (
            {"cmd": "frobnicate"},
            "unknown command 'frobnicate': expected one of "
            "status, pause, resume, reload, shutdown, trigger, cancel",
        ),
        ({"cmd": ["status"]}, "unknown command ['status']: expected one of"),
        ({"cmd": "trigger", "args": ["hello"]}, "'args' must be a JSON object"),
        ({"cmd": "trigger", "args": {}}, "command 'trigger' needs a string argument 'job_id'"),
        ({"cmd": "trigger", "args": {"job_id": ""}}, "needs a string argument 'job_id'"),
        ({"cmd": "cancel", "args": {"run_id": 5}}, "command 'cancel' needs a string argument"),
        ({"id": {"a": 1}, "cmd": "status"}, "'id' must be a string"),
        ({"cmd": "shutdown", "args": {"timeout": "soon"}}, "'timeout' must be a number of sec"),
        ({"cmd": "shutdown", "args": {"timeout": float("nan")}}, "from 0 to 86400"),
        ({"cmd": "shutdown", "args": {"timeout": -1}}, "from 0 to 86400"),
        ({"cmd": "shutdown", "args": {"timeout": True}}, "from 0 to 86400"),
    ],
    ids=[
        "not-object",
        "unknown",
        "unhashable",
        "args-list",
        "missing",
        "empty",
        "not-string",
        "id-object",
        "timeout-word",
        "timeout-nan",
        "timeout-negative",
        "timeout-bool",
    ],
)
def test_bad_requests_say_what_was_expected(message, error):
    with pytest.raises(BadRequest) as caught:
        validate_request(message)
    assert error in str(caught.value), str(caught.value)


# -- the queue client -----------------------------------------------------------------------------


QUICK = Caller("test", scale=0.0, floor_secs=0.2)


def test_the_queue_client_matches_replies_by_id_and_raises_what_they_carry():
    answered = []

    def send(message: dict) -> None:  # a peer answering on another thread, out of order
        answered.append(message)
        reply = (
            ok_reply(message["id"], {"run_id": "j-1"})
            if message["cmd"] == "trigger"
            else error_reply(message["id"], NotFound("run 'x' not found"))
        )
        threading.Timer(0.01, client.resolve, args=(reply,)).start()

    client = QueueClient(send, FROM_API)

    async def both():
        return await asyncio.gather(
            client.call("trigger", {"job_id": "j"}),
            client.call("cancel", {"run_id": "x"}),
            return_exceptions=True,
        )

    triggered, cancelled = asyncio.run(both())
    assert triggered == {"run_id": "j-1"}
    assert isinstance(cancelled, NotFound) and str(cancelled) == "run 'x' not found"
    assert all(message["deadline"] > 0 for message in answered)  # for the worker's expiry check


def test_the_queue_client_gives_up_at_the_deadline():
    client = QueueClient(lambda message: None, QUICK, peer="scheduler")
    with pytest.raises(Unavailable) as caught:
        asyncio.run(client.call("pause"))
    assert str(caught.value) == "the scheduler did not answer 'pause' within 0.2s"


def test_a_peer_that_exits_fails_its_waiting_callers_at_once():
    client = QueueClient(lambda message: None, FROM_CTL)

    async def ask():
        waiting = asyncio.ensure_future(client.call("reload"))
        await asyncio.sleep(0)  # the request is sent and awaited
        client.fail_all("the scheduler process exited")
        return await waiting

    with pytest.raises(Unavailable, match="the scheduler process exited"):
        asyncio.run(asyncio.wait_for(ask(), 5))


def test_ctl_usage_lists_every_verb_with_its_placeholders():
    from petit.cli.ctl import usage_lines

    text = "\n".join(usage_lines())
    for verb, command in COMMANDS.items():
        assert bool(re.search(rf"\b{verb}\b", text)) is not command.streams, verb
    assert "ctl trigger JOB_ID [--param NAME=VALUE]... [--socket PATH] [--json]" in text
    assert "ctl cancel RUN_ID [--socket PATH] [--json]" in text
