"""Job files for end-to-end tests: one-task jobs written on the fly, and the copy of examples/jobs
(plus the API tests' jobs in tests/api_jobs/) a service runs when it is given no jobs."""

from __future__ import annotations

import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples", "jobs")
API_JOBS = os.path.join(HERE, "api_jobs")


def write_job(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def job_yaml(
    job_id: str,
    script: str,
    schedule: str | None = None,
    max_concurrency: int | None = None,
    depends_on: str | None = None,
    extra: str = "",
) -> str:
    """One job with one shell task `t`."""
    lines = [f"id: {job_id}", f"name: {job_id} job"]
    if schedule is not None:
        lines.append(f'schedule: "{schedule}"')
    if max_concurrency is not None:
        lines.append(f"max_concurrency: {max_concurrency}")
    if depends_on is not None:
        lines.append(f"depends_on: [{depends_on}]")
    lines += ["tasks:", "  - id: t", "    type: shell", "    script: |"]
    lines += [f"      {line}" for line in script.strip().splitlines()]
    return "\n".join(lines) + "\n" + extra


def copy_examples(root: str, marker: str) -> str:
    """examples/jobs plus tests/api_jobs in root/jobs. The long API jobs get `marker` on their
    command line (`{marker}`), so the leak scan also finds them by name. data_pipeline writes
    under a fixed /tmp folder; the copy writes under `root`, so test sessions never share it."""
    jobs = os.path.join(root, "jobs")
    shutil.copytree(EXAMPLES, jobs)
    pipeline = os.path.join(jobs, "data_pipeline.yaml")
    with open(pipeline) as handle:
        text = handle.read()
    assert "PIPELINE_DIR: /tmp/petit-data-pipeline" in text
    write_job(
        jobs, "data_pipeline.yaml", text.replace("/tmp/petit-data-pipeline", f"{root}/pipeline")
    )
    for name in sorted(os.listdir(API_JOBS)):
        with open(os.path.join(API_JOBS, name)) as handle:
            write_job(jobs, name, handle.read().replace("{marker}", marker))
    return jobs
