"""The control socket's server side: JSON lines in, one reply line out per request, for as
long as the client stays (idle clients are dropped); a `watch` request turns the connection
into a stream of events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from ..errors import BadRequest
from ..ipc.commands import COMMANDS, error_reply, validate_request
from ..ipc.control import MAX_LINE_BYTES
from .hub import EventHub
from .socket_door import Peer, peer_of

CLIENT_IDLE_SECS = 300.0


async def serve_client(
    dispatch: Callable[[dict, Peer], Awaitable[dict]],
    hub: EventHub,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    peer = peer_of(writer.get_extra_info("socket"))  # who connected: for the audit log
    try:
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), CLIENT_IDLE_SECS)
            except TimeoutError:
                break
            except ValueError:  # longer than the stream limit
                too_long = BadRequest(f"request line longer than {MAX_LINE_BYTES} bytes")
                await _send(writer, error_reply(None, too_long))
                break
            if not line.endswith(b"\n"):
                break  # EOF, possibly after half a line
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
                reply = error_reply(None, BadRequest("request is not valid JSON"))
            else:
                reply = await dispatch(message, peer)
            if reply.get("ok") and COMMANDS[message["cmd"]].streams:
                args = validate_request(message)["args"]
                await hub.watch(reader, writer, *_filters(args), _line(reply))
                break
            await _send(writer, reply)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _filters(args: dict) -> tuple[frozenset[str], frozenset[str]]:
    return tuple(frozenset([args[key]] if args.get(key) else []) for key in ("job_id", "run_id"))


def _line(reply: dict) -> bytes:
    return json.dumps(reply).encode() + b"\n"


async def _send(writer: asyncio.StreamWriter, reply: dict) -> None:
    writer.write(_line(reply))
    await asyncio.wait_for(writer.drain(), CLIENT_IDLE_SECS)  # a client that never reads is dropped
