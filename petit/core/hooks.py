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
# `${NAME}` in a header value: taken from petit's environment when the webhook is sent
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
    url: str
    on: tuple[NotifyOn, ...] = (NotifyOn.FAILURE,)
    format: WebhookFormat = WebhookFormat.JSON
    headers: dict[str, str] = field(default_factory=dict)  # values may hold ${NAME}
    timeout_secs: float = DEFAULT_WEBHOOK_TIMEOUT_SECS
    retries: int = DEFAULT_WEBHOOK_RETRIES

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)


def header_variables(value: str) -> list[str]:
    return ENV_REFERENCE.findall(value)


def expand_headers(headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Header values with each `${NAME}` replaced; KeyError(NAME) for a variable not set."""
    return {
        name: ENV_REFERENCE.sub(lambda m: environ[m.group(1)], value)
        for name, value in headers.items()
    }


def safe_url(url: str) -> str:
    """A webhook's url as it may be shown and recorded: without credentials or query (either
    may carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
