"""Headless Chromium for the dashboard's tests: a pytest plugin registered by tests/conftest.py
beside harness.py, and imported by bench/ and docs/screenshots.py (by path) to drive the same
browser the same way.

The `browser` fixture is one Chromium per test module (Debian's /usr/bin/chromium through its
/usr/bin/chromedriver and Selenium; nothing is downloaded), reset for each test to a blank page
with no cookies and empty storage. The page's console is collected, so a test can assert that
no script error or CSP violation happened. A failing browser test saves a screenshot under
.pytest-screenshots/ and its report names it. Without chromium or chromedriver the browser tests
are skipped, and the run ends with one line saying how many and how to install them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from processes import ROOT, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver"
SCREENSHOTS = os.path.join(ROOT, ".pytest-screenshots")
WINDOW = (1280, 800)
PAGE_LOAD_SECS = 15.0
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # Chromium refuses to start as root (CI) with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MiB; Chromium crashes past it
    "--password-store=basic",
)
# Selenium Manager would download a browser or driver it cannot find; the paths below are always
# given, and offline mode makes sure it never reaches the network even if a path went missing.
os.environ["SE_OFFLINE"] = "true"

SKIP_PREFIX = "browser test: "


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    absent = [
        name
        for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER))
        if not os.access(path, os.X_OK)
    ]
    if not absent:
        return None
    return f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed"


class Browser:
    """One headless Chromium (a Selenium WebDriver as `driver`) and what the tests ask of it:
    open a page of a running service, wait for its data, read its console."""

    def __init__(self, window: tuple[int, int] = WINDOW) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService

        self.window = window
        self.profile = tempfile.mkdtemp(prefix="petit-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        # the window is larger than the viewport by its frame; viewport() sets the page's size
        options.add_argument(f"--window-size={window[0]},{window[1] + 200}")
        # browser: the console; performance: DevTools' network events (every URL requested)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        try:
            self.driver = webdriver.Chrome(
                service=DriverService(executable_path=CHROMEDRIVER), options=options
            )
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(PAGE_LOAD_SECS)
        self.driver.set_script_timeout(PAGE_LOAD_SECS)
        self.base = ""
        self.console: list[dict] = []  # every entry since the last reset()
        self.requested: list[str] = []  # every URL requested since the last reset()
        self.viewport(*window)

    # -- pages --------------------------------------------------------------------------------

    def open(self, port: int, path: str = "/") -> None:
        """Load http://127.0.0.1:PORT/PATH (later calls may give the path alone)."""
        self.base = f"http://127.0.0.1:{port}"
        self.driver.get(self.base + path)

    def go(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        """The current URL without the origin."""
        return self.driver.current_url.removeprefix(self.base)

    def path_of(self, url: str | None) -> str | None:
        """A URL of the service (an href as the page resolved it) without its origin."""
        return url.removeprefix(self.base) if url else url

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def body(self, name: str) -> str | None:
        """An attribute of <body> (data-page, data-ready, data-live)."""
        return self.js("return document.body && document.body.getAttribute(arguments[0])", name)

    def wait(self, predicate: Callable[[], Any], message: str, timeout: float = 10.0) -> Any:
        """Poll `predicate` (a call into the page) until it returns something truthy."""
        return wait_until(predicate, timeout=timeout, interval=0.05, message=message)

    def wait_page(self, page: str, timeout: float = 10.0) -> None:
        """Until <body data-page=PAGE data-ready="1">: the page's data is rendered."""
        self.wait(
            lambda: (self.body("data-page"), self.body("data-ready")) == (page, "1") or None,
            f'body[data-page="{page}"][data-ready="1"] at {self.path} '
            f"(now {self.body('data-page')!r}/{self.body('data-ready')!r})",
            timeout,
        )

    def css(self, selector: str, root: Any = None) -> list:
        """The elements matching a CSS selector (in `root` when given)."""
        from selenium.webdriver.common.by import By

        return (root or self.driver).find_elements(By.CSS_SELECTOR, selector)

    def one(self, selector: str, root: Any = None):
        """The one element matching `selector`; fails when there are none or several."""
        found = self.css(selector, root)
        assert len(found) == 1, f"{len(found)} elements match {selector!r} at {self.path}"
        return found[0]

    # Values read through a fresh query each time: the page replaces elements as events come
    # (a job's row, the health list), so a WebDriver element held across a wait can go stale.

    def text(self, selector: str) -> str:
        """The textContent of the first element matching `selector` ("" when there is none)."""
        return self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''",
            selector,
        )

    def attr(self, selector: str, name: str) -> str | None:
        """An attribute of the first element matching `selector` (None when it has none)."""
        return self.js(
            "const e = document.querySelector(arguments[0]);"
            " return e && e.getAttribute(arguments[1])",
            selector,
            name,
        )

    def enabled(self, selector: str) -> bool | None:
        """Whether the first element matching `selector` is enabled (None when there is none)."""
        return self.js(
            "const e = document.querySelector(arguments[0]); return e && !e.disabled", selector
        )

    def wait_css(self, selector: str, timeout: float = 10.0) -> list:
        """The elements matching `selector`, once there is at least one."""
        return self.wait(
            lambda: self.css(selector), f"an element {selector!r} at {self.path}", timeout
        )

    # -- the console --------------------------------------------------------------------------

    def read_console(self) -> list[dict]:
        """Every console entry of this tab so far (Selenium hands each out once: keep them)."""
        with contextlib.suppress(Exception):  # a closed or crashed tab has no log to give
            self.console += self.driver.get_log("browser")
        return self.console

    def request_urls(self) -> list[str]:
        """Every URL the tab requested so far (documents, assets, fetches, streams still open:
        the page's own resource timing lists a request only once it has ended)."""
        with contextlib.suppress(Exception):
            for entry in self.driver.get_log("performance"):
                message = json.loads(entry["message"])["message"]
                if message.get("method") == "Network.requestWillBeSent":
                    self.requested.append(message["params"]["request"]["url"])
        return self.requested

    def errors(self) -> list[str]:
        """Script errors, failed loads and CSP violations, which Chromium logs as SEVERE."""
        return [e["message"] for e in self.read_console() if e.get("level") == "SEVERE"]

    # -- state --------------------------------------------------------------------------------

    def reset(self) -> None:
        """A blank page with nothing kept from the last test: the current origin's
        sessionStorage and localStorage cleared, no cookies, the default viewport, the console
        and the requests forgotten. Pages the tab keeps in its back/forward cache stay alive
        (with their open connections): fresh_tab() ends them too."""
        if self.driver.current_url.startswith("http"):
            self.js("sessionStorage.clear(); localStorage.clear()")
        self.driver.get("about:blank")
        self.driver.delete_all_cookies()
        self.viewport(*self.window)
        self.read_console()
        self.request_urls()
        self.console, self.requested = [], []

    def fresh_tab(self) -> None:
        """A new tab in place of the old one, as a user opens one: a new sessionStorage (it
        lives per tab) with nothing in it, then reset()."""
        old = self.driver.current_window_handle
        self.driver.switch_to.new_window("tab")
        new = self.driver.current_window_handle
        self.driver.switch_to.window(old)
        self.driver.close()
        self.driver.switch_to.window(new)
        self.reset()

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Make the page's viewport exactly WIDTHxHEIGHT CSS pixels (a window's size includes
        the browser's frame, and a desktop window cannot be phone-narrow); `mobile` also turns
        on the phone's meta-viewport handling. Lasts until the next reset()."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def screenshot(self, path: str) -> str:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.driver.save_screenshot(path)
        return path

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


# -- the fixture, the failure report and the skip -------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One browser for the module (starting Chromium costs about a second)."""
    browser = Browser()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(chromium: Browser, request) -> Iterator[Browser]:
    """The module's browser in a fresh tab (nothing stored, no page kept alive in the back/forward
    cache). At teardown the test fails when the page logged a script error, a CSP violation or a
    failed load, unless the message matches a pattern of the test's `console_allows` marker (a
    401 the login page expects, say)."""
    chromium.fresh_tab()
    yield chromium
    marker = request.node.get_closest_marker("console_allows")
    allowed = [re.compile(pattern) for pattern in (marker.args if marker else ())]
    errors = [e for e in chromium.errors() if not any(p.search(e) for p in allowed)]
    assert not errors, f"the page logged errors: {errors}"


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "console_allows(*patterns): console errors a browser test expects (regexes)"
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Without a browser, skip the tests that need one before any of their fixtures (a service
    they share, say) is set up."""
    reason = missing()
    if reason is None:
        return
    mark = pytest.mark.skip(reason=SKIP_PREFIX + reason)
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(mark)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter) -> Iterator[None]:
    """After pytest's own summary, so the line is the last before the counts."""
    yield
    count = sum(
        1
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and SKIP_PREFIX in report.longrepr[2]
    )
    if count:
        terminalreporter.write_line(
            f"{count} browser test{'s' if count != 1 else ''} skipped: {missing()} ({INSTALL})"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing browser test saves what the page showed, and its report says where, with the
    URL and the console."""
    outcome = yield
    report = outcome.get_result()
    browser = (getattr(item, "funcargs", None) or {}).get("browser")
    if not report.failed or not isinstance(browser, Browser):
        return
    name = re.sub(r"[^\w.-]+", "_", item.nodeid.split("::", 1)[-1])
    path = os.path.join(SCREENSHOTS, f"{name}-{report.when}.png")
    lines = []
    try:
        lines.append(f"screenshot: {browser.screenshot(path)}")
        lines.append(f"url: {browser.driver.current_url}")
    except Exception as error:  # the browser itself may be what broke
        lines.append(f"no screenshot: {error!r}")
    lines += [f"console {e.get('level')}: {e.get('message')}" for e in browser.read_console()]
    report.sections.append(("browser", "\n".join(lines)))
