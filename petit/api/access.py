"""Who asks, for the HTTP door: the keys the API accepts now, the check of a request's key
against the role its route needs, and the open streams held under each key. The supervisor
sends new keys at a reload; they replace the table at once, and the streams of a key that went
are closed (a revoked key reads nothing more, not even what it had open)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable

from ..errors import PetitError, RoleRequired, Unauthorized
from ..ipc.access import ApiKey, KeyTable, Role
from ..storage.store import Store

log = logging.getLogger("petit.api")
UNAUTHORIZED_MESSAGE = "missing or wrong API key (Authorization: Bearer KEY)"
_BEARER = "Bearer "


class Access:
    """The key table in force (read on the loop thread; replaced whole, never changed in
    place) and the streams open under each key, so a key's removal closes them. `token` is the
    --api-token, fixed at start: one admin key in every table."""

    def __init__(self, keys: Iterable[ApiKey] | None, token: str | None) -> None:
        self._token = token
        self.table = KeyTable(keys, token)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[object, ApiKey | None] = {}  # handler -> the key it was opened with

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """New tables are handed to `loop` (the server's) from now on."""
        self._loop = loop

    # -- the keys ---------------------------------------------------------------------------

    def identify(self, authorization: str) -> ApiKey | None:
        """The key an Authorization header presents; None when the API asks for none. Raises
        Unauthorized for a missing or unknown one (constant time: KeyTable.match)."""
        table = self.table
        if not table.required:
            return None
        presented = authorization[len(_BEARER) :] if authorization.startswith(_BEARER) else ""
        key = table.match(presented)
        if key is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        return key

    def receive(self, wire_keys: list[dict] | None) -> None:
        """From the queue reader thread: the keys the supervisor read at a reload (None: none
        declared). The table is built here, then swapped on the loop, where handlers read it."""
        try:
            keys = None if wire_keys is None else [ApiKey.from_wire(k) for k in wire_keys]
            table = KeyTable(keys, self._token)  # a sha256 that is not hex: ValueError
        except (KeyError, TypeError, ValueError) as exc:  # a bug on the other side: fail closed
            log.error("malformed API keys from the supervisor (%r): every key refused", exc)
            table = KeyTable((), self._token)
        if self._loop is None:
            self.replace(table)
            return
        try:
            self._loop.call_soon_threadsafe(self.replace, table)
        except RuntimeError:  # the loop closed at exit
            pass

    def replace(self, table: KeyTable) -> None:
        """On the loop: the new table is in force from the next request; each open stream of
        a key it no longer accepts is closed."""
        self.table = table
        log.info("API keys replaced: %s", ", ".join(sorted(table.names())) or "none")
        for handler, key in list(self._streams.items()):
            if not accepts(table, key):
                why = f"the key {key.name!r} was removed" if key else "keys are now required"
                log.info("closing a stream of %s: %s", handler.request.remote_ip, why)
                self._streams.pop(handler, None)
                handler.request.connection.close()

    # -- open streams -----------------------------------------------------------------------

    def hold(self, handler: object, key: ApiKey | None) -> None:
        """Held until released; refused (401) when the key was removed while the stream waited
        to start (it was checked before that wait, at the request's start)."""
        if not accepts(self.table, key):
            raise Unauthorized(UNAUTHORIZED_MESSAGE)
        self._streams[handler] = key

    def release(self, handler: object) -> None:
        self._streams.pop(handler, None)


def accepts(table: KeyTable, key: ApiKey | None) -> bool:
    """Whether a request made with `key` (None: with none) would still be let in: the same
    name and the same key, whatever line it is declared on now."""
    if key is None:
        return not table.required
    return any(k.name == key.name and k.sha256 == key.sha256 for k in table.keys)


def require(key: ApiKey | None, needed: Role) -> None:
    """Raises RoleRequired when `key`'s role is below `needed` (no key: the API asks for
    none, and every request may do everything)."""
    if key is not None and not key.role.allows(needed):
        raise RoleRequired(needed.value, key.name, key.role.value)


def role_of(key: ApiKey | None) -> Role:
    return key.role if key is not None else Role.ADMIN


def secret_params(store: Store, args: dict) -> Collection[str]:
    """The params of a command's `args` whose values the audit line must not show: those its
    job declares `secret: true` in its stored summary (an unknown job has none); every one
    when the store cannot be read to tell."""
    job_id = args.get("job_id")
    try:
        doc = store.job_summaries().get(job_id) if isinstance(job_id, str) else None
    except PetitError:
        return frozenset(args.get("params") or ())
    params = (doc or {}).get("params") or []
    return frozenset(p["name"] for p in params if isinstance(p, dict) and p.get("secret"))
