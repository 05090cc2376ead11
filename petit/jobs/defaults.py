"""The [defaults] table of petit.toml, applied to the raw data of each job file before the job is
parsed: what a job (or one of its tasks) leaves out, it takes from the defaults; what it says
itself wins. The loader checks the table once, with the readers the job keys use (see
loader.check_defaults); this module fills it in and names its problems by file line and key."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Protocol

from ..core.text import short_repr

# defaults key -> where it applies; the spelling is the job file's
TASK_KEYS = ("retry", "timeout", "timeout_secs")
JOB_KEYS = ("environment", "notify")
KEYS = (*TASK_KEYS, *JOB_KEYS)
TIMEOUT_KEYS = {"timeout", "timeout_secs"}


class DefaultsSource(Protocol):
    """What the loader needs of petit.toml (service/config_file.ConfigFile provides it)."""

    path: str

    @property
    def defaults(self) -> Mapping: ...

    def where(self, key: str) -> str: ...


def with_defaults(data, table: Mapping):
    """A job file's raw data with `table` filled in: `environment` merged under the job's own,
    `notify` when the job has none, and for each task `retry` and the timeout when it has
    none. Copies: no two jobs share a mutable value. Anything that is not a map is left for
    the parser to report."""
    if not table or not isinstance(data, dict):
        return data
    data = dict(data)
    if "environment" in table:
        own = data.get("environment")
        if own is None:
            data["environment"] = dict(table["environment"])
        elif isinstance(own, dict):
            data["environment"] = {**table["environment"], **own}
    if "notify" in table and "notify" not in data:
        data["notify"] = copy.deepcopy(table["notify"])
    if isinstance(data.get("tasks"), list):
        data["tasks"] = [_task_with_defaults(task, table) for task in data["tasks"]]
    return data


def _task_with_defaults(task, table: Mapping):
    if not isinstance(task, dict):
        return task
    task = dict(task)
    if "retry" in table and "retry" not in task:  # `retry: null` says "no retries"
        task["retry"] = copy.deepcopy(table["retry"])
    if not TIMEOUT_KEYS & task.keys():
        task.update({key: table[key] for key in TIMEOUT_KEYS if key in table})
    return task


def located(source: DefaultsSource, message: str) -> str:
    """A reader's message about the defaults ("retry: max_attempts: expected ...") as the line
    of petit.toml it is about: "petit.toml line 9: defaults.retry.max_attempts: expected ...".
    A key the job parser does not know ("unknown key 'notify' in a job: ...") is put on its
    own line too, as "defaults.notify: unknown key in a job: ..."."""
    for name in source.defaults:
        prefix = f"unknown key {short_repr(name)} in "
        if message.startswith(prefix):
            message = f"{name}: unknown key in {message.removeprefix(prefix)}"
            break
    parts = message.split(": ")
    path, node = ["defaults"], source.defaults
    while len(parts) > 1 and isinstance(node, Mapping) and parts[0] in node:
        node = node[parts[0]]
        path.append(parts.pop(0))
    key = ".".join(path)
    return f"{source.where(key)}: {key}: {': '.join(parts)}"
