"""What every route shares: JSON in and out, the error mapping, the security checks (Host,
Origin, the API key and its role, path and body limits), and the audit line of each
state-changing request (refusals included)."""

from __future__ import annotations

import json
import logging
import time

import tornado.web

from ..errors import (
    AuditUnavailable,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PetitError,
    Unauthorized,
    UnsupportedMediaType,
    internal_error,
)
from ..ipc.access import ApiKey, Role
from ..ipc.audit import HTTP, AuditLog, audit_entry, masked
from ..ipc.binding import is_loopback_host
from ..storage.store import Store
from .access import Access, require, secret_params
from .channel import CommandChannel

log = logging.getLogger("petit.api")
MAX_PATH_CHARS = 1024
# bigger bodies get a JSON 413, unread; only a handler with `reads_body` keeps one (the trigger)
MAX_BODY_BYTES = 64 * 1024
# the longest id each path parameter accepts: the routes' patterns and the OpenAPI document's
# maxLength are both built from this table (a run id is a job id, a dash and a sequence number)
ID_MAX_CHARS = {"job_id": 128, "run_id": 160, "task_id": 128}
ID_CHARS = "A-Za-z0-9_.-"
# On every response, pages and errors alike: the dashboard runs only its own files (no inline
# script or style, no eval), talks only to this origin, is never framed, leaks no Referer, and
# nothing is sniffed into another type.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """JSON in and out, the error mapping, and the security checks every route shares.

    Bodies are streamed and dropped, except by a handler that sets `reads_body` (the trigger's
    params), which keeps at most MAX_BODY_BYTES of one. One declared too large gets a JSON 413
    from prepare(), a chunked one from data_received() as soon as it goes over, instead of
    tornado's bare 400; tornado then closes the connection rather than read the rest, and never
    runs the handler's method.

    Each route declares the `role` its methods need (None: public). A route that changes state
    names its verb in `audited_op`: each POST to it writes one audit line, with the outcome it
    was answered, before the answer goes out; carry_out() refuses the command when no line can
    be written (fail closed)."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
    role: Role | None = Role.READ
    audited_op: str | None = None
    body_bytes = 0  # of this request's body, counted by data_received()
    reads_body = False  # keep the body (bounded) for json_body(), instead of dropping it
    _body = b""  # the kept body
    api_key: ApiKey | None = None  # the key the request came with (None: the API asks for none)
    _sent_args: dict | None = None  # the command's arguments, once carry_out() sent it
    _audited = False  # this request's audit line was written, or tried

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # HEAD works wherever GET does (RFC 9110 9.3.2): the same method, whose status and
        # headers (Content-Length included) tornado sends without the body
        if "get" in cls.__dict__ and "head" not in cls.__dict__:
            cls.head = cls.get

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this handler implements, as a 405's Allow header lists them (RFC 9110)."""
        default = tornado.web.RequestHandler  # its method bodies answer 405
        return [
            m
            for m in cls.SUPPORTED_METHODS
            if getattr(cls, m.lower()) is not getattr(default, m.lower())
        ]

    @property
    def store(self) -> Store:
        return self.application.settings["store"]

    @property
    def commands(self) -> CommandChannel:
        return self.application.settings["commands"]

    @property
    def access(self) -> Access:
        return self.application.settings["access"]

    @property
    def audit(self) -> AuditLog:
        return self.application.settings["audit"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.clear_header("Server")

    def compute_etag(self):
        return None

    def prepare(self) -> None:
        settings = self.application.settings
        if len(self.request.path) > MAX_PATH_CHARS:
            raise NotFound("path too long")
        _check_body_size(self.request.headers.get("Content-Length", "0"))
        host = self.request.host
        if (
            settings["loopback_only"]
            and not is_loopback_host(host)
            and host.lower() not in settings["public_hosts"]
        ):
            raise Forbidden(
                f"Host header {host[:100]!r} is neither a loopback name nor the host of "
                "--public-url; this API only answers requests addressed to those "
                "(DNS-rebinding protection)"
            )
        origin = self.request.headers.get("Origin")
        if self.request.method not in ("GET", "HEAD") and origin is not None:
            if origin not in (f"{self.request.protocol}://{host}", settings["public_origin"]):
                raise Forbidden(f"cross-origin request from {origin[:100]!r} refused")
        if self.role is not None:
            self.api_key = self.access.identify(self.request.headers.get("Authorization", ""))
            # a method the route lacks needs only a valid key: its answer is the 405
            implemented = self.request.method in self.allowed_methods()
            require(self.api_key, self.role if implemented else Role.READ)

    async def carry_out(self, cmd: str, args: dict | None = None) -> dict:
        """Send a state-changing command and return its result, once the audit log is known
        to take its line: otherwise AuditUnavailable, and nothing is sent."""
        self._sent_args = args or {}
        self.audit.check()
        return await self.commands.call(cmd, args)

    def on_finish(self) -> None:
        self.access.release(self)  # a stream it held open (start_stream), if any

    def data_received(self, chunk: bytes) -> None:
        """Bodies are counted (a chunked one declares no size for prepare()), and dropped
        unless the handler reads them."""
        self.body_bytes += len(chunk)
        if self.body_bytes > MAX_BODY_BYTES:
            if not self._finished:
                self.send_error(PayloadTooLarge.http_status)
        elif self.reads_body:
            self._body += chunk

    def json_body(self) -> dict | None:
        """The request's JSON object, None when it has no body. Raises UnsupportedMediaType
        (415) for a body that is not application/json, BadRequest for one that is not a JSON
        object."""
        body = self._body
        if not body:
            return None
        media_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType(
                f"a request body must be application/json, got {media_type[:60] or 'no type'!r}"
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise BadRequest(f"request body is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
        return data

    def reply(self, body: dict) -> None:
        """Answer a success; a state-changing one only after its audit line is written (when
        it cannot be, the answer says what was done, and that it went unrecorded)."""
        if self._audits():
            run_id = body.get("run_id") if self.audited_op == "trigger" else None
            try:
                self._record("ok", run_id)
            except AuditUnavailable as exc:
                done = f"{self.audited_op}{_subject(self._args())} was carried out"
                done += f" (run {run_id})" if run_id else ""
                log.error("%s, but its audit line could not be written", done)
                raise AuditUnavailable(
                    f"{done}, but its audit line could not be written: {exc.message}"
                ) from None
        self.finish(json.dumps(body))

    def _audits(self) -> bool:
        """Whether this request's answer still needs its audit line."""
        return self.audited_op is not None and self.request.method == "POST" and not self._audited

    def _args(self) -> dict:
        """What the request asked: the command's arguments once sent, else what its path says
        (a refusal before they were read)."""
        if self._sent_args is not None:
            return self._sent_args
        return dict(getattr(self, "path_kwargs", None) or {})

    def _record(self, outcome: str, run_id: str | None = None) -> None:
        """Append this request's one audit line, with the status about to be sent. Raises
        AuditUnavailable."""
        self._audited = True
        args = self._args()
        entry = audit_entry(
            int(time.time() * 1000),
            HTTP,
            self.api_key.name if self.api_key is not None else None,
            self.audited_op,
            masked(args, secret_params(self.store, args)),
            outcome,
            run_id=run_id,
            remote=self.request.remote_ip,
            http_status=self.get_status(),
        )
        self.audit.append(entry)

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, (PetitError, tornado.web.HTTPError)):
            log.error(
                "%s %s failed",
                self.request.method,
                self.request.path[:200],
                exc_info=(typ, value, tb),
            )

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, PetitError):
            error = exc
        elif status_code == 405:
            error = MethodNotAllowed(f"method {self.request.method} not allowed")
        elif status_code == 404:
            error = NotFound("not found")
        elif status_code == PayloadTooLarge.http_status:
            error = _too_large()
        elif 400 <= status_code < 500:
            error = BadRequest(self._reason or "bad request")
        elif exc is not None:
            error = internal_error(exc)
        else:
            error = PetitError("internal error")
        self.set_status(error.http_status)
        self.set_default_headers()
        if isinstance(error, MethodNotAllowed):
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if isinstance(error, Unauthorized):  # here: send_error() clears the headers set before
            self.set_header("WWW-Authenticate", 'Bearer realm="petit"')
        if self._audits():
            try:
                self._record(error.code)
            except AuditUnavailable as exc:  # the refusal is still the answer
                log.error(
                    "%s %s refused (%s), unrecorded: %s",
                    self.request.method,
                    self.request.path[:200],
                    error.code,
                    exc.message,
                )
        self.finish(json.dumps(error.to_wire()))


def _subject(args: dict) -> str:
    """What a verb was done to, for a message: " of job 'x'", " of run 'x-3'", or nothing."""
    for name, what in (("job_id", "job"), ("run_id", "run")):
        if name in args:
            return f" of {what} '{str(args[name])[:200]}'"
    return ""


def _check_body_size(declared: str) -> None:
    """Runs before the body is read (streamed handlers), so the refusal is a JSON answer."""
    if not (declared.isascii() and declared.isdigit()):
        raise BadRequest(f"malformed Content-Length {declared[:40]!r}")
    if len(declared.lstrip("0")) > 12 or int(declared) > MAX_BODY_BYTES:
        raise _too_large()


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
