"""`make screenshots`: the README's pictures of the dashboard, made from the example jobs.

Starts `bin/petit run` on a copy of examples/jobs in a temporary folder (through the tests'
harness, which also proves at the end that nothing it started is left), triggers a few runs (one
of them fails, one retries), waits for them to end, and saves docs/img/overview.png, job.png and
run.png at 1280x800 with the tests' headless Chromium (tests/browser.py)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from browser import INSTALL, Browser, missing  # noqa: E402
from harness import Service  # noqa: E402
from jobfiles import EXAMPLES  # noqa: E402

IMAGES = os.path.join(ROOT, "docs", "img")
# job id -> how many runs to trigger: enough history for the overview's squares
TRIGGERS = {"hello_world": 6, "data_pipeline": 4, "failing_job": 2, "retry_demo": 1}
RUN_SECS = 30.0


def main() -> int:
    reason = missing()
    if reason:
        print(f"screenshots: {reason} ({INSTALL})", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="petit-screenshots-")
    try:
        jobs = os.path.join(work, "jobs")
        shutil.copytree(EXAMPLES, jobs)
        service = Service(os.path.join(work, "service"), jobs_dir=jobs)
        with service.running():
            runs = {job: [service.trigger(job) for _ in range(n)] for job, n in TRIGGERS.items()}
            for run_ids in runs.values():
                for run_id in run_ids:
                    service.wait_run(run_id, timeout=RUN_SECS)
            shots = (
                ("overview.png", "/", "overview"),
                ("job.png", f"/jobs/failing_job?run={runs['failing_job'][-1]}", "job"),
                ("run.png", f"/runs/{runs['data_pipeline'][-1]}?task=load", "run"),
            )
            errors = []
            browser = Browser()
            try:
                for name, path, page in shots:
                    browser.reset()
                    browser.open(service.port, path)
                    browser.wait_page(page)
                    browser.wait(lambda: browser.body("data-live") == "on", "the live stream")
                    print(browser.screenshot(os.path.join(IMAGES, name)))
                    errors += browser.errors()
            finally:
                browser.quit()
        if errors:
            print(f"screenshots: the pages logged errors: {errors}", file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
