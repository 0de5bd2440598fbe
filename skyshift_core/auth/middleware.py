"""ASGI middleware that authenticates every request and writes the audit log.

Only `/healthz`, `/livez`, `/readyz` and `/version` are served without a token. `/api/v1/login` and `/api/v1/register`
need none either, because the password or the invite in their body is the credential; they check it
themselves. Any other request without a valid bearer token gets 401 before routing, so unknown
paths reveal nothing. Route handlers find the caller in `request.state.identity`.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyshift_core.api.status import error_response
from skyshift_core.auth.audit import outcome_of, should_record
from skyshift_core.auth.service import AuthService
from skyshift_core.errors import RequestEntityTooLargeError, SkyShiftError
from skyshift_core.objects.meta import utc_now

logger = logging.getLogger(__name__)

# The version too, as Kubernetes serves it to anyone, so that a client can check it before it logs in.
PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
# Paths whose request body carries the credential (a password or an invite).
CREDENTIAL_PATHS = frozenset({"/api/v1/login", "/api/v1/register"})
# These paths take requests from anyone, and their bodies hold a name, a password and an invite,
# so a larger body is rejected before it is read.
MAX_CREDENTIAL_BODY_BYTES = 64 * 1024


class AuthMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        auth: AuthService = scope["app"].state.auth
        state = scope.setdefault("state", {})
        method = scope.get("method", "")
        started = time.perf_counter()
        code = 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded and should_record(method, code, scope["path"]):
                auth.audit.write(_entry(scope, state, method, code, started))
            recorded = True

        async def send_and_record(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                # Written before the response leaves, so a client that sees the response finds the entry.
                record()
            await send(message)

        try:
            if scope["path"] in CREDENTIAL_PATHS:
                too_large = _credential_body_too_large(scope)
                if too_large is not None:
                    await error_response(too_large)(scope, receive, send_and_record)
                    return
            else:
                headers = dict(scope.get("headers") or [])
                authorization = headers.get(b"authorization", b"").decode("latin-1")
                try:
                    state["identity"] = await auth.authenticate(authorization)
                except SkyShiftError as error:
                    state["auth_error"] = error.message
                    response = error_response(error)
                    if error.status_code == 401:
                        response.headers["WWW-Authenticate"] = 'Bearer realm="skyshift"'
                    await response(scope, receive, send_and_record)
                    return
            await self.app(scope, receive, send_and_record)
        finally:
            # Without a response (the app raised), the server responds with 500 outside this middleware.
            record()


def _credential_body_too_large(scope: Scope) -> RequestEntityTooLargeError | None:
    """Return the error for a login or registration whose Content-Length is over the limit."""
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length", b"0").decode("latin-1").strip()
    if not length.isdigit() or int(length) <= MAX_CREDENTIAL_BODY_BYTES:
        return None
    return RequestEntityTooLargeError(
        f"request body is {length} bytes; {scope['path']} takes at most {MAX_CREDENTIAL_BODY_BYTES} bytes: "
        "send only the user name, the password and, to register, the invite"
    )


def _entry(scope: Scope, state: dict, method: str, code: int, started: float) -> dict:
    identity = state.get("identity")
    attributes = state.get("auth_attributes")
    client = scope.get("client")
    entry = {
        "time": utc_now().isoformat(),
        "request_id": uuid.uuid4().hex,
        "user": identity.user if identity else state.get("audit_user"),
        "token_id": identity.token_id if identity else None,
        "source": client[0] if client else None,
        "method": method,
        "path": scope.get("path"),
        "verb": attributes.verb if attributes else None,
        "resource": attributes.resource if attributes else None,
        "namespace": attributes.namespace if attributes else None,
        "name": attributes.name if attributes else None,
        "code": code,
        "outcome": outcome_of(code),
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if state.get("auth_error"):
        entry["reason"] = state["auth_error"]
    if state.get("dry_run"):
        entry["dry_run"] = True
    return entry
