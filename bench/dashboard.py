"""The dashboard's figures in headless Chromium, for bench.py's `bench_dashboard`: how long a page
takes to paint and to render its data, the page's JS heap, the longest task that blocked its main
thread, and how fast a page answers a scroll.

The browser is the tests' (tests/browser.py, on sys.path through bench.py), so the benchmark
drives the page exactly as the browser tests do. Times come from the page's own clock
(performance.now(), zero at navigation start), not from polling it: a probe installed before any
of the page's scripts records the instant <body data-ready> turns "1"."""

from __future__ import annotations

import time

from browser import Browser

READY_SECS = 120.0
# Runs before the page's own scripts in every document of the tab (DevTools-injected scripts are
# not subject to the page's CSP). Long tasks are main-thread stretches over 50 ms.
PROBE = """
window.__bench = {ready: null, longest: 0, longTasks: 0};
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) {
    window.__bench.longest = Math.max(window.__bench.longest, entry.duration);
    window.__bench.longTasks += 1;
  }
}).observe({type: 'longtask', buffered: true});
new MutationObserver(() => {
  if (window.__bench.ready === null && document.body && document.body.dataset.ready === '1') {
    window.__bench.ready = performance.now();
  }
}).observe(document,
           {subtree: true, childList: true, attributes: true, attributeFilter: ['data-ready']});
"""
# Scroll to the end, then answer after the next two frames: the time until the page has painted
# after the scroll.
SCROLL = """
const done = arguments[arguments.length - 1];
const box = document.querySelector(arguments[0]) || document.scrollingElement;
box.scrollTop = box.scrollHeight;
document.scrollingElement.scrollTop = document.scrollingElement.scrollHeight;
requestAnimationFrame(() => requestAnimationFrame(() => done(box.scrollTop)));
"""


def load(browser: Browser, port: int, path: str, page: str) -> dict:
    """Open `path` in a fresh tab and wait for its data: {paint_ms: first contentful paint,
    ready_ms: data-ready="1", longest_task_ms, long_tasks}, all from navigation start."""
    browser.fresh_tab()
    browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})
    browser.open(port, path)
    browser.wait_page(page, timeout=READY_SECS)
    probe = browser.js("return window.__bench")
    paints = {
        entry["name"]: entry["startTime"]
        for entry in browser.js("return performance.getEntriesByType('paint').map(e => e.toJSON())")
    }
    return {
        "paint_ms": paints.get("first-contentful-paint", paints.get("first-paint")),
        "ready_ms": probe["ready"],
        "longest_task_ms": probe["longest"],
        "long_tasks": probe["longTasks"],
    }


def heap_mib(browser: Browser) -> float:
    """The page's used JS heap after a full garbage collection, in MiB."""
    browser.driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    return browser.driver.execute_cdp_cmd("Runtime.getHeapUsage", {})["usedSize"] / 2**20


def scroll_ms(browser: Browser, selector: str) -> float:
    """Milliseconds for a WebDriver round trip that scrolls `selector` (or the page) to its end
    and waits for the page to paint twice: what a user waits for a frame after a scroll."""
    start = time.perf_counter()
    browser.driver.execute_async_script(SCROLL, selector)
    return (time.perf_counter() - start) * 1000


def round_trip_ms(browser: Browser) -> float:
    """Milliseconds for an empty script round trip: the floor of scroll_ms."""
    start = time.perf_counter()
    browser.js("return 1")
    return (time.perf_counter() - start) * 1000
