"""What `petit run` was asked to do, decided once: a frozen Settings built from the command line
(and the environment), checked here with one clear error per bad value, and handed whole to the
children. The defaults live here, not in the usage text, so an option the user did not type
is told apart from one they did."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ..errors import UsageError
from ..ipc.binding import public_origin
from ..logconf import LEVELS

TOKEN_ENV = "PETIT_API_TOKEN"
PUBLIC_URL_ENV = "PETIT_PUBLIC_URL"
DEFAULT_DB = "./petit.db"
MAX_PORT = 65535
MAX_SHUTDOWN_SECS = 86400


@dataclass(frozen=True)
class Settings:
    jobs_dir: str
    db: str
    socket: str
    max_tasks: int = 4
    max_jobs: int = 0  # 0: no limit
    keep_runs: int = 200
    shutdown_timeout: float = 30.0
    log_level: str = "info"
    api: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 8565
    api_token: str | None = None
    # the origin a reverse proxy serves the API and dashboard under, normalised as a browser
    # sends it in Origin (see ipc/binding.public_origin); None: loopback names only
    public_url: str | None = None
    # whether the API answers only requests addressed to a loopback name: decided by the
    # supervisor once it resolved api_host
    api_loopback_only: bool = True

    @classmethod
    def from_command_line(cls, args: Mapping, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from docopt's `args` for `petit run`: what the user typed wins, then the
        environment, then the defaults above. Raises UsageError for a bad value."""
        level = _given(args, "--log-level")
        if level not in LEVELS:
            raise UsageError(f"--log-level must be one of {', '.join(LEVELS)}, got {level!r}")
        port = whole_number(args, "--api-port")
        if port > MAX_PORT:
            raise UsageError(f"--api-port must be at most {MAX_PORT}, got {port}")
        return cls(
            jobs_dir=os.path.abspath(args["JOBS_DIR"]),
            db=db_path(args),
            socket=os.path.abspath(socket_path(args)),
            max_tasks=whole_number(args, "--max-tasks"),
            max_jobs=whole_number(args, "--max-jobs", minimum=0),
            keep_runs=whole_number(args, "--keep-runs"),
            shutdown_timeout=seconds(args, "--shutdown-timeout"),
            log_level=level,
            api=not args["--no-api"],
            api_host=_given(args, "--api-host"),
            api_port=port,
            api_token=args["--api-token"] or environ.get(TOKEN_ENV) or None,
            public_url=_public_url(args.get("--public-url") or environ.get(PUBLIC_URL_ENV)),
        )


# command-line option -> the Settings field it sets
OPTION_FIELDS = {
    "--max-tasks": "max_tasks",
    "--max-jobs": "max_jobs",
    "--keep-runs": "keep_runs",
    "--shutdown-timeout": "shutdown_timeout",
    "--log-level": "log_level",
    "--api-host": "api_host",
    "--api-port": "api_port",
}
_DEFAULTS = {field.name: field.default for field in fields(Settings)}


def default_of(option: str):
    """The value an option takes when it is not given."""
    return _DEFAULTS[OPTION_FIELDS[option]]


def _given(args: Mapping, option: str):
    value = args.get(option)
    return default_of(option) if value is None else value


def whole_number(args: Mapping, option: str, minimum: int = 1) -> int:
    """An option's whole-number value (its default when not given); UsageError otherwise."""
    raw = _given(args, option)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{option} expects a whole number, got {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{option} must be at least {minimum}, got {value}")
    return value


def seconds(args: Mapping, option: str) -> float:
    """An option's value in seconds, 0 to a day (its default when not given)."""
    raw = _given(args, option)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{option} expects a number of seconds, got {raw!r}") from None
    if not 0 <= value <= MAX_SHUTDOWN_SECS:
        raise UsageError(f"{option} must be between 0 and {MAX_SHUTDOWN_SECS} seconds, got {raw}")
    return value


def _public_url(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return public_origin(raw)
    except ValueError as exc:
        raise UsageError(
            f"--public-url must be an origin like https://petit.example.com (http or https, a "
            f"host and an optional port; no path, query or user), got {raw[:200]!r}: {exc}"
        ) from None


def db_path(args: Mapping) -> str:
    """--db made absolute, or the default db in the current directory."""
    return os.path.abspath(args.get("--db") or DEFAULT_DB)


def socket_path(args: Mapping) -> str:
    """--socket, or the db's path with `.sock` appended."""
    return args.get("--socket") or db_path(args) + ".sock"
