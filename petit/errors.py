"""One exception hierarchy. Each class carries a wire code and an HTTP status so the three
edges (HTTP responses, IPC replies, CLI exit codes) translate errors the same way."""

from __future__ import annotations


class PetitError(Exception):
    code = "INTERNAL_ERROR"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code}


class BadRequest(PetitError):
    code = "BAD_REQUEST"
    http_status = 400


class UsageError(BadRequest):
    """A command-line option with a bad value: the same exit code as a malformed command line."""

    exit_code = 2


class Unauthorized(PetitError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(PetitError):
    code = "FORBIDDEN"
    http_status = 403


class NotFound(PetitError):
    code = "NOT_FOUND"
    http_status = 404


class NotListening(PetitError):
    """No petit answers on the control socket (`petit ctl` exits 3, like SERVICE_UNAVAILABLE)."""

    code = "NOT_LISTENING"
    http_status = 503
    exit_code = 3


class MethodNotAllowed(PetitError):
    code = "METHOD_NOT_ALLOWED"
    http_status = 405


class Conflict(PetitError):
    """A dependency is not satisfied, or the run is in a state that forbids the request."""

    code = "CONFLICT"
    http_status = 409


class PayloadTooLarge(PetitError):
    """A request body over the API's limit (only the HTTP edge has bodies)."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class TooManyRuns(PetitError):
    code = "TOO_MANY_REQUESTS"
    http_status = 429


class Unavailable(PetitError):
    """The scheduler worker is down or did not answer within the deadline."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503
    exit_code = 3


class ConfigError(PetitError):
    """Job files are invalid; `errors` holds every problem found, one line each."""

    code = "INVALID_CONFIG"
    http_status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code, "errors": self.errors}


class StorageError(PetitError):
    """The database cannot be read or written (corrupt file, permissions, disk full)."""

    code = "STORAGE_ERROR"
    http_status = 500


_BY_CODE = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        NotListening,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        TooManyRuns,
        Unavailable,
        StorageError,
    )
}


def from_wire(body: dict) -> PetitError:
    """Rebuild the exception a peer sent as `{"error", "code"}` (IPC replies)."""
    if body.get("code") == ConfigError.code:
        return ConfigError(list(body.get("errors") or [body.get("error", "invalid config")]))
    cls = _BY_CODE.get(body.get("code", ""), PetitError)
    return cls(str(body.get("error", "unknown error")))
