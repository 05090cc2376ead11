"""The control socket as a door of the audit log: who is at the other end of a connection (the
kernel's peer credentials, which a client cannot forge), and one audit line for each request
naming a state-changing verb that a socket client sends, refusals included. Fail closed: a request
is carried out only when its line can be written, and a reply goes out only once its line is on
disk. (The API records its own requests, which reach the supervisor without a peer.)"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import AuditUnavailable, PetitError
from ..ipc.audit import CTL, SOCKET, AuditLog, audit_entry, masked
from ..ipc.commands import COMMANDS, SUPERVISOR, error_reply, validate_request

log = logging.getLogger("petit.supervisor")
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# what a request refused before its arguments were checked still says about its target
_TARGETS = ("job_id", "run_id")


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a control-socket connection, as the kernel saw it when
    it connected (None where the platform does not say)."""

    pid: int | None
    uid: int | None

    @property
    def who(self) -> str:
        return f"socket uid {'unknown' if self.uid is None else self.uid}"


def peer_of(sock) -> Peer:
    """SO_PEERCRED of a connected Unix socket."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    except (AttributeError, OSError):  # not Linux, or the client is already gone
        return Peer(None, None)
    pid, uid, _gid = _CREDENTIALS.unpack(raw)
    return Peer(pid, uid)


def is_audited(message: object) -> bool:
    """Whether a request names a state-changing verb. One that names no verb (not an object,
    an unknown verb) is not an operation, and is not recorded."""
    cmd = message.get("cmd") if isinstance(message, dict) else None
    return isinstance(cmd, str) and cmd in COMMANDS and COMMANDS[cmd].changes_state


class SocketDoor:
    """`carry_out` answers a checked request (the supervisor's routing). `secret_params` is the
    scheduler worker's latest map of job id -> the names of its params declared secret; while it
    is None (no worker has reported), every param value is masked."""

    def __init__(self, audit_log: AuditLog, carry_out: Callable[[dict], Awaitable[dict]]):
        self.audit_log = audit_log
        self.carry_out = carry_out
        self.secret_params: dict[str, list[str]] | None = None

    async def answer(self, message: dict, peer: Peer) -> dict:
        """The reply to an audited request (is_audited), its line written first."""
        line = _Line(message["cmd"], CTL if message.get("client") == CTL else SOCKET, peer)
        try:
            checked = validate_request(message)
        except PetitError as exc:
            raw_args = message.get("args") if isinstance(message.get("args"), dict) else {}
            known = {k: v for k, v in raw_args.items() if k in _TARGETS and isinstance(v, str)}
            return await self._refuse(line, known, error_reply(message.get("id"), exc))
        # masked as the line is written, with the map of then: a reload answered meanwhile may
        # have brought a job's secret names
        request_id, args = checked["id"], checked["args"]
        try:
            await asyncio.to_thread(self.audit_log.check)
        except AuditUnavailable as exc:
            return await self._refuse(line, args, error_reply(request_id, exc))
        if COMMANDS[line.op].handled_by == SUPERVISOR:
            # its effect begins as it is answered (a shutdown): the line is written first, and
            # the verb cannot be refused once its arguments are good
            try:
                await self._write(line.entry(self._masked(args), "ok"))
            except AuditUnavailable as exc:
                return error_reply(request_id, exc)
            return await self.carry_out(checked)
        reply = await self.carry_out(checked)
        if not reply.get("ok"):
            return await self._refuse(line, args, reply)
        run_id = reply["result"].get("run_id") if line.op == "trigger" else None
        try:
            await self._write(line.entry(self._masked(args), "ok", run_id))
        except AuditUnavailable as exc:
            done = _carried_out(line.op, args, run_id)
            return error_reply(
                request_id,
                AuditUnavailable(f"{done}, but its audit line could not be written: {exc.message}"),
            )
        return reply

    async def _refuse(self, line: _Line, args: dict, reply: dict) -> dict:
        """A refusal is sent whether or not its line could be written (it changed nothing)."""
        try:
            entry = line.entry(self._masked(args), reply.get("code") or "INTERNAL_ERROR")
            await self._write(entry)
        except AuditUnavailable as exc:
            log.error("the refusal of a %s could not be recorded: %s", line.op, exc.message)
        return reply

    async def _write(self, entry: dict) -> None:
        # in a thread: the flock may wait on another writer, and the loop must not
        await asyncio.to_thread(self.audit_log.append, entry)

    def _masked(self, args: dict) -> dict:
        if self.secret_params is not None:
            return masked(args, self.secret_params.get(args.get("job_id"), ()))
        given = set(args.get("params") or ())
        given |= {word.partition("=")[0].strip() for word in args.get("param_words") or ()}
        return masked(args, given)


@dataclass(frozen=True)
class _Line:
    """What an audit line of one request knows before the outcome."""

    op: str
    door: str
    peer: Peer

    def entry(self, args: dict, outcome: str, run_id: str | None = None) -> dict:
        return audit_entry(
            int(time.time() * 1000),
            self.door,
            self.peer.who,
            self.op,
            args,
            outcome,
            run_id=run_id,
            pid=self.peer.pid,
        )


def _carried_out(op: str, args: dict, run_id: str | None) -> str:
    """What was done, for the error that says it was done but not recorded."""
    if op == "trigger":
        return f"trigger of job {args['job_id']!r} was carried out (run {run_id})"
    if op == "cancel":
        return f"cancel of run {args['run_id']!r} was carried out"
    return f"{op} was carried out"
