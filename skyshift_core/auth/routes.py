"""Authentication routes: login, logout, whoami, register, invites, service tokens and passwords.

Responses never contain a password, a password hash or a token digest. A token or an invite code
appears once, in the response that creates it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from skyshift_core.auth import invites
from skyshift_core.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    check_password,
    hash_password,
    password_path,
    password_record,
    validate_password,
)
from skyshift_core.auth.rbac import Attributes
from skyshift_core.auth.service import auth_of, authorize, check_grant, identity_of, requires
from skyshift_core.auth.tokens import SERVICE, SESSION, TokenRecord, issue_token, token_path
from skyshift_core.errors import InvalidError, NotFoundError, UnauthorizedError
from skyshift_core.objects import User
from skyshift_core.objects.meta import validate_name

router = APIRouter(tags=["auth"])

_NAME_FIELD = Field(min_length=1, max_length=63)
_PASSWORD_FIELD = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = _NAME_FIELD
    password: str = _PASSWORD_FIELD
    # Seconds the token stays valid; the server's default when left out.
    lifetime_seconds: int | None = Field(default=None, ge=1)


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invite: str = Field(min_length=1, max_length=200)
    username: str = _NAME_FIELD
    password: str = _PASSWORD_FIELD
    email: str | None = Field(default=None, max_length=254)
    display_name: str | None = Field(default=None, max_length=200)


class InviteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[str] = Field(min_length=1, max_length=50)
    lifetime_seconds: int | None = Field(default=None, ge=60)
    description: str = Field(default="", max_length=invites.MAX_DESCRIPTION_LENGTH)


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = _PASSWORD_FIELD
    # Required when users change their own password.
    current_password: str | None = Field(default=None, max_length=MAX_PASSWORD_LENGTH)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=200)
    # Seconds the service token stays valid; left out, it stays valid until revoked.
    lifetime_seconds: int | None = Field(default=None, ge=1)


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status_code, media_type="application/json")


def _success(message: str, details: dict[str, Any] | None = None) -> Response:
    body = {"kind": "Status", "api_version": "v1", "status": "Success", "code": 200, "message": message}
    if details is not None:
        body["details"] = details
    return _json(body)


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _user_name(name: str) -> str:
    try:
        return validate_name(name, "user name")
    except ValueError as error:
        raise InvalidError(str(error)) from error


def _token_body(token: str, record: TokenRecord) -> dict:
    return {"kind": "Token", "token": token, **record.public()}


# ---- login, logout, whoami -------------------------------------------------------------------


@router.post("/api/v1/login", summary="Exchange a user name and password for a session token")
async def login(request: Request, body: LoginBody) -> Response:
    auth = auth_of(request)
    request.state.audit_user = body.username
    address = _client_address(request)
    auth.limiter.check(body.username, address)
    lifetime = body.lifetime_seconds or auth.settings.token_lifetime_seconds
    if lifetime > auth.settings.max_token_lifetime_seconds:
        raise InvalidError(
            f"invalid lifetime_seconds {lifetime}: the maximum is {auth.settings.max_token_lifetime_seconds}"
        )
    if not await check_password(auth.store, body.username, body.password):
        auth.limiter.failed(body.username, address)
        request.state.auth_error = "wrong user name or password"
        raise UnauthorizedError("login failed: wrong user name or password")
    try:
        token, record = await issue_token(auth.store, body.username, SESSION, lifetime, "skyshift login")
    except NotFoundError as error:  # The user was deleted between the password check and now.
        raise UnauthorizedError("login failed: wrong user name or password") from error
    auth.limiter.succeeded(body.username)
    return _json(_token_body(token, record))


@router.post("/api/v1/logout", summary="Revoke the token this request carries")
async def logout(request: Request) -> Response:
    identity = identity_of(request)
    await auth_of(request).tokens.revoke(identity.user, identity.token_id)
    return _success(f"token {identity.token_id} of user '{identity.user}' revoked")


@router.get("/api/v1/whoami", summary="The caller's user, Roles, rules and token")
async def whoami(request: Request) -> Response:
    identity = identity_of(request)
    authorizer = auth_of(request).authorizer
    roles, namespaced = await authorizer.bindings_of(identity.user)
    return _json(
        {
            "kind": "WhoAmI",
            "api_version": "v1",
            "user": identity.user,
            "roles": sorted(role.metadata.name for role in roles),
            # Roles bound in one namespace alone, by namespace.
            "namespace_roles": {
                namespace: sorted(role.metadata.name for role in bound)
                for namespace, bound in sorted(namespaced.items())
            },
            "rules": [rule.model_dump(mode="json") for rule in await authorizer.rules_of(identity.user)],
            "token": {
                "id": identity.token_id,
                "type": identity.token_kind,
                "expires_at": identity.expires_at.isoformat() if identity.expires_at else None,
            },
        }
    )


# ---- registration and invites ------------------------------------------------------------------


@router.post("/api/v1/register", status_code=201, summary="Create a user with an invite; returns its first token")
async def register(request: Request, body: RegisterBody) -> Response:
    auth = auth_of(request)
    request.state.audit_user = body.username
    address = _client_address(request)
    auth.limiter.check(None, address)
    name = _user_name(body.username)
    validate_password(body.password)
    user = User(metadata={"name": name}, spec={"email": body.email, "display_name": body.display_name})
    try:
        created, token, record = await invites.redeem_invite(
            auth.store, auth.authorizer, body.invite, user, await hash_password(body.password),
            auth.settings.token_lifetime_seconds,
        )  # fmt: skip
    except UnauthorizedError as error:
        auth.limiter.failed(None, address)
        request.state.auth_error = error.message
        raise
    request.state.auth_attributes = Attributes("create", "users", None, name)
    body = {
        "kind": "Registration",
        "api_version": "v1",
        "user": created.model_dump(mode="json"),
        "token": token,
        "token_id": record.id,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
    }
    return _json(body, 201)


@router.post(
    "/api/v1/invites",
    status_code=201,
    summary="Create an invite that registers one user with Roles",
    dependencies=[Depends(requires("create", "invites"))],
)
async def create_invite(request: Request, body: InviteBody) -> Response:
    identity = identity_of(request)
    auth = auth_of(request)
    lifetime = body.lifetime_seconds or auth.settings.invite_lifetime_seconds
    if lifetime > auth.settings.max_invite_lifetime_seconds:
        raise InvalidError(
            f"invalid lifetime_seconds {lifetime}: the maximum is {auth.settings.max_invite_lifetime_seconds}"
        )
    roles = await invites.roles_named(auth.store, body.roles)
    rules = [rule for role in roles for rule in role.spec.rules]
    await check_grant(request, rules, f"invite users with the Roles {', '.join(body.roles)}")
    code, record = await invites.create_invite(auth.store, identity.user, body.roles, lifetime, body.description)
    return _json({**record.public(), "invite": code}, 201)


@router.get(
    "/api/v1/invites", summary="List invites (without their codes)", dependencies=[Depends(requires("list", "invites"))]
)
async def list_invites(request: Request) -> Response:
    items = [record.public() for record in await invites.list_invites(auth_of(request).store)]
    return _json({"kind": "InviteList", "api_version": "v1", "items": items})


@router.get(
    "/api/v1/invites/{invite_id}",
    summary="Read an invite (without its code)",
    dependencies=[Depends(requires("get", "invites", "invite_id"))],
)
async def read_invite(request: Request, invite_id: str) -> Response:
    return _json((await invites.get_invite(auth_of(request).store, invite_id)).public())


@router.delete(
    "/api/v1/invites/{invite_id}",
    summary="Revoke an invite so it can no longer be used",
    dependencies=[Depends(requires("delete", "invites", "invite_id"))],
)
async def revoke_invite(request: Request, invite_id: str) -> Response:
    return _json((await invites.revoke_invite(auth_of(request).store, invite_id)).public())


# ---- passwords and service tokens ------------------------------------------------------------------


async def _require_user(request: Request, name: str) -> User:
    return await auth_of(request).store.get(User, None, name)


def _acts_for(verb: str, resource: str):
    """Return a dependency that authorizes acting on the credentials of the user named in the path.

    Users may always act on their own. Acting for another user needs the verb on the resource, and
    for anything but listing, every permission that user holds, because setting a password or
    creating a token gives the caller those permissions. Listing shows only the tokens' ids,
    descriptions and expiry, never a secret, so it needs the verb alone.
    """

    async def dependency(request: Request) -> None:
        identity = identity_of(request)
        name = _user_name(request.path_params["name"])
        if identity.user == name:
            request.state.auth_attributes = Attributes(verb, resource, None, name)
            return
        await authorize(request, verb, resource, name=name)
        if verb == "list":
            return
        rules = await auth_of(request).authorizer.rules_of(name)
        await check_grant(request, rules, f"{verb} {resource} of user '{name}'")

    return dependency


@router.put(
    "/api/v1/users/{name}/password",
    summary="Set a user's password; revokes the user's other session tokens, but not its service tokens",
    dependencies=[Depends(_acts_for("update", "users/password"))],
)
async def set_password(request: Request, name: str, body: PasswordBody) -> Response:
    auth = auth_of(request)
    identity = identity_of(request)
    await _require_user(request, name)
    if identity.user == name:
        # Users prove they know their current password, so a stolen token cannot take over the account.
        address = _client_address(request)
        auth.limiter.check(name, address)
        if body.current_password is None or not await check_password(auth.store, name, body.current_password):
            auth.limiter.failed(name, address)
            raise UnauthorizedError("wrong current password: send current_password to change your own password")
    password_hash = await hash_password(body.password)

    transaction = auth.store.transaction()
    transaction.require_object(User, None, name)
    transaction.put_secret(password_path(name), password_record(password_hash))
    revoked = 0
    service_tokens = []
    for record in await auth.tokens.list_tokens(name):
        if record.kind == SESSION and not (identity.user == name and record.id == identity.token_id):
            transaction.delete_secret(token_path(name, record.id))
            revoked += 1
        elif record.kind == SERVICE and not record.expired():
            service_tokens.append(record.id)
    if await transaction.commit() is None:
        raise NotFoundError(f"user '{name}' not found")
    auth.tokens.forget_user(name)
    message = (
        f"password of user '{name}' set; {revoked} other session token(s) revoked; "
        + _service_token_note(name, len(service_tokens))
    )
    return _success(message, {"revoked_session_tokens": revoked, "valid_service_tokens": service_tokens})


def _service_token_note(name: str, count: int) -> str:
    """Return how many service tokens a password change left valid, and how to revoke them."""
    if count == 0:
        return "the user has no valid service tokens"
    return (
        f"{count} service token(s) remain valid, because a password change does not revoke service tokens; "
        f"list them with 'skyshift token list --user {name}' and revoke each with "
        f"'skyshift token revoke ID --user {name}'"
    )


@router.get(
    "/api/v1/users/{name}/tokens",
    summary="List a user's tokens (without the tokens themselves)",
    dependencies=[Depends(_acts_for("list", "users/tokens"))],
)
async def list_tokens(request: Request, name: str) -> Response:
    await _require_user(request, name)
    records = await auth_of(request).tokens.list_tokens(name)
    return _json({"kind": "TokenList", "api_version": "v1", "items": [record.public() for record in records]})


@router.post(
    "/api/v1/users/{name}/tokens",
    status_code=201,
    summary="Create a service token for a user",
    dependencies=[Depends(_acts_for("create", "users/tokens"))],
)
async def create_token(request: Request, name: str, body: TokenBody) -> Response:
    token, record = await issue_token(auth_of(request).store, name, SERVICE, body.lifetime_seconds, body.description)
    return _json(_token_body(token, record), 201)


@router.delete(
    "/api/v1/users/{name}/tokens/{token_id}",
    summary="Revoke one of a user's tokens",
    dependencies=[Depends(_acts_for("delete", "users/tokens"))],
)
async def revoke_token(request: Request, name: str, token_id: str) -> Response:
    return _json((await auth_of(request).tokens.revoke(name, token_id)).public())
