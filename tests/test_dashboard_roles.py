"""The dashboard with API keys of each role (issue 16), in a real headless Chromium against a real
`bin/petit run`: it shows who is signed in, and only the buttons the key's role allows (Run now
from operate, Pause and Resume for admin only, Cancel from operate); the server refuses the rest
with a 403 that names the role needed, whatever the page shows."""

from __future__ import annotations

import json
import os

import pytest
from harness import Service

from petit.ipc.access import hash_key

pytestmark = pytest.mark.xdist_group("cpu")

KEYS = {"wall": "read", "teammate": "operate", "ops": "admin"}
SECRET = {name: f"petit_test-key-of-{name}-0123456789abcdef" for name in KEYS}
GATE = "gate"  # in the service's folder: the slow job's runs wait until it exists


def petit_toml(folder: str) -> str:
    path = os.path.join(folder, "petit.toml")
    with open(path, "w") as handle:
        for name, role in KEYS.items():
            handle.write(
                f'[[api_keys]]\nname = "{name}"\nrole = "{role}"\n'
                f'sha256 = "{hash_key(SECRET[name])}"\n\n'
            )
    return path


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("keyed"))
    gate = os.path.join(root, GATE)
    jobs = {
        "quick": 'id: quick\nname: Quick\ntasks:\n  - {id: t, command: "true"}\n',
        "slow": (
            "id: slow\nname: Slow\ntasks:\n  - id: t\n    type: shell\n"
            f'    script: "while [ ! -e {gate} ]; do sleep 0.05; done"\n'
        ),
    }
    service = Service(root, jobs=jobs, extra_args=("--config", petit_toml(root)))
    with service.running():
        yield service
    # the slow runs end when the gate opens (or are interrupted at the stop): nothing is left


def bearer(name: str) -> dict:
    return {"Authorization": f"Bearer {SECRET[name]}"}


def sign_in(browser, service: Service, name: str, path: str, page: str) -> None:
    browser.open(service.port, path)
    browser.wait(lambda: browser.body("data-page") == "login", "the login form")
    browser.one("input#token").send_keys(SECRET[name])
    browser.one("button#login-submit").click()
    browser.wait_page(page)


def visible(browser, selector: str) -> bool:
    """Whether an element matching `selector` is on the page and shown."""
    return any(element.is_displayed() for element in browser.css(selector))


@pytest.fixture(scope="module")
def slow_run(keyed):
    """A run of `slow` that stays running while the module's tests look at its page."""
    response = keyed.post("/api/jobs/slow/trigger", headers=bearer("ops"))
    assert response.status == 200, response.body
    yield response.json()["run_id"]
    open(os.path.join(keyed.root, GATE), "w").close()


@pytest.mark.console_allows(r"status of 401")
@pytest.mark.parametrize("name", list(KEYS))
def test_each_role_sees_only_the_buttons_it_may_use(browser, keyed, slow_run, name):
    role = KEYS[name]
    operate, admin = role in ("operate", "admin"), role == "admin"
    sign_in(browser, keyed, name, "/", "overview")
    assert browser.body("data-role") == role
    assert browser.text("#whoami") == f"{name} · {role}"
    assert visible(browser, 'tr[data-job-id="quick"] .run-now') is operate
    assert visible(browser, "#pause") is admin and bool(browser.css("#resume")) is admin

    browser.go("/jobs/quick")  # a full load: the key comes from sessionStorage
    browser.wait_page("job")
    assert bool(browser.css("#run-now")) is operate

    browser.go(f"/runs/{slow_run}")
    browser.wait_page("run")
    assert browser.wait(lambda: browser.text("#run-status") == "running", "the run running")
    assert visible(browser, "#cancel") is operate


@pytest.mark.console_allows(r"status of 401", r"status of 403")
def test_the_server_refuses_what_the_page_does_not_offer(browser, keyed):
    """A read key cannot trigger by calling the API from the page itself: 403, naming the role."""
    sign_in(browser, keyed, "wall", "/jobs/quick", "job")
    reply = browser.js(
        "const r = await fetch('/api/jobs/quick/trigger', {method: 'POST', headers: "
        "{Authorization: 'Bearer ' + sessionStorage.getItem('petit.token')}});"
        "return JSON.stringify({status: r.status, body: await r.json()});"
    )
    answer = json.loads(reply)
    assert answer["status"] == 403
    assert answer["body"]["code"] == "FORBIDDEN" and answer["body"]["needed_role"] == "operate"


@pytest.mark.console_allows(r"status of 401")
def test_an_operator_runs_a_job_from_its_page(browser, keyed):
    before = keyed.get("/api/jobs/quick/runs", headers=bearer("wall")).json()["count"]
    sign_in(browser, keyed, "teammate", "/jobs/quick", "job")
    browser.one("#run-now").click()

    def one_more() -> bool:
        runs = keyed.get("/api/jobs/quick/runs", headers=bearer("wall")).json()
        return runs["count"] == before + 1

    browser.wait(one_more, "a run of quick triggered from the page")

    def operator_line() -> dict | None:  # written just after the run was created
        entries = keyed.get("/api/audit", headers=bearer("ops")).json()["entries"]
        return next((e for e in entries if e["who"] == "teammate"), None)

    line = browser.wait(operator_line, "the operator's trigger in the audit log")
    assert (line["op"], line["outcome"], line["door"]) == ("trigger", "ok", "http")
    assert (
        line["run_id"]
        == keyed.get("/api/jobs/quick/runs", headers=bearer("wall")).json()["runs"][0]["id"]
    )
