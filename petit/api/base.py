"""What every route shares: JSON in and out, the error mapping, and the security checks (Host,
Origin, bearer token, path and body limits)."""

from __future__ import annotations

import hmac
import json
import logging

import tornado.web

from ..errors import (
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
from ..ipc.binding import is_loopback_host
from ..storage.store import Store
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
    runs the handler's method."""

    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
    body_bytes = 0  # of this request's body, counted by data_received()
    reads_body = False  # keep the body (bounded) for json_body(), instead of dropping it
    _body = b""  # the kept body

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
        token = settings["token"]
        if token and not getattr(self, "public", False):
            header = self.request.headers.get("Authorization", "")
            given = header[7:] if header.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Unauthorized("missing or wrong bearer token (Authorization: Bearer TOKEN)")

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
        self.finish(json.dumps(body))

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
        if isinstance(error, Unauthorized):  # send_error() cleared the one set in prepare()
            self.set_header("WWW-Authenticate", 'Bearer realm="petit"')
        self.finish(json.dumps(error.to_wire()))


def _check_body_size(declared: str) -> None:
    """Runs before the body is read (streamed handlers), so the refusal is a JSON answer."""
    if not (declared.isascii() and declared.isdigit()):
        raise BadRequest(f"malformed Content-Length {declared[:40]!r}")
    if len(declared.lstrip("0")) > 12 or int(declared) > MAX_BODY_BYTES:
        raise _too_large()


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
