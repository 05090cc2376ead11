"""Reading petit.toml: the stdlib's tomllib for the values, and a scan of the text for the line
each key is written on (tomllib keeps no positions), so that every problem can name its file,
line and key. What the keys mean is settings.py's business (and the jobs loader's, for the
[defaults] table); this module only finds the file and reads it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import UsageError

IMPLICIT_PATH = "petit.toml"  # read from the current directory when --config is not given
MAX_FILE_BYTES = 1 << 20

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_DOTTED = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_TABLE_LINE = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?")
_KEY_LINE = re.compile(rf"\s*({_DOTTED})\s*=")
_KEY_PART = re.compile(rf"{_BARE}|{_QUOTED}")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True)
class ConfigFile:
    """One petit.toml as read: its path (as given), its data, and the line of each key."""

    path: str
    data: dict
    # dotted key ("max_tasks", "defaults.retry.max_attempts") -> the line it is written on
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        """Relative paths in the file are taken from here, wherever petit is started."""
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def defaults(self):
        """The [defaults] table for the jobs, as written (the jobs loader checks it)."""
        return self.data.get("defaults", {})

    def where(self, key: str) -> str:
        """'petit.toml line 7': the line of a dotted key, else of the nearest table around it
        (a key inside an inline table or an array has no line of its own)."""
        parts = key.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line is not None:
                return f"{self.path} line {line}"
            parts.pop()
        return self.path


def find_config_file(given: str | None) -> ConfigFile | None:
    """The file named by --config (which must exist), else ./petit.toml when there is one.
    Raises UsageError, one line naming the file (and the line), when it cannot be read."""
    if given is None:
        return read_config_file(IMPLICIT_PATH) if os.path.isfile(IMPLICIT_PATH) else None
    if not os.path.exists(given):
        raise UsageError(f"--config {given}: no such file")
    return read_config_file(given)


def read_config_file(path: str) -> ConfigFile:
    if not os.path.isfile(path):
        raise UsageError(f"{path}: not a regular file: expected a petit.toml")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KiB; petit.toml is small")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not valid UTF-8 text (byte {exc.start})") from None
    import tomllib  # the worker and the API get the file's values, never read it again

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        position = _TOML_POSITION.search(str(exc))
        where = f"{path} line {position.group(1)}" if position else path
        raise UsageError(f"{where}: invalid TOML: {exc}") from None
    return ConfigFile(path, data, key_lines(text))


def key_lines(text: str) -> dict[str, int]:
    """The line of each key and table header, by dotted key. A line scan, not a parser: lines
    inside multi-line strings are skipped. A repeated array-of-tables header is found under its
    name (at its first line) and with its index too, as "api_keys[1]", and so are the keys
    inside each. Good enough to point at a line; tomllib has already checked the syntax."""
    lines: dict[str, int] = {}
    tables: list[list[str]] = [[]]  # the table the next keys are in, under its dotted names
    counts: dict[str, int] = {}  # array-of-tables header -> how many were seen
    open_quotes = None  # the delimiter of the multi-line string the next line starts inside
    for number, line in enumerate(text.splitlines(), start=1):
        if open_quotes is None:
            header = _TABLE_LINE.fullmatch(line)
            if header:
                table = _parts(header.group(1))
                name = ".".join(table)
                lines.setdefault(name, number)
                tables = [table]
                if line.lstrip().startswith("[["):  # also "api_keys[2]": the third such table
                    index = counts[name] = counts.get(name, -1) + 1
                    tables.append([*table[:-1], f"{table[-1]}[{index}]"])
                    lines[".".join(tables[-1])] = number
                continue
            assignment = _KEY_LINE.match(line)
            if assignment:
                for table in tables:
                    lines.setdefault(".".join([*table, *_parts(assignment.group(1))]), number)
        open_quotes = _open_at_end(line, open_quotes)
    return lines


def _open_at_end(line: str, open_quotes: str | None) -> str | None:
    """The delimiter of the multi-line string (three double or three single quotes) still open
    at the end of `line`, given the one open at its start. Left to right, so that triple quotes
    inside a one-line string or a comment open nothing."""
    at = 0
    while at < len(line):
        if open_quotes is not None:
            at = _string_end(line, at, open_quotes)
            if at < 0:
                return open_quotes
            open_quotes = None
        elif line.startswith(('"""', "'''"), at):
            open_quotes, at = line[at : at + 3], at + 3
        elif line[at] in "\"'":
            at = _string_end(line, at + 1, line[at])
            if at < 0:  # an unterminated string: tomllib has refused it already
                return None
        elif line[at] == "#":
            return None
        else:
            at += 1
    return open_quotes


def _string_end(line: str, at: int, quotes: str) -> int:
    """Where the string closed by `quotes` ends in `line` from `at` (just past its closing
    quotes), or -1 when it goes on past the line. A backslash escapes in basic strings ("),
    not in literal ones ('); up to two more quotes may end a multi-line string's content."""
    while at < len(line):
        if line[at] == "\\" and quotes[0] == '"':
            at += 2
        elif line.startswith(quotes, at):
            end = at + len(quotes)
            while len(quotes) == 3 and end < len(line) and line[end] == quotes[0] and end < at + 5:
                end += 1
            return end
        else:
            at += 1
    return -1


def _parts(dotted: str) -> list[str]:
    return [part.strip("\"'") for part in _KEY_PART.findall(dotted)]
