"""One error base for the whole project: message + HTTP status + gRPC code, mapped once at each edge."""

from __future__ import annotations


class ImgServeError(Exception):
    """Base error. ``message`` is safe to show to a client (no paths, no reprs)."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"  # name of a grpc.StatusCode member
    error_type: str = "internal_error"

    def __init__(self, message: str, *, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        if http_status is not None:
            self.http_status = http_status
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "type": self.error_type}


class InvalidInput(ImgServeError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    error_type = "invalid_input"


class PayloadTooLarge(InvalidInput):
    http_status = 413
    error_type = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    http_status = 415
    error_type = "unsupported_media_type"


class HeadersTooLarge(InvalidInput):
    """The request line and headers are over the server's limit (refused below the app, serving/connection.py)."""

    http_status = 431
    error_type = "headers_too_large"


class RequestTimeout(ImgServeError):
    """The client did not send a complete request in time (headers, or a body that stalled)."""

    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"
    error_type = "request_timeout"


class ClientDisconnected(InvalidInput):
    """The client closed the connection before the request was complete. Nobody reads the answer; the status
    is for our log and metrics (499, nginx's "client closed request"), so a client abort never looks like a
    request we refused."""

    http_status = 499
    grpc_code = "CANCELLED"
    error_type = "client_disconnected"


class Unauthorized(ImgServeError):
    """Credentials are missing or wrong (HTTP adds ``WWW-Authenticate: Bearer``)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    error_type = "unauthorized"


class Forbidden(ImgServeError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"
    error_type = "forbidden"


class NotFound(ImgServeError):
    http_status = 404
    grpc_code = "NOT_FOUND"
    error_type = "not_found"


class Overloaded(ImgServeError):
    """The server is shedding load; the client should retry after ``retry_after`` seconds."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    error_type = "overloaded"

    def __init__(self, message: str = "server is overloaded, retry later", *, retry_after: float = 1.0):
        super().__init__(message, retry_after=retry_after)


class RateLimited(ImgServeError):
    """This client sent more than its rate limit allows (serving/ratelimit.py); retry after ``retry_after``."""

    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    error_type = "rate_limited"


class NotReady(ImgServeError):
    http_status = 503
    grpc_code = "UNAVAILABLE"
    error_type = "not_ready"


class Conflict(ImgServeError):
    """Someone else changed the same thing first (an alias moved, a version number was taken): nothing was
    written; re-read and retry."""

    http_status = 409
    grpc_code = "ABORTED"
    error_type = "conflict"


class RegistryError(ImgServeError):
    http_status = 500
    error_type = "registry_error"


class VersionNotLoadable(RegistryError):
    """A registered version whose files do not load or warm up (truncated, corrupt, wrong shape). The server
    keeps serving what it has; 409 because the registry's state, not the request, is what has to change."""

    http_status = 409
    grpc_code = "FAILED_PRECONDITION"
    error_type = "version_not_loadable"


class ConfigError(ImgServeError):
    """A setting or argument is wrong; the message says how to fix it."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    error_type = "config_error"
