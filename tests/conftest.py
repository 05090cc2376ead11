"""The end-to-end test harness is made of plugins: tests/harness.py (the running service, its
fixtures, the failure report) and tests/browser.py (headless Chromium for the dashboard's tests),
on top of tests/processes.py (the launcher, deadlines, leak scans) and tests/jobfiles.py (job
files). The names below are re-exported for the modules that import their helpers from
conftest."""

import pytest

# before anything imports them, so the harness's own asserts report their values
pytest.register_assert_rewrite("harness", "processes", "jobfiles", "api_client", "browser")

pytest_plugins = ["harness", "browser"]

from jobfiles import EXAMPLES, write_job  # noqa: E402, F401
from processes import (  # noqa: E402, F401
    MARK,
    PETIT,
    ROOT,
    assert_none_left,
    marked_alive,
    run_petit,
    wait_until,
)
