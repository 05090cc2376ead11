"""API keys with roles over HTTP (issue 16), against the real `bin/petit run` with a petit.toml
that declares a read, an operate and an admin key, and --api-token: every route of the app x
every kind of caller (no key, a wrong one, each role, the token), with the effect of each
allowed change checked and the absence of it for each refused one; 401 against 403; whoami;
with no key declared every request is allowed, with an empty list none is.

The swap of the keys at a reload (the supervisor sends them on the API's queue) is tested
in-process: the app, its CommandChannel on real multiprocessing queues and a real HTTP server
on a thread of its own, the test playing the supervisor's end of the queues, on the db of a
real service whose task is running (for a followed log)."""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import threading
import time

import pytest
import tornado.httpserver
from api_client import free_port, request
from harness import Service
from jobfiles import job_yaml
from processes import wait_until
from sse_client import SseStream

from petit.api.access import UNAUTHORIZED_MESSAGE, Access
from petit.api.app import make_app, route_templates
from petit.api.channel import KEYS_EVENT, CommandChannel
from petit.api.events import LiveEvents
from petit.ipc.access import ApiKey, Role, hash_key, key_block, new_key
from petit.ipc.audit import AuditLog, audit_path
from petit.ipc.commands import ok_reply
from petit.ipc.stream import EVENT_BATCH
from petit.storage.store import Store

READ, OPERATE, ADMIN = Role.READ, Role.OPERATE, Role.ADMIN
KEYS = {"reader": READ, "operator": OPERATE, "boss": ADMIN}
SECRETS = {name: new_key() for name in KEYS}
TOKEN = new_key()
JOBS = {
    "quick": job_yaml("quick", "echo quick"),
    "slow": job_yaml("slow", "sleep 60"),
    "secretive": job_yaml(
        "secretive",
        "echo $PETIT_PARAM_version",
        extra="params:\n  token: {secret: true}\n  version: {default: '1'}\n",
    ),
}
# The role each operation needs, written out here rather than read from the handlers; HEAD
# needs what GET does. A route added to app.ROUTES without a row fails the table test.
NEEDED = {
    ("get", "/api/health"): None,
    ("get", "/api/status"): READ,
    ("get", "/api/scheduler/state"): READ,
    ("post", "/api/scheduler/pause"): ADMIN,
    ("post", "/api/scheduler/resume"): ADMIN,
    ("post", "/api/scheduler/reload"): ADMIN,
    ("get", "/api/whoami"): READ,
    ("get", "/api/audit"): ADMIN,
    ("get", "/api/jobs"): READ,
    ("get", "/api/jobs/{job_id}"): READ,
    ("post", "/api/jobs/{job_id}/trigger"): OPERATE,
    ("get", "/api/jobs/{job_id}/runs"): READ,
    ("get", "/api/jobs/{job_id}/drops"): READ,
    ("get", "/api/runs/{run_id}"): READ,
    ("get", "/api/runs/{run_id}/tasks"): READ,
    ("get", "/api/runs/{run_id}/tasks/{task_id}/logs"): READ,
    ("post", "/api/runs/{run_id}/cancel"): OPERATE,
    ("get", "/api/events"): READ,
    ("get", "/api/openapi.json"): READ,
    ("get", "/metrics"): READ,
}
STREAMS = {"/api/events"}  # a GET lasts as long as the client stays: asked with HEAD instead


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


# who calls -> (headers, the key's name, its role); None: no key accepted
CALLERS = {
    "no key": ({}, None),
    "wrong key": (bearer("petit_" + "x" * 43), None),
    "not bearer": ({"Authorization": f"Basic {SECRETS['boss']}"}, None),
    **{name: (bearer(SECRETS[name]), (name, role)) for name, role in KEYS.items()},
    "token": (bearer(TOKEN), ("api-token", ADMIN)),
}
BOSS = bearer(SECRETS["boss"])


def write_config(directory, keys: dict[str, Role] | None, extra: str = "") -> str:
    """A petit.toml declaring `keys` (name -> role; their secrets in SECRETS)."""
    blocks = [key_block(name, role, hash_key(SECRETS[name])) for name, role in keys.items()]
    path = os.path.join(str(directory), "petit.toml")
    with open(path, "w") as handle:
        handle.write(extra + "\n".join(blocks))
    return path


def keyed_service(root: str) -> Service:
    """A service (not started) on JOBS, with KEYS in its petit.toml and --api-token TOKEN."""
    os.makedirs(root, exist_ok=True)
    config = write_config(root, KEYS)
    return Service(root, jobs=JOBS, extra_args=("--config", config, "--api-token", TOKEN))


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with keyed_service(str(tmp_path_factory.mktemp("keys"))).running() as service:
        yield service


def as_boss(svc: Service, method: str, path: str) -> dict:
    response = request(svc.port, method, path, headers=BOSS)
    assert response.status == 200, (method, path, response.status, response.body[:300])
    return response.json()


def state(svc: Service) -> str:
    return as_boss(svc, "GET", "/api/scheduler/state")["state"]


def run_count(svc: Service, job_id: str) -> int:
    return as_boss(svc, "GET", f"/api/jobs/{job_id}/runs?limit=1000")["count"]


def wait_status(svc: Service, run_id: str, *statuses: str) -> None:
    """Until the run's status is one of `statuses` (asked with the admin key)."""
    wait_until(
        lambda: as_boss(svc, "GET", f"/api/runs/{run_id}")["status"] in statuses,
        message=f"run {run_id} in {statuses}",
    )


# -- every route x every caller -------------------------------------------------------------------


def operations() -> list[tuple[str, str]]:
    return [(m, t) for t, methods in route_templates().items() for m in methods]


def test_the_table_covers_every_route():
    served = {(m, t) for m, t in operations() if m != "head"}
    assert set(NEEDED) == served, {
        "routes without a row": sorted(served - set(NEEDED)),
        "rows without a route": sorted(set(NEEDED) - served),
    }
    assert all(("get", t) in NEEDED for m, t in operations() if m == "head")


class Effects:
    """What each state-changing operation does, checked around an allowed request, and
    checked not done around a refused one. `prepare` returns the path ids to use."""

    def __init__(self, svc: Service, ids: dict) -> None:
        self.svc, self.ids = svc, ids
        self.slow_run: str | None = None

    def prepare(self, template: str) -> dict:
        if template == "/api/scheduler/resume":
            as_boss(self.svc, "POST", "/api/scheduler/pause")
        if template == "/api/runs/{run_id}/cancel":
            if self.slow_run is None:  # the last one was cancelled: a new one to cancel
                self.slow_run = as_boss(self.svc, "POST", "/api/jobs/slow/trigger")["run_id"]
                wait_status(self.svc, self.slow_run, "running")
            return {**self.ids, "run_id": self.slow_run}
        self.before = run_count(self.svc, "quick")
        return self.ids

    def check(self, template: str, allowed: bool, body: dict | None) -> None:
        svc = self.svc
        if template == "/api/jobs/{job_id}/trigger":
            assert run_count(svc, "quick") == self.before + allowed
            if allowed:
                assert as_boss(svc, "GET", f"/api/runs/{body['run_id']}")["job_id"] == "quick"
        elif template == "/api/scheduler/pause":
            assert state(svc) == ("paused" if allowed else "running")
            as_boss(svc, "POST", "/api/scheduler/resume")
        elif template == "/api/scheduler/resume":
            assert state(svc) == ("running" if allowed else "paused")
            as_boss(svc, "POST", "/api/scheduler/resume")
        elif template == "/api/scheduler/reload":
            assert not allowed or body["jobs"] == len(JOBS), body
        elif template == "/api/runs/{run_id}/cancel":
            status = as_boss(svc, "GET", f"/api/runs/{self.slow_run}")["status"]
            assert status == ("cancelled" if allowed else "running"), status
            if allowed:
                self.slow_run = None


def test_every_route_answers_each_caller_by_its_role(svc):
    finished = as_boss(svc, "POST", "/api/jobs/quick/trigger")["run_id"]
    wait_status(svc, finished, "completed")
    effects = Effects(svc, {"job_id": "quick", "run_id": finished, "task_id": "t"})
    checked = 0
    for method, template in operations():
        needed = NEEDED[("get" if method == "head" else method, template)]
        if method == "get" and template in STREAMS:
            continue  # its HEAD row asks it
        for caller, (headers, key) in CALLERS.items():
            ids = effects.prepare(template) if method == "post" else effects.ids
            response = request(svc.port, method.upper(), template.format(**ids), headers=headers)
            where = (method, template, caller, response.status, response.body[:300])
            is_json = response.content_type.startswith("application/json")
            body = response.json() if response.body and is_json else None
            if needed is None or (key is not None and key[1].allows(needed)):
                assert response.status == 200, where
                allowed = True
            elif key is None:
                assert response.status == 401, where
                assert response.headers["www-authenticate"] == 'Bearer realm="petit"', where
                if method != "head":
                    assert body == {"error": UNAUTHORIZED_MESSAGE, "code": "UNAUTHORIZED"}
                allowed = False
            else:
                assert response.status == 403, where
                if method != "head":
                    assert body == {
                        "error": f"this request needs the {needed.value} role; the key "
                        f"'{key[0]}' has the {key[1].value} role",
                        "code": "FORBIDDEN",
                        "needed_role": needed.value,
                    }, where
                allowed = False
            if method == "post":
                effects.check(template, allowed, body)
            checked += 1
    assert checked == (len(operations()) - len(STREAMS)) * len(CALLERS)


def test_whoami_names_the_key_and_its_role(svc):
    for caller, (headers, key) in CALLERS.items():
        response = request(svc.port, "GET", "/api/whoami", headers=headers)
        if key is None:
            assert response.status == 401, caller
            continue
        assert response.status == 200, caller
        assert response.json() == {"key": key[0], "role": key[1].value, "keys_required": True}


def test_a_valid_key_learns_of_an_unknown_route_or_method_and_no_key_does_not(svc):
    reader = bearer(SECRETS["reader"])
    assert request(svc.port, "GET", "/api/nothing").status == 401  # no route probing
    assert request(svc.port, "GET", "/api/nothing", headers=reader).status == 404
    # a method the route lacks is a 405 for any valid key, not a 403 naming a role
    lacking = request(svc.port, "GET", "/api/scheduler/pause", headers=reader)
    assert lacking.status == 405 and lacking.headers["allow"] == "POST", lacking
    assert request(svc.port, "DELETE", "/api/audit", headers=reader).status == 405
    assert request(svc.port, "GET", "/api/scheduler/pause").status == 401


# -- no keys, and an empty list -------------------------------------------------------------------


def test_without_keys_every_request_is_allowed_as_admin(service):
    svc = service(JOBS, api=True)
    for headers in ({}, bearer("anything")):
        whoami = svc.get("/api/whoami", headers=headers)
        assert whoami.json() == {"key": None, "role": "admin", "keys_required": False}
    assert svc.post("/api/scheduler/pause").status == 200
    assert svc.get("/api/scheduler/state").json()["state"] == "paused"
    assert svc.post("/api/scheduler/resume").status == 200
    assert svc.post("/api/scheduler/reload").json()["jobs"] == len(JOBS)
    audit = svc.get("/api/audit").json()
    assert [(e["op"], e["who"], e["outcome"]) for e in audit["entries"]] == [
        ("pause", None, "ok"),
        ("resume", None, "ok"),
        ("reload", None, "ok"),
    ]


def test_an_empty_key_list_refuses_every_request(service, tmp_path):
    config = write_config(tmp_path, {}, extra="api_keys = []\n")
    svc = service(JOBS, "--config", config, api=True)
    assert svc.get("/api/health").status == 200  # public, and what the harness waits on
    for headers in ({}, bearer(SECRETS["boss"]), bearer("petit_anything")):
        for method, path in (
            ("GET", "/api/whoami"),
            ("GET", "/api/jobs"),
            ("GET", "/metrics"),
            ("POST", "/api/jobs/quick/trigger"),
        ):
            response = request(svc.port, method, path, headers=headers)
            assert response.status == 401, (method, path, headers, response.body)
    assert svc.runs("quick") == []


# -- the keys swapped at a reload (in-process) ----------------------------------------------------


class InProcessApi:
    """The API's app with its CommandChannel on two real multiprocessing queues and a real HTTP
    server, on a thread of this process. The test is the supervisor: `send_keys` puts what a
    reload sends on the queue the API reads; `answer(cmd, args)` makes the replies to the
    commands the API sends, which `asked` records."""

    def __init__(self, db: str, keys, token=None, audit: AuditLog | None = None, answer=None):
        self.port = free_port()
        self.replies, self.requests = multiprocessing.Queue(), multiprocessing.Queue()
        self.asked: list[tuple[str, dict]] = []
        self._answer = answer or (lambda cmd, args: {"message": f"{cmd} done"})
        self._db, self._keys, self._token = db, keys, token
        self._audit = audit or AuditLog(audit_path(db))
        self._ready = threading.Event()
        self._threads = [
            threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True),
            threading.Thread(target=self._supervise, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        assert self._ready.wait(10), "the in-process API did not start"
        # the first batch says which epoch is on: the event stream waits for it
        self.replies.put({"event": EVENT_BATCH, "epoch": "e1", "messages": []})

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.access = Access(self._keys, self._token)
        self.access.bind(self.loop)
        events = LiveEvents()
        events.bind(self.loop)
        channel = CommandChannel(self.replies, self.requests, self.access, events)
        app = make_app(Store(self._db), channel, self.access, self._audit, True)
        server = tornado.httpserver.HTTPServer(app)
        server.listen(self.port, address="127.0.0.1")
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def _supervise(self) -> None:
        while (message := self.requests.get()) is not None:
            self.asked.append((message["cmd"], message["args"]))
            self.replies.put(ok_reply(message["id"], self._answer(message["cmd"], message["args"])))

    def send_keys(self, keys: list[ApiKey] | list[dict] | None) -> None:
        wire = None if keys is None else [k.as_wire() if isinstance(k, ApiKey) else k for k in keys]
        self.replies.put({"event": KEYS_EVENT, "keys": wire})

    def publish(self, seq: int, name: str, data: dict) -> None:
        """One message of the live stream, as the supervisor's hub sends it."""
        batch = [(seq, name, None, None, json.dumps(data))]
        self.replies.put({"event": EVENT_BATCH, "epoch": "e1", "messages": batch})

    def status(self, path: str, headers: dict | None = None) -> int:
        return request(self.port, "GET", path, headers=headers).status

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.replies.put(None)  # ends the channel's reader
        self.requests.put(None)
        for thread in self._threads:
            thread.join(10)


def api_key(name: str, role: Role, secret: str | None = None) -> ApiKey:
    return ApiKey(name, role, hash_key(secret or SECRETS[name]), "petit.toml line 1")


@pytest.fixture(scope="module")
def running_db(tmp_path_factory):
    """The db of a real service (no API) with a `slow` run whose task runs: (db, run id)."""
    root = str(tmp_path_factory.mktemp("swap"))
    with Service(root, jobs=JOBS, api=False).running() as service:
        run_id = service.call("trigger", "slow")["run_id"]
        service.wait_task_pid(run_id)
        yield service.db, run_id


@pytest.fixture
def in_process():
    started = []

    def start(db: str, keys, **kwargs) -> InProcessApi:
        started.append(InProcessApi(db, keys, **kwargs))
        return started[-1]

    yield start
    for api in started:
        api.close()


def ended(stream: SseStream, timeout: float = 5.0) -> bool:
    """Whether the server closes the stream within `timeout` (heartbeats and events read)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            stream.next(remaining)
        except (EOFError, ConnectionError, http.client.HTTPException):
            return True
        except TimeoutError:
            return False
    return False


def test_a_removed_key_is_refused_at_once_and_its_streams_closed(running_db, in_process):
    db, run_id = running_db
    reader, operator = api_key("reader", READ), api_key("operator", OPERATE)
    api = in_process(db, [reader, operator], token=TOKEN)
    as_reader, as_operator = bearer(SECRETS["reader"]), bearer(SECRETS["operator"])
    follow = f"/api/runs/{run_id}/tasks/t/logs?follow=true"
    streams = {
        "reader events": SseStream(api.port, "/api/events", as_reader),
        "reader log": SseStream(api.port, follow, as_reader),
        "operator events": SseStream(api.port, "/api/events", as_operator),
        "token events": SseStream(api.port, "/api/events", bearer(TOKEN)),
    }
    try:
        assert {name: s.status for name, s in streams.items()} == dict.fromkeys(streams, 200)
        api.send_keys([operator])
        wait_until(lambda: api.status("/api/jobs", as_reader) == 401, message="reader refused")
        assert ended(streams["reader events"]) and ended(streams["reader log"])
        # the others stay open, and still get what happens
        api.publish(1, "scheduler", {"state": "paused"})
        for name in ("operator events", "token events"):
            got = streams[name].until(lambda e: e.event == "scheduler", timeout=5)
            assert got[-1].json() == {"state": "paused"}, name
        assert api.status("/api/jobs", as_operator) == 200
        # the token is fixed at start: no table replaces it
        api.send_keys([])
        wait_until(lambda: api.status("/api/jobs", as_operator) == 401, message="all refused")
        assert ended(streams["operator events"])
        whoami = request(api.port, "GET", "/api/whoami", headers=bearer(TOKEN)).json()
        assert whoami == {"key": "api-token", "role": "admin", "keys_required": True}
        api.publish(2, "scheduler", {"state": "running"})
        assert streams["token events"].until(lambda e: e.event == "scheduler", timeout=5)
    finally:
        for stream in streams.values():
            stream.close()


def test_keys_declared_then_removed_open_and_close_the_api(running_db, in_process):
    db, _ = running_db
    operator = api_key("operator", OPERATE)
    api = in_process(db, None)
    anonymous = SseStream(api.port, "/api/events")
    try:
        assert anonymous.status == 200
        api.send_keys([operator])
        wait_until(lambda: api.status("/api/jobs") == 401, message="keys required")
        assert ended(anonymous)  # it was let in without a key: not any more
        as_operator = bearer(SECRETS["operator"])
        assert request(api.port, "GET", "/api/whoami", headers=as_operator).json() == {
            "key": "operator",
            "role": "operate",
            "keys_required": True,
        }
        # the same name with a new key: the old key is refused, its stream closed
        stream = SseStream(api.port, "/api/events", as_operator)
        assert stream.status == 200
        rotated = new_key()
        api.send_keys([api_key("operator", OPERATE, rotated)])
        wait_until(lambda: api.status("/api/jobs", as_operator) == 401, message="old key refused")
        assert ended(stream)
        stream.close()
        assert api.status("/api/jobs", bearer(rotated)) == 200
        api.send_keys(None)  # every key removed from petit.toml, api_keys too: open again
        wait_until(lambda: api.status("/api/jobs") == 200, message="no key required")
        assert request(api.port, "GET", "/api/whoami").json() == {
            "key": None,
            "role": "admin",
            "keys_required": False,
        }
        api.send_keys([{"name": "broken"}])  # a malformed message: every key refused
        wait_until(lambda: api.status("/api/jobs") == 401, message="fail closed")
        assert api.status("/api/jobs", bearer(rotated)) == 401
    finally:
        anonymous.close()
