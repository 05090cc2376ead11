"""The job keys `on_success`, `on_failure`, `on_finish` (a command each, shaped like a task's) and
`notify` (a list of webhooks) -> core.hooks' Hook and Webhook, validated like every other key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..core.hooks import (
    DEFAULT_HOOK_TIMEOUT_SECS,
    DEFAULT_WEBHOOK_RETRIES,
    DEFAULT_WEBHOOK_TIMEOUT_SECS,
    Hook,
    HookEvent,
    NotifyOn,
    Webhook,
    WebhookFormat,
    env_variables,
    header_value_problem,
    safe_url,
)
from ..core.model import Task
from ..core.text import short_repr
from .fields import Problems, check_unknown_keys, read_choice, read_seconds, read_string
from .tasks import COMMAND_KEYS, read_command

HOOK_KEYS = {event.value for event in HookEvent}
WEBHOOK_KEYS = {"url", "on", "format", "headers", "timeout", "timeout_secs", "retries"}
MAX_WEBHOOKS = 20
MAX_RETRIES = 10


def read_hooks(problems: Problems, data: dict) -> tuple[Hook, ...]:
    hooks = []
    for event in HookEvent:
        value = data.get(event.value)
        if value is None:
            continue
        with problems.within(event.value):
            if not isinstance(value, dict):
                problems.add(
                    "expected a map like a task's: command/args, or type shell with script, "
                    f"or type python with script or inline; got {type(value).__name__}"
                )
                continue
            check_unknown_keys(problems, value, COMMAND_KEYS, "a hook")
            command = read_command(problems, value, DEFAULT_HOOK_TIMEOUT_SECS)
        name = event.log_name
        hooks.append(Hook(event, Task(id=name, name=name, **command)))
    return tuple(hooks)


def read_notify(
    problems: Problems, data: dict, environ: Mapping[str, str] = os.environ
) -> tuple[Webhook, ...]:
    value = data.get("notify")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_WEBHOOKS:
        problems.add(f"notify: expected a list of at most {MAX_WEBHOOKS} webhooks {{url, on, ...}}")
        return ()
    webhooks = []
    for index, item in enumerate(value):
        with problems.within(f"notify[{index}]"):
            webhook = _webhook(problems, item, environ)
        if webhook is not None:
            webhooks.append(webhook)
    return tuple(webhooks)


def _webhook(problems: Problems, item, environ: Mapping[str, str]) -> Webhook | None:
    if not isinstance(item, dict):
        problems.add(f"expected a map with a 'url', got {type(item).__name__}")
        return None
    # YAML 1.1 reads a bare `on` key as the boolean true (as GitHub Actions users know)
    item = {"on" if key is True else key: value for key, value in item.items()}
    check_unknown_keys(problems, item, WEBHOOK_KEYS, "a webhook")
    url = read_string(problems, item, "url", required=True)
    if url is not None:
        url = _checked_url(problems, url, environ)
    on = _events(problems, item.get("on", ["failure"]))
    fmt = read_choice(problems, WebhookFormat, item.get("format"), "format", WebhookFormat.JSON)
    headers = _headers(problems, item.get("headers", {}), environ)
    timeout = read_seconds(problems, item, "timeout_secs", "timeout")
    retries = item.get("retries", DEFAULT_WEBHOOK_RETRIES)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        problems.add(
            f"retries: expected an integer from 0 to {MAX_RETRIES}, got {short_repr(retries)}"
        )
        retries = DEFAULT_WEBHOOK_RETRIES
    if url is None:
        return None
    return Webhook(
        url=url,
        on=on,
        format=fmt,
        headers=headers,
        timeout_secs=DEFAULT_WEBHOOK_TIMEOUT_SECS if timeout is None else timeout,
        retries=retries,
    )


def _checked_url(problems: Problems, url: str, environ: Mapping[str, str]) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        problems.add(f"url: not a valid URL: {exc}")  # the url unquoted: it may hold a secret
        return None
    if "@" in parts.netloc:
        # urllib would take "user:pass@host" for a host name; and the url is shown and logged
        problems.add(
            "url: credentials (user:password@) are not allowed in a url: send them in "
            'headers with a ${NAME} from the environment (Authorization: "Basic ${TOKEN}")'
        )
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.add(
            f"url: {short_repr(safe_url(url))}: expected an http:// or https:// URL with a host"
        )
        return None
    if any(c.isspace() or ord(c) < 32 for c in url):
        problems.add("url: contains spaces or control characters")
        return None
    _check_variables(problems, "url", env_variables(url), environ)
    return url


def _check_variables(
    problems: Problems, where: str, variables: list[str], environ: Mapping[str, str]
) -> None:
    # the variable is named, its value never: it is usually a secret
    for variable in variables:
        if variable not in environ:
            problems.add(
                f"{where}: environment variable {variable} is not set "
                "(a ${NAME} in a webhook is taken from petit's environment)"
            )


def _events(problems: Problems, value) -> tuple[NotifyOn, ...]:
    if isinstance(value, str):
        value = [value]
    allowed = ", ".join(e.value for e in NotifyOn)
    if not isinstance(value, list) or not value:
        problems.add(f"on: expected a non-empty list of {allowed}")
        return (NotifyOn.FAILURE,)
    events = [read_choice(problems, NotifyOn, item, "on", None) for item in value]
    return tuple(dict.fromkeys(e for e in events if e is not None)) or (NotifyOn.FAILURE,)


def _headers(problems: Problems, value, environ: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.add(f"headers: expected a map of Name: value, got {type(value).__name__}")
        return {}
    headers = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or any(c in name for c in ' :\r\n\t"'):
            problems.add(f"headers: {short_repr(name)} is not a valid header name")
        elif not isinstance(text, str) or header_value_problem(text):
            problems.add(f"headers: {name}: expected a one-line latin-1 string")
        else:
            _check_variables(problems, f"headers: {name}", env_variables(text), environ)
            headers[name] = text
    return headers
