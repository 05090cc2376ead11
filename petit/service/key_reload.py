"""A reload, whichever door asks for it (`petit ctl reload`, POST /api/scheduler/reload), reads
the API keys again before the job files: a key removed from petit.toml or its keys file is refused
by the API from then on, and a new one accepted. The --api-token stays as it was at start."""

from __future__ import annotations

import dataclasses

from ..errors import BadRequest, UsageError
from ..ipc.access import ApiKey
from ..ipc.commands import API_KEYS_EVENT
from .child import Child
from .config_file import ConfigFile, read_config_file
from .security_config import read_api_keys


def reread_api_keys(
    config: ConfigFile | None, in_force: tuple[ApiKey, ...] | None
) -> tuple[ApiKey, ...] | None:
    """The keys petit.toml (the file petit started with, read again from disk) declares now;
    None when petit started without one. Once keys were in force, a file that declares none
    any more gives an empty table (every request refused), never None, which would open the
    API to anybody. Raises BadRequest naming the file and line of the problem: the reload is
    then refused, and nothing changes."""
    if config is None:
        return in_force
    try:
        keys = read_api_keys(read_config_file(config.path))
    except UsageError as exc:
        raise BadRequest(f"{exc.message} (reload refused: nothing was changed)") from None
    return () if keys is None and in_force is not None else keys


def give_api_keys(api: Child | None, keys: tuple[ApiKey, ...] | None) -> None:
    """The API process swaps its key table at once; a restarted one starts with these keys."""
    if api is None:
        return
    api.settings = dataclasses.replace(api.settings, api_keys=keys)
    if api.is_up:
        wire = None if keys is None else [key.as_wire() for key in keys]
        api.send({"event": API_KEYS_EVENT, "keys": wire})
