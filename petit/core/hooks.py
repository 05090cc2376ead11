"""What a job declares to follow its runs' ends: hooks (one command each, job keys `on_success`,
`on_failure`, `on_finish`) and webhooks (job key `notify`). What a run's end fires is
core/followups.py's; running and sending them is the service's (service/hooks.py, notify.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # model.py's Job holds hooks: only the annotation names the Task
    from .model import Task

DEFAULT_HOOK_TIMEOUT_SECS = 60.0
DEFAULT_WEBHOOK_TIMEOUT_SECS = 10.0
DEFAULT_WEBHOOK_RETRIES = 3
# `${NAME}` in a webhook's url or a header value: taken from petit's environment when it is sent
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class HookEvent(str, Enum):
    ON_SUCCESS = "on_success"
    ON_FAILURE = "on_failure"
    ON_FINISH = "on_finish"

    @property
    def log_name(self) -> str:
        """The pseudo task a hook's output is logged under: `@` is not allowed in a task id,
        so it never clashes with one."""
        return f"@{self.value}"


class NotifyOn(str, Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    FINISH = "finish"


class WebhookFormat(str, Enum):
    JSON = "json"
    SLACK = "slack"


@dataclass(frozen=True)
class Hook:
    """One hook: its command has the shape of a task's (`command.id` is the log name)."""

    event: HookEvent
    command: Task


@dataclass(frozen=True)
class Webhook:
    url: str  # may hold ${NAME}
    on: tuple[NotifyOn, ...] = (NotifyOn.FAILURE,)
    format: WebhookFormat = WebhookFormat.JSON
    headers: dict[str, str] = field(default_factory=dict)  # values may hold ${NAME}
    timeout_secs: float = DEFAULT_WEBHOOK_TIMEOUT_SECS
    retries: int = DEFAULT_WEBHOOK_RETRIES

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)


def env_variables(value: str) -> list[str]:
    """The names of the `${NAME}`s in a url or header value."""
    return ENV_REFERENCE.findall(value)


def header_value_problem(text: str) -> str | None:
    """Why `text` cannot be sent as a header value (http.client would refuse it, or split the
    header), or None. Never quotes `text`: it may be a secret."""
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in text):
        return "holds control characters (CR, LF, NUL ...)"
    if any(ord(c) > 255 for c in text):
        return "holds characters beyond latin-1"
    return None


def url_value_problem(text: str) -> str | None:
    """Why `text` cannot be part of a url as sent, or None (never quoting it)."""
    if any(not 33 <= ord(c) <= 126 for c in text):
        return "holds spaces, control characters or characters beyond ASCII"
    return None


@dataclass(frozen=True)
class Outgoing:
    """A webhook's url and headers as sent, each `${NAME}` replaced; or the problem that keeps it
    from being sent (naming the url or header and the variable, never a value)."""

    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def expand_webhook(webhook: Webhook, environ: Mapping[str, str]) -> Outgoing:
    fields = [("url", webhook.url, url_value_problem)] + [
        (f"header {name}", value, header_value_problem) for name, value in webhook.headers.items()
    ]
    for where, template, problem_of in fields:
        for variable in env_variables(template):
            if variable not in environ:
                return Outgoing(problem=f"{where}: environment variable {variable} is not set")
            problem = problem_of(environ[variable])
            if problem:
                return Outgoing(problem=f"{where}: environment variable {variable} {problem}")

    def expand(template: str) -> str:
        return ENV_REFERENCE.sub(lambda m: environ[m.group(1)], template)

    url = expand(webhook.url)
    try:
        parts = urlsplit(url)
    except ValueError:  # its message would quote the url
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return Outgoing(problem="url: its environment variables make it an invalid url")
    if "@" in parts.netloc:  # a value must not smuggle credentials into the host part
        return Outgoing(problem="url: its environment variables put credentials (@) in its host")
    return Outgoing(url, {name: expand(value) for name, value in webhook.headers.items()})


def safe_url(url: str) -> str:
    """A webhook's url as it may be shown, recorded and logged: without credentials or query
    (either may carry a secret), and with its `${NAME}`s unexpanded."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
