"""GET /api/audit: the audit log's newest entries (admin only), read from the current file and
the rotated ones, oldest first, with a warning for each line that could not be read."""

from __future__ import annotations

import asyncio

from ..errors import BadRequest
from ..ipc.access import Role
from ..ipc.audit import MAX_READ_LIMIT
from .base import BaseHandler
from .handlers import MAX_EPOCH_MS, parse_count

DEFAULT_AUDIT_LIMIT = 100


def parse_limit(raw: str) -> int:
    """1 to MAX_READ_LIMIT, refused (not capped) above it: a reader that asked for more than
    one page holds must not take a page for all there is."""
    limit = parse_count("limit", raw, 1, MAX_READ_LIMIT + 1)
    if limit > MAX_READ_LIMIT:
        raise BadRequest(f"limit must be at most {MAX_READ_LIMIT}, got {raw[:40]!r}")
    return limit


class AuditHandler(BaseHandler):
    role = Role.ADMIN

    async def get(self) -> None:
        raw_since = self.get_query_argument("since", None)
        since = None if raw_since is None else parse_count("since", raw_since, 0, MAX_EPOCH_MS)
        limit = parse_limit(self.get_query_argument("limit", str(DEFAULT_AUDIT_LIMIT)))
        # files of up to max_size each: read off the loop, which goes on serving meanwhile
        page = await asyncio.get_running_loop().run_in_executor(None, self.audit.read, since, limit)
        self.reply(
            {
                "entries": page.entries,
                "count": len(page.entries),
                "more": page.more,
                "warnings": page.warnings,
            }
        )
