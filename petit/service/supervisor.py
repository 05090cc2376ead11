"""The supervisor: spawns and watches the children (restarting a dead one with capped backoff),
owns the control socket, routes commands, and shuts the tree down on a signal. Deliberately
small, since it lives as long as petit: no tornado, no engine, no yaml, croniter or tinydb."""

from __future__ import annotations

import sys

# asyncio imports ssl for its TLS transports, which maps OpenSSL (~4 MiB resident). The supervisor
# only speaks over a Unix socket and queues; the API child, which may need TLS, is a fresh
# interpreter and imports ssl normally.
sys.modules.setdefault("ssl", None)

import asyncio
import json
import logging
import os
import signal
import stat
import time

from ..errors import BadRequest, PetitError, StorageError, Unavailable, from_wire
from ..ipc.commands import error_reply, ok_reply, request, validate_request
from ..ipc.control import MAX_LINE_BYTES, check_socket_path, is_listening
from ..ipc.instance import hold_instance_lock
from ..logconf import configure_logging
from .child import BACKOFF_FIRST_SECS, Child

log = logging.getLogger("petit.supervisor")
BACKOFF_MAX_SECS = 30.0
STABLE_AFTER_SECS = 10.0  # a child up this long has its backoff reset
CLIENT_IDLE_SECS = 300.0
COMMAND_DEADLINE_SECS = 5.0
CANCEL_DEADLINE_SECS = (
    20.0  # a cancel answers once the run stopped: kill grace, drain, sweep, write
)


class Supervisor:
    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.socket_path = settings["socket"]
        self.children: dict[str, Child] = {}
        self.shutting_down = False
        self.hurry = False
        self.done: asyncio.Event | None = None
        self.started_at = time.monotonic()
        self.starting = True  # until the scheduler first reports ready
        self._restart_handles: dict[str, asyncio.TimerHandle] = {}

    # -- commands -----------------------------------------------------------------------------

    async def forward(self, cmd: str, args: dict, timeout: float = COMMAND_DEADLINE_SECS) -> dict:
        """Send a command to the scheduler worker and wait for its reply, with a deadline."""
        scheduler = self.children["scheduler"]
        if not scheduler.ready.is_set():
            raise Unavailable("the scheduler worker is not running (it is being restarted)")
        message = request(cmd, args)
        # the worker drops a command nobody waits for any more, so a caller told 503 may retry
        # without the first attempt running late behind its back (CLOCK_MONOTONIC is system-wide)
        message["deadline"] = time.monotonic() + timeout
        future = scheduler.matcher.expect(message["id"])
        scheduler.send(message)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            scheduler.matcher.discard(message["id"])
            raise Unavailable(f"the scheduler did not answer {cmd!r} within {timeout:g}s") from None

    async def dispatch(self, message: dict) -> dict:
        request_id = message.get("id") if isinstance(message, dict) else None
        try:
            message = validate_request(message)
            cmd, args = message["cmd"], message["args"]
            if cmd == "status":
                return ok_reply(request_id, await self.status())
            if cmd == "shutdown":
                asyncio.get_running_loop().call_soon(self.begin_shutdown, "petit ctl shutdown")
                return ok_reply(request_id, {"message": "shutting down"})
            if self.shutting_down:
                raise Unavailable("petit is shutting down")
            reply = await self.forward(
                cmd, args, CANCEL_DEADLINE_SECS if cmd == "cancel" else COMMAND_DEADLINE_SECS
            )
            reply["id"] = request_id
            return reply
        except PetitError as exc:
            return error_reply(request_id, exc)
        except (
            Exception
        ) as exc:  # a bug answers as an internal error instead of dropping the client
            log.exception("request %.200r failed", message)
            return error_reply(request_id, PetitError(f"internal error: {exc}"))

    async def status(self) -> dict:
        scheduler_state = None
        try:
            reply = await self.forward("status", {}, timeout=3.0)
            scheduler_state = reply.get("result") if reply.get("ok") else None
        except PetitError:
            pass
        return {
            "supervisor": {
                "pid": os.getpid(),
                "uptime_secs": round(time.monotonic() - self.started_at, 3),
                "db": self.settings["db"],
                "jobs_dir": self.settings["jobs_dir"],
                "socket": self.socket_path,
                "shutting_down": self.shutting_down,
            },
            "children": [child.info() for child in self.children.values()],
            "scheduler": scheduler_state,
        }

    # -- control socket -----------------------------------------------------------------------

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), CLIENT_IDLE_SECS)
                except TimeoutError:
                    break
                except ValueError:  # longer than the stream limit
                    await _send(
                        writer,
                        error_reply(
                            None, BadRequest(f"request line longer than {MAX_LINE_BYTES} bytes")
                        ),
                    )
                    break
                if not line.endswith(b"\n"):
                    break  # EOF, possibly after half a line
                try:
                    message = json.loads(line)
                except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
                    reply = error_reply(None, BadRequest("request is not valid JSON"))
                else:
                    reply = await self.dispatch(message)
                await _send(writer, reply)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    # -- children -----------------------------------------------------------------------------

    def on_child_exit(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        code = child.reap(loop)
        uptime = time.monotonic() - child.started_at
        if self.starting:  # refused to start: run() reports why, no restart loop
            child.state = "stopped"
            return
        if self.shutting_down:
            child.state = "stopped"
            log.info("%s exited (code %s)", child.name, code)
            self._check_done()
            return
        if uptime >= STABLE_AFTER_SECS:
            child.backoff = BACKOFF_FIRST_SECS
        delay = child.backoff
        child.backoff = min(child.backoff * 2, BACKOFF_MAX_SECS)
        child.state = "backoff"
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
            child.state = "stopped"
            self._check_done()
            return
        child.restarts += 1
        child.start(asyncio.get_running_loop(), self.on_child_exit)

    def on_scheduler_message(self, child: Child, message: dict) -> None:
        child.matcher.resolve(message)

    def on_api_message(self, child: Child, message: dict) -> None:
        """The API's mutations take the same route as control-socket commands."""

        async def answer() -> None:
            reply = await self.dispatch(message)
            try:
                child.send(reply)
            except Unavailable:
                pass  # the API process died meanwhile; its successor never asked

        asyncio.ensure_future(answer())

    # -- shutdown -----------------------------------------------------------------------------

    def begin_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            if not self.hurry:
                self.hurry = True
                log.warning("second interrupt: interrupting running runs now")
                self._signal_children(signal.SIGTERM)
            return
        self.shutting_down = True
        timeout = self.settings["shutdown_timeout"]
        log.info("shutting down (%s): running runs get up to %gs to finish", reason, timeout)
        for handle in self._restart_handles.values():
            handle.cancel()
        for child in self.children.values():
            if child.state == "backoff":
                child.state = "stopped"
        scheduler = self.children.get("scheduler")
        for child in self.children.values():
            if child.state == "stopped":
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
        if self.shutting_down and all(c.state == "stopped" for c in self.children.values()):
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
            _child_settings(self.settings),
            self.on_scheduler_message,
        )
        scheduler.start(loop, self.on_child_exit)
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
                self.serve_client, path=self.socket_path, limit=MAX_LINE_BYTES
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        if self.settings["api"] and not self.shutting_down:
            api_settings = {
                **_child_settings(self.settings),
                **{k: v for k, v in self.settings.items() if k.startswith("api_")},
            }
            self.children["api"] = Child(
                "api", "petit.api.app:api_main", api_settings, self.on_api_message
            )
            self.children["api"].start(loop, self.on_child_exit)
        log.info(
            "petit %s serving %d job(s) from %s (db %s, control socket %s)",
            _version(),
            scheduler.ready_info.get("jobs", 0),
            self.settings["jobs_dir"],
            self.settings["db"],
            self.socket_path,
        )
        try:
            await self.done.wait()
        finally:
            server.close()
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


async def _send(writer: asyncio.StreamWriter, reply: dict) -> None:
    writer.write(json.dumps(reply).encode() + b"\n")
    await asyncio.wait_for(writer.drain(), CLIENT_IDLE_SECS)  # a client that never reads is dropped


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _version() -> str:
    from .. import __version__

    return __version__


def _child_settings(settings: dict) -> dict:
    """Only plain values cross the process boundary."""
    return {
        key: settings[key]
        for key in ("jobs_dir", "db", "max_tasks", "max_jobs", "keep_runs", "log_level")
    }


def _check_api_settings(settings: dict) -> None:
    """Host and port are checked here, so a busy port is one clear startup error."""
    from ..ipc.binding import check_port_free, is_loopback_bind

    host, port, token = settings["api_host"], settings["api_port"], settings["api_token"]
    loopback = is_loopback_bind(host, port)
    check_port_free(host, port)
    settings["api_loopback_only"] = loopback
    if not loopback:
        log.warning(
            "the HTTP API is bound to %s, which is reachable from other machines%s; read "
            "README.md, section 'Security'",
            host,
            "" if token else " and has NO authentication (set --api-token)",
        )


def serve(settings: dict) -> int:
    """`petit run` with parsed settings: everything is checked before anything starts."""
    configure_logging("supervisor", settings["log_level"])
    check_socket_path(settings["socket"])
    if settings["api"]:
        _check_api_settings(settings)
    if not os.path.isdir(os.path.dirname(settings["db"])):
        raise StorageError(
            f"{settings['db']}: the directory {os.path.dirname(settings['db'])} does not exist"
        )
    lock_fd = hold_instance_lock(settings["db"])  # a second instance never touches the socket
    try:
        _remove_stale_socket(settings)
        return asyncio.run(Supervisor(settings).run())
    finally:
        os.close(lock_fd)


def _remove_stale_socket(settings: dict) -> None:
    """A socket file left by a dead instance is removed; a live socket, or anything that is not
    a socket (a mistyped --socket naming a real file), is an error and is never deleted."""
    path = settings["socket"]
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise PetitError(f"{path} exists and is not a socket: pass another --socket PATH")
    if is_listening(path):
        raise PetitError(
            f"another petit is already serving {settings['db']} (its control socket {path} answers)"
        )
    log.info("removing stale control socket %s", path)
    _unlink(path)
