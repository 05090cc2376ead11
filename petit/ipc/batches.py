"""Events on the queues between processes: a batch is one message holding events as
`Event.to_wire` dicts, in publication order. A module of its own so the scheduler worker can
send batches without loading the asyncio request/reply client (and OpenSSL with it)."""

from __future__ import annotations

from ..core.events import ChildRestarted, Event

EVENT_BATCH = "events"  # the `event` of a queue message carrying events


def event_batch(wires: list[dict]) -> dict:
    """One queue message carrying events (as `Event.to_wire` dicts) in publication order."""
    return {"event": EVENT_BATCH, "events": wires}


def batch_of(events: list[Event]) -> dict:
    return event_batch([event.to_wire() for event in events])


def child_restarted(child: str, exit_code: int | None, restarts: int, at: int) -> dict:
    """The supervisor's own event, as a batch (the supervisor reaches core only through ipc)."""
    return batch_of([ChildRestarted(at=at, child=child, exit_code=exit_code, restarts=restarts)])
