"""The core's exception hierarchy; the API server maps each class to one HTTP status in one place."""

from __future__ import annotations


class SkyShiftError(Exception):
    """Base of every error the core raises on purpose.

    `reason` follows Kubernetes' `Status.reason` vocabulary so clients can branch on it.
    """

    status_code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidError(SkyShiftError):
    """The request body or a parameter failed validation."""

    status_code = 422
    reason = "Invalid"


class BadRequestError(SkyShiftError):
    """The request is malformed (wrong content type, unparsable body, bad selector)."""

    status_code = 400
    reason = "BadRequest"


class UnauthorizedError(SkyShiftError):
    """The request carries no valid credentials: the token is missing, malformed, expired or revoked,
    or a login's user name and password do not match."""

    status_code = 401
    reason = "Unauthorized"


class ForbiddenError(SkyShiftError):
    """The caller is authenticated, but no Role bound to them allows the request."""

    status_code = 403
    reason = "Forbidden"


class TooManyRequestsError(SkyShiftError):
    """Too many failed attempts (logins, registrations) came from one user or address; retry later."""

    status_code = 429
    reason = "TooManyRequests"


class UnsupportedMediaTypeError(SkyShiftError):
    """The request body's Content-Type is not one that the route reads."""

    status_code = 415
    reason = "UnsupportedMediaType"


class RequestEntityTooLargeError(SkyShiftError):
    """The object is larger than etcd accepts in one request."""

    status_code = 413
    reason = "RequestEntityTooLarge"


class RequestTimeoutError(SkyShiftError):
    """The server could not answer in time, for example waiting for etcd to reach a resource_version; retry later."""

    status_code = 504
    reason = "Timeout"


class NotFoundError(SkyShiftError):
    status_code = 404
    reason = "NotFound"


class AlreadyExistsError(SkyShiftError):
    status_code = 409
    reason = "AlreadyExists"


class ConflictError(SkyShiftError):
    """A resource_version precondition did not hold: the object changed since it was read."""

    status_code = 409
    reason = "Conflict"


class LeaseLostError(SkyShiftError):
    """The caller no longer holds the lease it named: a renewal or a write fenced by the lease failed.

    The caller must stop acting as the lease's holder (stop leading) and campaign again.
    """

    status_code = 409
    reason = "LeaseLost"


class GoneError(SkyShiftError):
    """The requested resource_version has been compacted away; list again."""

    status_code = 410
    reason = "Expired"


class UnavailableError(SkyShiftError):
    """etcd could not be reached within the request deadline."""

    status_code = 503
    reason = "ServiceUnavailable"


class PluginError(SkyShiftError):
    """A plugin is missing, broken or declared twice."""

    status_code = 500
    reason = "PluginError"


class ServerUnreachableError(UnavailableError):
    """A client could not connect to the SkyShift API server; raised on the client side only."""

    reason = "ServerUnreachable"


class ControlPlaneError(SkyShiftError):
    """`skyshift up` or `skyshift down` could not start or stop a local component."""

    reason = "ControlPlaneError"
