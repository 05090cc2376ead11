"""One exception hierarchy. Each class carries a wire code and an HTTP status so the three
edges (HTTP responses, IPC replies, CLI exit codes) translate errors the same way."""

from __future__ import annotations

from typing import ClassVar


class PetitError(Exception):
    code = "INTERNAL_ERROR"
    http_status = 500
    exit_code = 1
    # wire code -> the first (most general) class that declared it, filled in as classes are
    # defined: a new code needs no second list to be rebuilt from an IPC reply
    by_code: ClassVar[dict[str, type[PetitError]]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        PetitError.by_code.setdefault(cls.code, cls)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code}

    @classmethod
    def from_body(cls, body: dict) -> PetitError:
        """The exception of this class a wire body describes. Subclasses that take ids in their
        constructor are never rebuilt: the registry holds the general class of each code."""
        return cls(str(body.get("error", "unknown error")))


PetitError.by_code[PetitError.code] = PetitError


class BadRequest(PetitError):
    code = "BAD_REQUEST"
    http_status = 400


class UsageError(BadRequest):
    """A command-line option with a bad value: the same exit code as a malformed command line."""

    exit_code = 2


class InvalidParams(BadRequest):
    """The params of a manual trigger do not fit the job's declared ones; `problems` holds every
    problem, one line each. No run was created."""

    code = "INVALID_PARAMS"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code, "problems": self.problems}

    @classmethod
    def from_body(cls, body: dict) -> InvalidParams:
        return cls(list(body.get("problems") or [body.get("error", "invalid params")]))


class Unauthorized(PetitError):
    code = "UNAUTHORIZED"
    http_status = 401


class Forbidden(PetitError):
    code = "FORBIDDEN"
    http_status = 403


class RoleRequired(Forbidden):
    """A valid API key whose role is too small for the request: the error names the role the
    request needs, so the caller knows which key to ask for."""

    def __init__(self, needed: str, key: str, role: str) -> None:
        self.needed, self.key, self.role = needed, key, role
        super().__init__(
            f"this request needs the {needed} role; the key '{key[:100]}' has the {role} role"
        )

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code, "needed_role": self.needed}


class NotFound(PetitError):
    code = "NOT_FOUND"
    http_status = 404


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job '{job_id[:200]}' not found")


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run '{run_id[:200]}' not found")


class TaskNotFound(NotFound):
    def __init__(self, run_id: str, task_id: str) -> None:
        self.run_id, self.task_id = run_id, task_id
        super().__init__(f"task '{task_id[:200]}' not found in run '{run_id[:200]}'")


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


class RunFinished(Conflict):
    def __init__(self, run_id: str, status: str) -> None:
        self.run_id, self.status = run_id, status
        super().__init__(f"run '{run_id[:200]}' already finished ({status})")


class InvalidTransition(PetitError):
    """A state change the model forbids (a run ended twice, a skipped task started): a bug."""

    def __init__(self, what: str, from_status: str, to_status: str) -> None:
        self.from_status, self.to_status = from_status, to_status
        super().__init__(f"{what}: illegal transition {from_status} -> {to_status}")


class PayloadTooLarge(PetitError):
    """A request body over the API's limit (only the HTTP edge has bodies)."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class UnsupportedMediaType(PetitError):
    """A request body of another type than application/json (only the HTTP edge has bodies)."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415


class TooManyRuns(PetitError):
    code = "TOO_MANY_REQUESTS"
    http_status = 429


class Unavailable(PetitError):
    """The scheduler worker is down or did not answer within the deadline."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503
    exit_code = 3


class AuditUnavailable(PetitError):
    """The audit log cannot be written. Checked before a state-changing operation, which is
    then refused (fail closed); when only the line after it failed, the message says what was
    done."""

    code = "AUDIT_UNAVAILABLE"
    http_status = 503


class ConfigError(PetitError):
    """Job files are invalid; `errors` holds every problem found, one line each."""

    code = "INVALID_CONFIG"
    http_status = 400

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors

    def to_wire(self) -> dict:
        return {"error": self.message, "code": self.code, "errors": self.errors}

    @classmethod
    def from_body(cls, body: dict) -> ConfigError:
        return cls(list(body.get("errors") or [body.get("error", "invalid config")]))


class StorageError(PetitError):
    """The database cannot be read or written (corrupt file, permissions, disk full)."""

    code = "STORAGE_ERROR"
    http_status = 500


def from_wire(body: dict) -> PetitError:
    """Rebuild the exception a peer sent as `{"error", "code"}` (IPC replies)."""
    return PetitError.by_code.get(body.get("code", ""), PetitError).from_body(body)


def internal_error(exc: BaseException) -> PetitError:
    """What a caller is told about a bug inside petit, at every edge (HTTP, socket, queues):
    that it happened and where to look. The exception itself goes to the log, never the wire."""
    return PetitError(f"internal error ({type(exc).__name__}); see the petit log for details")
