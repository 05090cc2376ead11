"""Fuzz campaign against job-file validation (issue 6, "Hostile input: job files").

Every example job file is mutated many times (deleted keys, wrong types, huge and negative numbers,
unicode and control characters, deep nesting, alias bombs, YAML tags, binary garbage, empty files,
duplicate keys, tabs, BOMs, non-UTF-8...), plus dedicated big cases (a 10 MB file, 1,000 job files,
5,000-task DAGs, files just under the size limit, FIFOs and device links).

In-process, every mutant goes through `load_jobs`, which must return or raise ConfigError (anything
else is a bug) with one-line, short errors that start with the file path, within a time bound and
under an address-space cap. A representative subset (at least one per kind, and every big case)
goes through the real `bin/petit validate` under RLIMIT_AS, with its peak RSS read from wait4.

Deterministic: every test seeds its own random.Random from PETIT_FUZZ_SEED (printed). The soak
variant (20x the mutants) only runs with PETIT_SOAK=1. Run with -s to see the case counts.
"""

from __future__ import annotations

import copy
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import yaml
from conftest import EXAMPLES, PETIT

from petit.core.schedule import Schedule
from petit.errors import ConfigError
from petit.jobs import loader
from petit.jobs import reader as jobfile
from petit.jobs.loader import load_jobs
from petit.jobs.reader import MAX_FILE_BYTES

# the CPU-heaviest modules share one pytest-xdist worker (make test: --dist loadgroup), so
# their time bounds never meet each other's load
pytestmark = pytest.mark.xdist_group("cpu")

SEED = int(os.environ.get("PETIT_FUZZ_SEED") or 20240606)
SOAK = os.environ.get("PETIT_SOAK") == "1"
soak_only = pytest.mark.skipif(not SOAK, reason="soak variant: set PETIT_SOAK=1 (make soak)")

FAST_MUTANTS_PER_EXAMPLE = 60
PURE_PARSER_MUTANTS_PER_EXAMPLE = 20
SOAK_FACTOR = 20
# The bounds cut hangs and runaway (quadratic) work, not slowness: `make test` runs two tests at a
# time on 2 cores, so each leaves twice the room a load takes alone (speed is for make bench).
MUTANT_BOUND_SECS = 10.0  # one in-process load_jobs of one mutant (a hang is cut here)
BIG_BOUND_SECS = 20.0  # the big cases, in-process (the slowest takes ~4 s alone)
DAG_BOUND_SECS = 6.0  # a 5,000-task DAG, validated (~1.2 s alone; quadratic work is 100x that)
CLI_BOUND_SECS = 30.0  # one `bin/petit validate`, interpreter start-up included
CLI_ADDRESS_SPACE = 1 << 30  # RLIMIT_AS of the validate process: a bomb ends in MemoryError
CLI_MAX_RSS_MB = 300
IN_PROCESS_HEADROOM = 2 << 30  # address space the campaign may add to pytest's own
MAX_MESSAGE_CHARS = 1000  # an error line, once its file path is taken off
DAG_TASKS = 5000

EXAMPLE_FILES = sorted(n for n in os.listdir(EXAMPLES) if n.endswith((".yaml", ".yml")))
TOKEN = "PETITFUZZTOKEN"


# --- the harness: time bound, memory cap, checks -------------------------------------------------


class TooSlow(Exception):
    pass


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """SIGALRM cuts a hang inside pure-Python code (a parser loop, a quadratic walk) so the
    failure names the mutant. pytest-timeout also uses SIGALRM: its timer is re-armed after."""

    def expired(signum, frame):
        raise TooSlow(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    outer_left, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:
            signal.setitimer(
                signal.ITIMER_REAL, max(outer_left - (time.monotonic() - started), 0.001)
            )


@contextmanager
def memory_cap(headroom: int = IN_PROCESS_HEADROOM) -> Iterator[None]:
    """An expanding alias bomb must end in MemoryError (reported as a bug), not in the OOM
    killer taking pytest and the machine with it."""
    import psutil

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = psutil.Process().memory_info().vms + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    lower = soft == resource.RLIM_INFINITY or cap < soft
    if lower:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        if lower:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Campaign:
    """Counts cases per kind, records failures, keeps mutant folders for the CLI subset."""

    name: str
    seed: int
    tried: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    cli_stride: int = 10**9  # every n-th mutant of a kind (the first included) goes to bin/petit
    cli_dirs: dict[str, list[str]] = field(default_factory=dict)
    cli_runs: int = 0
    failures: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    slowest: tuple[float, str] = (0.0, "")
    started: float = field(default_factory=time.monotonic)

    def fail(self, problem: str) -> None:
        """Recorded, not raised: one run lists every distinct bug instead of the first."""
        self.failures.append(problem)

    def assert_clean(self) -> None:
        assert not self.failures, (
            f"{len(self.failures)} failing case(s) (seed {self.seed}):\n"
            + "\n".join(self.failures[:30])
        )

    def summary(self) -> str:
        kinds = ", ".join(f"{kind}={count}" for kind, count in sorted(self.tried.items()))
        return (
            f"fuzz {self.name} (seed {self.seed}): {sum(self.tried.values())} cases, "
            f"{sum(self.outcomes.values())} loaded in-process ({self.outcomes['valid']} valid, "
            f"{self.outcomes['invalid']} rejected), {self.cli_runs} via bin/petit validate "
            f"(peak RSS {self.peak_rss_mb:.0f} MB), "
            f"slowest load {self.slowest[0]:.2f}s ({self.slowest[1]}), "
            f"{time.monotonic() - self.started:.1f}s; by kind: {kinds}"
        )


def check_errors(lines: list, paths: list[str], case: str) -> None:
    """Every error: one line, starting with a path of the folder being validated, short, and
    encodable (it goes to a terminal, a log, a JSON reply)."""
    assert lines, f"{case}: ConfigError without any error line"
    for line in lines:
        assert isinstance(line, str) and line, f"{case}: empty or non-text error {line!r:.200}"
        assert line.splitlines() == [line], f"{case}: multi-line error {line!r:.300}"
        prefix = next((p for p in paths if line.startswith(p + ": ")), None)
        assert prefix is not None, f"{case}: error does not start with a file path: {line!r:.300}"
        assert len(line) - len(prefix) <= MAX_MESSAGE_CHARS, (
            f"{case}: error of {len(line)} characters: {line[:300]!r}..."
        )
        line.encode("utf-8")  # a lone surrogate would break the terminal, log and JSON writers


def load_case(
    campaign: Campaign, kind: str, jobs_dir: str, case: str, bound: float = MUTANT_BOUND_SECS
) -> dict | None:
    """Validate one folder in-process; return the jobs, or None when it was (properly) rejected."""
    paths = [jobs_dir] + [os.path.join(jobs_dir, n) for n in os.listdir(jobs_dir)]
    started = time.monotonic()
    try:
        with time_bound(bound):
            jobs = load_jobs(jobs_dir)
    except ConfigError as exc:
        jobs = None
        try:
            check_errors(exc.errors, paths, case)
        except AssertionError as bad:
            campaign.fail(str(bad).split("\n")[0])
    except TooSlow:
        jobs = None
        campaign.fail(f"{case}: load_jobs still running after {bound}s (files kept in {jobs_dir})")
    except Exception as exc:  # noqa: BLE001 - the point: anything but ConfigError is a bug
        jobs = None
        campaign.fail(
            f"{case}: load_jobs raised {type(exc).__name__}: {str(exc)[:300]} "
            f"(files kept in {jobs_dir})"
        )
    elapsed = time.monotonic() - started
    for job in (jobs or {}).values():
        for problem in accepted_job_problems(job):
            campaign.fail(f"{case}: accepted, but {problem} (files kept in {jobs_dir})")
    if campaign.tried[kind] % campaign.cli_stride == 0:
        campaign.cli_dirs.setdefault(kind, []).append(jobs_dir)
    campaign.tried[kind] += 1
    campaign.outcomes["invalid" if jobs is None else "valid"] += 1
    if elapsed > campaign.slowest[0]:
        campaign.slowest = (elapsed, case)
    return jobs


def accepted_job_problems(job) -> list[str]:
    """What validation promises about a job it accepts: `petit validate` can describe its
    schedule, and every string handed to exec() can be (no NUL, no lone surrogate)."""
    problems = []
    texts = [*job.environment, *job.environment.values()]
    for task in job.tasks:
        texts += [
            task.command or "",
            *task.args,
            task.script or "",
            task.inline or "",
            task.working_dir or "",
            *task.environment,
            *task.environment.values(),
        ]
    for text in texts:
        try:
            if b"\0" in os.fsencode(text):
                problems.append(f"a string for exec() holds a NUL: {text[:60]!r}")
        except UnicodeEncodeError:
            problems.append(f"a string for exec() cannot be encoded: {text[:60]!r}")
    for spec in job.schedules:
        try:
            Schedule.parse(spec.cron, spec.timezone).next_fire(datetime.now(UTC))
        except Exception as exc:  # noqa: BLE001 - cmd_validate would print a traceback
            problems.append(f"its schedule fails: {type(exc).__name__}: {str(exc)[:200]}")
    return problems


# Runs `bin/petit validate` the way conftest.run_petit does, from a small interpreter that forks
# it under RLIMIT_AS and reads its rusage with wait4. Not straight from pytest: a child's
# ru_maxrss keeps the high-water mark of the memory it had before exec, and a child forked from
# pytest starts with all of pytest's.
MEASURE = """
import os, resource, sys
report, limit = sys.argv[1], int(sys.argv[2])
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable, [sys.executable, *sys.argv[3:]])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_validate(
    campaign: Campaign, jobs_dir: str, case: str, bound: float = CLI_BOUND_SECS
) -> tuple[int, list[str], list[str]]:
    """The real `bin/petit validate` under an address-space limit, its wall time and peak RSS
    checked. Returns (exit code, stdout lines, stderr lines); problems are recorded."""
    report = f"{jobs_dir.rstrip(os.sep)}.maxrss"
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MEASURE,
            report,
            str(CLI_ADDRESS_SPACE),
            PETIT,
            "validate",
            jobs_dir,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout_bytes, stderr_bytes = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the wrapper and petit under it
        proc.communicate()
        campaign.fail(f"{case}: petit validate still running after {bound}s ({jobs_dir})")
        return -9, [], []
    elapsed = time.monotonic() - started
    code = proc.returncode
    stdout, stderr = (
        stdout_bytes.decode("utf-8", "replace"),
        stderr_bytes.decode("utf-8", "replace"),
    )
    try:
        with open(report) as handle:
            rss_mb = int(handle.read()) / 1024
    except (OSError, ValueError):
        rss_mb = float("nan")
    campaign.cli_runs += 1
    campaign.peak_rss_mb = max(campaign.peak_rss_mb, rss_mb)
    out_lines, err_lines = stdout.rstrip("\n").split("\n"), stderr.rstrip("\n").split("\n")
    try:
        check_cli_output(
            code,
            out_lines,
            err_lines,
            jobs_dir,
            f"{case}: exit {code}, {elapsed:.1f}s, {rss_mb:.0f} MB\n"
            f"stdout: {stdout[-300:]!r}\nstderr: {stderr[-600:]!r}",
        )
        assert elapsed < bound, f"{case}: {elapsed:.1f}s"
        assert rss_mb < CLI_MAX_RSS_MB, f"{case}: peak RSS {rss_mb:.0f} MB"
    except AssertionError as bad:
        campaign.fail(str(bad))
    return code, out_lines, err_lines


def check_cli_output(
    code: int, out_lines: list[str], err_lines: list[str], jobs_dir: str, context: str
) -> None:
    stdout, stderr = "\n".join(out_lines), "\n".join(err_lines)
    assert code in (0, 1), context
    assert "Traceback" not in stdout + stderr, context
    assert stdout.strip() or stderr.strip(), context
    if code == 0:
        assert re.fullmatch(r"\d+ job\(s\) valid in .*", out_lines[-1]), context
    else:
        assert re.fullmatch(rf"{len(err_lines) - 1} error\(s\) in .*", err_lines[-1]), context
        for line in err_lines[:-1]:
            assert line.startswith(jobs_dir + os.sep) and line.splitlines() == [line], (
                f"{context}\nbad error line {line!r:.300}"
            )


# --- YAML text helpers ---------------------------------------------------------------------------


def yaml_quoted(text: str, rng: random.Random) -> str:
    """A double-quoted YAML scalar; characters outside printable ASCII mostly as escapes (so
    NUL, ESC and lone surrogates can be written), sometimes raw."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F or (
            code > 0xA0 and not 0xD800 <= code < 0xE000 and rng.random() < 0.4
        ):
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


def node_paths(tree, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys and indexes) to every value below the root."""
    if isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, list):
        items = list(enumerate(tree))
    else:
        return []
    paths = []
    for key, value in items:
        paths.append((*prefix, key))
        paths.extend(node_paths(value, (*prefix, key)))
    return paths


def parent_of(tree, path: tuple):
    for key in path[:-1]:
        tree = tree[key]
    return tree


def dump(tree) -> str:
    return yaml.safe_dump(tree, sort_keys=False, width=10**9, allow_unicode=True)


def replace_node(
    rng: random.Random, data, raw: str, paths: list[tuple] | None = None, as_key: bool = False
) -> str:
    """The example with one value (or one map key) replaced by a raw one-line YAML fragment."""
    tree = copy.deepcopy(data)
    candidates = paths if paths is not None else node_paths(tree)
    if not candidates:
        return raw
    path = rng.choice(candidates)
    parent = parent_of(tree, path)
    if as_key and isinstance(parent, dict):
        parent[TOKEN] = parent.pop(path[-1])
    else:
        parent[path[-1]] = TOKEN
    return dump(tree).replace(TOKEN, raw, 1)


def string_paths(data) -> list[tuple]:
    """Where ids, names, commands, env values, dependencies and schedules live."""
    paths = node_paths(data)
    return [p for p in paths if isinstance(parent_of(data, p)[p[-1]], str)] or paths


def key_paths(data) -> list[tuple]:
    return [p for p in node_paths(data) if isinstance(parent_of(data, p), dict)]


# --- mutations: each returns the bytes of one mutated file ---------------------------------------


@dataclass
class Example:
    name: str
    text: str
    data: dict


def mutate_delete_key(rng: random.Random, ex: Example) -> bytes:
    tree = copy.deepcopy(ex.data)
    for _ in range(rng.randint(1, 3)):
        paths = key_paths(tree)
        if not paths:
            break
        path = rng.choice(paths)
        del parent_of(tree, path)[path[-1]]
    return dump(tree).encode()


WRONG_TYPES = [
    "[]",
    "[1, 2]",
    "{}",
    "{a: 1}",
    "0",
    "1",
    "-1",
    "true",
    "false",
    "null",
    "~",
    "''",
    "'x'",
    "1.5",
    "[[], {}]",
    "{id: x, tasks: []}",
    '"tasks"',
    "[null]",
    "[[a]]",
    "{tasks: [{id: t}]}",
    "2020-01-01",
    "'2020-01-01'",
    "yes",
    "on",
    "0o17",
]


def mutate_wrong_type(rng: random.Random, ex: Example) -> bytes:
    as_key = rng.random() < 0.2
    raw = rng.choice(["1", "null", "true", "[a]", "1.5", "''", "~"] if as_key else WRONG_TYPES)
    return replace_node(rng, ex.data, raw, as_key=as_key).encode()


HUGE_NUMBERS = [
    "1" + "0" * 30,
    "1e308",
    "1e309",
    "-1e309",
    ".inf",
    ".nan",
    ".NaN",
    str(2**64),
    str(2**63 - 1),
    str(10**4000),
    "9" * 4400,
    "0x" + "f" * 5000,
    "0b" + "1" * 20000,
    "0o" + "7" * 3000,
    "1_000_000_000_000_000",
    "190:20:30:15:10:20:10:20:10:20",
    '"' + "9" * 400 + 'ms"',
    '"' + "9" * 400 + 'd"',
    '"' + "9" * 20 + 'd"',
    '"99999999999999999999999 * * * *"',
    '"@every ' + "9" * 30 + 'h"',
    '"*/99999999999999999999 * * * *"',
    '"0-4294967296 * * * *"',
    '"1000000s"',
    '"366d"',
    '"367d"',
    '"8784h1s"',
    "366000000",
    "31622400.0001",
    "1e-320",
    "5e-324",
    "4.9e-324",
    "1.7976931348623157e308",
    "123456789012345678901234567890.5",
]


def mutate_huge_number(rng: random.Random, ex: Example) -> bytes:
    return replace_node(rng, ex.data, rng.choice(HUGE_NUMBERS)).encode()


NEGATIVE_NUMBERS = [
    "-1",
    "-0",
    "-0.0",
    "-1e308",
    "-" + "1" * 40,
    '"-5s"',
    '"-1m"',
    "-.inf",
    "-2147483649",
    "-9223372036854775809",
    "-0x10",
    "-1.5",
    '"-0s"',
    "'-1'",
    '"-1 * * * *"',
    '"@every -5m"',
]


def mutate_negative_number(rng: random.Random, ex: Example) -> bytes:
    return replace_node(rng, ex.data, rng.choice(NEGATIVE_NUMBERS)).encode()


UNICODE_PIECES = [
    "\x00",
    "\x1b[31m",
    "\x1b]0;pwned\x07",
    "\u202e",
    "\u200f",
    "\u2028",
    "\u2029",
    "\x85",
    "\ud800",
    "\udcff",
    "\U0001f600",
    "\U0001f469\u200d\U0001f4bb",
    "\ufeff",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\x7f",
    "\x08",
    "\x0b",
    "\x0c",
    "é",
    "e\u0301",
    "ǅ",
    "\u0663\u0664",
    "..",
    ".",
    "a/b",
    "../../etc/passwd",
    " ",
    "=",
    "$HOME",
    "`id`",
    "%s%n",
    "{0}",
    "x" * 200,
    "\uffff",
    "\U0010ffff",
    "\u00a0",
    "İ",
    "ﬃ",
]


def unicode_text(rng: random.Random) -> str:
    return "".join(rng.choice(UNICODE_PIECES + ["a", "b", "_"]) for _ in range(rng.randint(1, 6)))


def mutate_unicode(rng: random.Random, ex: Example) -> bytes:
    """Control characters, bidi marks, emoji and surrogates (via escapes) in ids, names, commands,
    env names and values, dependencies, schedules."""
    raw = yaml_quoted(unicode_text(rng), rng)
    as_key = rng.random() < 0.25
    text = replace_node(
        rng, ex.data, raw, paths=None if as_key else string_paths(ex.data), as_key=as_key
    )
    return text.encode("utf-8", "surrogatepass")


def nested(rng: random.Random) -> str:
    depth = rng.choice([50, 500, 999, 1000, 1001, 5000, 10_000, 100_000])
    form = rng.randrange(5)
    if form == 0:
        return "[" * depth + "]" * depth
    if form == 1:
        return "{a: " * depth + "1" + "}" * depth
    if form == 2:
        return "[{a: " * depth + "1" + "}]" * depth
    if form == 3:
        return "[" * depth  # never closed
    return "!!seq [" * min(depth, 2000) + "]" * min(depth, 2000)


def mutate_deep_nesting(rng: random.Random, ex: Example) -> bytes:
    if rng.random() < 0.2:  # block style: "- - - - x" nests one sequence per dash
        depth = rng.choice([100, 999, 5000, 10_000])
        return (dump(ex.data) + "deep:\n  " + "- " * depth + "x\n").encode()
    return replace_node(rng, ex.data, nested(rng), as_key=rng.random() < 0.1).encode()


def bomb_anchors(rng: random.Random) -> tuple[str, str]:
    """(definitions, alias): up to 10 levels of 10 references, 10 billion leaves once expanded;
    some under the size budget (7**6, 2**16), so that a field's own check meets them."""
    levels, width = rng.choice([(9, 9), (10, 10), (6, 20), (30, 2), (6, 7), (16, 2)])
    as_map = rng.random() < 0.4
    parts = []
    for level in range(levels):
        item = "lol" if level == 0 else f"*b{level - 1}"
        if as_map:
            parts.append(
                f"l{level}: &b{level} {{{', '.join(f'k{i}: {item}' for i in range(width))}}}"
            )
        else:
            parts.append(f"l{level}: &b{level} [{', '.join([item] * width)}]")
    return "{" + ", ".join(parts) + "}", f"*b{levels - 1}"


def mutate_alias_bomb(rng: random.Random, ex: Example) -> bytes:
    """Billion laughs: the anchors are defined first (in `config:`, which nobody reads, or in an
    unknown key), then one value of the job refers to the last level. Or a self-referencing node."""
    form = rng.randrange(4)
    if form == 0:
        return replace_node(
            rng,
            ex.data,
            rng.choice(["&r [*r]", "&r {a: *r}", "&r [a, [b, *r]]", "&r {a: [*r, *r]}"]),
        ).encode()
    definitions, alias = bomb_anchors(rng)
    holder = rng.choice(["config", "x-anchors"])
    head = f"{holder}: {definitions}\n"
    if form == 1:
        return (head + dump(ex.data)).encode()  # only the definitions: config must stay bounded
    if form == 2:
        tasks = ex.data.get("tasks")
        if isinstance(tasks, list) and tasks:  # a merge key pulls the bomb into a task
            tree = copy.deepcopy(ex.data)
            tree["tasks"][rng.randrange(len(tasks))] = TOKEN
            raw = "{<<: " + alias + ", id: merged}" if "k0" in definitions else alias
            return (head + dump(tree).replace(TOKEN, raw, 1)).encode()
    return (head + replace_node(rng, ex.data, alias, as_key=rng.random() < 0.1)).encode()


TAGS = [
    '!!python/object/apply:os.system ["true"]',
    "!!python/name:os.system",
    "!!python/object/new:dict {}",
    "!!python/tuple [1, 2]",
    "!!python/module:os",
    '!!binary "aGVsbG8="',
    '!!binary "zz"',
    "!!timestamp 2001-02-30",
    "2001-02-30",
    "0000-01-01",
    "9999-12-31 23:59:59 +99:00",
    "2001-01-01 00:00:00 -23:59",
    "!!set {a, b}",
    "!!omap [a: 1, b: 2]",
    "!!pairs [a: 1, a: 2]",
    "!foo bar",
    "!!str 1",
    '!!int "x"',
    '!!float "x"',
    '!!bool "maybe"',
    '!!null "x"',
    "!!merge x",
    "!!value x",
    "!<tag:yaml.org,2002:python/none> ''",
    "!!map [a]",
    "!!seq {a: 1}",
    "!!str [a]",
    '!!timestamp "2001-13-01"',
    "!<!> x",
    "!!binary " + "A" * 5000,
    '!!int ""',
    '!!int "+"',
    '!!int "0x"',
    '!!float ""',
    '!!float "."',
    '!!bool ""',
    "!!timestamp x",
    "!!timestamp 2001-01-01t",
    "!!omap [1]",
    "!!pairs [[1, 2]]",
    "!!set [a]",
    "9999-12-31 23:59:59 -23:59",
    "0001-01-01 00:00:00 +23:59",
]


def mutate_tags(rng: random.Random, ex: Example) -> bytes:
    return replace_node(rng, ex.data, rng.choice(TAGS), as_key=rng.random() < 0.1).encode()


def mutate_binary_garbage(rng: random.Random, ex: Example) -> bytes:
    garbage = rng.randbytes(rng.choice([1, 16, 256, 4096, 65536]))
    form = rng.randrange(3)
    if form == 0:
        return garbage
    if form == 1:  # a valid start, then garbage
        return ex.text.encode()[: rng.randrange(len(ex.text) + 1)] + garbage
    # valid UTF-8 but random code points (no surrogates)
    return "".join(
        chr(
            rng.choice(
                [
                    rng.randrange(0x20, 0x7F),
                    rng.randrange(0xA0, 0xD800),
                    rng.randrange(0xE000, 0x110000),
                    rng.randrange(0, 0x20),
                ]
            )
        )
        for _ in range(rng.randint(1, 2000))
    ).encode()


EMPTY_FILES = [
    b"",
    b" ",
    b"\n\n",
    b"\t",
    b"---\n",
    b"---\n...\n",
    b"~\n",
    b"null",
    b"# comment\n",
    b"\x00",
    b"\xef\xbb\xbf",
    b"[]",
    b"{}",
    b"''",
    b"0",
    b"...",
    b"--- |\n",
    b"-",
    b":",
    b"? ",
    b"&a",
    b"*a",
    b"!",
    b"%YAML 1.1\n---\n",
    b"%TAG ! tag:x,2000:\n---\n",
    b"\r\n",
]


def mutate_empty(rng: random.Random, ex: Example) -> bytes:
    return rng.choice(EMPTY_FILES)


def mutate_duplicate_key(rng: random.Random, ex: Example) -> bytes:
    lines = dump(ex.data).splitlines()
    keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[A-Za-z_]+:", line)]
    i = rng.choice(keyed)
    indent, dash, key = re.match(r"^(\s*)(- )?([A-Za-z_]+):", lines[i]).groups()
    value = rng.choice(["1", "x", "[a]", "{}", "null", lines[i].split(":", 1)[1].strip() or "x"])
    if dash:  # "- key: v" starts a map: the duplicate goes on the next line, in the same map
        lines.insert(i + 1, f"{indent}  {key}: {value}")
    else:
        lines.insert(i, f"{indent}{key}: {value}")
    return ("\n".join(lines) + "\n").encode()


def mutate_tabs(rng: random.Random, ex: Example) -> bytes:
    lines = ex.text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        form = rng.randrange(3)
        if form == 0:
            lines[i] = re.sub(r"^( +)", lambda m: "\t" * (len(m.group(1)) // 2 or 1), lines[i])
        elif form == 1:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + "\t" + lines[i][pos:]
        else:
            lines.insert(i, "\tkey: value")
    return ("\n".join(lines) + "\n").encode()


def mutate_bom_encoding(rng: random.Random, ex: Example) -> bytes:
    form = rng.randrange(5)
    if form == 0:
        return ex.text.encode("utf-16")
    if form == 1:
        return ex.text.encode(rng.choice(["utf-32", "utf-16-le", "utf-16-be", "utf-32-be"]))
    if form == 2:
        return b"\xef\xbb\xbf\xef\xbb\xbf" + ex.text.encode()
    lines = ex.text.splitlines()
    i = rng.randrange(len(lines))
    lines[i] = ("\ufeff" if form == 3 else "\u200b") + lines[i]
    return "\n".join(lines).encode()


INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",
    b"\x80",
    b"\xf4\x90\x80\x80",
    b"\xe9",
]


def mutate_non_utf8(rng: random.Random, ex: Example) -> bytes:
    if rng.random() < 0.3:
        return ex.text.replace("e", "é").encode("latin-1")
    data = bytearray(ex.text.encode())
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(data) + 1)
        data[pos:pos] = rng.choice(INVALID_UTF8)
    return bytes(data)


def mutate_text_splice(rng: random.Random, ex: Example) -> bytes:
    """Byte- and line-level damage: truncation, dropped / repeated / swapped lines, a flipped
    byte, a stray YAML indicator."""
    text = ex.text
    lines = text.splitlines()
    form = rng.randrange(6)
    if form == 0:
        return text.encode()[: rng.randrange(len(text))]
    if form == 1:
        del lines[rng.randrange(len(lines))]
    elif form == 2:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif form == 3:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif form == 4:
        data = bytearray(text.encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    else:
        pos = rng.randrange(len(text) + 1)
        return (
            text[:pos]
            + rng.choice(
                [
                    ":",
                    "- ",
                    "&a ",
                    "*a ",
                    "!",
                    "%",
                    "@",
                    "`",
                    "|",
                    ">",
                    "? ",
                    "{",
                    "[",
                    "'",
                    '"',
                    "#",
                    "\\",
                    ",",
                    "<<: ",
                ]
            )
            + text[pos:]
        ).encode()
    return ("\n".join(lines) + "\n").encode()


def mutate_multi_document(rng: random.Random, ex: Example) -> bytes:
    return rng.choice(
        [
            ex.text + "\n---\n" + ex.text,
            "---\n" + ex.text + "...\n",
            ex.text + "\n...\n",
            ex.text + "\n---\n",
            "--- !!map\n" + ex.text,
            "--- " + ex.text,
        ]
    ).encode()


CRONS = [
    "* * * * *",
    "*/0 * * * *",
    "0 0 30 2 *",
    "0 0 31 2 *",
    "0 0 29 2 *",
    "60 * * * *",
    "* * * * * * *",
    "@every 0s",
    "@every",
    "@every 1ms",
    "@reboot",
    "@yearly",
    "0-59/61 * * * *",
    "L * * * *",
    "0 0 L * *",
    "0 0 * * 5L",
    "0 0 * * 1#6",
    "0 0 ? * *",
    "H * * * *",
    "1-0 * * * *",
    "* * * JAN-FOO *",
    "59-0 * * * *",
    "*/99999999999 * * * *",
    "0 0 1 1 * 2099",
    "0 0 0 0 0",
    "* * * * 7",
    "* * * * 8",
    "0,0,0,0 * * * *",
    ",,, * * * *",
    "\t* * * * *",
    "*\u3000* * * *",
    "* * * * MON-SUN",
    "0 0 1-31/2 * *",
    "*/10 * * * * *",
    "61 * * * * *",
    "0 0 12 * * 1-5 *",
    "-1 * * * *",
    "1.5 * * * *",
    "%s * * * *",
    "* * * *",
    "*" * 2000,
    "1," * 600 + "2 * * * *",
]
ZONES = [
    "UTC",
    "America",
    "a" * 300,
    "a" * 5000,
    "../etc/passwd",
    "/etc/localtime",
    "Europe/Paris\x00",
    "posixrules",
    "zone.tab",
    "tzdata.zi",
    "",
    " ",
    "Etc/GMT+14",
    "Etc/GMT+15",
    "EST5EDT",
    "Factory",
    "right/UTC",
    "posix/Europe/Paris",
    "Europe/Paris/",
    "europe/paris",
    "Europe\\Paris",
    "Europe/Kyiv",
    "Europe/\u202eParis",
    ".",
]
DURATIONS = [
    "0s",
    "0ms",
    "1ms",
    "366d",
    "367d",
    "8784h",
    "8785h",
    "1d1d",
    "1h30m",
    "1.5h",
    "1 h",
    " 5m ",
    "5M",
    "\u0661\u0662s",
    "9" * 13 + "ms",
    "9" * 400 + "ms",
    "",
    "-1s",
    "1e3s",
    "0x10s",
    "1s2",
    "s",
    "5mm",
    "5ms5",
    "99999999999d",
    "\x00",
    30,
    0,
    -1,
    1e308,
    float("nan"),
    True,
    None,
]


def mutate_schedule_values(rng: random.Random, ex: Example) -> bytes:
    """Odd cron lines, zone names and durations: the values handed to the cron parser, zoneinfo
    and the duration parser rather than checked by config.py itself."""
    tree = copy.deepcopy(ex.data)
    form = rng.randrange(4)
    if form == 0:
        cron = rng.choice(CRONS)
        tree["schedule"] = (
            {"cron": cron, "timezone": rng.choice(ZONES)} if rng.random() < 0.6 else cron
        )
    elif form == 1 and tree.get("tasks"):
        task = rng.choice(tree["tasks"])
        key = rng.choice(["timeout", "timeout_secs"])
        task[key] = rng.choice(DURATIONS)
    elif form == 2 and tree.get("tasks"):
        task = rng.choice(tree["tasks"])
        task["retry"] = {
            "max_attempts": rng.choice([1, 100, 101, -1, 10**30]),
            rng.choice(["delay", "delay_secs"]): rng.choice(DURATIONS),
        }
    else:
        tree["depends_on"] = [
            {
                "job": rng.choice(["x", "", "\x00", "a" * 500]),
                "condition": "within_window",
                "window": rng.choice(DURATIONS),
            }
        ]
    return yaml.safe_dump(tree, sort_keys=False, width=10**9).encode()


def mutate_benign(rng: random.Random, ex: Example) -> bytes:
    """Changes that must NOT make a file invalid: a BOM, CRLF line ends, a trailing comment,
    the keys in another order. Marked so the campaign also checks the job still loads."""
    form = rng.randrange(4)
    if form == 0:
        return b"\xef\xbb\xbf" + ex.text.encode()
    if form == 1:
        return ex.text.replace("\n", "\r\n").encode()
    if form == 2:
        return (ex.text + "\n# a comment \U0001f600\n").encode()
    items = list(ex.data.items())
    rng.shuffle(items)
    return dump(dict(items)).encode()


MUTATIONS: dict[str, Callable[[random.Random, Example], bytes]] = {
    "delete_key": mutate_delete_key,
    "wrong_type": mutate_wrong_type,
    "huge_number": mutate_huge_number,
    "negative_number": mutate_negative_number,
    "unicode_control": mutate_unicode,
    "deep_nesting": mutate_deep_nesting,
    "alias_bomb": mutate_alias_bomb,
    "yaml_tags": mutate_tags,
    "binary_garbage": mutate_binary_garbage,
    "empty": mutate_empty,
    "duplicate_key": mutate_duplicate_key,
    "tabs": mutate_tabs,
    "bom_encoding": mutate_bom_encoding,
    "non_utf8": mutate_non_utf8,
    "text_splice": mutate_text_splice,
    "multi_document": mutate_multi_document,
    "schedule_values": mutate_schedule_values,
    "benign": mutate_benign,
}


def load_examples() -> list[Example]:
    examples = []
    for name in EXAMPLE_FILES:
        with open(os.path.join(EXAMPLES, name)) as handle:
            text = handle.read()
        examples.append(Example(name, text, yaml.safe_load(text)))
    return examples


def write_file(directory: str, name: str, data: bytes) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


# --- the campaign over the examples --------------------------------------------------------------


def mutate_examples(campaign: Campaign, base: str, mutants_per_example: int) -> None:
    """Every example, `mutants_per_example` times; the kinds rotate so each example meets each
    kind several times, the choices inside a kind come from the seeded generator."""
    rng = random.Random(f"{campaign.seed}-examples")
    kinds = list(MUTATIONS)
    assert len(load_jobs(EXAMPLES)) == len(EXAMPLE_FILES), "the loader in use rejects the examples"
    with memory_cap():
        for index, example in enumerate(load_examples()):
            original_dir = os.path.join(base, f"original-{example.name}")
            write_file(original_dir, example.name, example.text.encode())
            original = outcome(original_dir)
            for round_ in range(mutants_per_example):
                kind = kinds[(round_ + index) % len(kinds)]
                data = MUTATIONS[kind](rng, example)
                case = f"{kind} #{round_} of {example.name} (seed {campaign.seed})"
                jobs_dir = os.path.join(base, f"{kind}-{example.name}-{round_}")
                write_file(jobs_dir, example.name, data)
                load_case(campaign, kind, jobs_dir, case)
                if kind == "benign" and outcome(jobs_dir) != original:
                    campaign.fail(f"{case}: a harmless change changed the outcome of validation")


def outcome(jobs_dir: str) -> object:
    """What validating a folder gives: its job ids, or its errors without the folder's path
    (paris_morning depends on data_pipeline, so alone it is rejected, and must stay so)."""
    try:
        return sorted(load_jobs(jobs_dir))
    except ConfigError as exc:
        return [line.replace(jobs_dir, "") for line in exc.errors]


def run_cli_subset(campaign: Campaign) -> None:
    for kind, jobs_dirs in sorted(campaign.cli_dirs.items()):
        for jobs_dir in jobs_dirs:
            run_validate(campaign, jobs_dir, f"{kind} via bin/petit ({jobs_dir})")


@pytest.mark.timeout(180)
def test_fuzz_examples_fast(tmp_path):
    campaign = Campaign("examples, fast", SEED)
    mutate_examples(campaign, str(tmp_path), FAST_MUTANTS_PER_EXAMPLE)
    run_cli_subset(campaign)
    assert set(campaign.tried) == set(MUTATIONS)
    print("\n" + campaign.summary())
    campaign.assert_clean()


@soak_only
@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fuzz_examples_soak(tmp_path):
    campaign = Campaign("examples, soak", SEED, cli_stride=60)
    mutate_examples(campaign, str(tmp_path), FAST_MUTANTS_PER_EXAMPLE * SOAK_FACTOR)
    run_cli_subset(campaign)
    print("\n" + campaign.summary())
    campaign.assert_clean()


# --- the big cases -------------------------------------------------------------------------------

HELLO = "id: {id}\nname: Job {id}\n{extra}tasks:\n  - id: t\n    command: echo\n"


def big_dag_text(shape: str, count: int = DAG_TASKS) -> str:
    lines = ["id: big_dag", f"name: {shape} of {count} tasks", "tasks:"]
    for i in range(count):
        if shape == "chain" and i:
            deps = f"[t{i - 1}]"
        elif shape == "fan_out" and i:
            deps = "[t0]"
        elif shape == "fan_in" and i == count - 1:
            deps = "[" + ", ".join(f"t{j}" for j in range(count - 1)) + "]"
        elif shape == "layered" and i >= 10:
            deps = (
                f"[t{i - 10}, t{i - 7}, t{i // 2}]"
                if i // 2 not in (i - 10, i - 7)
                else f"[t{i - 10}]"
            )
        elif shape == "cycle":
            deps = f"[t{(i - 1) % count}]"
        else:
            deps = "[]"
        lines.append(f"  - {{id: t{i}, command: echo, depends_on: {deps}}}")
    return "\n".join(lines) + "\n"


def near_limit_texts() -> dict[str, str]:
    """Files just under MAX_FILE_BYTES that each stress one walk."""
    room = MAX_FILE_BYTES - 4096
    long = "x" * room
    entries = room // 3
    return {
        "max_tasks": "id: many\nname: Many\ntasks:\n"
        + "".join(f"  - {{id: t{i}, command: e}}\n" for i in range(loader.MAX_TASKS)),
        "over_max_tasks": "id: many\nname: Many\ntasks:\n"
        + "".join("  - {id: t, command: e}\n" for _ in range(loader.MAX_TASKS + 1)),
        "long_depends_on": "id: d\nname: D\ntasks:\n  - id: a\n    command: e\n  - id: b\n"
        "    command: e\n    depends_on: [" + ", ".join(["a"] * entries) + "]\n",
        "long_unknown_depends": "id: d\nname: D\ntasks:\n  - id: b\n    command: e\n"
        "    depends_on: [" + ", ".join(f"x{i}" for i in range(room // 9)) + "]\n",
        "long_strings": f"id: {long[: room // 8]}\nname: 1\n"
        f"schedule: '{long[: room // 8]}'\ntasks:\n"
        f"  - id: t\n    command: [{long[: room // 8]}]\n    timeout: '{long[: room // 8]}'\n"
        f"    retry: {{condition: '{long[: room // 8]}', delay: '9{long[: room // 8]}'}}\n"
        f"    environment: {{'{long[: room // 8]}': [1]}}\n",
        "long_timezone": "id: z\nname: Z\nschedule: {cron: '* * * * *', timezone: '"
        + "a/" * (room // 4)
        + "'}\n"
        "tasks:\n  - id: t\n    command: e\n",
        "many_env": "id: e\nname: E\nenvironment:\n"
        + "".join(f"  V{i}: {i}\n" for i in range(room // 20))
        + "tasks:\n  - id: t\n    command: e\n",
        "many_errors": "id: e\nname: E\ntasks:\n"
        + "".join(
            "  - {id: '', type: x, retry: 1, timeout: y, depends_on: 3, condition: z}\n"
            for _ in range(room // 80)
        ),
        "many_unknown_keys": "id: u\nname: U\ntasks:\n  - id: t\n    command: e\n"
        + "".join(f"k{i}: 1\n" for i in range(room // 11)),
        "many_args": "id: a\nname: A\ntasks:\n  - id: t\n    command: e\n    args: ["
        + ", ".join(["1"] * (room // 3))
        + "]\n",
    }


def oversize_files(directory: str) -> list[str]:
    """The 10 MB file (a valid job followed by a comment), a sparse 4 GB one, and the edges."""
    head = HELLO.format(id="big", extra="").encode()
    made = [write_file(directory, "ten_mb.yaml", head + b"# " + b"x" * (10 * 1024 * 1024) + b"\n")]
    sparse = os.path.join(directory, "sparse.yaml")
    with open(sparse, "wb") as handle:
        handle.truncate(4 << 30)
    made.append(sparse)
    made.append(
        write_file(directory, "limit_plus_one.yaml", head + b"#" * (MAX_FILE_BYTES + 1 - len(head)))
    )
    return made


def many_files(
    rng: random.Random, directory: str, examples: list[Example], count: int = 1000
) -> None:
    """1,000 job files: mostly valid and chained by job dependencies (one long chain through
    them all), with duplicates, unknown dependencies and mutants of every kind mixed in."""
    kinds = [k for k in MUTATIONS if k not in ("benign",)]
    for i in range(count):
        roll = rng.random()
        if roll < 0.8:
            extra = f"depends_on: [job_{i - 1:04d}]\n" if i else ""
            data = HELLO.format(id=f"job_{i:04d}", extra=extra).encode()
        elif roll < 0.85:
            data = HELLO.format(id="job_0000", extra="").encode()  # duplicate id
        elif roll < 0.9:
            data = HELLO.format(id=f"lost_{i}", extra="depends_on: [nowhere]\n").encode()
        else:
            example = rng.choice(examples)
            data = MUTATIONS[rng.choice(kinds)](rng, example)
        write_file(directory, f"job_{i:04d}.yaml", data)


def job_cycle_files(directory: str, count: int = 1000) -> None:
    for i in range(count):
        extra = f"depends_on: [job_{(i + 1) % count:04d}]\n"
        write_file(
            directory, f"job_{i:04d}.yaml", HELLO.format(id=f"job_{i:04d}", extra=extra).encode()
        )


# Through bin/petit in the fast variant (the soak variant sends every big case): the heaviest of
# each family, for memory, and the ones whose danger is in printing.
FAST_CLI_CASES = {
    "dag-chain",
    "dag-fan_in",
    "near-many_args",
    "near-many_unknown_keys",
    "worst-big_bomb_in_config",
    "worst-bomb_in_task_condition",
    "worst-bomb_in_environment",
    "worst-recursive_config",
    "worst-deep_flow_10000",
    "worst-deep_map_10000",
    "worst-control_chars",
    "many-0",
    "many-cycle",
}


def big_case(
    campaign: Campaign,
    kind: str,
    jobs_dir: str,
    case: str,
    everything_via_cli: bool,
    bound: float = BIG_BOUND_SECS,
) -> dict | None:
    jobs = load_case(campaign, kind, jobs_dir, case, bound=bound)
    if everything_via_cli or os.path.basename(jobs_dir) in FAST_CLI_CASES:
        run_validate(campaign, jobs_dir, f"{case} via bin/petit")
    return jobs


def check_big_cases(campaign: Campaign, base: str, rounds: int, everything_via_cli: bool) -> None:
    rng = random.Random(f"{campaign.seed}-big")
    examples = load_examples()
    with memory_cap():
        # 5,000-task DAGs must validate, and quickly; the cycle must be reported in one short line.
        for shape in ("chain", "fan_out", "fan_in", "layered", "cycle"):
            jobs_dir = os.path.join(base, f"dag-{shape}")
            write_file(jobs_dir, "big_dag.yaml", big_dag_text(shape).encode())
            started = time.monotonic()
            jobs = big_case(
                campaign, "big_dag", jobs_dir, f"5,000-task {shape}", everything_via_cli
            )
            elapsed = time.monotonic() - started
            if shape == "cycle":
                assert jobs is None
            else:
                assert jobs is not None and len(jobs["big_dag"].tasks) == DAG_TASKS, shape
                assert elapsed < DAG_BOUND_SECS, f"a 5,000-task {shape} took {elapsed:.2f}s"
        # Files just under the size limit, each stressing one walk.
        for name, text in near_limit_texts().items():
            jobs_dir = os.path.join(base, f"near-{name}")
            write_file(jobs_dir, f"{name}.yaml", text.encode())
            assert os.path.getsize(os.path.join(jobs_dir, f"{name}.yaml")) <= MAX_FILE_BYTES, name
            big_case(campaign, "near_limit", jobs_dir, f"near-limit {name}", everything_via_cli)
        # The 10 MB file (and a sparse 4 GB one): rejected from the size alone, never read.
        for path in oversize_files(os.path.join(base, "oversize")):
            alone = os.path.join(base, f"oversize-{os.path.basename(path)}")
            os.makedirs(alone)
            os.rename(path, os.path.join(alone, os.path.basename(path)))
            tracemalloc.start()
            try:
                assert load_case(campaign, "oversize", alone, f"oversize {path}") is None
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 512 * 1024, f"{path}: {peak} bytes allocated to reject an oversize file"
            run_validate(campaign, alone, f"oversize {path} via bin/petit")
        # 1,000 job files in one folder (several mixes), and a cycle through 1,000 jobs.
        for round_ in range(rounds):
            jobs_dir = os.path.join(base, f"many-{round_}")
            many_files(rng, jobs_dir, examples)
            big_case(
                campaign, "many_files", jobs_dir, f"1,000 files, round {round_}", everything_via_cli
            )
        jobs_dir = os.path.join(base, "many-cycle")
        job_cycle_files(jobs_dir)
        jobs = big_case(
            campaign, "many_files", jobs_dir, "cycle through 1,000 jobs", everything_via_cli
        )
        assert jobs is None
        # Bombs in every field, recursive aliases, deep nests, control characters.
        for name, text in worst_cases().items():
            jobs_dir = os.path.join(base, f"worst-{name}")
            write_file(jobs_dir, f"{name}.yaml", text.encode("utf-8", "surrogatepass"))
            kind = (
                "alias_bomb"
                if "bomb" in name or "recursive" in name
                else "deep_nesting"
                if "deep" in name
                else "unicode_control"
            )
            big_case(
                campaign,
                kind,
                jobs_dir,
                f"worst case {name}",
                everything_via_cli,
                bound=MUTANT_BOUND_SECS,
            )


def bomb_definitions(levels: int, width: int) -> str:
    return (
        "{"
        + ", ".join(
            f"l{n}: &b{n} [{', '.join(['lol' if n == 0 else f'*b{n - 1}'] * width)}]"
            for n in range(levels)
        )
        + "}"
    )


def worst_cases() -> dict[str, str]:
    """A bomb of 387 million values must be refused before anything walks it; one of 117,649
    (under the budget) reaches each field, whose error must still quote it in a few characters."""
    big, small = bomb_definitions(9, 9), bomb_definitions(6, 7)
    task = "  - id: t\n    command: echo\n"
    job_fields = [
        "name",
        "description",
        "enabled",
        "max_concurrency",
        "schedule",
        "depends_on",
        "environment",
        "config",
    ]
    task_fields = [
        "name",
        "type",
        "condition",
        "retry",
        "timeout",
        "timeout_secs",
        "depends_on",
        "args",
        "working_dir",
        "environment",
        "command",
    ]
    cases = {
        f"bomb_in_{name}": (
            f"x-anchors: {small}\nid: b\n{'' if name == 'name' else 'name: B'}\n"
            f"{name}: {'{a: *b5}' if name == 'config' else '*b5'}\ntasks:\n{task}"
        )
        for name in job_fields
    }
    cases.update(
        {
            f"bomb_in_task_{name}": (
                f"x-anchors: {small}\nid: b\nname: B\ntasks:\n  - id: t\n"
                + ("" if name == "command" else "    command: echo\n")
                + f"    {name}: *b5\n"
            )
            for name in task_fields
        }
    )
    cases["bomb_in_retry_fields"] = (
        f"x-anchors: {small}\nid: b\nname: B\ntasks:\n{task}    retry: "
        "{max_attempts: *b5, delay: *b5, delay_secs: *b5, condition: *b5}\n"
    )
    cases["bomb_in_env_value"] = (
        f"x-anchors: {small}\nid: b\nname: B\nenvironment: {{A: *b5}}\ntasks:\n{task}"
    )
    cases["bomb_in_job_dependency"] = (
        f"x-anchors: {small}\nid: b\nname: B\ndepends_on: "
        "[{job: x, condition: *b5, window: *b5}]\ntasks:\n" + task
    )
    cases["bomb_in_tasks"] = f"x-anchors: {small}\nid: b\nname: B\ntasks: [*b5]\n"
    cases["big_bomb_in_config"] = f"id: b\nname: B\nconfig: {big}\ntasks:\n{task}"
    cases["big_bomb_in_tasks"] = f"x-anchors: {big}\nid: b\nname: B\ntasks: [*b8]\n"
    cases["recursive_config"] = f"id: b\nname: B\nconfig: &c {{a: *c, b: [*c]}}\ntasks:\n{task}"
    cases["deep_flow_10000"] = (
        f"id: d\nname: D\nconfig: {'[' * 10_000}{']' * 10_000}\ntasks:\n{task}"
    )
    cases["deep_map_10000"] = "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"
    cases["deep_block_10000"] = f"id: d\nname: D\ntasks:\n{task}config:\n  " + "- " * 10_000 + "x\n"
    cases["deep_config_999"] = f"id: d\nname: D\nconfig: {'[' * 999}{']' * 999}\ntasks:\n{task}"
    cases["control_chars"] = (
        'id: "a\\x1b[31m\\u202e\\x00"\nname: "\\ud800\\n\\r\\u2028"\n'
        'environment: {"\\x00": "\\ud800", A: "\\x00"}\ntasks:\n'
        '  - id: "\\U0001F600"\n    command: "echo\\x00"\n'
        '    args: ["\\ud800"]\n'
    )
    # libyaml refuses the lone surrogate escapes above; without them every field is reached
    cases["control_chars_in_fields"] = (
        'id: "a\\x1b[31m"\nname: "\\x00\\n\\r\\u2028\\u202e"\n'
        'environment: {"\\x1b]0;x\\x07": "\\x85", "A\\x00": 1}\ntasks:\n'
        '  - id: "\\u202et"\n    command: "echo\\x00"\n'
        '    depends_on: ["\\n\\x1b[2J"]\n'
        '    environment: {B: "\\x00"}\n    working_dir: "/tmp\\x00"\n'
    )
    return cases


@pytest.mark.timeout(180)
def test_fuzz_big_cases_fast(tmp_path):
    campaign = Campaign("big cases, fast", SEED)
    check_big_cases(campaign, str(tmp_path), rounds=1, everything_via_cli=False)
    print("\n" + campaign.summary())
    campaign.assert_clean()


@soak_only
@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fuzz_big_cases_soak(tmp_path):
    campaign = Campaign("big cases, soak", SEED)
    check_big_cases(campaign, str(tmp_path), rounds=SOAK_FACTOR, everything_via_cli=True)
    print("\n" + campaign.summary())
    campaign.assert_clean()


# --- files that are not plain files, and hostile file names --------------------------------------


def test_special_files_do_not_hang_or_crash(tmp_path):
    """A FIFO would block `open` forever, /dev/zero would be read until memory runs out; a
    directory, a dangling or looping link and odd names must each give one clean line."""
    campaign = Campaign("special files", SEED)
    hello = HELLO.format(id="x", extra="").encode()
    for name, make in {
        "fifo": lambda p: os.mkfifo(p),
        "dev_zero": lambda p: os.symlink("/dev/zero", p),
        "dev_urandom": lambda p: os.symlink("/dev/urandom", p),
        "directory": lambda p: os.mkdir(p),
        "dangling_link": lambda p: os.symlink(os.path.join(str(tmp_path), "nowhere"), p),
        "link_loop": lambda p: os.symlink(p, p),
    }.items():
        jobs_dir = str(tmp_path / name)
        os.makedirs(jobs_dir)
        make(os.path.join(jobs_dir, f"{name}.yaml"))
        write_file(jobs_dir, "ok.yaml", hello)
        code, _, errors = run_validate(campaign, jobs_dir, f"special file {name}", bound=15)
        assert code == 1 and len(errors) == 2 and f"{name}.yaml: " in errors[0], errors
        if name not in (
            "fifo",
            "dev_zero",
            "dev_urandom",
        ):  # in-process, a regression would hang pytest
            assert load_case(campaign, "special_files", jobs_dir, f"special file {name}") is None
        else:
            campaign.tried["special_files"] += 1
    # Odd names: the error lines stay one line each, whatever the name holds.
    jobs_dir = str(tmp_path / "names")
    names = [
        b"new\nline.yaml",
        b"\x1b[31mred.yaml",
        b"\xff\xfe.yaml",
        "\u202erlt.yaml".encode(),
        b"\r.yaml",
        ("x" * 250 + ".yaml").encode(),
        "\U0001f600.yaml".encode(),
        b"sp ace.yaml",
    ]
    os.makedirs(jobs_dir)
    for raw_name in names:
        with open(os.path.join(os.fsencode(jobs_dir), raw_name), "wb") as handle:
            handle.write(b"id: [not, an, id]\n")
    code, _, errors = run_validate(campaign, jobs_dir, "odd file names")
    assert code == 1 and len(errors) > len(names), errors
    with pytest.raises(ConfigError) as info:
        load_jobs(jobs_dir)
    for line in info.value.errors:
        assert line.splitlines() == [line] and line.startswith(jobs_dir + os.sep), repr(line)
        line.encode("utf-8")
    campaign.tried["odd_file_names"] += len(names)
    print("\n" + campaign.summary())
    campaign.assert_clean()


# --- the safe loader -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/apply:subprocess.call",
        "!!python/object/new:os.system",
    ],
)
def test_python_tags_are_rejected_and_never_run(tmp_path, tag):
    """Loading must use the safe loader: a python/object tag is an error, never a call."""
    marker = tmp_path / "pwned"
    jobs_dir = tmp_path / "jobs"
    argument = f'["touch {marker}"]' if tag.endswith("system") else f'[["touch", "{marker}"]]'
    write_file(
        str(jobs_dir),
        "evil.yaml",
        (f"id: {tag} {argument}\nname: Evil\ntasks:\n  - id: t\n    command: echo\n").encode(),
    )
    with pytest.raises(ConfigError) as info:
        load_jobs(str(jobs_dir))
    assert not marker.exists()
    assert len(info.value.errors) == 1 and "python/object" in info.value.errors[0], (
        info.value.errors
    )
    campaign = Campaign("safe loader", SEED)
    code, _, errors = run_validate(campaign, str(jobs_dir), f"tag {tag}")
    campaign.assert_clean()
    assert code == 1 and "python/object" in errors[0] and not marker.exists()


def use_pure_python_parser(monkeypatch) -> None:
    """PyYAML without libyaml (a fresh clone may build it so): the same loader on the pure-Python
    parser, which recurses once per level of nesting."""
    pure = type("PureLoader", (jobfile._JobFileConstructor, yaml.SafeLoader), {})
    monkeypatch.setattr(jobfile, "_UniqueKeyLoader", pure)


@pytest.mark.timeout(180)
def test_fuzz_examples_with_the_pure_python_parser_fast(tmp_path, monkeypatch):
    use_pure_python_parser(monkeypatch)
    campaign = Campaign("examples, pure-Python parser, fast", SEED + 1)
    mutate_examples(campaign, str(tmp_path), PURE_PARSER_MUTANTS_PER_EXAMPLE)
    print("\n" + campaign.summary())
    campaign.assert_clean()


@soak_only
@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fuzz_examples_with_the_pure_python_parser_soak(tmp_path, monkeypatch):
    use_pure_python_parser(monkeypatch)
    campaign = Campaign("examples, pure-Python parser, soak", SEED + 1)
    mutate_examples(campaign, str(tmp_path), PURE_PARSER_MUTANTS_PER_EXAMPLE * SOAK_FACTOR)
    print("\n" + campaign.summary())
    campaign.assert_clean()


def test_deep_nesting_with_the_pure_python_parser(tmp_path, monkeypatch):
    """10,000 levels must give one clean error line, not a RecursionError traceback."""
    use_pure_python_parser(monkeypatch)
    for name, text in [
        ("flow", "a: " + "[" * 10_000 + "]" * 10_000),
        ("map", "{a: " * 10_000 + "1" + "}" * 10_000),
        ("key", "? " * 2000 + "a"),
    ]:
        jobs_dir = str(tmp_path / name)
        write_file(jobs_dir, "deep.yaml", text.encode())
        with pytest.raises(ConfigError) as info, time_bound(MUTANT_BOUND_SECS):
            load_jobs(jobs_dir)
        check_errors(
            info.value.errors, [os.path.join(jobs_dir, "deep.yaml")], f"pure-Python {name}"
        )
