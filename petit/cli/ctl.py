"""`petit ctl`: the control-socket client, with human output by default and --json for scripts.
Its verbs, their arguments, its wait and its human output all come from the command table."""

from __future__ import annotations

import json

from ..errors import PetitError
from ..ipc.audit import CTL
from ..ipc.commands import COMMANDS
from ..ipc.control import call_socket

CTL_OPTIONS = "[--socket PATH] [--json]"
CTL_COMMANDS = [command for command in COMMANDS.values() if not command.streams]


def usage_lines() -> list[str]:
    """The `petit ctl` lines of the usage text: the verbs without arguments on one line, then
    one line for each verb that takes some. (Streaming verbs have commands of their own.)"""
    plain = [c.verb for c in CTL_COMMANDS if not _placeholders(c)]
    lines = [f"  petit [--config PATH] [--db PATH] ctl ({' | '.join(plain)}) {CTL_OPTIONS}"]
    for command in CTL_COMMANDS:
        if _placeholders(command):
            words = " ".join([command.verb, *_placeholders(command)])
            lines.append(f"  petit [--config PATH] [--db PATH] ctl {words} {CTL_OPTIONS}")
    return lines


def _placeholders(command) -> list[str]:
    """The verb's words on the command line: its positional arguments, then its options."""
    return [arg.placeholder for arg in command.args if arg.placeholder] + [
        f"[{arg.option}]..." for arg in command.args if arg.option
    ]


def run_ctl(args: dict, socket: str) -> int:
    command = next(c for c in CTL_COMMANDS if args.get(c.verb))
    call_args = {arg.name: args[arg.placeholder] for arg in command.args if arg.placeholder}
    for arg in command.args:
        if arg.option and args.get(arg.option.split()[0]):  # a repeated option: a list
            call_args[arg.name] = args[arg.option.split()[0]]
    try:
        result = call_socket(socket, command.verb, call_args, client=CTL)
    except PetitError as exc:
        if args.get("--json"):  # scripts read the code from stdout; cli prints the message
            print(json.dumps(exc.to_wire(), indent=2))
        raise
    print(json.dumps(result, indent=2) if args.get("--json") else command.render(result))
    return 0
