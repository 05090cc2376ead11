"""`petit keys new` and `petit keys list`: the API keys petit.toml declares. A new key is printed
once and stored nowhere: the file gets its SHA-256, under a name and a role. With an
`api_keys_file` the block is appended there (the file created mode 0600), else it is printed
to paste into petit.toml; either way a running petit takes it at its next `petit ctl reload`."""

from __future__ import annotations

import json
import os

from ..errors import UsageError

SHOWN_ONCE = (
    "This key is shown once and kept nowhere: petit stores only its SHA-256. Give it to its "
    "client now."
)


def keys_command(args: dict) -> int:
    return add_key(args) if args["new"] else list_keys(args)


def add_key(args: dict) -> int:
    from ..ipc.access import check_key_name, check_role, hash_key, key_block, new_key
    from ..service.security_config import KEYS_FILE, keys_file_path, read_api_keys
    from ..service.settings import Inputs

    name = check_key_name(args["NAME"], "NAME")
    role = check_role(args["--role"], "--role")
    config = Inputs(args).config
    path = keys_file_path(config)
    # before anything is written: a bad or unsafe keys file, or a name already taken
    _refuse_taken(name, read_api_keys(config, missing_file_ok=True))
    key = new_key()
    block = key_block(name, role, hash_key(key))
    if path is None:
        print(key)
        print(SHOWN_ONCE)
        if config is None:
            print(
                "There is no petit.toml here (--config PATH names one). Paste these lines into "
                "the petit.toml petit run reads, then start petit run with it:"
            )
        else:
            print(
                f"{config.path} names no {KEYS_FILE}: paste these lines into it, then run "
                "`petit ctl reload`:"
            )
        print()
        print(block, end="")
        return 0
    fd = _open_keys_file(path, f"{config.where(KEYS_FILE)}: {KEYS_FILE}")
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # another `petit keys new` may be adding the same name
        _refuse_taken(name, read_api_keys(config))
        size = os.fstat(fd).st_size
        ends_line = size == 0 or os.pread(fd, 1, size - 1) == b"\n"
        separator = "" if size == 0 else ("\n" if ends_line else "\n\n")
        os.write(fd, (separator + block).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    print(key)
    print(SHOWN_ONCE)
    print(f"Added the key {name!r} (role {role.value}) to {path}.")
    print("Run `petit ctl reload` to have a running petit accept it.")
    return 0


def _refuse_taken(name: str, keys) -> None:
    taken = next((key for key in keys or () if key.name == name), None)
    if taken is not None:
        raise UsageError(
            f"NAME: the key name {name!r} is already declared at {taken.where}: choose another, "
            "or remove that one first"
        )


def _open_keys_file(path: str, blame: str) -> int:
    """The keys file open for appending; created, readable by its owner only, when missing."""
    try:
        return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"{blame}: cannot write {path}: {exc.strerror or exc}") from None


def list_keys(args: dict) -> int:
    from ..core.text import one_line
    from ..service.security_config import read_api_keys
    from ..service.settings import Inputs
    from .history import table

    keys = read_api_keys(Inputs(args).config)
    if args["--json"]:
        entries = [{"name": k.name, "role": k.role.value, "where": k.where} for k in keys or ()]
        print(json.dumps(entries, indent=2))
        return 0
    if keys is None:
        print(
            "No API keys declared (petit.toml has no [[api_keys]] and no api_keys_file): the "
            "API asks for no key, unless petit run is given --api-token."
        )
    elif not keys:
        print("No API keys left: the API refuses every request, but with --api-token's token.")
    else:
        rows = [(key.name, key.role.value, one_line(key.where)) for key in keys]
        print("\n".join(table(("NAME", "ROLE", "DECLARED AT"), rows)))
    return 0
