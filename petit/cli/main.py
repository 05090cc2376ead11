"""petit — a small, dependable job orchestrator for one machine. The usage text is built from
the command table (the ctl verbs) and states the defaults in words: the defaults themselves live
in petit/service/settings.py, so an option left out is told apart from one given."""

from __future__ import annotations

import os
import sys

from docopt import DocoptExit, docopt

from .. import __version__
from ..errors import ConfigError, PetitError
from .commands import (
    cmd_audit,
    cmd_ctl,
    cmd_keys,
    cmd_list,
    cmd_logs,
    cmd_run,
    cmd_runs,
    cmd_show,
    cmd_trigger,
    cmd_validate,
    cmd_watch,
)

EXIT_USAGE = 2
_USAGE = """petit — a small, dependable job orchestrator for one machine.

Usage:
  petit [--config PATH] [--db PATH] run JOBS_DIR [--no-api] [--api-port PORT] [--api-host HOST]
                    [--api-token TOKEN] [--api-token-file PATH] [--public-url URL]
                    [--max-jobs N] [--max-tasks N] [--keep-runs N] [--socket PATH]
                    [--shutdown-timeout SECS] [--log-level LEVEL] [--print-config]
  petit [--config PATH] validate JOBS_DIR
  petit [--config PATH] list JOBS_DIR [--json]
  petit [--config PATH] [--db PATH] trigger JOBS_DIR JOB_ID [--param NAME=VALUE]...
                    [--max-tasks N] [--keep-runs N]
  petit [--config PATH] [--db PATH] runs [JOB_ID] [--limit N] [--status STATUS] [--json]
  petit [--config PATH] [--db PATH] show RUN_ID [--json]
  petit [--config PATH] [--db PATH] logs RUN_ID [TASK_ID] [--attempt N] [-f] [--socket PATH]
  petit [--config PATH] [--db PATH] watch [JOB_ID] [--socket PATH]
{ctl}
  petit [--config PATH] keys new NAME --role ROLE
  petit [--config PATH] keys list [--json]
  petit [--config PATH] [--db PATH] audit [--since DURATION] [--limit N] [--json]
  petit (-h | --help)
  petit --version

Options:
  --config PATH            The petit.toml to read (default ./petit.toml when there is one).
                           Command line > PETIT_* environment > petit.toml > defaults.
  --db PATH                TinyDB file holding runs and state (default ./petit.db).
  --no-api                 Run without the HTTP API process.
  --api-port PORT          HTTP API port (default 8565).
  --api-host HOST          HTTP API address; anything but loopback is reachable by others
                           (default 127.0.0.1).
  --api-token TOKEN        Require "Authorization: Bearer TOKEN" on the API
                           (or set PETIT_API_TOKEN).
  --api-token-file PATH    Read the token from this file, which only its owner may read
                           (--api-token and PETIT_API_TOKEN win over it).
  --public-url URL         The origin a reverse proxy serves petit under, such as
                           https://petit.example.com: its Host and Origin are accepted
                           besides loopback ones (or set PETIT_PUBLIC_URL).
  --max-jobs N             Most runs in flight at once, all jobs together
                           (default 0 = no limit).
  --max-tasks N            Most tasks running at once within one run (default 4).
  --keep-runs N            Finished runs kept per job; older ones and their logs are removed
                           (default 200).
  --socket PATH            Control socket (default <db>.sock).
  --shutdown-timeout SECS  On shutdown, how long running runs may take to finish (default 30).
  --log-level LEVEL        debug, info, warning or error (default info).
  --print-config           Print each effective setting and where it came from, then exit.
  --param NAME=VALUE       A value for one of the job's params (repeat it for more), read
                           by the param's type: 5 for an int, true/false/yes/no/1/0 for a bool.
  --limit N                Most runs listed, newest first (default 20); for audit, most
                           entries shown, the newest (default 100).
  --status STATUS          Only runs with this status: queued, pending, running, completed,
                           failed, interrupted or cancelled.
  --attempt N              The attempt whose log is shown (default the latest).
  -f --follow              Go on printing the log as it grows, until the task or run ends
                           (asks the running service, so it works with --no-api too).
  --role ROLE              What the new API key may do: read, operate (and trigger, cancel)
                           or admin (and pause, resume, reload, read the audit log).
  --since DURATION         Only audit entries of the last DURATION, like 30m, 1h or 2d.
  --json                   Machine-readable output.

Exit codes: 0 success; 1 failure (invalid jobs or petit.toml [defaults], failed run, error
reply, audit log not writable); 2 bad usage (or a bad setting in petit.toml); 3 no petit is
listening on the control socket.
"""


def usage() -> str:
    from .ctl import usage_lines

    return _USAGE.format(ctl="\n".join(usage_lines()))


def _invalid_files(args: dict, errors: list[str]) -> str:
    """What the count of errors is about: the config file when they are all of its [defaults]
    (each such line begins with its path), else the jobs folder."""
    from ..service.config_file import IMPLICIT_PATH

    config = args.get("--config") or IMPLICIT_PATH
    if all(line.startswith((f"{config}:", f"{config} line ")) for line in errors):
        return config
    return args.get("JOBS_DIR") or "job files"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = usage()
    try:
        args = docopt(text, argv=argv, version=f"petit {__version__}")
    except DocoptExit:
        lines = text.split("Options:")[0].split("Usage:")[1].rstrip()
        print(
            f"petit: invalid command line: {' '.join(argv) or '(empty)'}\nUsage:{lines}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    handlers = {
        "run": cmd_run,
        "validate": cmd_validate,
        "list": cmd_list,
        "ctl": cmd_ctl,
        "trigger": cmd_trigger,
        "runs": cmd_runs,
        "show": cmd_show,
        "logs": cmd_logs,
        "watch": cmd_watch,
        "keys": cmd_keys,
        "audit": cmd_audit,
    }
    # ctl first: `petit ctl trigger JOB_ID` also sets "trigger"; keys before list, which
    # `petit keys list` also sets
    command = next(name for name in ("ctl", "keys", *handlers) if args[name])
    try:
        return handlers[command](args)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in {_invalid_files(args, exc.errors)}", file=sys.stderr)
        return exc.exit_code
    except PetitError as exc:
        from ..core.text import one_line

        # ids typed on the command line come back in messages: one line, whatever they hold
        print(f"petit: {one_line(exc.message)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `petit list | head`: the reader went away, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
