"""Revoking an API key (issue 16) through the real service: remove its lines, `petit ctl reload`
(or POST /api/scheduler/reload as admin), and the key is refused from the next request on, its
open event stream is closed, the other keys go on working, and the reload is in the audit log.
A keys file that does not parse refuses the reload and changes nothing; removing every key
leaves the API closed, never open."""

from __future__ import annotations

import os

import pytest
from sse_client import SseStream

from petit.ipc.access import hash_key

KEY = {name: f"petit_revocation-test-{name}-0123456789abcdef" for name in ("wall", "ops", "new")}
JOBS = {"quick": 'id: quick\nname: Quick\ntasks:\n  - {id: t, command: "true"}\n'}


def key_lines(name: str, role: str) -> str:
    return f'[[api_keys]]\nname = "{name}"\nrole = "{role}"\nsha256 = "{hash_key(KEY[name])}"\n'


def write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def bearer(name: str) -> dict:
    return {"Authorization": f"Bearer {KEY[name]}"}


@pytest.fixture
def keyed(service, tmp_path):
    """A service whose petit.toml declares `ops` (admin) and names a keys file holding `wall`
    (read)."""
    toml, keys = str(tmp_path / "petit.toml"), str(tmp_path / "keys.toml")
    write(toml, 'api_keys_file = "keys.toml"\n\n' + key_lines("ops", "admin"))
    write(keys, key_lines("wall", "read"))
    svc = service(JOBS, "--config", toml, api=True)
    svc.toml, svc.keys_file = toml, keys
    return svc


def test_a_key_removed_and_reloaded_is_refused_at_once_and_its_stream_closed(keyed):
    assert keyed.get("/api/jobs", headers=bearer("wall")).status == 200
    stream = SseStream(keyed.port, "/api/events", headers=bearer("wall"))
    assert stream.status == 200
    try:
        write(keyed.keys_file, "")  # every line of `wall` gone
        assert keyed.call("reload")["api_keys"] == 1
        refused = keyed.get("/api/jobs", headers=bearer("wall"))
        assert refused.status == 401 and refused.json()["code"] == "UNAUTHORIZED"
        with pytest.raises(EOFError):  # heartbeats may come first; then the server ends it
            stream.until(lambda event: False, timeout=10)
    finally:
        stream.close()
    assert keyed.get("/api/jobs", headers=bearer("ops")).status == 200
    entries = keyed.get("/api/audit", headers=bearer("ops")).json()["entries"]
    reload = [entry for entry in entries if entry["op"] == "reload"]
    assert [(e["door"], e["outcome"]) for e in reload] == [("ctl", "ok")]
    assert reload[0]["who"] == f"socket uid {os.getuid()}"


def test_an_admin_adds_a_key_and_reloads_over_http(keyed):
    assert keyed.get("/api/jobs", headers=bearer("new")).status == 401
    write(keyed.keys_file, key_lines("wall", "read") + "\n" + key_lines("new", "operate"))
    refused = keyed.post("/api/scheduler/reload", headers=bearer("wall"))
    assert refused.status == 403 and refused.json()["needed_role"] == "admin"
    reloaded = keyed.post("/api/scheduler/reload", headers=bearer("ops"))
    assert reloaded.status == 200 and reloaded.json()["api_keys"] == 3
    triggered = keyed.post("/api/jobs/quick/trigger", headers=bearer("new"))
    assert triggered.status == 200, triggered.body
    entries = keyed.get("/api/audit", headers=bearer("ops")).json()["entries"]
    assert [(e["op"], e["who"], e["outcome"], e["http_status"]) for e in entries] == [
        ("reload", "wall", "FORBIDDEN", 403),
        ("reload", "ops", "ok", 200),
        ("trigger", "new", "ok", 200),
    ]
    assert entries[-1]["run_id"] == triggered.json()["run_id"]


def test_a_bad_keys_file_refuses_the_reload_and_changes_nothing(keyed):
    write(keyed.keys_file, key_lines("wall", "read") + 'name = "oops"\n')  # a second name
    result = keyed.ctl("reload")
    assert result.returncode != 0
    assert "keys.toml" in result.stdout + result.stderr
    assert keyed.get("/api/jobs", headers=bearer("wall")).status == 200  # the old keys hold
    write(keyed.keys_file, key_lines("wall", "wizard"))
    refused = keyed.post("/api/scheduler/reload", headers=bearer("ops"))
    assert refused.status == 400, refused.body
    assert "keys.toml line 3: api_keys[0].role: expected one of read" in refused.json()["error"]
    assert keyed.get("/api/jobs", headers=bearer("wall")).status == 200


def test_with_every_key_removed_the_api_is_closed_not_open(keyed):
    write(keyed.keys_file, "")
    write(keyed.toml, 'api_keys_file = "keys.toml"\n')
    assert keyed.call("reload")["api_keys"] == 0
    for headers in ({}, bearer("ops"), bearer("wall")):
        assert keyed.get("/api/jobs", headers=headers).status == 401
    assert keyed.get("/api/health").status == 200  # public, as ever


def test_bound_off_loopback_petit_warns_of_no_authentication_only_without_keys(service, tmp_path):
    open_api = service(JOBS, "--api-host", "0.0.0.0", api=True)
    assert "reachable from other machines and has NO authentication" in open_api.log()
    toml = str(tmp_path / "keyed.toml")
    write(toml, key_lines("ops", "admin"))
    keyed = service(JOBS, "--api-host", "0.0.0.0", "--config", toml, api=True)
    log = keyed.log()
    assert "reachable from other machines; read the Security page" in log
    assert "NO authentication" not in log


def test_keys_written_in_petit_toml_itself_and_all_removed_leave_the_api_closed(service, tmp_path):
    """petit.toml without any [[api_keys]] any more reads as "no keys declared": after a start
    with keys, a reload must not take that for an API that asks for none."""
    toml = str(tmp_path / "inline.toml")
    write(toml, key_lines("ops", "admin"))
    svc = service(JOBS, "--config", toml, api=True)
    assert svc.get("/api/jobs", headers=bearer("ops")).status == 200
    write(toml, "max_tasks = 4\n")
    assert svc.call("reload")["api_keys"] == 0
    for headers in ({}, bearer("ops")):
        assert svc.get("/api/jobs", headers=headers).status == 401
    assert svc.post("/api/scheduler/pause").status == 401
