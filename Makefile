# The venv is rebuilt only when setup.py changes: the stamp file records the last install.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint soak bench screenshots clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	bin/petit run examples/jobs

# Two pytest workers (pytest-xdist): most tests wait on subprocesses, so two at a time use the
# 2 cores of CI and halve the wall time; the CPU-heaviest modules share one worker (their
# xdist_group). TEST_WORKERS=0 runs them one by one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# ruff (rules and line length in ruff.toml): lint, and the one code format.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The long fault, fuzz and soak variants (about 10 minutes more than `make test`).
soak: $(STAMP)
	PETIT_SOAK=1 $(VENV)/bin/python -m pytest -m "slow or soak" --timeout 1200 -rP

# wrk is the load generator; installed from Debian when missing (the benchmark falls back to a
# slower Python client when it cannot be installed).
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1)) || echo "wrk unavailable: using the Python load client"
	$(VENV)/bin/python bench/bench.py

# docs/img/*.png, the README's pictures of the dashboard, from the example jobs (headless Chromium).
screenshots: $(STAMP)
	$(VENV)/bin/python docs/screenshots.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .pytest-screenshots
