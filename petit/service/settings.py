"""What `petit run` was asked to do, decided once: a frozen Settings built from the command line,
the environment (PETIT_*) and petit.toml, in that order of precedence, over the defaults declared
here, not in the usage text. Every value records where it came from (`petit run
--print-config` shows it), each bad value is one clear UsageError naming the option, variable or
file line, and the result is handed whole to the children."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields

from ..errors import UsageError
from ..ipc.access import ApiKey
from ..ipc.binding import public_origin
from ..logconf import LEVELS
from .config_file import ConfigFile, find_config_file
from .security_config import AuditPolicy, read_api_keys, read_audit_policy

DEFAULT_DB = "./petit.db"
MAX_PORT = 65535
MAX_SHUTDOWN_SECS = 86400
MAX_TOKEN_BYTES = 4096


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
    api_token: str | None = field(default=None, repr=False)  # never in a log line
    api_token_file: str | None = None
    # the origin a reverse proxy serves the API and dashboard under, normalised as a browser
    # sends it in Origin (see ipc/binding.public_origin); None: loopback names only
    public_url: str | None = None
    # whether the API answers only requests addressed to a loopback name: decided by the
    # supervisor once it resolved api_host
    api_loopback_only: bool = True
    # field -> where its value came from: "cli", "env PETIT_X", "petit.toml line N", "default"
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    # the petit.toml read, if any: the scheduler worker applies its [defaults] to the jobs
    config: ConfigFile | None = None
    # the [[api_keys]] declared (None: none, and no keys file) and the [audit] rotation
    api_keys: tuple[ApiKey, ...] | None = None
    audit: AuditPolicy = field(default_factory=AuditPolicy)

    @classmethod
    def from_command_line(cls, args: Mapping, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from docopt's `args` for `petit run`, with the environment and petit.toml
        under them. Raises UsageError for a bad value, or a token file others may read."""
        inputs = Inputs(args, environ)
        chosen = {key: inputs.value(key) for key in OPTIONS if key not in _DERIVED}
        chosen["socket"] = inputs.socket(chosen["db"])
        chosen["api_token"] = inputs.token()
        return cls(
            jobs_dir=os.path.abspath(args["JOBS_DIR"]),
            **{key: value for key, (value, _) in chosen.items()},
            sources={key: source for key, (_, source) in chosen.items()},
            config=inputs.config,
            api_keys=read_api_keys(inputs.config),
            audit=read_audit_policy(inputs.config),
        )

    def blame(self, key: str) -> str:
        """What a start-up problem with a setting's value names, as a bad value would: the flag,
        the variable, or the key on its petit.toml line; the flag for a default (it is what
        changes it), and the db for a socket that follows it."""
        source = self.sources.get(key, "default")
        if key == "socket" and source.startswith(DERIVED_SOCKET):
            return f"{self.blame('db')} (the control socket is <db>.sock unless --socket is given)"
        return OPTIONS[key].flag if source == "default" else blamed(OPTIONS[key], source)

    def describe(self) -> list[str]:
        """`petit run --print-config`: each effective value and its source, the token only as
        whether it is set; then the [defaults] for the jobs."""
        rows = [("jobs_dir", self.jobs_dir, "cli")]
        for key in OPTIONS:
            value, source = getattr(self, key), self.sources.get(key, "default")
            if key == "api_token":
                value, source = (f"(set, from {source})", "") if value else ("(not set)", source)
            rows.append((key, _text(value), source))
        rows += self._security_rows()
        defaults = self.config.defaults if self.config else {}
        if isinstance(defaults, dict):
            rows += [
                (f"defaults.{key}", _text(value), self.config.where(f"defaults.{key}"))
                for key, value in defaults.items()
            ]
        width = max(len(key) for key, _, _ in rows) + 2
        values = min(max(len(value) for _, value, _ in rows), 48)
        return [
            f"{key:<{width}}{value:<{values}}  {source}".rstrip() for key, value, source in rows
        ]

    def _security_rows(self) -> list[tuple[str, str, str]]:
        """The API keys by name and role (never a hash), and the audit log's rotation; a value
        petit.toml does not set is a default, even inside a table the file has."""
        data = self.config.data if self.config else {}
        audit = data.get("audit") if isinstance(data.get("audit"), dict) else {}

        def where(key: str) -> str:
            is_set = key in data or key.removeprefix("audit.") in audit
            return self.config.where(key) if is_set else "default"

        keys = (
            "(none: no key asked)"
            if self.api_keys is None
            else (
                ", ".join(f"{key.name} ({key.role.value})" for key in self.api_keys)
                or "(none left)"
            )
        )
        source = where("api_keys" if "api_keys" in data else "api_keys_file")
        return [
            ("api_keys", keys, source),
            ("audit.max_size", f"{self.audit.max_bytes} bytes", where("audit.max_size")),
            ("audit.keep", str(self.audit.keep), where("audit.keep")),
        ]


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return "(none)" if value is None else json.dumps(value, default=str)


# -- the checkers, one per kind of value, shared by the options, variables and file keys -----
# Each takes the name to blame ("--max-tasks", "PETIT_MAX_TASKS", "petit.toml line 3: max_tasks")
# and the value (text from the command line or the environment, a TOML value from the file).


def whole_number(name: str, raw, minimum: int = 1) -> int:
    """A whole number of at least `minimum`; UsageError otherwise."""
    try:
        value = int(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    except ValueError:
        value = None
    if value is None:
        raise UsageError(f"{name} expects a whole number, got {raw!r}")
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {value}")
    return value


def _port(name: str, raw) -> int:
    port = whole_number(name, raw)
    if port > MAX_PORT:
        raise UsageError(f"{name} must be at most {MAX_PORT}, got {port}")
    return port


def seconds(name: str, raw) -> float:
    """A number of seconds, 0 to a day."""
    try:
        value = float(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise UsageError(f"{name} expects a number of seconds, got {raw!r}")
    if not 0 <= value <= MAX_SHUTDOWN_SECS:
        raise UsageError(f"{name} must be between 0 and {MAX_SHUTDOWN_SECS} seconds, got {raw}")
    return value


def _level(name: str, raw) -> str:
    if raw not in LEVELS:
        raise UsageError(f"{name} must be one of {', '.join(LEVELS)}, got {raw!r}")
    return raw


def _switch(name: str, raw) -> bool:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() not in words:
        raise UsageError(f"{name} must be true or false, got {raw!r}")
    return words[str(raw).lower()]


def _text_value(name: str, raw) -> str:
    if not raw.strip():
        raise UsageError(f"{name} must not be empty")
    return raw


def _public_url(name: str, raw: str) -> str | None:
    try:
        return public_origin(raw)
    except ValueError as exc:
        raise UsageError(
            f"{name} must be an origin like https://petit.example.com (http or https, a "
            f"host and an optional port; no path, query or user), got {raw[:200]!r}: {exc}"
        ) from None


@dataclass(frozen=True)
class Option:
    """One option of `petit run`: a Settings field, its petit.toml key (the same name), its
    command-line flag and its PETIT_* variable."""

    key: str
    kind: type | tuple[type, ...]  # what the TOML value must be
    check: Callable[[str, object], object]
    is_path: bool = False  # relative to the current directory, or in petit.toml to its folder
    in_file: bool = True

    @property
    def flag(self) -> str:
        return "--no-api" if self.key == "api" else "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "PETIT_" + self.key.upper()


OPTIONS = {
    option.key: option
    for option in (
        Option("db", str, _text_value, is_path=True),
        Option("socket", str, _text_value, is_path=True),
        Option("api", bool, _switch),
        Option("api_host", str, _text_value),
        Option("api_port", int, _port),
        # a secret has no place in a file others may read: petit.toml names a token file instead
        Option("api_token", str, _text_value, in_file=False),
        Option("api_token_file", str, _text_value, is_path=True),
        Option("public_url", str, _public_url),
        Option("max_jobs", int, lambda name, raw: whole_number(name, raw, minimum=0)),
        Option("max_tasks", int, whole_number),
        Option("keep_runs", int, whole_number),
        Option("shutdown_timeout", (int, float), seconds),
        Option("log_level", str, _level),
    )
}
# the tables and keys read by their own readers (jobs/defaults.py, security_config.py)
OWN_READERS = ("defaults", "api_keys", "api_keys_file", "audit")
FILE_KEYS = sorted([key for key, option in OPTIONS.items() if option.in_file] + [*OWN_READERS])
DERIVED_SOCKET = "default (<db>.sock)"
_DERIVED = {"socket", "api_token"}  # chosen after the others: they depend on db, token file
# socket has none: it follows the db (Inputs.socket)
_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(Settings)}
_DEFAULTS["db"] = DEFAULT_DB
_KIND_WORDS = {str: "a string", int: "an integer", bool: "true or false", (int, float): "a number"}
_TOML_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean", dict: "table"}


class Inputs:
    """What the user gave, in order of precedence: the command line (docopt's `args`), the
    environment, then petit.toml (--config PATH, else ./petit.toml when present), checked in
    full when read, so that every command refuses a bad file the same way."""

    def __init__(self, args: Mapping, environ: Mapping[str, str] = os.environ) -> None:
        self.args, self.environ = args, environ
        self.config = find_config_file(args.get("--config"))
        self._file = _file_values(self.config) if self.config else {}

    def value(self, key: str) -> tuple[object, str]:
        """(the value, its source) of one option."""
        option = OPTIONS[key]
        typed = self.args.get(option.flag)
        if key == "api":
            typed = False if typed else None  # --no-api can only say no
        if typed is not None:
            return _checked(option, typed, "cli", os.getcwd()), "cli"
        if self.environ.get(option.env):
            source = f"env {option.env}"
            return _checked(option, self.environ[option.env], source, os.getcwd()), source
        if key in self._file:
            return self._file[key]
        default = _DEFAULTS[key]
        return (os.path.abspath(default) if option.is_path and default else default), "default"

    def socket(self, db: tuple[object, str]) -> tuple[object, str]:
        """The socket given, or the db's path with `.sock` appended: also when the socket was
        given at a lower layer than the db (a --db or PETIT_DB over petit.toml's socket), which
        would otherwise point the service and `petit ctl` at another instance's socket."""
        socket = self.value("socket")
        if socket[0] is None:
            return f"{db[0]}.sock", DERIVED_SOCKET
        if _layer(socket[1]) < _layer(db[1]):
            return f"{db[0]}.sock", f"{DERIVED_SOCKET}: the db's {db[1]} outranks {socket[1]}"
        return socket

    def token(self) -> tuple[str | None, str]:
        """--api-token or PETIT_API_TOKEN, else the contents of the token file, if any."""
        typed = self.value("api_token")
        if typed[0] is not None:
            return typed
        path, source = self.value("api_token_file")
        if path is None:
            return typed
        name = blamed(OPTIONS["api_token_file"], source)
        return read_token_file(path, name), f"file {path} ({source})"


def _layer(source: str) -> int:
    """The precedence of a source: the command line over the environment over petit.toml over
    the defaults."""
    if source == "cli":
        return 3
    if source.startswith("env "):
        return 2
    return 0 if source.startswith("default") else 1


def blamed(option: Option, source: str) -> str:
    """The name a problem with an option's value blames: the flag, the variable, or the key on
    its line of petit.toml."""
    if source == "cli":
        return option.flag
    return option.env if source.startswith("env ") else f"{source}: {option.key}"


def _checked(option: Option, raw, source: str, base: str):
    """The option's value checked, blaming its source; a path made absolute from `base`, with
    `~` as the home folder (the shell expands it on a command line, nobody does in a file)."""
    value = option.check(blamed(option, source), raw)
    if not option.is_path:
        return value
    return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def _file_values(config: ConfigFile) -> dict[str, tuple[object, str]]:
    """The checked values of petit.toml's option keys. Raises UsageError at the first problem:
    an unknown key (with the closest known one), a value of the wrong type, or out of range."""
    values = {}
    for key, raw in config.data.items():
        where = config.where(key)
        if key not in FILE_KEYS:
            import difflib  # only for a bad file: kept out of every child's memory

            close = difflib.get_close_matches(key, FILE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"{where}: unknown key {key[:100]!r}{hint}: expected one of {', '.join(FILE_KEYS)}"
            )
        if key == "defaults":
            if not isinstance(raw, dict):
                raise UsageError(f"{where}: defaults: expected a table, got {_type_name(raw)}")
            continue
        if key in OWN_READERS:
            continue
        option = OPTIONS[key]
        if not isinstance(raw, option.kind) or (isinstance(raw, bool) and option.kind is not bool):
            expected = _KIND_WORDS[option.kind]
            raise UsageError(f"{where}: {key}: expected {expected}, got {_type_name(raw)}")
        values[key] = (_checked(option, raw, where, config.directory), where)
    return values


def _type_name(value) -> str:
    name = next((word for kind, word in _TOML_TYPES.items() if type(value) is kind), None)
    return f"{name or type(value).__name__} {repr(value)[:60]}"


def read_token_file(path: str, name: str) -> str:
    """The API token in `path`, without the whitespace around it: read once, never shown. A file
    that group or others may read or write is refused (with the chmod that fixes it), and so
    is an empty one, or one that is not visible ASCII on one line. No message shows the file's
    content."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{name}: {path} is not a regular file")
        if info.st_mode & 0o077:
            import shlex  # only for the message

            raise UsageError(
                f"{name}: {path} may be read or written by group or others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}): run chmod 600 {shlex.quote(path)}"
            )
        raw = os.read(fd, MAX_TOKEN_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_TOKEN_BYTES:
        raise UsageError(f"{name}: {path} should hold the token alone, on one line")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: {path} is not UTF-8 text (byte {exc.start})") from None
    if not token:
        raise UsageError(f"{name}: {path} is empty: write the token in it")
    if "\n" in token or "\r" in token:
        raise UsageError(f"{name}: {path} should hold the token alone, on one line")
    # what an Authorization header carries: a byte outside it could never be sent (nor matched)
    if not all("!" <= char <= "~" for char in token):
        raise UsageError(
            f"{name}: {path} holds characters a token cannot have: only visible ASCII "
            "(letters, digits, punctuation; no spaces) can travel in an HTTP header"
        )
    return token


def db_path(args: Mapping, environ: Mapping[str, str] = os.environ) -> str:
    """The db's absolute path: --db, PETIT_DB, petit.toml's db, or ./petit.db."""
    return Inputs(args, environ).value("db")[0]


def socket_path(args: Mapping, environ: Mapping[str, str] = os.environ) -> str:
    """The control socket: --socket, PETIT_SOCKET, petit.toml's socket, or <db>.sock."""
    inputs = Inputs(args, environ)
    return inputs.socket(inputs.value("db"))[0]
