"""Who may do what over the HTTP API: the three roles, the API keys petit.toml declares (each by
the SHA-256 of the key, never the key itself), and the lookup of a presented key. The supervisor
reads and checks the keys (no hashing there: hashlib maps OpenSSL); the API process matches them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from ..errors import UsageError

# the name --api-token / PETIT_API_TOKEN goes by: one admin key, so it cannot be a declared name
TOKEN_KEY_NAME = "api-token"
KEY_PREFIX = "petit_"
KEY_FIELDS = ("name", "role", "sha256")
MAX_KEYS = 1000
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


class Role(str, Enum):
    """Each role may do what the ones before it may."""

    READ = "read"  # every GET, the event stream, /metrics, the dashboard read-only
    OPERATE = "operate"  # and trigger, cancel
    ADMIN = "admin"  # and pause, resume, reload, the audit log

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


ROLE_NAMES = ", ".join(role.value for role in Role)


@dataclass(frozen=True)
class ApiKey:
    """One declared key: its name (shown in the audit log, never the key), its role, and the
    hex SHA-256 of the key; `where` is the file and line it was declared on."""

    name: str
    role: Role
    sha256: str = field(repr=False)
    where: str = ""

    def as_wire(self) -> dict:
        """What crosses a queue to the API process (plain values only)."""
        return {
            "name": self.name,
            "role": self.role.value,
            "sha256": self.sha256,
            "where": self.where,
        }

    @classmethod
    def from_wire(cls, data: dict) -> ApiKey:
        return cls(data["name"], Role(data["role"]), data["sha256"], data.get("where", ""))


def hash_key(key: str) -> str:
    """The hex SHA-256 petit.toml holds for a key."""
    import hashlib  # not in the supervisor, which only reads the hashes

    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def new_key() -> str:
    """A fresh random key: 256 bits, URL-safe, with a prefix a secret scanner can look for."""
    import secrets

    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_block(name: str, role: Role, digest: str) -> str:
    """The petit.toml lines that declare a key."""
    return f'[[api_keys]]\nname = "{name}"\nrole = "{role.value}"\nsha256 = "{digest}"\n'


class KeyTable:
    """The keys the API accepts: the declared ones, and --api-token as one admin key. `keys`
    None (none declared, no keys file) and no token: the API asks for no key at all (loopback
    by default; docs/security.md). Declared but all removed: every request is refused."""

    def __init__(self, keys: Iterable[ApiKey] | None = None, token: str | None = None) -> None:
        self.required = keys is not None or bool(token)
        self.keys = tuple(keys or ())
        if token:
            self.keys += (ApiKey(TOKEN_KEY_NAME, Role.ADMIN, hash_key(token), "--api-token"),)
        self._digests = [bytes.fromhex(key.sha256) for key in self.keys]

    def names(self) -> frozenset[str]:
        return frozenset(key.name for key in self.keys)

    def match(self, presented: str) -> ApiKey | None:
        """The key `presented` is, or None. Every declared hash is compared, each in constant
        time, so the time taken says nothing about which key (or how much of one) matched."""
        import hashlib
        import hmac

        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for key, expected in zip(self.keys, self._digests, strict=True):
            if hmac.compare_digest(digest, expected):
                found = key
        return found


def read_key_entries(entries: object, where: Callable[[str], str]) -> tuple[ApiKey, ...]:
    """The `[[api_keys]]` tables of one file, checked: each has a name, a role and a sha256 and
    nothing else, names are unique and not reserved, no key is declared twice. `where(key)`
    names the file and line of a dotted key ("api_keys[1].role"). Raises UsageError at the
    first problem, naming its line, the field and what was expected."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(
            f"{where('api_keys')}: api_keys: expected [[api_keys]] tables, each with "
            f"{', '.join(KEY_FIELDS)}"
        )
    if len(entries) > MAX_KEYS:
        raise UsageError(f"{where('api_keys')}: api_keys: at most {MAX_KEYS} keys")
    keys = []
    for index, entry in enumerate(entries):
        keys.append(_read_key(entry, f"api_keys[{index}]", where))
    return tuple(keys)


def check_unique(keys: Iterable[ApiKey]) -> None:
    """Across every file that declares keys: one name, one key, each declared once."""
    names: dict[str, ApiKey] = {}
    digests: dict[str, ApiKey] = {}
    for key in keys:
        if key.name in names:
            raise UsageError(
                f"{key.where}: api_keys: the name {key.name!r} is already declared at "
                f"{names[key.name].where}"
            )
        if key.sha256 in digests:
            raise UsageError(
                f"{key.where}: api_keys: key {key.name!r} has the same sha256 as "
                f"{digests[key.sha256].name!r} ({digests[key.sha256].where}): one key, one name"
            )
        names[key.name], digests[key.sha256] = key, key


def check_key_name(name: object, blame: str) -> str:
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise UsageError(
            f"{blame}: expected a key name of 1 to 64 letters, digits and _ . @ - (starting "
            f"with a letter or digit), got {str(name)[:80]!r}"
        )
    if name == TOKEN_KEY_NAME:
        raise UsageError(f"{blame}: {TOKEN_KEY_NAME!r} is the name of --api-token: choose another")
    return name


def check_role(role: object, blame: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise UsageError(f"{blame}: expected one of {ROLE_NAMES}, got {str(role)[:40]!r}") from None


def _read_key(entry: dict, prefix: str, where: Callable[[str], str]) -> ApiKey:
    unknown = sorted(set(entry) - set(KEY_FIELDS))
    if unknown:
        hint = " (a key itself never goes in a file: only its sha256)" if "key" in unknown else ""
        raise UsageError(
            f"{where(f'{prefix}.{unknown[0]}')}: {prefix}: unknown field {unknown[0][:60]!r}: "
            f"expected {', '.join(KEY_FIELDS)}{hint}"
        )
    missing = [name for name in KEY_FIELDS if name not in entry]
    if missing:
        raise UsageError(f"{where(prefix)}: {prefix}: missing {missing[0]!r}")
    name = check_key_name(entry["name"], f"{where(f'{prefix}.name')}: {prefix}.name")
    role = check_role(entry["role"], f"{where(f'{prefix}.role')}: {prefix}.role")
    digest = entry["sha256"]
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise UsageError(
            f"{where(f'{prefix}.sha256')}: {prefix}.sha256: expected the 64 hex digits "
            "`petit keys new` prints, got "
            + (f"{len(digest)} characters" if isinstance(digest, str) else type(digest).__name__)
        )
    return ApiKey(name, role, digest.lower(), where(prefix))
