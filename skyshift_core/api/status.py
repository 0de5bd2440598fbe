"""Error responses in one shape, modelled on Kubernetes' `Status` object."""

from __future__ import annotations

import json

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
