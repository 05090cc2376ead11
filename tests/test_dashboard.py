"""End-to-end tests of the web dashboard (issue 11) in a real headless Chromium (tests/browser.py)
against a real `bin/petit run`: the overview, "Run now" and live squares, the job graph, the live
log viewer, pause and resume, a queued run (live, its count, its cancel), hostile names and
output rendered as text, the token prompt, deep links, back and forward, a phone-sized viewport
and the keyboard, the security headers.

One service serves every check that can share it (its jobs below); the token checks have their
own. Each browser test starts in a fresh tab with nothing stored, and fails when the page
logged a console error (a script error, a CSP violation); a failing one leaves a screenshot
under .pytest-screenshots/."""

from __future__ import annotations

import os
import re
import secrets

import pytest
from api_client import request
from browser import PAGE_LOAD_SECS
from harness import Service
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

# the CPU-heaviest modules share one pytest-xdist worker (make test: --dist loadgroup), so
# their time bounds never meet each other's load
pytestmark = pytest.mark.xdist_group("cpu")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# Each payload would set window.__pwned (or open an alert) if the page ever treated it as HTML
# or followed it as a URL.
XSS_NAME = "<script>window.__pwned='name'</script><img src=x onerror=\"window.__pwned='img'\">"
XSS_DESCRIPTION = (
    "<a href=\"javascript:window.__pwned='href'\">docs</a> "
    "<svg onload=\"window.__pwned='svg'\"></svg> javascript:alert(1)"
)
XSS_TASK_NAME = "<img src=x onerror=alert('task')>"
XSS_STDOUT = "<script>window.__pwned='stdout'</script>"
XSS_STDERR = "<img src=x onerror=\"window.__pwned='stderr'\">"
XSS_COMMAND = "<img src=x onerror=alert('error')>"
PHONE = (390, 844)  # CSS pixels: a common phone's viewport
GATES = "gates"  # in the service's folder: the files the gated job's runs wait for


def job_files(gates: str) -> dict[str, str]:
    """The shared service's jobs. `gated` prints a line, then waits until the test creates
    GATES/<its run id>, then prints another: a run that stays running exactly as long as a test
    needs."""
    return {
        "gated": f"""id: gated
name: Gated job
description: Prints a line, waits for its gate file, prints another.
tasks:
  - id: wait
    type: shell
    script: |
      echo "first line of $PETIT_RUN_ID"
      echo "a warning of $PETIT_RUN_ID" >&2
      while [ ! -e "{gates}/$PETIT_RUN_ID" ]; do sleep 0.05; done
      echo "second line of $PETIT_RUN_ID"
  - id: after
    depends_on: [wait]
    command: echo
    args: [done]
""",
        # one run at a time, which waits for its gate: a second trigger with ?queue=true queues
        "single": f"""id: single
name: Single
max_concurrency: 1
max_queued: 3
timeout: 1h
tasks:
  - id: hold
    type: shell
    script: 'while [ ! -e "{gates}/$PETIT_RUN_ID" ]; do sleep 0.05; done'
""",
        # every status but running, and a condition that is not the default
        "diamond": """id: diamond
name: Diamond
description: Five quick tasks; c fails, d runs anyway, e runs because c failed.
schedule: "@every 1h"
tasks:
  - {id: a, command: "true"}
  - {id: b, command: "true", depends_on: [a]}
  - {id: c, command: "false", depends_on: [a]}
  - {id: d, command: "true", depends_on: [b, c], condition: all_done}
  - {id: e, command: "true", depends_on: [c], condition: on_failure}
""",
        "xss": f"""id: xss
name: {yaml_str(XSS_NAME)}
description: {yaml_str(XSS_DESCRIPTION)}
tasks:
  - id: x.-_y
    name: {yaml_str(XSS_TASK_NAME)}
    type: shell
    script: |
      echo {shell_str(XSS_STDOUT)}
      echo {shell_str(XSS_STDERR)} >&2
      echo 'javascript:alert(document.domain)'
  - id: bad
    depends_on: [x.-_y]
    command: {yaml_str(XSS_COMMAND)}
""",
    }


def yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_str(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dashboard"))
    os.makedirs(os.path.join(root, GATES))
    service = Service(root, jobs=job_files(os.path.join(root, GATES)))
    with service.running():
        yield service


def open_gate(svc: Service, run_id: str) -> None:
    with open(os.path.join(svc.root, GATES, run_id), "w"):
        pass


def api(svc: Service, path: str, **kwargs) -> dict:
    response = svc.get(path, **kwargs)
    assert response.status == 200, (path, response.status, response.body[:300])
    return response.json()


def press(browser, key: str) -> None:
    """One key press on the focused element (an ActionChains keeps its earlier actions and
    replays them at each perform(): one chain per press)."""
    ActionChains(browser.driver).send_keys(key).perform()


def nothing_executed(browser) -> None:
    """No payload ran: no alert is open, window.__pwned was never set, no element carries an
    event handler attribute or a javascript: link."""
    try:
        alert = browser.driver.switch_to.alert
        pytest.fail(f"an alert is open: {alert.text!r}")
    except NoAlertPresentException:
        pass
    assert browser.js("return typeof window.__pwned") == "undefined", browser.js(
        "return window.__pwned"
    )
    handlers = browser.js(
        """return [...document.querySelectorAll('*')].flatMap(el => [...el.attributes]
             .filter(a => a.name.toLowerCase().startsWith('on')
                          || /^\\s*javascript:/i.test(a.value) && /href|src|action/i.test(a.name))
             .map(a => el.tagName + ' ' + a.name + '=' + a.value))"""
    )
    assert handlers == [], handlers


# -- the overview ---------------------------------------------------------------------------------


def test_overview_lists_every_job_with_its_schedule_and_health(browser, svc):
    jobs = {job["id"]: job for job in api(svc, "/api/jobs")["jobs"]}
    browser.open(svc.port, "/")
    browser.wait_page("overview")
    rows = browser.js(
        """return Object.fromEntries([...document.querySelectorAll('#jobs tr[data-job-id]')]
             .map(row => [row.dataset.jobId, {
               name: row.querySelector('.job-name a').textContent,
               href: row.querySelector('.job-name a').getAttribute('href'),
               label: row.querySelector('button.run-now').getAttribute('aria-label')}]))"""
    )
    assert rows == {
        job_id: {"name": job["name"], "href": f"/jobs/{job_id}", "label": f"Run {job['name']} now"}
        for job_id, job in jobs.items()
    }
    schedule = browser.text('tr[data-job-id="diamond"] .job-schedule')
    assert schedule == jobs["diamond"]["schedule_words"]
    assert browser.text("#scheduler-state") == "running"
    assert "running" in browser.text('#health li[data-child="scheduler"]')
    browser.wait(lambda: browser.body("data-live") == "on", "the event stream to connect")


def test_run_now_turns_its_square_from_running_to_completed_without_a_reload(browser, svc):
    browser.open(svc.port, "/")
    browser.wait_page("overview")
    browser.js("window.__sameDocument = true")
    before = {r["id"] for r in api(svc, "/api/jobs/gated/runs?limit=100")["runs"]}
    browser.one('#jobs tr[data-job-id="gated"] button.run-now').click()
    run_id = browser.wait(
        lambda: next(
            (
                r["id"]
                for r in api(svc, "/api/jobs/gated/runs?limit=5")["runs"]
                if r["id"] not in before
            ),
            None,
        ),
        "the click to start a run",
    )
    square = f'#jobs tr[data-job-id="gated"] .recent a.square[data-run-id="{run_id}"]'
    browser.wait(lambda: browser.css(f'{square}[data-status="running"]'), f"{square} running")
    open_gate(svc, run_id)
    browser.wait(lambda: browser.css(f'{square}[data-status="completed"]'), f"{square} completed")
    assert browser.js("return window.__sameDocument") is True, "the page was reloaded"
    assert browser.attr(square, "href") == f"/runs/{run_id}"
    assert browser.attr(square, "title").startswith(f"{run_id} · completed · ")
    status = '#jobs tr[data-job-id="gated"] .job-status'
    browser.wait(lambda: browser.attr(status, "data-status") == "completed", status)
    # oldest left: the squares read as the API's newest-first list reversed
    shown = [
        s.get_attribute("data-run-id")
        for s in browser.css('#jobs tr[data-job-id="gated"] .recent a.square')
    ]
    newest = [r["id"] for r in api(svc, f"/api/jobs/gated/runs?limit={len(shown)}")["runs"]]
    assert shown == newest[::-1]


def test_pause_and_resume_change_the_page_and_the_scheduler(browser, svc):
    browser.open(svc.port, "/")
    browser.wait_page("overview")

    def shown() -> tuple:
        return (
            browser.text("#scheduler-state"),
            browser.enabled("#pause"),
            browser.enabled("#resume"),
        )

    assert shown() == ("running", True, False)
    try:
        browser.one("button#pause").click()
        browser.wait(lambda: shown() == ("paused", False, True), "the page to show paused")
        assert api(svc, "/api/scheduler/state")["state"] == "paused"
        browser.one("button#resume").click()
        browser.wait(lambda: shown() == ("running", True, False), "the page to show running")
        assert api(svc, "/api/scheduler/state")["state"] == "running"
    finally:
        svc.post("/api/scheduler/resume")


# -- the job and run pages ------------------------------------------------------------------------


def test_job_page_draws_one_node_per_task_and_one_edge_per_dependency(browser, svc):
    run = svc.wait_run(svc.trigger("diamond"))
    statuses = {
        t["task_id"]: t["status"] for t in api(svc, f"/api/runs/{run['id']}/tasks")["tasks"]
    }
    job = api(svc, "/api/jobs/diamond")
    browser.open(svc.port, "/jobs/diamond")
    browser.wait_page("job")
    assert browser.text("h1#job-title") == job["name"]
    nodes = {n.get_attribute("data-task-id"): n for n in browser.css("svg#dag g.node")}
    assert set(nodes) == {task["id"] for task in job["tasks"]}
    edges = [
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in browser.css("svg#dag path.edge")
    ]
    assert sorted(edges) == sorted(
        (dep, task["id"]) for task in job["tasks"] for dep in task["depends_on"]
    )
    # coloured by the newest run, which is this one
    assert {k: n.get_attribute("data-status") for k, n in nodes.items()} == statuses
    assert "on_failure" in browser.text('svg#dag g.node[data-task-id="e"]')
    assert job["schedule_words"] in browser.text("dl#settings")
    assert "skip: a fire that finds the job busy is dropped" in browser.text("dl#settings")
    assert not browser.one("#queued-count").is_displayed()  # nothing queued: no badge
    assert browser.css(f'table#runs tr[data-run-id="{run["id"]}"]')
    assert browser.css(f'svg#durations rect.bar[data-run-id="{run["id"]}"]')


def test_run_page_tails_a_running_tasks_log_live(browser, svc):
    run_id = svc.trigger("gated")
    svc.wait_task_running(run_id, "wait")
    browser.open(svc.port, f"/runs/{run_id}?task=wait")
    browser.wait_page("run")
    browser.js("window.__sameDocument = true")
    browser.wait(lambda: f"first line of {run_id}" in browser.text("#log-lines"), "the first line")
    assert browser.attr("#run-status", "data-status") == "running"
    assert browser.one("button#cancel").is_displayed()
    open_gate(svc, run_id)
    browser.wait(
        lambda: f"second line of {run_id}" in browser.text("#log-lines"), "the second line, live"
    )
    browser.wait(
        lambda: browser.attr("#run-status", "data-status") == "completed",
        "#run-status to turn completed",
    )
    assert int(browser.attr("#log-lines", "data-line-count")) >= 3  # 2 on stdout, 1 on stderr
    assert browser.js("return window.__sameDocument") is True, "the page was reloaded"
    row = 'table#tasks tr[data-task-id="wait"]'
    browser.wait(
        lambda: browser.attr(f"{row} .status", "data-status") == "completed", "the task's row"
    )
    assert browser.text(f"{row} .attempts").strip() == "1"
    assert browser.css('svg#gantt rect.attempt[data-task-id="wait"][data-attempt="1"]')
    # what it used, once ended: the task's CPU and peak memory, and the run's totals
    used = r"cpu \d+\.\d\ds, peak \d+(\.\d)? MiB"
    browser.wait(
        lambda: re.fullmatch(used, browser.text(f"{row} .usage").strip()), "the task's usage"
    )
    assert re.search(f", used {used}", browser.text("#run-summary")), browser.text("#run-summary")


def test_a_queued_run_shows_as_queued_live_and_is_cancelled_from_its_page(browser, svc):
    holder = svc.trigger("single")
    svc.wait_task_running(holder, "hold")
    queued = []
    try:
        queued.append(queue_run(svc, "single"))
        browser.open(svc.port, "/")
        browser.wait_page("overview")
        job_row = 'tr[data-job-id="single"]'
        assert browser.text(f"{job_row} .queued-count") == "1 queued"
        assert browser.attr(f"{job_row} .job-status", "data-status") == "running"
        square = f'{job_row} a.square[data-run-id="{queued[0]}"]'
        assert browser.attr(square, "data-status") == "queued"
        browser.go("/jobs/single")
        browser.wait_page("job")
        row = f'table#runs tr[data-run-id="{queued[0]}"]'
        assert browser.text(f"{row} .badge") == "queued"
        assert browser.attr(f"{row} .badge", "data-status") == "queued"
        assert browser.text("#queued-count") == "1 queued"
        assert browser.one("#queued-count").is_displayed()
        settings = browser.text("dl#settings")
        assert "Overlap" not in settings  # a manual job: only ?queue=true queues its runs
        assert "Run timeout1h" in settings and "Queued runs1 of at most 3" in settings

        queued.append(queue_run(svc, "single"))  # while the page is open: it comes live
        later = f'table#runs tr[data-run-id="{queued[1]}"] .badge[data-status="queued"]'
        browser.wait(lambda: browser.css(later), "the second queued run, live")
        browser.wait(lambda: browser.text("#queued-count") == "2 queued", "2 queued")

        # clicked from the page's script: the live events redraw the rows, so a row found by
        # the driver may already be replaced when its click lands
        browser.js("document.querySelector(arguments[0]).click()", f"{row} a")
        browser.wait_page("run")
        assert browser.attr("#run-status", "data-status") == "queued"
        assert browser.one("#run-queued").is_displayed()
        assert "No task has started" in browser.text("#run-queued")
        assert browser.attr('table#tasks tr[data-task-id="hold"] .status', "data-status") == (
            "pending"
        )
        browser.one("button#cancel").click()
        browser.wait(lambda: browser.attr("#run-status", "data-status") == "cancelled", "cancelled")
        assert not browser.one("#run-queued").is_displayed()
        assert not browser.one("button#cancel").is_displayed()
        run = api(svc, f"/api/runs/{queued[0]}")
        assert (run["status"], run["started_at"]) == ("cancelled", None)
        assert api(svc, "/api/jobs/single")["queued_runs"] == 1
    finally:
        for run_id in queued:
            svc.post(f"/api/runs/{run_id}/cancel")
        open_gate(svc, holder)
    assert svc.wait_run(holder)["status"] == "completed"


def queue_run(svc: Service, job_id: str) -> str:
    response = svc.post(f"/api/jobs/{job_id}/trigger?queue=true")
    assert response.status == 202, (response.status, response.body)
    return response.json()["run_id"]


def test_hostile_names_descriptions_and_output_are_shown_as_text(browser, svc):
    run = svc.wait_run(svc.trigger("xss"))
    assert run["status"] == "failed"
    browser.open(svc.port, "/")
    browser.wait_page("overview")
    assert browser.text('tr[data-job-id="xss"] .job-name a') == XSS_NAME
    nothing_executed(browser)

    browser.go("/jobs/xss")
    browser.wait_page("job")
    assert browser.text("h1#job-title") == XSS_NAME
    assert XSS_DESCRIPTION in browser.js("return document.body.innerText")
    nothing_executed(browser)

    browser.go(f"/runs/{run['id']}?task=x.-_y")
    browser.wait_page("run")
    browser.wait(lambda: XSS_STDOUT in browser.text("#log-lines"), "the stdout line as text")
    if not browser.one("#log-stderr").is_selected():
        browser.one("#log-stderr").click()
    browser.wait(lambda: XSS_STDERR in browser.text("#log-lines"), "the stderr line as text")
    assert XSS_COMMAND in browser.text('table#tasks tr[data-task-id="bad"] .error')
    nothing_executed(browser)


def test_deep_links_reload_and_back_and_forward(browser, svc):
    run = svc.wait_run(svc.trigger("diamond"))
    browser.open(svc.port, "/")
    browser.wait_page("overview")
    browser.one('tr[data-job-id="diamond"] .job-name a').click()
    browser.wait_page("job")
    assert browser.path == "/jobs/diamond"
    browser.wait_css(f'table#runs tr[data-run-id="{run["id"]}"] a')[0].click()
    browser.wait_page("run")
    assert browser.path == f"/runs/{run['id']}"
    assert run["id"] in browser.text("h1#run-title")

    browser.driver.back()
    browser.wait_page("job")
    assert browser.text("h1#job-title") == "Diamond"
    browser.driver.back()
    browser.wait_page("overview")
    browser.driver.forward()
    browser.wait_page("job")
    assert browser.path == "/jobs/diamond"

    browser.driver.refresh()
    browser.wait_page("job")
    assert browser.text("h1#job-title") == "Diamond"
    assert len(browser.css("svg#dag g.node")) == 5
    browser.go(f"/runs/{run['id']}?task=c&attempt=1")
    browser.wait_page("run")
    browser.driver.refresh()
    browser.wait_page("run")
    assert browser.js("return document.querySelector('select#log-task').value") == "c"
    assert browser.js("return document.querySelector('select#log-attempt').value") == "1"
    assert browser.text('table#tasks tr[data-task-id="c"] .exit-code').strip() == "1"


def test_phone_viewport_has_no_overflow_and_run_now_works_from_the_keyboard(browser, svc):
    run = svc.wait_run(svc.trigger("diamond"))
    for path, page in (("/jobs/diamond", "job"), (f"/runs/{run['id']}", "run"), ("/", "overview")):
        # a tab per page: no page left in the back/forward cache holds a connection the next
        # one needs (test_full_page_loads_release_the_connections_of_the_pages_left)
        browser.fresh_tab()
        browser.viewport(*PHONE, mobile=True)
        browser.open(svc.port, path)
        browser.wait_page(page)
        # a phone widens its layout viewport (innerWidth) to content wider than the screen
        widths = browser.js(
            "return [document.documentElement.scrollWidth, document.body.scrollWidth,"
            " window.innerWidth]"
        )
        assert max(widths) <= PHONE[0], f"{path} is wider than a {PHONE[0]} px phone: {widths}"
    wanted = 'tr[data-job-id="diamond"] button.run-now'
    for _ in range(60):  # Tab through the page until the button has the focus
        if browser.js("return document.activeElement.matches(arguments[0])", wanted):
            break
        press(browser, Keys.TAB)
    else:
        pytest.fail("Tab never reached the diamond job's Run now button")
    before = api(svc, "/api/jobs/diamond/runs?limit=1")["runs"][0]["id"]
    press(browser, Keys.ENTER)
    browser.wait(
        lambda: api(svc, "/api/jobs/diamond/runs?limit=1")["runs"][0]["id"] != before,
        "Enter on Run now to start a run",
    )


def test_pages_and_assets_carry_the_security_headers(svc):
    app = request(svc.port, "GET", "/static/js/app.js")
    assert app.status == 200
    assert app.content_type.startswith("text/javascript")
    assert app.headers.get("cache-control") == "no-cache" and app.headers.get("etag")
    for path in (
        "/",
        "/jobs/diamond",
        "/runs/diamond-1",
        "/static/js/app.js",
        "/static/css/petit.css",
        "/static/nothing.js",
        "/api/jobs",
    ):
        response = request(svc.port, "GET", path)
        headers = {name: response.headers.get(name) for name in SECURITY_HEADERS}
        assert headers == SECURITY_HEADERS, path
    page = request(svc.port, "GET", "/jobs/diamond")
    assert page.status == 200 and page.content_type.startswith("text/html")
    assert b"<script>" not in page.body and b" style=" not in page.body  # no inline script/style


# -- the token ------------------------------------------------------------------------------------

TOKEN = secrets.token_hex(16)
HIDDEN = "Only with the token"


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    jobs = {
        "hidden": f"""id: hidden
name: {HIDDEN}
tasks:
  - {{id: t, command: "true"}}
"""
    }
    service = Service(
        str(tmp_path_factory.mktemp("locked")), jobs=jobs, env={"PETIT_API_TOKEN": TOKEN}
    )
    with service.running():
        yield service


def log_in(browser, token: str) -> None:
    field = browser.one("input#token")
    assert field.get_attribute("type") == "password"
    field.clear()
    field.send_keys(token)
    browser.one("button#login-submit").click()


def token_nowhere_but_session_storage(browser, service: Service) -> None:
    assert TOKEN not in browser.driver.current_url
    assert TOKEN not in browser.driver.page_source
    assert browser.request_urls() and not [url for url in browser.request_urls() if TOKEN in url]
    assert browser.js("return sessionStorage.getItem('petit.token')") == TOKEN
    assert TOKEN not in browser.js("return JSON.stringify(localStorage) + document.cookie")
    assert TOKEN not in service.log()


@pytest.mark.console_allows(r"status of 401")
def test_token_prompt_before_any_data_then_session_storage_only(browser, locked):
    browser.open(locked.port, "/")
    browser.wait(lambda: browser.body("data-page") == "login", "the login form")
    assert browser.one("form#login").is_displayed()
    assert HIDDEN not in browser.driver.page_source and not browser.css("tr[data-job-id]")

    log_in(browser, "wrong-" + TOKEN[:8])
    browser.wait(
        lambda: browser.one("#login-error").is_displayed() and browser.text("#login-error").strip(),
        "#login-error",
    )
    assert browser.body("data-page") == "login" and HIDDEN not in browser.driver.page_source

    log_in(browser, TOKEN)
    browser.wait_page("overview")
    assert browser.text('tr[data-job-id="hidden"] .job-name a') == HIDDEN
    browser.wait(lambda: browser.body("data-live") == "on", "the event stream with the token")
    token_nowhere_but_session_storage(browser, locked)

    browser.go("/jobs/hidden")  # a full load: the token comes from sessionStorage
    browser.wait_page("job")
    token_nowhere_but_session_storage(browser, locked)

    browser.one("button#logout").click()
    browser.wait(lambda: browser.body("data-page") == "login", "the login form after logout")
    assert browser.js("return sessionStorage.getItem('petit.token')") is None

    log_in(browser, TOKEN)
    browser.wait(
        lambda: browser.body("data-page") != "login" and browser.body("data-ready") == "1",
        "the data after logging in again",
    )
    browser.fresh_tab()  # a new browser tab is a new session: it asks again
    browser.open(locked.port, "/")
    browser.wait(lambda: browser.body("data-page") == "login", "the login form in a new tab")


# -- full page loads (last: a page that fails this leaves connections behind) ---------------------


def test_full_page_loads_release_the_connections_of_the_pages_left(browser, svc):
    """A page left by a full load (a typed URL, a reload) may stay in the back/forward cache. If
    it kept its event streams open there, Chromium's 6 connections per host would be used up
    after a few loads and the next page would never load; back must bring a cached page back
    live."""
    run = svc.wait_run(svc.trigger("diamond"))
    pages = [("/", "overview"), ("/jobs/diamond", "job"), (f"/runs/{run['id']}", "run")]
    browser.driver.set_page_load_timeout(5)
    try:
        for number in range(8):
            path, page = pages[number % 3]
            try:
                browser.open(svc.port, path)
                stuck = False
            except TimeoutException:
                stuck = True  # failed below, without the driver's traceback
            if stuck:
                pytest.fail(
                    f"full load #{number + 1} ({path}) never started: the pages left before still "
                    "hold the browser's connections to the host (6 at most)",
                    pytrace=False,
                )
            browser.wait_page(page)
            browser.wait(lambda: browser.body("data-live") == "on", f"{path} live")
    finally:
        browser.driver.set_page_load_timeout(PAGE_LOAD_SECS)
    browser.driver.back()  # to the load before the last
    browser.wait_page(pages[(8 - 2) % 3][1])
    browser.wait(lambda: browser.body("data-live") == "on", "the page back from the cache, live")
