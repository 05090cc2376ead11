"""`petit run`'s checks before anything starts: the API's host and port, and the control
socket's path (a stale socket of a dead instance is removed, anything else is an error). Each
error names where the bad value came from."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat

from ..errors import PetitError
from ..ipc.control import is_listening
from .settings import Settings

log = logging.getLogger("petit.supervisor")


def check_api_settings(settings: Settings) -> Settings:
    """Host and port are checked here, so a busy port is one clear startup error."""
    from ..ipc.binding import check_port_free, is_loopback_bind

    address = (settings.api_host, settings.api_port)
    loopback = blaming(settings, "api_host", is_loopback_bind, *address)
    blaming(settings, "api_port", check_port_free, *address)
    if not loopback:
        log.warning(
            "the HTTP API is bound to %s, which is reachable from other machines%s; read "
            "the Security page, docs/security.md",
            settings.api_host,
            ""
            if settings.api_token or settings.api_keys is not None
            else " and has NO authentication (declare api_keys in petit.toml, or set --api-token)",
        )
    return dataclasses.replace(settings, api_loopback_only=loopback)


def blaming(settings: Settings, key: str, check, *args):
    """A start-up check of one setting, its error naming where the value came from (the flag,
    the variable or the petit.toml line), as a bad value's would: ipc knows no settings."""
    try:
        return check(*args)
    except PetitError as exc:
        raise type(exc)(f"{settings.blame(key)}: {exc.message}") from None


def remove_stale_socket(settings: Settings) -> None:
    """A socket file left by a dead instance is removed; a live socket, or anything that is not
    a socket (a mistyped --socket naming a real file), is an error and is never deleted."""
    path = settings.socket
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise PetitError(
            f"{settings.blame('socket')}: {path} exists and is not a socket: choose another path"
        )
    if is_listening(path):
        raise PetitError(
            f"another petit is already serving {settings.db} (its control socket {path} answers)"
        )
    log.info("removing stale control socket %s", path)
    try:
        os.unlink(path)
    except FileNotFoundError:  # its owner removed it meanwhile
        pass
