"""The supervisor: spawns and watches the children (restarting a dead one with capped backoff),
owns the control socket, routes commands, and shuts the tree down on a signal. Deliberately
small, since it lives as long as petit: no tornado, no engine, no yaml, no timetable, no tinydb."""

from __future__ import annotations

import sys

# asyncio imports ssl for its TLS transports, which maps OpenSSL (~4 MiB resident). The supervisor
# only speaks over a Unix socket and queues; the API child, which may need TLS, is a fresh
# interpreter and imports ssl normally.
sys.modules.setdefault("ssl", None)

import asyncio
import dataclasses
import functools
import logging
import os
import signal
import time

from ..errors import PetitError, StorageError, Unavailable, from_wire, internal_error
from ..ipc.access import ApiKey
from ..ipc.audit import AuditLog, audit_path
from ..ipc.commands import COMMANDS, SUPERVISOR, error_reply, ok_reply, request, validate_request
from ..ipc.control import MAX_LINE_BYTES, check_socket_path
from ..ipc.instance import hold_instance_lock
from ..logconf import configure_logging
from .child import BACKOFF_FIRST_SECS, Child, ChildState
from .control_server import serve_client
from .hub import EventHub
from .key_reload import give_api_keys, reread_api_keys
from .settings import Settings
from .socket_door import Peer, SocketDoor, is_audited
from .startup import blaming, check_api_settings, remove_stale_socket

log = logging.getLogger("petit.supervisor")
BACKOFF_MAX_SECS = 30.0
STABLE_AFTER_SECS = 10.0  # a child up this long has its backoff reset


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket_path = settings.socket
        self.children: dict[str, Child] = {}
        self.shutting_down = False
        self.hurry = False
        self.done: asyncio.Event | None = None
        self.started_at = time.monotonic()
        self.starting = True  # until the scheduler first reports ready
        self._restart_handles: dict[str, asyncio.TimerHandle] = {}
        self._api_replies: set[asyncio.Task] = set()  # held until done: a task is never lost
        self.hub = EventHub(self._send_to_api)
        audit_log = AuditLog(audit_path(settings.db), settings.audit.max_bytes, settings.audit.keep)
        self.socket_door = SocketDoor(audit_log, self.carry_out)
        # the verbs the supervisor answers itself (the table's SUPERVISOR ones)
        self.own_commands = {
            "status": self._status_command,
            "shutdown": self._shutdown_command,
            "watch": self._watch_command,
        }

    # -- commands -----------------------------------------------------------------------------

    async def forward(self, cmd: str, args: dict) -> dict:
        """Send a command to the scheduler worker and wait for its reply, with the verb's
        deadline."""
        scheduler = self.children["scheduler"]
        if not scheduler.ready.is_set():
            raise Unavailable("the scheduler worker is not running (it is being restarted)")
        return await scheduler.client.exchange(cmd, args)

    async def dispatch(self, message: dict, peer: Peer | None = None) -> dict:
        """The reply to a request. A control-socket client's (`peer`) state-changing ones pass
        the socket door, which records each in the audit log; the API's come without a peer (the
        API records its own)."""
        if peer is not None and is_audited(message):
            return await self.socket_door.answer(message, peer)
        try:
            checked = validate_request(message)
        except PetitError as exc:
            return error_reply(message.get("id") if isinstance(message, dict) else None, exc)
        return await self.carry_out(checked)

    async def carry_out(self, message: dict) -> dict:
        """The reply to a checked request (validate_request)."""
        request_id, cmd, args = message["id"], message["cmd"], message["args"]
        try:
            if COMMANDS[cmd].handled_by == SUPERVISOR:
                return ok_reply(request_id, await self.own_commands[cmd](args))
            if self.shutting_down:
                raise Unavailable("petit is shutting down")
            if cmd == "reload":  # the keys first: bad ones refuse the reload, changing nothing
                self._use_api_keys(reread_api_keys(self.settings.config, self.settings.api_keys))
            reply = await self.forward(cmd, args)
            if cmd == "reload" and reply.get("ok"):
                self._reloaded(reply["result"])
            reply["id"] = request_id
            return reply
        except PetitError as exc:
            return error_reply(request_id, exc)
        except Exception as exc:  # a bug: an internal error for this client, not a dropped one
            # the verb alone: the arguments may hold a secret param's value
            log.exception("request %.40r (%s) failed", request_id, cmd)
            return error_reply(request_id, internal_error(exc))

    def _use_api_keys(self, keys: tuple[ApiKey, ...] | None) -> None:
        """The keys a reload read: the API's now, and a restarted API process's."""
        self.settings = dataclasses.replace(self.settings, api_keys=keys)
        give_api_keys(self.children.get("api"), keys)

    def _reloaded(self, result: dict) -> None:
        """A reload's result gains the key count; its secret names mask from now on."""
        keys = self.settings.api_keys
        result["api_keys"] = None if keys is None else len(keys)
        self.socket_door.secret_params = result.get("secret_params")

    def _scheduler_ready(self, child: Child) -> None:
        self.socket_door.secret_params = child.ready_info.get("secret_params")

    async def _status_command(self, args: dict) -> dict:
        return await self.status()

    async def _shutdown_command(self, args: dict) -> dict:
        timeout = args.get("timeout")
        asyncio.get_running_loop().call_soon(self.begin_shutdown, "petit ctl shutdown", timeout)
        return {"message": "shutting down"}

    async def _watch_command(self, args: dict) -> dict:
        """The reply before a watch's stream (serve_client then hands the client to the hub)."""
        return {"message": "watching"}

    async def status(self) -> dict:
        scheduler_state = None
        try:
            reply = await self.forward("status", {})
            scheduler_state = reply.get("result") if reply.get("ok") else None
        except PetitError:
            pass
        return {
            "supervisor": {
                "pid": os.getpid(),
                "uptime_secs": round(time.monotonic() - self.started_at, 3),
                "db": self.settings.db,
                "jobs_dir": self.settings.jobs_dir,
                "socket": self.socket_path,
                "shutting_down": self.shutting_down,
            },
            "children": [child.info() for child in self.children.values()],
            "scheduler": scheduler_state,
        }

    # -- children -----------------------------------------------------------------------------

    def on_child_exit(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        code = child.reap(loop)
        uptime = time.monotonic() - child.started_at
        if self.starting:  # refused to start: run() reports why, no restart loop
            child.state = ChildState.STOPPED  # STARTING -> STOPPED
            return
        if self.shutting_down:
            child.state = ChildState.STOPPED  # RUNNING -> STOPPED
            log.info("%s exited (code %s)", child.name, code)
            self._check_done()
            return
        if uptime >= STABLE_AFTER_SECS:
            child.backoff = BACKOFF_FIRST_SECS
        delay = child.backoff
        child.backoff = min(child.backoff * 2, BACKOFF_MAX_SECS)
        child.state = ChildState.BACKOFF  # STARTING or RUNNING -> BACKOFF
        log.warning(
            "%s exited unexpectedly (code %s) after %.1fs; restarting in %.1fs",
            child.name,
            code,
            uptime,
            delay,
        )
        self._restart_handles[child.name] = loop.call_later(delay, self._restart, child)

    def _restart(self, child: Child) -> None:
        self._restart_handles.pop(child.name, None)
        if self.shutting_down:
            child.state = ChildState.STOPPED  # BACKOFF -> STOPPED
            self._check_done()
            return
        child.restarts += 1
        self._start(child)  # BACKOFF -> STARTING
        self.hub.own(
            "child",
            {"child": child.name, "exit_code": child.last_exit_code, "restarts": child.restarts},
        )

    def _start(self, child: Child) -> None:
        """Start a child; the hub learns of it first (a new scheduler begins a new epoch of the
        stream, a new API process gets the replay buffer before anything else)."""
        if child.name == "scheduler":
            self.hub.scheduler_started()
        child.start(asyncio.get_running_loop(), self.on_child_exit)
        if child.name == "api":
            self.hub.api_started()

    def on_events(self, child: Child, messages: list) -> None:
        """A batch of the scheduler's stream messages: numbered and passed on by the hub."""
        self.hub.publish(messages)

    def _send_to_api(self, batch: dict) -> None:
        """With no API process up, nobody listens there (the hub's buffer still has it all)."""
        api = self.children.get("api")
        if api is not None and api.is_up:
            api.send(batch)

    def on_api_request(self, child: Child, message: dict) -> None:
        """The API's mutations take the same route as control-socket commands. The answering
        task is held until done, and its failure logged: it can never die unseen."""
        task = asyncio.ensure_future(self._answer_api(child, child.proc, message))
        self._api_replies.add(task)
        task.add_done_callback(self._api_reply_done)

    async def _answer_api(self, child: Child, asker, message: dict) -> None:
        reply = await self.dispatch(message)
        try:
            if child.proc is not asker:
                raise Unavailable(f"the {child.name} process that asked is gone")
            child.send(reply)
        except Unavailable as exc:  # its successor never asked
            log.debug("reply %.40r dropped: %s", reply.get("id"), exc.message)

    def _api_reply_done(self, task: asyncio.Task) -> None:
        self._api_replies.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("answering the API failed", exc_info=task.exception())

    # -- shutdown -----------------------------------------------------------------------------

    def begin_shutdown(self, reason: str, timeout: float | None = None) -> None:
        """Stop the tree; running runs get `timeout` seconds (default: --shutdown-timeout)."""
        if self.shutting_down:
            if not self.hurry:
                self.hurry = True
                log.warning("second interrupt: interrupting running runs now")
                self._signal_children(signal.SIGTERM)
            return
        self.shutting_down = True
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        log.info("shutting down (%s): running runs get up to %gs to finish", reason, timeout)
        for handle in self._restart_handles.values():
            handle.cancel()
        for child in self.children.values():
            if child.state is ChildState.BACKOFF:
                child.state = ChildState.STOPPED  # BACKOFF -> STOPPED: no restart now
        scheduler = self.children.get("scheduler")
        for child in self.children.values():
            if child.state is ChildState.STOPPED:
                continue
            if child is scheduler and child.ready.is_set():
                child.send(request("shutdown", {"timeout": timeout}))
            else:
                _terminate(child)
        loop = asyncio.get_running_loop()
        loop.call_later(timeout + 15, self._force_stop)
        self._check_done()

    def _signal_children(self, sig: int) -> None:
        for child in self.children.values():
            if child.proc is not None and child.proc.exitcode is None:
                try:
                    os.kill(child.proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _force_stop(self) -> None:
        log.error("children did not stop in time: killing them")
        self._signal_children(signal.SIGKILL)

    def _check_done(self) -> None:
        stopped = all(c.state is ChildState.STOPPED for c in self.children.values())
        if self.shutting_down and stopped:
            self.done.set()

    # -- main ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start the scheduler first: it validates the job files and the db, so invalid input is
        reported before any socket exists. Then the control socket, then the API."""
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.begin_shutdown, name)
        scheduler = self.children["scheduler"] = Child(
            "scheduler",
            "petit.service.worker:worker_main",
            dataclasses.replace(self.settings, api_token=None),  # a secret of the API alone
            self.on_events,
            on_ready=self._scheduler_ready,
        )
        self._start(scheduler)
        await _first_of(scheduler.ready.wait(), scheduler.exited.wait(), self.done.wait())
        self.starting = False
        if not scheduler.ready.is_set():
            if self.shutting_down:
                await self.done.wait()
                return 0
            _terminate(scheduler)
            if scheduler.fatal:
                raise from_wire(scheduler.fatal)
            raise PetitError(
                f"the scheduler worker failed to start (exit code {scheduler.proc.exitcode}); "
                "see the log lines above"
            )
        old_umask = os.umask(0o177)  # the socket is born 0600, no window with wider rights
        try:
            server = await asyncio.start_unix_server(
                functools.partial(serve_client, self.dispatch, self.hub),
                path=self.socket_path,
                limit=MAX_LINE_BYTES,
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        if self.settings.api and not self.shutting_down:
            self.children["api"] = Child(
                "api", "petit.api.app:api_main", self.settings, self.on_events, self.on_api_request
            )
            self._start(self.children["api"])
        log.info(
            "petit %s serving %d job(s) from %s (db %s, control socket %s)",
            _version(),
            scheduler.ready_info.get("jobs", 0),
            self.settings.jobs_dir,
            self.settings.db,
            self.socket_path,
        )
        try:
            await self.done.wait()
        finally:
            server.close()
            self.hub.close_watchers()
            _unlink(self.socket_path)
        log.info("petit stopped")
        return 0


async def _first_of(*waits) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()


def _terminate(child: Child) -> None:
    if child.proc is not None and child.proc.exitcode is None:
        child.proc.terminate()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _version() -> str:
    from .. import __version__

    return __version__


def serve(settings: Settings) -> int:
    """`petit run` with its settings: everything is checked before anything starts."""
    configure_logging("supervisor", settings.log_level)
    blaming(settings, "socket", check_socket_path, settings.socket)
    if settings.api:
        settings = check_api_settings(settings)
    if not os.path.isdir(os.path.dirname(settings.db)):
        raise StorageError(
            f"{settings.blame('db')}: {settings.db}: the directory "
            f"{os.path.dirname(settings.db)} does not exist"
        )
    lock_fd = hold_instance_lock(settings.db)  # a second instance never touches the socket
    try:
        remove_stale_socket(settings)
        return asyncio.run(Supervisor(settings).run())
    finally:
        os.close(lock_fd)
