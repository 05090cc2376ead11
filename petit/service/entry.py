"""The first code a spawned child runs. A module of its own, importing nothing, so that a child
loads only what its target needs: not asyncio for the scheduler, and not the supervisor's
import restrictions for the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings


def run_child(target: str, settings: Settings, outbox, inbox) -> None:
    """Entry point of a spawned child: `target` is "module:function", called with the whole
    frozen Settings (it pickles across spawn) and the child's two queues."""
    import importlib

    module, name = target.split(":")
    getattr(importlib.import_module(module), name)(settings, outbox, inbox)
