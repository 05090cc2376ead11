"""Reading one job file safely: a regular file of bounded size (never a FIFO or a device), UTF-8,
the safe YAML loader with duplicate keys refused, and a budget on what YAML aliases expand to.
What the document means is loader.py's business."""

from __future__ import annotations

import os
import stat

import yaml

from ..core.text import short_repr

MAX_FILE_BYTES = 1024 * 1024
# YAML aliases let a small file stand for a huge structure (a "billion laughs" bomb) or a cycle:
# the document is measured, with a budget, before anything walks it. loader.MAX_TASKS tasks of a
# dozen values each fit well within it; no real job file comes close to the depth.
MAX_VALUES = 500_000
MAX_DEPTH = 64


class UnreadableJobFile(Exception):
    """Why a job file could not be read, on one line."""


class _JobFileConstructor:
    """Mixed into a safe loader. PyYAML keeps the last of two equal keys, so a repeated `retry:`
    or `schedule:` would silently replace the first: the kind of typo the unknown-key check exists
    to catch. A separate class so the same rules run on the pure-Python parser (tests)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *anchor` then an explicit key is a deliberate override
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable key: the base class reports it
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {short_repr(key)}: each key may appear once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)

    def construct_object(self, node, deep=False):
        """The scalar constructors of the safe loader raise plain ValueError (`2001-02-30`, an int
        of 5000 digits), KeyError (`!!bool maybe`), IndexError (`!!int ""`) or AttributeError
        (`!!timestamp x`): made YAML errors here, with the position of the value, like every other
        syntax problem. Collections are left alone: their errors are ConstructorErrors already."""
        if not isinstance(node, yaml.ScalarNode):
            return super().construct_object(node, deep)
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {node.tag.rsplit(':', 1)[-1]} {short_repr(node.value)}: {exc}",
                node.start_mark,
            ) from exc


class _UniqueKeyLoader(_JobFileConstructor, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The C parser when PyYAML was built with libyaml (faster, and not recursive)."""


def _read_text(path: str) -> str:
    """The file's text, read only if it is a regular file of at most MAX_FILE_BYTES. O_NONBLOCK:
    opening a FIFO would otherwise wait for a writer forever; the checks are made on the opened
    descriptor, so the file cannot be swapped for /dev/zero between the check and the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableJobFile(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableJobFile("cannot read: Is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableJobFile(
                "not a regular file (a FIFO, device or socket): expected a job file"
            )
        data = b"" if info.st_size > MAX_FILE_BYTES else _read_at_most(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UnreadableJobFile(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if info.st_size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:  # or it grew meanwhile
        raise UnreadableJobFile(
            f"file is larger than {MAX_FILE_BYTES // 1024} KiB; a job file should be small"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableJobFile(f"not valid UTF-8 text (byte {exc.start})") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.read(fd, min(limit, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def read_job_file(path: str):
    """The YAML document in `path` (None when the file is empty), read with the safe loader.
    Raises UnreadableJobFile with a one-line reason."""
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise UnreadableJobFile(f"YAML syntax error: {where}{exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        # str(exc) spans lines; this is what it says, on one
        raise UnreadableJobFile(
            f"YAML syntax error: character {exc.character!r} at position "
            f"{exc.position}: {exc.reason}"
        ) from None
    except yaml.YAMLError as exc:
        raise UnreadableJobFile(f"YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        # the pure-Python parser (no libyaml) recurses once per level of nesting
        raise UnreadableJobFile(
            f"YAML error: nested too deeply (more than {MAX_DEPTH} levels are refused anyway)"
        ) from None
    problem = _size_problem(data)
    if problem:
        raise UnreadableJobFile(problem)
    return data


def _size_problem(data) -> str | None:
    """Measure the document as our code (and anything that prints, compares or serialises a
    value later) would walk it: aliases count each time they are used. Iterative, and it stops
    at the budget, so the measure of a bomb or of a cycle is itself cheap."""
    containers = (dict, list, tuple)
    budget = MAX_VALUES
    stack = [iter((data,) if isinstance(data, containers) else ())]
    while stack:
        item = next(stack[-1], stack)  # the stack itself as the end marker: never a YAML value
        if item is stack:
            stack.pop()
            continue
        children = item.values() if isinstance(item, dict) else item
        budget -= len(children) + 1
        if budget < 0:
            return (
                f"more than {MAX_VALUES:,} values once YAML aliases are expanded: a job file "
                "should be small (an alias bomb, or an alias that refers to itself?)"
            )
        if len(stack) > MAX_DEPTH:
            return f"values nested more than {MAX_DEPTH} levels deep: a job file should be flat"
        # scalars are counted above in one step; only the containers are visited
        stack.append(iter([child for child in children if isinstance(child, containers)]))
    return None
