"""The first code a spawned child runs. A module of its own, importing nothing, so that a child
loads only what its target needs: not asyncio for the scheduler, and not the supervisor's
import restrictions for the API."""

from __future__ import annotations


def run_child(target: str, settings: dict, outbox, inbox) -> None:
    """Entry point of a spawned child: `target` is "module:function"."""
    import importlib

    module, name = target.split(":")
    getattr(importlib.import_module(module), name)(settings, outbox, inbox)
