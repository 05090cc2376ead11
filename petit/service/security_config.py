"""The parts of petit.toml about who may use the API and the record of what was done with it:
the `[[api_keys]]` tables (in petit.toml itself, or in the keys file `api_keys_file` names) and
the `[audit]` table (when the log is rotated). Read at start, and the keys again at each reload,
so that a key removed from the file is refused from then on."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass

from ..errors import UsageError
from ..ipc.access import ApiKey, check_unique, read_key_entries
from ..ipc.audit import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from .config_file import ConfigFile, read_config_file

KEYS_FILE = "api_keys_file"
MIN_AUDIT_BYTES = 1 << 10
MAX_AUDIT_BYTES = 1 << 30
MAX_AUDIT_KEEP = 100
_SIZE = re.compile(r"([0-9]{1,10})\s*(B|KiB|MiB|GiB)?")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
AUDIT_FIELDS = ("max_size", "keep")


@dataclass(frozen=True)
class AuditPolicy:
    """When `<db>.audit.jsonl` is rotated: past `max_bytes`, keeping `keep` older files."""

    max_bytes: int = DEFAULT_MAX_BYTES
    keep: int = DEFAULT_KEEP


def read_api_keys(
    config: ConfigFile | None, *, missing_file_ok: bool = False
) -> tuple[ApiKey, ...] | None:
    """The declared keys; None when petit.toml declares none and names no keys file (the API
    then asks for no key, unless --api-token is set). An empty tuple is not None: with every key
    removed, every request is refused, rather than the API left open. A keys file that does not
    exist is an error, unless `missing_file_ok` (`petit keys new`, which creates it)."""
    if config is None or ("api_keys" not in config.data and KEYS_FILE not in config.data):
        return None
    keys = []
    if "api_keys" in config.data:
        keys += read_key_entries(config.data["api_keys"], config.where)
    path = keys_file_path(config)
    if path is not None and not (missing_file_ok and not os.path.lexists(path)):
        keys += _read_keys_file(path, f"{config.where(KEYS_FILE)}: {KEYS_FILE}")
    check_unique(keys)
    return tuple(keys)


def keys_file_path(config: ConfigFile | None) -> str | None:
    """The keys file petit.toml names, made absolute from petit.toml's folder; None if none."""
    if config is None or KEYS_FILE not in config.data:
        return None
    raw = config.data[KEYS_FILE]
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError(
            f"{config.where(KEYS_FILE)}: {KEYS_FILE}: expected the path of a TOML file of "
            f"[[api_keys]] tables, got {str(raw)[:60]!r}"
        )
    return os.path.abspath(os.path.join(config.directory, os.path.expanduser(raw)))


def _read_keys_file(path: str, blame: str) -> tuple[ApiKey, ...]:
    """A keys file holds [[api_keys]] tables and nothing else. It must exist (a missing one
    would leave the API without the keys meant to guard it), and only its owner may write it:
    whoever can add a line to it can give themselves the admin role."""
    try:
        info = os.stat(path)
    except OSError as exc:
        hint = " (petit keys new NAME --role ROLE creates it)" if not os.path.exists(path) else ""
        raise UsageError(f"{blame}: cannot read {path}: {exc.strerror}{hint}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{blame}: {path} is not a regular file: expected a TOML file of keys")
    if info.st_mode & 0o022:
        raise UsageError(
            f"{blame}: {path} may be written by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}), who could add a key of their own: "
            f"run chmod 600 {path}"
        )
    keys_file = read_config_file(path)
    unknown = sorted(set(keys_file.data) - {"api_keys"})
    if unknown:
        raise UsageError(
            f"{keys_file.where(unknown[0])}: unknown key {unknown[0][:60]!r}: a keys file holds "
            "[[api_keys]] tables only"
        )
    return read_key_entries(keys_file.data.get("api_keys", []), keys_file.where)


def read_audit_policy(config: ConfigFile | None) -> AuditPolicy:
    """The [audit] table: `max_size` (bytes, or "10MiB", "512KiB", "1GiB") and `keep`."""
    table = config.data.get("audit") if config else None
    if table is None:
        return AuditPolicy()
    if not isinstance(table, dict):
        raise UsageError(f"{config.where('audit')}: audit: expected a table ([audit])")
    unknown = sorted(set(table) - set(AUDIT_FIELDS))
    if unknown:
        raise UsageError(
            f"{config.where(f'audit.{unknown[0]}')}: audit: unknown key {unknown[0][:60]!r}: "
            f"expected {', '.join(AUDIT_FIELDS)}"
        )
    policy = AuditPolicy()
    max_bytes, keep = policy.max_bytes, policy.keep
    if "max_size" in table:
        max_bytes = _size(table["max_size"], f"{config.where('audit.max_size')}: audit.max_size")
    if "keep" in table:
        keep = table["keep"]
        if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= MAX_AUDIT_KEEP:
            raise UsageError(
                f"{config.where('audit.keep')}: audit.keep: expected a whole number of rotated "
                f"files to keep, 0 to {MAX_AUDIT_KEEP}, got {str(keep)[:40]!r}"
            )
    return AuditPolicy(max_bytes, keep)


def _size(raw, blame: str) -> int:
    match = _SIZE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if isinstance(raw, int) and not isinstance(raw, bool):
        size = raw
    elif match:
        size = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise UsageError(
            f'{blame}: expected a size in bytes, or like "10MiB", "512KiB", "1GiB", got '
            f"{str(raw)[:40]!r}"
        )
    if not MIN_AUDIT_BYTES <= size <= MAX_AUDIT_BYTES:
        raise UsageError(f"{blame}: must be from 1KiB to 1GiB, got {size} bytes")
    return size
