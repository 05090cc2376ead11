"""The audit log from the command line: `petit audit` reads `<db>.audit.jsonl` (and its rotated
files) straight from disk, service or not; and `petit trigger`, a door of its own, writes its
line there, failing closed like the service's doors: no run starts unless its line is written."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from ..errors import AuditUnavailable, PetitError, UsageError

DEFAULT_LIMIT = 100


# -- petit audit -------------------------------------------------------------------------------


def print_audit(args: dict) -> int:
    from ..core.model import now_ms
    from ..core.schedule import parse_duration
    from ..core.text import one_line
    from ..ipc.audit import AuditLog, audit_path
    from ..service.settings import db_path
    from .history import table, whole_option

    limit = whole_option(args, "--limit", DEFAULT_LIMIT)
    since_ms = None
    if args["--since"] is not None:
        try:
            since_ms = now_ms() - round(parse_duration(args["--since"]) * 1000)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    log = AuditLog(audit_path(db_path(args)))
    if not log.files():
        message = f"no audit log yet at {log.path}: petit writes it at the first operation"
        if args["--json"]:
            print("[]")
            print(f"petit: {one_line(message)}", file=sys.stderr)
        else:
            print(one_line(message))
        return 0
    page = log.read(since_ms, limit)
    for warning in page.warnings:
        print(f"petit: warning: {one_line(warning)}", file=sys.stderr)
    if args["--json"]:
        print(json.dumps(page.entries, indent=2))
        return 0
    if not page.entries:
        print(f"no audit entries in the last {args['--since']}" if since_ms else "no audit entries")
        return 0
    headers = ("TIME", "DOOR", "WHO", "OP", "ARGS", "OUTCOME", "RUN")
    print("\n".join(table(headers, [_row(entry) for entry in page.entries])))
    if page.more:
        print(f"(older entries not shown: --limit {limit})")
    return 0


def _row(entry: dict) -> tuple[str, ...]:
    """One entry in words. Every value may come from a client: each cell is one line."""
    from ..core.text import one_line, wall_clock

    who = "(no key)" if entry.get("who") is None else str(entry["who"])
    if entry.get("remote"):
        who += f" from {entry['remote']}"
    if entry.get("pid") is not None:
        who += f", pid {entry['pid']}"
    args = entry.get("args") if isinstance(entry.get("args"), dict) else {}
    words = " ".join(f"{name}={_compact(value)}" for name, value in args.items())
    outcome = str(entry.get("outcome"))
    if outcome != "ok" and entry.get("http_status") is not None:
        outcome += f" ({entry['http_status']})"
    cells = (
        wall_clock(entry["at"]),
        str(entry.get("door")),
        who,
        str(entry.get("op")),
        words or "-",
        outcome,
        entry.get("run_id") or "-",
    )
    return tuple(one_line(str(cell)) for cell in cells)


def _compact(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


# -- the petit trigger door --------------------------------------------------------------------


class TriggerAudit:
    """The audit line of one `petit trigger`: refused (with the error's code), or accepted with
    the run it created, written after the run is recorded and before it starts."""

    def __init__(self, db: str, config, job_id: str, words: Sequence[str]) -> None:
        from ..ipc.audit import AuditLog, audit_path
        from ..service.security_config import read_audit_policy

        policy = read_audit_policy(config)
        self.log = AuditLog(audit_path(db), policy.max_bytes, policy.keep)
        self.job_id = job_id
        # NAME=VALUE as given; until the job is known, any of them may be a secret
        self.given = {name: value for name, eq, value in (w.partition("=") for w in words) if eq}
        self.secrets: Collection[str] = set(self.given)

    def knows(self, job) -> None:
        """The job is known: only its params declared `secret: true` are masked."""
        self.secrets = {param.name for param in job.params if param.secret}

    def check(self) -> None:
        """Fail closed: raises AuditUnavailable when no line could be written now."""
        self.log.check()

    @contextmanager
    def refusals(self) -> Iterator[None]:
        """A PetitError raised inside is recorded as the trigger's outcome, then re-raised."""
        try:
            yield
        except AuditUnavailable:
            raise  # from check(): there is nowhere to record it
        except PetitError as exc:
            try:
                self.log.append(self._entry(exc.code))
            except AuditUnavailable as unrecorded:
                print(
                    f"petit: warning: this refusal is not recorded: {unrecorded}", file=sys.stderr
                )
            raise

    def started(self, run, store) -> None:
        """The line of the run just created, before it executes. When it cannot be written the
        run does not execute: it is ended, never started, and this raises AuditUnavailable."""
        from ..core.model import now_ms

        try:
            self.log.append(self._entry("ok", run.id))
        except AuditUnavailable as exc:
            run.interrupt(f"not started: {exc.message}", now_ms())
            store.save_runs([run])
            raise AuditUnavailable(
                f"run {run.id} of job {self.job_id!r} was not started, and is ended: {exc.message}"
            ) from None

    def _entry(self, outcome: str, run_id: str | None = None) -> dict:
        from ..core.model import now_ms
        from ..ipc.audit import TRIGGER, audit_entry, masked

        args = masked({"job_id": self.job_id, "params": self.given}, self.secrets)
        return audit_entry(
            now_ms(), TRIGGER, f"process uid {os.getuid()}", "trigger", args, outcome,
            run_id=run_id, pid=os.getpid(),
        )  # fmt: skip
