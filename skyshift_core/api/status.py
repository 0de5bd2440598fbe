"""Error responses in one shape, modelled on Kubernetes' `Status` object."""

from __future__ import annotations

import json
from http import HTTPStatus

from fastapi import Response

from skyshift_core.errors import SkyShiftError


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    return {
        "kind": "Status",
        "api_version": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "details": details or {},
    }


def error_response(error: SkyShiftError) -> Response:
    body = status_body(error.status_code, error.reason, error.message, error.details)
    # Some errors carry response headers, such as Retry-After on 429.
    headers = getattr(error, "headers", None)
    return Response(json.dumps(body), status_code=error.status_code, media_type="application/json", headers=headers)


def routing_error_body(code: int, method: str, path: str, detail: str, allowed_methods: list[str]) -> dict:
    """Build the Status body for an HTTPException that FastAPI or Starlette raised, such as a routing 404 or 405.

    `allowed_methods` are the methods that `path` accepts, named in a 405's message. `detail` is the
    exception's text, used for codes other than 404 and 405.
    """
    if code == 404:
        message = f"path {path} not found on this API server; GET /api/v1 lists the resources it serves"
        return status_body(404, "NotFound", message)
    if code == 405:
        allowed = ", ".join(allowed_methods) or "none"
        message = f"method {method} is not allowed on {path}; allowed methods: {allowed}"
        return status_body(405, "MethodNotAllowed", message)
    try:
        reason = HTTPStatus(code).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        reason = "Unknown"
    return status_body(code, reason, f"{method} {path} failed: {detail}")
